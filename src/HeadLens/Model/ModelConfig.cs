using HeadLens.Attention;
using HeadLens.Embeddings;

namespace HeadLens.Model;

/// <summary>How a block normalises its input: LayerNorm (centred, with a bias) or RMSNorm (scale only).</summary>
public enum NormKind
{
    LayerNorm,
    RmsNorm,
}

/// <summary>Where a block normalises: before each sublayer (GPT-2, Llama) or after each residual add (BERT).</summary>
public enum NormPlacement
{
    /// <summary>x = x + f(norm(x)); a final norm before the output head.</summary>
    Pre,

    /// <summary>x = norm(x + f(x)); the embeddings are normalised, and there is no final norm.</summary>
    Post,
}

/// <summary>How a token learns where it is.</summary>
public enum PositionKind
{
    /// <summary>A learned table [context, C] added to the embeddings (GPT-2, BERT).</summary>
    Learned,

    /// <summary>Fixed sines and cosines added to the embeddings (Vaswani et al. 2017).</summary>
    Sinusoidal,

    /// <summary>Queries and keys rotated by their position (RoPE); nothing added to the residual stream.</summary>
    Rotary,

    /// <summary>A per-head linear penalty on distance added to the scores (ALiBi); nothing added to the stream.</summary>
    Alibi,

    /// <summary>No positional information at all (a causal mask still leaks order).</summary>
    None,
}

/// <summary>How a head turns its queries and keys into weights on the values.</summary>
public enum AttentionForm
{
    /// <summary>softmax(q·kᵀ/√D): every checkpoint architecture HeadLens reads.</summary>
    Softmax,

    /// <summary>
    /// Linear attention (Katharopoulos et al. 2020): weights φ(q_i)·φ(k_j) / Σ_j φ(q_i)·φ(k_j), φ(x) = elu(x) + 1,
    /// computable as a running sum, O(T) in the length (<see cref="HeadLens.Attention.LinearAttention"/>). Causal,
    /// one key/value head per query head, no windows nor score biases.
    /// </summary>
    Linear,
}

/// <summary>The feed-forward sublayer.</summary>
public enum MlpKind
{
    /// <summary>Attention-only (interpretability experiments).</summary>
    None,

    /// <summary>down(gelu(up(x))), GELU in its tanh form (GPT-2's gelu_new).</summary>
    GeluTanh,

    /// <summary>down(silu(gate(x)) · up(x)) (Llama, Qwen2).</summary>
    SwiGlu,

    /// <summary>down(gelu(up(x))), GELU in its exact erf form (BERT's "gelu").</summary>
    GeluErf,
}

/// <summary>Which linear maps carry a bias.</summary>
[Flags]
public enum Biases
{
    None = 0,
    Query = 1,
    Key = 2,
    Value = 4,
    Output = 8,
    Mlp = 16,

    /// <summary>Qwen2: q, k and v, but not the output projection nor the MLP.</summary>
    QueryKeyValue = Query | Key | Value,
    All = Query | Key | Value | Output | Mlp,
}

/// <summary>
/// The checkpoint layout a model is read from and written to. Only the loaders, writers and presets read it: the
/// math is described by the feature fields of <see cref="ModelConfig"/>.
/// </summary>
public enum CheckpointLayout
{
    Gpt2,
    Llama,
    Qwen2,

    /// <summary>BertModel: an encoder (the sentence-transformers checkpoints, MiniLM).</summary>
    Bert,
}

/// <summary>
/// What a transformer computes, as orthogonal features, and everything that fixes its shape. Shapes below use
/// C = Channels, H = Heads, G = KvHeads, D = HeadDim, F = HiddenChannels (the MLP's width), V = VocabSize,
/// L = Layers. GPT-2, Llama and Qwen2 are presets (<see cref="ModelPresets"/>) and loaders that set these fields.
/// </summary>
public sealed record ModelConfig
{
    public CheckpointLayout Layout { get; init; } = CheckpointLayout.Gpt2;

    public int VocabSize { get; init; }

    public int ContextLength { get; init; }

    public int Layers { get; init; }

    public int Heads { get; init; }

    /// <summary>Key/value heads (grouped-query attention); equal to Heads for plain multi-head attention.</summary>
    public int KvHeads { get; init; }

    public int Channels { get; init; }

    public int HiddenChannels { get; init; }

    public NormKind Norm { get; init; } = NormKind.LayerNorm;

    public NormPlacement NormPlacement { get; init; } = NormPlacement.Pre;

    public float NormEpsilon { get; init; } = 1e-5f;

    public PositionKind Positions { get; init; } = PositionKind.Learned;

    /// <summary>Rotary settings (θ, pair layout, scaling); read only when <see cref="Positions"/> is Rotary.</summary>
    public RopeSettings Rope { get; init; } = new();

    public MlpKind Mlp { get; init; } = MlpKind.GeluTanh;

    public Biases Biases { get; init; } = Biases.All;

    /// <summary>
    /// QK-norm: each head's query and key RMS-normalised over their D channels (one weight [D] for queries, one for
    /// keys, shared by the heads) right after the projection, before RoPE — Qwen3's and Gemma 3's form. Keeps the
    /// scores bounded however large the residual stream grows.
    /// </summary>
    public bool QkNorm { get; init; }

    /// <summary>Causal for decoders; bidirectional for encoders.</summary>
    public MaskKind Attention { get; init; } = MaskKind.Causal;

    /// <summary>Softmax attention, or linear attention's kernel in its place.</summary>
    public AttentionForm AttentionForm { get; init; } = AttentionForm.Softmax;

    /// <summary>Sliding-window attention: each query sees at most this many keys (0 = unlimited).</summary>
    public int AttentionWindow { get; init; }

