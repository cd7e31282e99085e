using HeadLens.Model;

namespace HeadLens.Tests.Analysis;

/// <summary>Small models with every weight random (norm weights and biases too, so that no term can hide).</summary>
internal static class TinyModels
{
    public static ModelConfig Gpt2 => ModelPresets.Gpt2(vocab: 29, context: 16, layers: 2, heads: 3, channels: 12) with { HiddenChannels = 20 };

    public static ModelConfig Llama => ModelPresets.Llama(vocab: 31, context: 16, layers: 2, heads: 4, kvHeads: 2, channels: 16, hidden: 24);

    /// <summary>Llama's features with Qwen2's q/k/v biases and Llama 3 rope scaling: two features no preset mixes.</summary>
    public static ModelConfig Qwen2Llama3Rope => ModelPresets.Qwen2(vocab: 31, context: 16, layers: 2, heads: 4, kvHeads: 2, channels: 16, hidden: 24) with
    {
        Rope = new(500f) { Scaling = Embeddings.RopeScaling.Llama3, ScalingFactor = 4, LowFrequencyFactor = 1, HighFrequencyFactor = 2, OriginalContext = 8 },
    };

    public static ModelConfig AttentionOnly => Llama with { Mlp = MlpKind.None, Layers = 3 };

    public static Transformer Random(ModelConfig config, int seed, double scale = 0.3)
    {
        var model = new Transformer(config);
        var random = new Random(seed);
        foreach (var (name, _, decay) in ModelWeights.Layout(config))
        {
            var values = model.Parameters.Arena.Get(name).Span;
            bool normWeight = name.Contains("norm", StringComparison.Ordinal) && name.EndsWith(".weight", StringComparison.Ordinal);
            for (int i = 0; i < values.Length; i++)
            {
                double u = (2 * random.NextDouble()) - 1;
                values[i] = (float)(normWeight ? 1 + (0.3 * u) : decay ? scale * u : 0.1 * u);
            }
        }

        return model;
    }

    public static Transformer Copy(Transformer model)
    {
        var copy = new Transformer(model.Config);
        model.Parameters.Arena.All.CopyTo(copy.Parameters.Arena.All);
        return copy;
    }

    public static int[] Ids(ModelConfig config, int count, int seed)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(_ => random.Next(config.VocabSize))];
    }

    /// <summary>max |a − b| / max |b|: the error relative to the size of the values compared.</summary>
    public static double RelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        double worst = 0, size = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(actual[i] - (double)expected[i]));
            size = Math.Max(size, Math.Abs(expected[i]));
        }

        return worst / Math.Max(size, 1e-30);
    }
}
