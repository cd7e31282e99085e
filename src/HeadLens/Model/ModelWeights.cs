using HeadLens.Kernels.Quantized;
using HeadLens.Tensors;

namespace HeadLens.Model;

/// <summary>One layer's parameters (or their gradients): views into the model's arena.</summary>
public sealed class LayerWeights
{
    internal LayerWeights(Arena arena, ModelConfig config, int layer, Func<string, LinearWeight> matrix)
    {
        string p = $"layers.{layer}.";
        Tensor? Optional(string name) => arena.Contains(p + name) ? arena.Get(p + name) : null;
        AttentionNorm = arena.Get(p + "attention_norm.weight");
        AttentionNormBias = Optional("attention_norm.bias");
        Query = matrix(p + "attention.query.weight");
        Key = matrix(p + "attention.key.weight");
        Value = matrix(p + "attention.value.weight");
        Output = matrix(p + "attention.output.weight");
        QueryBias = Optional("attention.query.bias");
        KeyBias = Optional("attention.key.bias");
        ValueBias = Optional("attention.value.bias");
        OutputBias = Optional("attention.output.bias");
        QueryNorm = Optional("attention.query_norm.weight");
        KeyNorm = Optional("attention.key_norm.weight");
        if (config.HasMlp)
        {
            MlpNorm = arena.Get(p + "mlp_norm.weight");
            MlpNormBias = Optional("mlp_norm.bias");
            Up = matrix(p + "mlp.up.weight");
            UpBias = Optional("mlp.up.bias");
            Gate = config.Mlp == MlpKind.SwiGlu ? matrix(p + "mlp.gate.weight") : null;
            Down = matrix(p + "mlp.down.weight");
            DownBias = Optional("mlp.down.bias");
        }
    }

    public Tensor AttentionNorm { get; }          // [C]

    public Tensor? AttentionNormBias { get; }     // [C] (LayerNorm only)

    public LinearWeight Query { get; }            // [H·D, C]

    public LinearWeight Key { get; }              // [G·D, C]

    public LinearWeight Value { get; }            // [G·D, C]

    public LinearWeight Output { get; }           // [C, H·D]

    public Tensor? QueryBias { get; }

    public Tensor? KeyBias { get; }

    public Tensor? ValueBias { get; }

    public Tensor? OutputBias { get; }

    public Tensor? QueryNorm { get; }             // [D] (QK-norm only)

    public Tensor? KeyNorm { get; }               // [D]

    public Tensor? MlpNorm { get; }               // [C]

    public Tensor? MlpNormBias { get; }

    public LinearWeight? Up { get; }              // [F, C]

    public Tensor? UpBias { get; }

    public LinearWeight? Gate { get; }            // [F, C] (SwiGLU only)

    public LinearWeight? Down { get; }            // [C, F]

    public Tensor? DownBias { get; }
}

/// <summary>
/// All parameters of a model (or, with the same layout, all their gradients) in one pinned arena, with named
/// views: <c>weights.Layer(l).Query</c>, never hand-computed offsets. Matrices given as stored
/// (a GGUF file's quantized or 16-bit matrices, by HeadLens name) stay where they are and take no arena space;
/// such a model runs every inference pass but does not train.
/// </summary>
public sealed class ModelWeights
{
    private readonly LayerWeights[] layers;
    private readonly Tensor? finalNorm;
    private readonly LinearWeight? outputHead;

    public ModelWeights(
        ModelConfig config, string name, IReadOnlyDictionary<string, QuantizedMatrix>? stored = null, bool largePages = false)
    {
        Config = config;
        Arena = new Arena(name, largePages);
        stored ??= new Dictionary<string, QuantizedMatrix>();
        foreach (var (tensorName, shape, _) in Layout(config))
        {
            if (stored.TryGetValue(tensorName, out var matrix))
            {
                if (shape.Length != 2 || matrix.Rows != shape[0] || matrix.Columns != shape[1])
                {
                    throw new ArgumentException($"stored matrix '{tensorName}' is [{matrix.Rows}, {matrix.Columns}], the model needs [{string.Join(", ", shape)}]");
                }

                continue;
            }

            Arena.Reserve(tensorName, shape);
        }

        Arena.Allocate();
        Stored = stored;
        LinearWeight Matrix(string tensorName) =>
            stored.TryGetValue(tensorName, out var matrix) ? new LinearWeight(matrix) : new LinearWeight(Arena.Get(tensorName));
        TokenEmbedding = Matrix("token_embedding.weight");
        PositionEmbedding = config.Positions == PositionKind.Learned ? Arena.Get("position_embedding.weight") : null;
        TokenTypeEmbedding = config.TokenTypes > 0 ? Arena.Get("token_type_embedding.weight") : null;
        bool post = config.NormPlacement == NormPlacement.Post;
        EmbeddingNorm = post ? Arena.Get("embedding_norm.weight") : null;
        EmbeddingNormBias = post && config.NormHasBias ? Arena.Get("embedding_norm.bias") : null;
        finalNorm = post ? null : Arena.Get("final_norm.weight");
        FinalNormBias = !post && config.NormHasBias ? Arena.Get("final_norm.bias") : null;
        outputHead = !config.HasOutputHead ? null : config.TiedEmbeddings ? TokenEmbedding : Matrix("output_head.weight");
        layers = Enumerable.Range(0, config.Layers).Select(l => new LayerWeights(Arena, config, l, Matrix)).ToArray();
    }

