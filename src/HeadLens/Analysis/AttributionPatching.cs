using HeadLens.Model;

namespace HeadLens.Analysis;

/// <summary>
/// Attribution patching (Nanda 2023, "Attribution Patching: Activation Patching At Industrial Scale"; Syed et al.
/// 2023): the patches of <see cref="ActivationPatching"/> estimated all at once, to first order. Copying an activation
/// a from the clean run into the corrupted one changes the metric by about (a_clean − a_corrupted) · ∂metric/∂a, the
/// gradient taken on the corrupted run; so one clean run, one corrupted run and one backward pass estimate every head
/// (its z, at every position or at each one) and every stream position, where activation patching runs the model once
/// per patch. The estimate is exact for what a patch changes linearly and misses the rest (a softmax that saturates, a
/// norm that rescales): it ranks the candidates, and activation patching confirms the ones that matter.
/// </summary>
public static class AttributionPatching
{
    /// <summary>
    /// The sites it estimates: each head's z at every position or at each one, and at each position the stream entering
    /// a layer, a layer's attention output and its MLP output.
    /// </summary>
    public static readonly PatchSite[] Sites = [PatchSite.Heads, PatchSite.HeadPositions, PatchSite.Stream, PatchSite.Attention, PatchSite.Mlp];

    /// <summary>
    /// Estimates every patch of <paramref name="site"/> in <paramref name="layers"/> (default: all), with the metric
    /// <see cref="ActivationPatching.Run"/> would use; each effect's <see cref="PatchEffect.Value"/> is the corrupted
    /// metric plus the estimated change. Needs the backward pass: a decoder with pre-norm blocks and fp32 weights.
    /// </summary>
    public static PatchingResult Run(Transformer model, int[] cleanIds, int[] corruptedIds, PatchSite site, int? answer = null, int? wrong = null,
        IReadOnlyList<int>? layers = null)
    {
        var config = model.Config;
        if (Array.IndexOf(Sites, site) < 0)
        {
            throw new ArgumentException($"attribution patching estimates heads, head positions, the stream, attention and MLP outputs, not {site}", nameof(site));
        }

        if (site == PatchSite.Mlp && !config.HasMlp)
        {
            throw new HeadLensException("this model has no MLPs to patch");
        }

        if (!config.HasOutputHead || config.NormPlacement == NormPlacement.Post || config.TokenTypes > 0)
        {
            throw new HeadLensException("attribution patching takes a gradient through the model, and HeadLens's backward pass covers decoders "
                + "with pre-norm blocks; this model needs activation patching (a run per patch)");
        }

        if (model.IsPackedForInference || model.Parameters.HasStoredMatrices)
        {
            throw new HeadLensException("attribution patching takes a gradient through the model, which needs its fp32 weights unpacked "
                + "(a GGUF model's quantized matrices: convert it with --type f32 first)");
        }

        bool heads = site is PatchSite.Heads or PatchSite.HeadPositions;
        string Point(int layer) => ActivationPatching.Point(site, layer);
        var wanted = new HashSet<string>(Enumerable.Range(0, config.Layers).Select(Point), StringComparer.Ordinal);
        // Checked before the training forward runs on the corrupted text (the baseline checks again).
        ActivationPatching.Validate(config, cleanIds, corruptedIds, answer, wrong);

        // The corrupted run is the training forward the gradient is taken on; its last logits serve the baseline.
        int t = cleanIds.Length, groups = heads ? config.Heads : 1, width = heads ? config.HeadDim : config.Channels;
        model.ForwardForLastLogits(corruptedIds);
        var baseline = new ActivationPatching.Baseline(model, cleanIds, corruptedIds, answer, wrong, (name, clean) => clean && wanted.Contains(name),
            model.LastForwardLogits(t - 1).ToArray());
        bool perPosition = site != PatchSite.Heads;

        // estimates[l][g·T + i]: Σ over group g's columns of (clean − corrupted) · gradient at position i.
        var estimates = new double[config.Layers][];
        void See(int layer, ReadOnlySpan<float> corrupted, ReadOnlySpan<float> gradient)
        {
            var clean = baseline.CleanRun[Point(layer)];
            var sums = new double[groups * t];
            for (int i = 0; i < t; i++)
            {
                for (int g = 0; g < groups; g++)
                {
                    int start = (i * groups + g) * width;
                    double sum = 0;
                    for (int j = start; j < start + width; j++)
                    {
                        sum += ((double)clean[j] - corrupted[j]) * gradient[j];
                    }

                    sums[g * t + i] = sum;
                }
            }

            estimates[layer] = sums;
        }

        model.BackwardFrom(baseline.MetricGradient(), heads ? See : null, site == PatchSite.Stream ? See : null,
            site == PatchSite.Attention ? See : null, site == PatchSite.Mlp ? See : null);

        var effects = new List<PatchEffect>();
        foreach (int l in layers ?? [.. Enumerable.Range(0, config.Layers)])
        {
            for (int g = 0; g < groups; g++)
            {
                if (!perPosition)
                {
                    double change = System.Numerics.Tensors.TensorPrimitives.Sum<double>(estimates[l].AsSpan(g * t, t));
                    effects.Add(Effect(l, g, change));
                    continue;
                }

                for (int i = 0; i < t; i++)
                {
                    var effect = Effect(l, heads ? g : i, estimates[l][g * t + i]);
                    effects.Add(heads ? effect with { Position = i } : effect);
                }
            }
        }

        return baseline.Result(site, effects);

        PatchEffect Effect(int layer, int index, double change)
        {
            double value = baseline.Corrupted + change;
            return new PatchEffect(layer, index, value, baseline.Recovered(value));
        }
    }
}
