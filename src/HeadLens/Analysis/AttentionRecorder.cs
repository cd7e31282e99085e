using HeadLens.Model;

namespace HeadLens.Analysis;

/// <summary>The post-softmax attention patterns of a model on one sequence, from the model's own analysis run.</summary>
public static class AttentionRecorder
{
    /// <summary>
    /// patterns[layer] is [H, T, T] (rows sum to 1; zeros above the diagonal for causal models). An inference pass:
    /// no gradient buffers and no logits are allocated. With <paramref name="onlyLayer"/>, the other layers' entries
    /// stay empty (a 1024-token GPT-2 run then keeps one layer's 50 MB of patterns, not all twelve).
    /// </summary>
    public static float[][] Record(Transformer model, ReadOnlySpan<int> ids, int? onlyLayer = null)
    {
        var patterns = Enumerable.Range(0, model.Config.Layers).Select(_ => Array.Empty<float>()).ToArray();
        var layers = onlyLayer is { } single ? [single] : Enumerable.Range(0, model.Config.Layers);
        var wanted = layers.ToDictionary(HookNames.Pattern, layer => layer);
        var hooks = new HookRegistry(model.Config);
        foreach (var (name, layer) in wanted)
        {
            _ = hooks.Add(name, (_, pattern, _) => patterns[layer] = pattern.ToArray());
        }

        model.RunWith(ids, capture: null, withLogits: false, hooks);
        return patterns;
    }
}