    /// <summary>The output head reuses the token embedding matrix.</summary>
    public bool TiedEmbeddings { get; init; } = true;

    /// <summary>Token-type (segment) embeddings added to the input: BERT's sentence A/B (0 = none).</summary>
    public int TokenTypes { get; init; }

    /// <summary>
    /// False for encoders kept without their pretraining head (sentence-transformers): a pass then ends at the
    /// last block's hidden states, and there are no logits.
    /// </summary>
    public bool HasOutputHead { get; init; } = true;

    public bool HasMlp => Mlp != MlpKind.None;

    public int HeadDim => Channels / Heads;

    /// <summary>LayerNorm has a bias; RMSNorm has none.</summary>
    public bool NormHasBias => Norm == NormKind.LayerNorm;

    public bool HasBias(Biases which) => (Biases & which) == which;

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
        Require(Positions != PositionKind.Rotary || HeadDim % 2 == 0, $"rotary positions need an even head size (got {HeadDim})");
        Require(Positions != PositionKind.Sinusoidal || Channels % 2 == 0, $"sinusoidal positions need an even channel count (got {Channels})");
        Require(float.IsFinite(NormEpsilon) && NormEpsilon > 0, $"norm epsilon must be positive (got {NormEpsilon})");
        Require(AttentionWindow >= 0, $"attention window must not be negative (got {AttentionWindow})");
        Require(AttentionForm != AttentionForm.Linear || (Attention == MaskKind.Causal && AttentionWindow == 0 && KvHeads == Heads && Positions != PositionKind.Alibi),
            $"linear attention is causal, with one key/value head per query head and no window or ALiBi (this model: {DescribeFeatures()})");
        Require(TokenTypes >= 0, $"token types must not be negative (got {TokenTypes})");
        // Each tensor lives in one float buffer: its size is checked in 64 bits before anything multiplies it in 32.
        foreach (var (what, rows) in (ReadOnlySpan<(string, int)>)[("vocab size", VocabSize), ("MLP width", HiddenChannels), ("context length", ContextLength), ("channels", Channels)])
        {
            long elements = (long)rows * Channels;
            Require(elements <= Array.MaxLength, $"{what} {rows} × channels {Channels} = {elements:N0} weights in one tensor, more than one buffer holds ({Array.MaxLength:N0})");
        }

        if (Positions == PositionKind.Rotary)
        {
            Rope.Validate(source);
        }

        return this;
    }

    /// <summary>The attention call of every layer: heads, visibility and positional bias.</summary>
    public AttentionOptions AttentionOptions() => new(Heads, KvHeads, HeadDim, HeadDim)
    {
        Mask = Attention,
        Window = AttentionWindow,
        AlibiSlopes = Positions == PositionKind.Alibi ? Embeddings.Positions.AlibiSlopes(Heads) : null,
    };

    /// <summary>Parameters by part: embeddings, attention, MLP, norms, output head (0 when tied).</summary>
    public (long Embeddings, long Attention, long Mlp, long Norms, long Head) ParameterCounts()
    {
        long embeddings = 0, attention = 0, mlp = 0, norms = 0, head = 0;
        foreach (var (name, shape, _) in ModelWeights.Layout(this))
        {
            long size = shape.Aggregate(1L, (product, dimension) => product * dimension);
            if (name.Contains("norm", StringComparison.Ordinal))
            {
                norms += size;
            }
            else if (name.Contains(".attention.", StringComparison.Ordinal))
            {
                attention += size;
            }
            else if (name.Contains(".mlp.", StringComparison.Ordinal))
            {
                mlp += size;
            }
            else if (name.StartsWith("output_head", StringComparison.Ordinal))
            {
                head += size;
            }
            else
            {
                embeddings += size;
            }
        }

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

    /// <summary>A one-line account of the features, e.g. "pre-LayerNorm, learned positions, GELU MLP, biases".</summary>
    public string DescribeFeatures()
    {
        string norm = $"{(NormPlacement == NormPlacement.Pre ? "pre" : "post")}-{Norm}";
        string positions = Positions switch
        {
            PositionKind.Learned => "learned positions",
            PositionKind.Sinusoidal => "sinusoidal positions",
            PositionKind.Rotary => $"rotary positions (θ {Rope.Theta:G}{(Rope.Scaling == RopeScaling.None ? "" : $", {Rope.Scaling} scaling ×{Rope.ScalingFactor:G}")})",
            PositionKind.Alibi => "ALiBi",
            _ => "no positions",
        };
        string mlp = Mlp switch
        {
            MlpKind.GeluTanh => "GELU MLP",
            MlpKind.SwiGlu => "SwiGLU MLP",
            MlpKind.GeluErf => "GELU (erf) MLP",
            _ => "no MLP (attention-only)",
        };
        string biases = Biases switch
        {
            Biases.None => "no biases",
            Biases.All => "biases",
            _ => $"biases on {Biases}",
        };
        string attention = $"{(Attention == MaskKind.Causal ? "causal" : "bidirectional")}{(AttentionWindow > 0 ? $" window-{AttentionWindow}" : "")}{(KvHeads == Heads ? "" : $" grouped-query ({KvHeads} kv heads)")}{(AttentionForm == AttentionForm.Linear ? " linear" : "")} attention";
        string output = !HasOutputHead ? ", no output head" : TiedEmbeddings ? ", tied embeddings" : "";
        return $"{norm}, {positions}{(TokenTypes > 0 ? $", {TokenTypes} token types" : "")}, {attention}{(QkNorm ? " with QK-norm" : "")}, {mlp}, {biases}{output}";
    }
}
