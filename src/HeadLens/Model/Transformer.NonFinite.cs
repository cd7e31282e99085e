using System.Numerics.Tensors;

namespace HeadLens.Model;

/// <summary>
/// Outputs that refuse to lie: a pass whose outputs hold NaN or ±∞ stops with one line naming the layer (and capture
/// point) where the first non-finite value appears, instead of sampling a token from NaNs or printing them. The normal
/// path pays one vectorised sum over the outputs; only once a non-finite value is seen does a second, hooked pass
/// over the same ids look for where it began.
/// </summary>
public sealed partial class Transformer
{
    /// <summary>True when every value is finite (no NaN, no ±∞).</summary>
    public static bool AllFinite(ReadOnlySpan<float> values)
    {
        // The sum is finite exactly when no element is NaN or ±∞, unless huge finite values overflow it: the exact
        // scan then decides, and it runs only in that rare case.
        if (float.IsFinite(TensorPrimitives.Sum(values)))
        {
            return true;
        }

        foreach (float value in values)
        {
            if (!float.IsFinite(value))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// Throws a <see cref="HeadLensException"/> naming where NaN/∞ first appears when <paramref name="outputs"/>
    /// (computed from <paramref name="ids"/>, one sequence) are not all finite; <paramref name="what"/> names them.
    /// </summary>
    public void ThrowIfNotFinite(ReadOnlySpan<float> outputs, ReadOnlySpan<int> ids, string what)
    {
        if (AllFinite(outputs))
        {
            return;
        }

        throw new HeadLensException($"the {what} hold NaN or infinity, first appearing {FirstNonFinite(ids)}; " +
            "the model's weights or config.json (e.g. layer_norm_epsilon) make it overflow");
    }

    // Runs ids again with a hook at every capture point, in forward order, and names the first that is not finite.
    // The attention scores hold −∞ by design (masked positions): there only NaN and +∞ count.
    private string FirstNonFinite(ReadOnlySpan<int> ids)
    {
        string? first = null;
        var registry = new HookRegistry(Config);
        foreach (string name in HookNames.All(Config))
        {
            bool scores = name.EndsWith(".attn.hook_scores", StringComparison.Ordinal);
            _ = registry.Add(name, (point, activation, _) =>
            {
                if (first is null && (scores ? HasNaNOrPositiveInfinity(activation) : !AllFinite(activation)))
                {
                    first = point;
                }
            });
        }

        var buffers = InferCore(ids, 1, ids.Length, Config.HasOutputHead, new HookContext(registry, capture: null), [], null);
        if (first is null)
        {
            return AllFinite(buffers.FinalNormed) ? "in the output head (lm_head)" : "in the final norm";
        }

        if (first.StartsWith("blocks.", StringComparison.Ordinal))
        {
            string layer = first["blocks.".Length..first.IndexOf('.', "blocks.".Length)];
            return $"in layer {layer} ({first})";
        }

        return $"in the embeddings ({first})";
    }

    private static bool HasNaNOrPositiveInfinity(ReadOnlySpan<float> values)
    {
        foreach (float value in values)
        {
            if (float.IsNaN(value) || float.IsPositiveInfinity(value))
            {
                return true;
            }
        }

        return false;
    }
}
