namespace HeadLens.Model;

/// <summary>
/// Named shapes: tiny test models, the GPT-2 family, and Llama and Qwen2 shapes (for describe, even where too big to
/// run). A family is nothing but a preset of features: GPT-2 = pre-LayerNorm, learned positions, GELU MLP, biases
/// everywhere, tied embeddings; Llama = pre-RMSNorm, rotary positions, SwiGLU MLP, no biases; Qwen2 = Llama with
/// biases on q, k and v.
/// </summary>
public static class ModelPresets
{
    private static readonly Dictionary<string, ModelConfig> Presets = new(StringComparer.OrdinalIgnoreCase)
    {
        ["tiny"] = Gpt2(vocab: 256, context: 64, layers: 2, heads: 4, channels: 32),
        ["tiny-llama"] = Llama(vocab: 256, context: 64, layers: 2, heads: 4, kvHeads: 2, channels: 32, hidden: 64),
        ["tiny-qwen2"] = Qwen2(vocab: 256, context: 64, layers: 2, heads: 4, kvHeads: 2, channels: 32, hidden: 64),
        ["tiny-attn-only"] = Gpt2(vocab: 256, context: 64, layers: 2, heads: 4, channels: 32) with { Mlp = MlpKind.None },
        ["tiny-linear"] = Llama(vocab: 256, context: 64, layers: 2, heads: 4, kvHeads: 4, channels: 32, hidden: 64) with { AttentionForm = AttentionForm.Linear },
        // The first embedded default's shape: byte-level GPT-2, trained on the King James Bible (see README).
        ["kjv"] = Gpt2(vocab: 256, context: 128, layers: 4, heads: 4, channels: 128),
        // The embedded default's shape: byte-level, Llama-shaped (rotary positions on queries and keys only, so the
        // residual stream carries tokens, not positions: what let its induction heads form; see README).
        ["kjv-llama"] = Llama(vocab: 256, context: 128, layers: 4, heads: 4, kvHeads: 4, channels: 128, hidden: 352),
        // kjv-llama with linear attention in place of the softmax: to compare what its heads learn.
        ["kjv-linear"] = Llama(vocab: 256, context: 128, layers: 4, heads: 4, kvHeads: 4, channels: 128, hidden: 352) with { AttentionForm = AttentionForm.Linear },
        // The same with a 1,024-token BPE vocabulary and a longer context, so that names and phrases recur within a
        // window: the BPE embedded model still to be trained (its runs so far formed no induction heads; see README).
        ["kjv-bpe"] = Llama(vocab: 1024, context: 256, layers: 4, heads: 4, kvHeads: 4, channels: 128, hidden: 352),
        ["gpt2"] = Gpt2(vocab: 50257, context: 1024, layers: 12, heads: 12, channels: 768),
        ["gpt2-medium"] = Gpt2(vocab: 50257, context: 1024, layers: 24, heads: 16, channels: 1024),
        ["gpt2-large"] = Gpt2(vocab: 50257, context: 1024, layers: 36, heads: 20, channels: 1280),
        ["gpt2-xl"] = Gpt2(vocab: 50257, context: 1024, layers: 48, heads: 25, channels: 1600),
        ["llama-7b"] = Llama(vocab: 32000, context: 2048, layers: 32, heads: 32, kvHeads: 32, channels: 4096, hidden: 11008),
        ["llama2-7b"] = Llama(vocab: 32000, context: 4096, layers: 32, heads: 32, kvHeads: 32, channels: 4096, hidden: 11008),
        ["llama2-70b"] = Llama(vocab: 32000, context: 4096, layers: 80, heads: 64, kvHeads: 8, channels: 8192, hidden: 28672),
        ["llama3-8b"] = Llama(vocab: 128256, context: 8192, layers: 32, heads: 32, kvHeads: 8, channels: 4096, hidden: 14336) with { Rope = new(500000f) },
        ["llama3.1-8b"] = Llama(vocab: 128256, context: 131072, layers: 32, heads: 32, kvHeads: 8, channels: 4096, hidden: 14336) with
        {
            Rope = new(500000f) { Scaling = Embeddings.RopeScaling.Llama3, ScalingFactor = 8, LowFrequencyFactor = 1, HighFrequencyFactor = 4, OriginalContext = 8192 },
        },
        // sentence-transformers' all-MiniLM-L6-v2 (the built-in real model, `--model minilm`).
        ["minilm"] = Bert(vocab: 30522, context: 512, layers: 6, heads: 12, channels: 384, hidden: 1536),
        ["tiny-bert"] = Bert(vocab: 64, context: 32, layers: 2, heads: 4, channels: 32, hidden: 64),
        ["qwen2-0.5b"] = Qwen2(vocab: 151936, context: 32768, layers: 24, heads: 14, kvHeads: 2, channels: 896, hidden: 4864) with
        {
            Rope = new(1000000f),
            NormEpsilon = 1e-6f,
            TiedEmbeddings = true,
        },
    };

