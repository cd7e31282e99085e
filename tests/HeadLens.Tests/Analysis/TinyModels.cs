using HeadLens.Model;

namespace HeadLens.Tests.Analysis;

/// <summary>Small models with every weight random (norm weights and biases too, so that no term can hide).</summary>
internal static class TinyModels
{
    public static ModelConfig Gpt2 => new()
    {
        Family = ModelFamily.Gpt2,
        VocabSize = 29,
        ContextLength = 16,
        Layers = 2,
        Heads = 3,
        KvHeads = 3,
        Channels = 12,
        HiddenChannels = 20,
    };

    public static ModelConfig Llama => new()
    {
        Family = ModelFamily.Llama,
        VocabSize = 31,
        ContextLength = 16,
        Layers = 2,
        Heads = 4,
        KvHeads = 2,
        Channels = 16,
        HiddenChannels = 24,
        TiedEmbeddings = false,
    };

    public static ModelConfig AttentionOnly => Llama with { HasMlp = false, Layers = 3 };

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
