using HeadLens.Embeddings;

namespace HeadLens.Model;

/// <summary>The two decoder-only families HeadLens builds and loads.</summary>
public enum ModelFamily
{
    /// <summary>LayerNorm, GELU MLP, learned absolute positions, biases, tied embeddings.</summary>
    Gpt2,

    /// <summary>RMSNorm, SwiGLU MLP, rotary positions, grouped-query attention, no biases.</summary>
    Llama,
}

/// <summary>
/// Everything that fixes a model's shape. Shapes below use C = Channels, H = Heads, G = KvHeads, D = HeadDim,
/// F = HiddenChannels (the MLP's width), V = VocabSize, L = Layers.
/// </summary>
public sealed record ModelConfig
{
    public ModelFamily Family { get; init; } = ModelFamily.Gpt2;

    public int VocabSize { get; init; }

    public int ContextLength { get; init; }

    public int Layers { get; init; }

    public int Heads { get; init; }

    /// <summary>Key/value heads (grouped-query attention); equal to Heads for plain multi-head attention.</summary>
    public int KvHeads { get; init; }

    public int Channels { get; init; }

    public int HiddenChannels { get; init; }

    public float NormEpsilon { get; init; } = 1e-5f;

    public float RopeTheta { get; init; } = 10000f;

    public RopeLayout RopeLayout { get; init; } = RopeLayout.SplitHalves;

    /// <summary>The output head reuses the token embedding matrix.</summary>
    public bool TiedEmbeddings { get; init; } = true;

    /// <summary>False for attention-only models (interpretability experiments).</summary>
    public bool HasMlp { get; init; } = true;

    public int HeadDim => Channels / Heads;

    public bool HasBias => Family == ModelFamily.Gpt2;

    public bool LearnedPositions => Family == ModelFamily.Gpt2;

    public RopeSettings Rope => new(RopeTheta, RopeLayout);

    /// <summary>Throws a one-line error naming the field that makes this configuration impossible.</summary>
    public ModelConfig Validated(string source = "config")
    {
        void Require(bool condition, string message)
        {
            if (!condition)
            {
                throw new HeadLensException($"{source}: {message}");
            }
        }

        Require(VocabSize > 0, $"vocab size must be positive (got {VocabSize})");
        Require(ContextLength > 0, $"context length must be positive (got {ContextLength})");
        Require(Layers > 0, $"layers must be positive (got {Layers})");
        Require(Heads > 0 && Channels > 0, $"heads ({Heads}) and channels ({Channels}) must be positive");
        Require(Channels % Heads == 0, $"channels ({Channels}) must be divisible by heads ({Heads})");
        Require(KvHeads > 0 && Heads % KvHeads == 0, $"kv heads ({KvHeads}) must divide heads ({Heads})");
        Require(!HasMlp || HiddenChannels > 0, $"MLP width must be positive (got {HiddenChannels})");
        Require(Family != ModelFamily.Llama || HeadDim % 2 == 0, $"rotary positions need an even head size (got {HeadDim})");
        return this;
    }

    /// <summary>Parameters by part: embeddings, attention, MLP, norms, output head (0 when tied).</summary>
    public (long Embeddings, long Attention, long Mlp, long Norms, long Head) ParameterCounts()
    {
        long c = Channels, d = HeadDim, f = HiddenChannels;
        long embeddings = (long)VocabSize * c + (LearnedPositions ? (long)ContextLength * c : 0);
        long attention = Layers * ((c * Heads * d) + (2 * c * KvHeads * d) + (Heads * d * c)
            + (HasBias ? (Heads * d) + (2 * KvHeads * d) + c : 0));
        long mlp = !HasMlp ? 0 : Layers * (Family == ModelFamily.Llama ? 3 * c * f : (2 * c * f) + f + c);
        long normSize = HasBias ? 2 * c : c;
        long norms = ((HasMlp ? 2 : 1) * Layers * normSize) + normSize;
        long head = TiedEmbeddings ? 0 : (long)VocabSize * c;
        return (embeddings, attention, mlp, norms, head);
    }

    public long ParameterCount
    {
        get
        {
            var (embeddings, attention, mlp, norms, head) = ParameterCounts();
            return embeddings + attention + mlp + norms + head;
        }
    }
}