    public static IEnumerable<string> Names => Presets.Keys;

    public static ModelConfig Get(string name) =>
        Presets.TryGetValue(name, out var config)
            ? config
            : throw new HeadLensException($"unknown preset '{name}' (known: {string.Join(", ", Presets.Keys)})");

    public static ModelConfig Gpt2(int vocab, int context, int layers, int heads, int channels) =>
        Shape(vocab, context, layers, heads, heads, channels, 4 * channels) with
        {
            Layout = CheckpointLayout.Gpt2,
            Norm = NormKind.LayerNorm,
            Positions = PositionKind.Learned,
            Mlp = MlpKind.GeluTanh,
            Biases = Biases.All,
            NormEpsilon = 1e-5f,
            TiedEmbeddings = true,
        };

    public static ModelConfig Llama(int vocab, int context, int layers, int heads, int kvHeads, int channels, int hidden) =>
        Shape(vocab, context, layers, heads, kvHeads, channels, hidden) with
        {
            Layout = CheckpointLayout.Llama,
            Norm = NormKind.RmsNorm,
            Positions = PositionKind.Rotary,
            Mlp = MlpKind.SwiGlu,
            Biases = Biases.None,
            NormEpsilon = 1e-5f,
            TiedEmbeddings = false,
        };

    public static ModelConfig Qwen2(int vocab, int context, int layers, int heads, int kvHeads, int channels, int hidden) =>
        Llama(vocab, context, layers, heads, kvHeads, channels, hidden) with { Layout = CheckpointLayout.Qwen2, Biases = Biases.QueryKeyValue };

    /// <summary>
    /// BERT-family encoders (BertModel without a pretraining head): post-LayerNorm blocks and normalised embeddings,
    /// learned positions plus two token types, bidirectional attention, exact (erf) GELU, biases everywhere.
    /// </summary>
    public static ModelConfig Bert(int vocab, int context, int layers, int heads, int channels, int hidden) =>
        Shape(vocab, context, layers, heads, heads, channels, hidden) with
        {
            Layout = CheckpointLayout.Bert,
            Norm = NormKind.LayerNorm,
            NormPlacement = NormPlacement.Post,
            NormEpsilon = 1e-12f,
            Positions = PositionKind.Learned,
            Mlp = MlpKind.GeluErf,
            Biases = Biases.All,
            Attention = Attention.MaskKind.Bidirectional,
            TokenTypes = 2,
            HasOutputHead = false,
            TiedEmbeddings = false,
        };

    // The sizes alone; every feature is set by the preset that uses it.
    private static ModelConfig Shape(int vocab, int context, int layers, int heads, int kvHeads, int channels, int hidden) => new()
    {
        VocabSize = vocab,
        ContextLength = context,
        Layers = layers,
        Heads = heads,
        KvHeads = kvHeads,
        Channels = channels,
        HiddenChannels = hidden,
    };
}