    public ModelConfig Config { get; }

    /// <summary>The fp32 tensors (all of them, unless some matrices are <see cref="Stored"/>).</summary>
    public Arena Arena { get; }

    /// <summary>Matrices kept in their file's type, by HeadLens name (empty for a trainable model).</summary>
    public IReadOnlyDictionary<string, QuantizedMatrix> Stored { get; }

    public bool HasStoredMatrices => Stored.Count > 0;

    public LinearWeight TokenEmbedding { get; }    // [V, C]

    public Tensor? PositionEmbedding { get; }      // [context, C] (learned positions only)

    public Tensor? TokenTypeEmbedding { get; }     // [types, C] (token types only)

    public Tensor? EmbeddingNorm { get; }          // [C] (post-norm models: the embeddings are normalised)

    public Tensor? EmbeddingNormBias { get; }

    /// <summary>[C] the norm before the output head (pre-norm models).</summary>
    public Tensor FinalNorm => finalNorm ?? throw new HeadLensException("this model has no final norm (post-norm blocks end normalised)");

    public bool HasFinalNorm => finalNorm is not null;

    public Tensor? FinalNormBias { get; }

    /// <summary>[V, C]: the token embedding itself when tied.</summary>
    public LinearWeight OutputHead => outputHead ?? throw new HeadLensException("this model has no output head (an encoder: its output is the hidden states)");

    public LayerWeights Layer(int layer) => layers[layer];

    /// <summary>Every tensor: (name, shape, decays) — weight decay applies to matrices, not to biases and norms.</summary>
    public static IEnumerable<(string Name, int[] Shape, bool Decay)> Layout(ModelConfig config)
    {
        int c = config.Channels, v = config.VocabSize, f = config.HiddenChannels;
        int q = config.Heads * config.HeadDim, kv = config.KvHeads * config.HeadDim;
        bool normBias = config.NormHasBias, mlpBias = config.HasBias(Biases.Mlp);
        yield return ("token_embedding.weight", [v, c], true);
        if (config.Positions == PositionKind.Learned)
        {
            yield return ("position_embedding.weight", [config.ContextLength, c], true);
        }

        if (config.TokenTypes > 0)
        {
            yield return ("token_type_embedding.weight", [config.TokenTypes, c], true);
        }

        bool post = config.NormPlacement == NormPlacement.Post;
        if (post)
        {
            yield return ("embedding_norm.weight", [c], false);
            if (normBias)
            {
                yield return ("embedding_norm.bias", [c], false);
            }
        }

        for (int l = 0; l < config.Layers; l++)
        {
            string p = $"layers.{l}.";
            yield return (p + "attention_norm.weight", [c], false);
            if (normBias)
            {
                yield return (p + "attention_norm.bias", [c], false);
            }

            yield return (p + "attention.query.weight", [q, c], true);
            yield return (p + "attention.key.weight", [kv, c], true);
            yield return (p + "attention.value.weight", [kv, c], true);
            yield return (p + "attention.output.weight", [c, q], true);
            if (config.QkNorm)
            {
                yield return (p + "attention.query_norm.weight", [config.HeadDim], false);
                yield return (p + "attention.key_norm.weight", [config.HeadDim], false);
            }

            foreach (var (which, bias, size) in new[]
            {
                (Biases.Query, "query", q), (Biases.Key, "key", kv), (Biases.Value, "value", kv), (Biases.Output, "output", c),
            })
            {
                if (config.HasBias(which))
                {
                    yield return (p + $"attention.{bias}.bias", [size], false);
                }
            }

            if (!config.HasMlp)
            {
                continue;
            }

            yield return (p + "mlp_norm.weight", [c], false);
            if (normBias)
            {
                yield return (p + "mlp_norm.bias", [c], false);
            }

            yield return (p + "mlp.up.weight", [f, c], true);
            if (config.Mlp == MlpKind.SwiGlu)
            {
                yield return (p + "mlp.gate.weight", [f, c], true);
            }

            yield return (p + "mlp.down.weight", [c, f], true);
            if (mlpBias)
            {
                yield return (p + "mlp.up.bias", [f], false);
                yield return (p + "mlp.down.bias", [c], false);
            }
        }

        if (!post)
        {
            yield return ("final_norm.weight", [c], false);
            if (normBias)
            {
                yield return ("final_norm.bias", [c], false);
            }
        }

        if (config.HasOutputHead && !config.TiedEmbeddings)
        {
            yield return ("output_head.weight", [v, c], true);
        }
    }
}
