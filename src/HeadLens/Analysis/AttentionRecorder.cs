using HeadLens.Attention;
using HeadLens.Model;

namespace HeadLens.Analysis;

/// <summary>
/// The post-softmax attention patterns of a model on one sequence: runs a forward pass, then recomputes each
/// layer's patterns from its recorded queries and keys (so looking never changes what the model computed).
/// </summary>
public static class AttentionRecorder
{
    /// <summary>patterns[layer] is [H, T, T] (rows sum to 1, zeros above the diagonal).</summary>
    public static float[][] Record(Transformer model, ReadOnlySpan<int> ids)
    {
        int t = ids.Length;
        model.Forward(ids, [], 1, t);
        var activations = model.LastActivations!;
        int[] heads = Enumerable.Range(0, model.Config.Heads).ToArray();
        var patterns = new float[model.Config.Layers][];
        for (int l = 0; l < model.Config.Layers; l++)
        {
            patterns[l] = new float[model.Config.Heads * t * t];
            ScaledDotProductAttention.Patterns(model.AttentionOptions, t, t, 0, activations.Layer(l, "q"), activations.Layer(l, "k"), heads, patterns[l]);
        }

        return patterns;
    }
}
