namespace HeadLens.Model;

/// <summary>Named shapes: tiny test models, the GPT-2 family, and Llama shapes (for describe, even where too big to run).</summary>
public static class ModelPresets
{
    private static readonly Dictionary<string, ModelConfig> Presets = new(StringComparer.OrdinalIgnoreCase)
    {
        ["tiny"] = Gpt2(vocab: 256, context: 64, layers: 2, heads: 4, channels: 32),
        ["tiny-llama"] = Llama(vocab: 256, context: 64, layers: 2, heads: 4, kvHeads: 2, channels: 32, hidden: 64),
        ["tiny-attn-only"] = Gpt2(vocab: 256, context: 64, layers: 2, heads: 4, channels: 32) with { HasMlp = false },
        // The embedded default: byte-level, trained on the King James Bible (see README).
        ["kjv"] = Gpt2(vocab: 256, context: 128, layers: 4, heads: 4, channels: 128),
        ["gpt2"] = Gpt2(vocab: 50257, context: 1024, layers: 12, heads: 12, channels: 768),
        ["gpt2-medium"] = Gpt2(vocab: 50257, context: 1024, layers: 24, heads: 16, channels: 1024),
        ["gpt2-large"] = Gpt2(vocab: 50257, context: 1024, layers: 36, heads: 20, channels: 1280),
        ["gpt2-xl"] = Gpt2(vocab: 50257, context: 1024, layers: 48, heads: 25, channels: 1600),
        ["llama-7b"] = Llama(vocab: 32000, context: 2048, layers: 32, heads: 32, kvHeads: 32, channels: 4096, hidden: 11008),
        ["llama2-7b"] = Llama(vocab: 32000, context: 4096, layers: 32, heads: 32, kvHeads: 32, channels: 4096, hidden: 11008),
        ["llama2-70b"] = Llama(vocab: 32000, context: 4096, layers: 80, heads: 64, kvHeads: 8, channels: 8192, hidden: 28672),
        ["llama3-8b"] = Llama(vocab: 128256, context: 8192, layers: 32, heads: 32, kvHeads: 8, channels: 4096, hidden: 14336) with { RopeTheta = 500000f },
    };

    public static IEnumerable<string> Names => Presets.Keys;

    public static ModelConfig Get(string name) =>
        Presets.TryGetValue(name, out var config)
            ? config
            : throw new HeadLensException($"unknown preset '{name}' (known: {string.Join(", ", Presets.Keys)})");

    private static ModelConfig Gpt2(int vocab, int context, int layers, int heads, int channels) => new()
    {
        Family = ModelFamily.Gpt2,
        VocabSize = vocab,
        ContextLength = context,
        Layers = layers,
        Heads = heads,
        KvHeads = heads,
        Channels = channels,
        HiddenChannels = 4 * channels,
        NormEpsilon = 1e-5f,
        TiedEmbeddings = true,
    };

    private static ModelConfig Llama(int vocab, int context, int layers, int heads, int kvHeads, int channels, int hidden) => new()
    {
        Family = ModelFamily.Llama,
        VocabSize = vocab,
        ContextLength = context,
        Layers = layers,
        Heads = heads,
        KvHeads = kvHeads,
        Channels = channels,
        HiddenChannels = hidden,
        NormEpsilon = 1e-5f,
        TiedEmbeddings = false,
    };
}
