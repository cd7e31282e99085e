using HeadLens.Model;

namespace HeadLens.Analysis;

/// <summary>
/// Interventions at the capture points, each a hook added to a <see cref="HookedForward"/>:
///   - zero-ablation of a head: its z (pattern·V) set to 0, so it adds nothing but the shared output bias;
///   - mean-ablation of a head: its z replaced by its mean over reference text (what it writes "on average"),
///     which removes the information the head moves without pushing the stream off its usual distribution;
///   - replacing a head's pattern with a given one;
///   - activation patching: copy an activation (whole, one head, one position) from a clean run into a corrupted
///     run, to see which piece restores the clean behaviour (Meng et al. 2022; Wang et al. 2022).
/// </summary>
public static class Interventions
{
    public static HookedForward ZeroAblateHead(this HookedForward forward, int layer, int head)
    {
        CheckHead(forward, layer, head);
        int heads = forward.Config.Heads, d = forward.Config.HeadDim;
        return forward.AddHook(HookNames.Z(layer), (_, z, shape) =>
        {
            for (int i = 0; i < shape[0]; i++)
            {
                z.Slice(((i * heads) + head) * d, d).Clear();
            }
        });
    }

    /// <summary>Replaces the head's z at every position by <paramref name="meanZ"/> [D] (see <see cref="MeanZ"/>).</summary>
    public static HookedForward MeanAblateHead(this HookedForward forward, int layer, int head, float[] meanZ)
    {
        CheckHead(forward, layer, head);
        int heads = forward.Config.Heads, d = forward.Config.HeadDim;
        if (meanZ.Length != d)
        {
            throw new HeadLensException($"mean ablation of head {layer}.{head}: mean has {meanZ.Length} values, the head size is {d}");
        }

        return forward.AddHook(HookNames.Z(layer), (_, z, shape) =>
        {
            for (int i = 0; i < shape[0]; i++)
            {
                meanZ.CopyTo(z.Slice(((i * heads) + head) * d, d));
            }
        });
    }

    /// <summary>Mean of each head's z over every position of the reference sequences: [H, D] per layer.</summary>
    public static float[][] MeanZ(Transformer model, IEnumerable<int[]> sequences)
    {
        var config = model.Config;
        int heads = config.Heads, d = config.HeadDim;
        var sums = Enumerable.Range(0, config.Layers).Select(_ => new double[heads * d]).ToArray();
        long positions = 0;
        var forward = new HookedForward(model);
        foreach (var ids in sequences)
        {
            var run = forward.Run(ids, name => name.EndsWith(".attn.hook_z", StringComparison.Ordinal));
            for (int l = 0; l < config.Layers; l++)
            {
                var z = run[HookNames.Z(l)];
                for (int i = 0; i < z.Length; i++)
                {
                    sums[l][i % (heads * d)] += z[i];
                }
            }

            positions += ids.Length;
        }

        return [.. sums.Select(sum => sum.Select(value => (float)(value / Math.Max(1, positions))).ToArray())];
    }

    /// <summary>Makes head (layer, head) attend with <paramref name="pattern"/> [T, T] instead of its own.</summary>
    public static HookedForward ReplacePattern(this HookedForward forward, int layer, int head, float[] pattern)
    {
        CheckHead(forward, layer, head);
        return forward.AddHook(HookNames.Pattern(layer), (_, patterns, shape) =>
        {
            int size = shape[1] * shape[2];
            if (pattern.Length != size)
            {
                throw new HeadLensException($"pattern for head {layer}.{head} has {pattern.Length} values, the run needs {shape[1]}×{shape[2]}");
            }

            pattern.CopyTo(patterns.Slice(head * size, size));
        });
    }

    /// <summary>
    /// Activation patching: at capture point <paramref name="name"/>, overwrite the corrupted run's activation with
    /// the clean run's (<paramref name="clean"/>, same shape) — all of it, or only one head (for [T, H, ·] and
    /// [H, T, T] points) and/or one position (token index, the first axis of [T, …] points, the query axis of
    /// [H, T, T] points). Clean and corrupted inputs must have the same length.
    /// </summary>
    public static HookedForward Patch(this HookedForward forward, string name, float[] clean, int? head = null, int? position = null)
    {
        bool headMajor = name.EndsWith("hook_scores", StringComparison.Ordinal) || name.EndsWith("hook_pattern", StringComparison.Ordinal);
        return forward.AddHook(name, (_, activation, shape) =>
        {
            if (clean.Length != activation.Length)
            {
                throw new HeadLensException($"patching {name}: the clean activation has {clean.Length} values, the corrupted run {activation.Length} (inputs of different lengths?)");
            }

            if (headMajor)
            {
                // [H, T, T]: rows (h, i) of length T.
                int t = shape[1];
                for (int h = 0; h < shape[0]; h++)
                {
                    for (int i = 0; i < t; i++)
                    {
                        if ((head is null || head == h) && (position is null || position == i))
                        {
                            clean.AsSpan(((h * t) + i) * t, t).CopyTo(activation.Slice(((h * t) + i) * t, t));
                        }
                    }
                }

                return;
            }

            // [T, X] or [T, H, X]: per position, per head slices of length X.
            bool perHead = shape.Length == 3;
            if (head is not null && !perHead)
            {
                throw new HeadLensException($"patching {name}: it has no head axis");
            }

            int groups = perHead ? shape[1] : 1, width = shape[^1];
            for (int i = 0; i < shape[0]; i++)
            {
                for (int h = 0; h < groups; h++)
                {
                    if ((head is null || head == h) && (position is null || position == i))
                    {
                        int offset = ((i * groups) + h) * width;
                        clean.AsSpan(offset, width).CopyTo(activation.Slice(offset, width));
                    }
                }
            }
        });
    }

    private static void CheckHead(HookedForward forward, int layer, int head)
    {
        if ((uint)layer >= (uint)forward.Config.Layers || (uint)head >= (uint)forward.Config.Heads)
        {
            throw new HeadLensException($"head {layer}.{head} does not exist: the model has {forward.Config.Layers} layers of {forward.Config.Heads} heads");
        }
    }
}
