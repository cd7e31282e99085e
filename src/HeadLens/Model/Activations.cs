using HeadLens.Tensors;

namespace HeadLens.Model;

/// <summary>
/// What one block computes on N rows (B sequences × T tokens): both norms' outputs and statistics, q/k/v after
/// RoPE, the concatenated heads, the residual after attention, and the MLP's hidden activations. Training keeps one
/// per layer for the backward; inference and decoding reuse one for every layer.
/// </summary>
public sealed class LayerActivations
{
    private readonly Tensor attentionNormed, attentionNormMean, attentionNormRstd, query, key, value, heads, logSumExp, middle;
    private readonly Tensor? mlpNormed, mlpNormMean, mlpNormRstd, up, gate, hidden, queryRaw, keyRaw, queryRstd, keyRstd;

    /// <summary>Binds the views of a block's activations reserved with <see cref="Reserve"/> in an allocated arena.</summary>
    internal LayerActivations(Arena arena, string prefix)
    {
        Tensor Get(string name) => arena.Get(prefix + name);
        Tensor? Optional(string name) => arena.Contains(prefix + name) ? arena.Get(prefix + name) : null;
        attentionNormed = Get("attention_norm");
        attentionNormMean = Get("attention_norm.mean");
        attentionNormRstd = Get("attention_norm.rstd");
        query = Get("q");
        key = Get("k");
        value = Get("v");
        heads = Get("heads");
        logSumExp = Get("lse");
        middle = Get("middle");
        mlpNormed = Optional("mlp_norm");
        mlpNormMean = Optional("mlp_norm.mean");
        mlpNormRstd = Optional("mlp_norm.rstd");
        up = Optional("up");
        gate = Optional("gate");
        hidden = Optional("hidden");
        queryRaw = Optional("q_raw");
        keyRaw = Optional("k_raw");
        queryRstd = Optional("q_rstd");
        keyRstd = Optional("k_rstd");
    }

    /// <summary>Reserves one block's activations for B sequences × T tokens (N = B·T rows) under a name prefix.</summary>
    internal static void Reserve(Arena arena, string prefix, ModelConfig config, int batch, int tokens)
    {
        int n = batch * tokens, c = config.Channels, f = config.HiddenChannels;
        int q = config.Heads * config.HeadDim, kv = config.KvHeads * config.HeadDim;
        arena.Reserve(prefix + "attention_norm", n, c);
        arena.Reserve(prefix + "attention_norm.mean", n);
        arena.Reserve(prefix + "attention_norm.rstd", n);
        arena.Reserve(prefix + "q", n, q);
        arena.Reserve(prefix + "k", n, kv);
        arena.Reserve(prefix + "v", n, kv);
        arena.Reserve(prefix + "heads", n, q);
        arena.Reserve(prefix + "lse", batch, config.Heads * tokens);
        arena.Reserve(prefix + "middle", n, c);
        if (config.QkNorm)
        {
            arena.Reserve(prefix + "q_raw", n, q);           // [N, H·D] before QK-norm
            arena.Reserve(prefix + "k_raw", n, kv);
            arena.Reserve(prefix + "q_rstd", n * config.Heads);
            arena.Reserve(prefix + "k_rstd", n * config.KvHeads);
        }

        if (config.HasMlp)
        {
            arena.Reserve(prefix + "mlp_norm", n, c);
            arena.Reserve(prefix + "mlp_norm.mean", n);
            arena.Reserve(prefix + "mlp_norm.rstd", n);
            arena.Reserve(prefix + "up", n, f);
            if (config.Mlp == MlpKind.SwiGlu)
            {
                arena.Reserve(prefix + "gate", n, f);
            }

            arena.Reserve(prefix + "hidden", n, f);
        }
    }

    /// <summary>[N, C] norm₁(x), the attention's input.</summary>
    public Span<float> AttentionNormed => attentionNormed.Span;

    /// <summary>[N] per-row mean (LayerNorm only).</summary>
    public Span<float> AttentionNormMean => attentionNormMean.Span;

    /// <summary>[N] per-row 1/scale.</summary>
    public Span<float> AttentionNormRstd => attentionNormRstd.Span;

    /// <summary>[N, H·D] queries, after RoPE where the model rotates.</summary>
    public Span<float> Query => query.Span;

    /// <summary>[N, G·D] keys, after RoPE where the model rotates.</summary>
    public Span<float> Key => key.Span;

    /// <summary>[N, G·D] values.</summary>
    public Span<float> Value => value.Span;

    /// <summary>[N, H·D] the heads' outputs, concatenated, before W_O.</summary>
    public Span<float> Heads => heads.Span;

    /// <summary>[B, H·T] each attention row's log-sum-exp (the fused backward recomputes the pattern from it).</summary>
    public Span<float> LogSumExp => logSumExp.Span;

    /// <summary>[N, H·D] the projected queries before QK-norm (QK-norm only).</summary>
    public Span<float> QueryRaw => queryRaw!.Span;

    /// <summary>[N, G·D] the projected keys before QK-norm.</summary>
    public Span<float> KeyRaw => keyRaw!.Span;

    /// <summary>[N·H] 1/scale of each query head's norm.</summary>
    public Span<float> QueryRstd => queryRstd!.Span;

    /// <summary>[N·G] 1/scale of each key head's norm.</summary>
    public Span<float> KeyRstd => keyRstd!.Span;

    /// <summary>[N, C] the residual stream after attention.</summary>
    public Span<float> Middle => middle.Span;

    /// <summary>[N, C] norm₂(middle), the MLP's input.</summary>
    public Span<float> MlpNormed => mlpNormed!.Span;

    public Span<float> MlpNormMean => mlpNormMean!.Span;

    public Span<float> MlpNormRstd => mlpNormRstd!.Span;

    /// <summary>[N, F] the up projection (GELU's input).</summary>
    public Span<float> Up => up!.Span;

    /// <summary>[N, F] the gate projection (SwiGLU only).</summary>
    public Span<float> Gate => gate!.Span;

    /// <summary>[N, F] the MLP's activation: gelu(up) or silu(gate)·up.</summary>
    public Span<float> Hidden => hidden!.Span;

}

/// <summary>
/// What a training forward keeps for its backward, for one batch shape (N = B·T rows), allocated once in one arena
/// and reused every step: the residual stream entering every layer, every layer's <see cref="LayerActivations"/>,
/// the final norm, the logits and their gradient, and the backward's scratch.
/// </summary>
public sealed class Activations
{
    private readonly Tensor[] residuals;
    private readonly LayerActivations[] layers;

    public Activations(ModelConfig config, int batch, int tokens)
    {
        Batch = batch;
        Tokens = tokens;
        int n = batch * tokens, c = config.Channels, f = Math.Max(config.HiddenChannels, 1);
        int q = config.Heads * config.HeadDim, kv = config.KvHeads * config.HeadDim;
        // Every product of a training step writes its output here a row (often a page) at a time: on 2 MiB pages (Arena).
        Arena = new Arena($"activations {batch}x{tokens}", largePages: true);
        for (int l = 0; l <= config.Layers; l++)
        {
            Arena.Reserve($"residual.{l}", n, c);           // [N, C] entering layer l (l = L: the final stream)
        }

        for (int l = 0; l < config.Layers; l++)
        {
            LayerActivations.Reserve(Arena, $"layers.{l}.", config, batch, tokens);
        }

        Arena.Reserve("final_norm", n, c);
        Arena.Reserve("final_norm.mean", n);
        Arena.Reserve("final_norm.rstd", n);
        Arena.Reserve("logits", n, config.VocabSize);        // [N, V]
        Arena.Reserve("logits_grad", n, config.VocabSize);
        Arena.Reserve("losses", n);
        // Backward scratch, shared by all layers.
        Arena.Reserve("grad.residual", n, c);
        Arena.Reserve("grad.normed", n, c);
        Arena.Reserve("grad.q", n, q);
        Arena.Reserve("grad.k", n, kv);
        Arena.Reserve("grad.v", n, kv);
        Arena.Reserve("grad.heads", n, q);
        Arena.Reserve("grad.up", n, f);
        Arena.Reserve("grad.gate", n, f);
        Arena.Reserve("grad.hidden", n, f);
        Arena.Reserve("grad.q_raw", n, config.QkNorm ? q : 1);
        Arena.Reserve("grad.k_raw", n, config.QkNorm ? kv : 1);
        Arena.Allocate();
        residuals = Enumerable.Range(0, config.Layers + 1).Select(l => Arena.Get($"residual.{l}")).ToArray();
        layers = Enumerable.Range(0, config.Layers).Select(l => new LayerActivations(Arena, $"layers.{l}.")).ToArray();
    }

    public int Batch { get; }

    public int Tokens { get; }

    public Arena Arena { get; }

    /// <summary>[N, C] the residual stream entering layer l (l = L: leaving the last layer).</summary>
    public Span<float> Residual(int layer) => residuals[layer].Span;

    public LayerActivations Layer(int layer) => layers[layer];

    /// <summary>[N, C] norm_f of the final stream.</summary>
    public Span<float> FinalNormed => Arena.Get("final_norm").Span;

    public Span<float> FinalNormMean => Arena.Get("final_norm.mean").Span;

    public Span<float> FinalNormRstd => Arena.Get("final_norm.rstd").Span;

    /// <summary>[N, V].</summary>
    public Span<float> Logits => Arena.Get("logits").Span;

    /// <summary>[N, V] d(mean loss)/d(logits), from the fused softmax + cross-entropy.</summary>
    public Span<float> LogitsGrad => Arena.Get("logits_grad").Span;

    /// <summary>[N] per-position losses.</summary>
    public Span<float> Losses => Arena.Get("losses").Span;

    internal Span<float> Scratch(string name) => Arena.Get("grad." + name).Span;
}

/// <summary>
/// What an inference pass needs for one batch shape, and no more: the residual stream, one set of block activations
/// reused by every layer, the final norm, and — only when asked for — the logits. No gradient buffers.
/// </summary>
public sealed class InferenceBuffers
{
    private readonly Tensor residual, finalNormed, finalNormMean, finalNormRstd;
    private readonly Tensor? logits;

    internal InferenceBuffers(ModelConfig config, int batch, int tokens, bool withLogits)
    {
        Batch = batch;
        Tokens = tokens;
        WithLogits = withLogits;
        int n = batch * tokens, c = config.Channels;
        var arena = new Arena($"inference {batch}x{tokens}");
        arena.Reserve("residual", n, c);                     // [N, C]
        LayerActivations.Reserve(arena, "block.", config, batch, tokens);
        arena.Reserve("final_norm", n, c);
        arena.Reserve("final_norm.mean", n);
        arena.Reserve("final_norm.rstd", n);
        if (withLogits)
        {
            arena.Reserve("logits", n, config.VocabSize);    // [N, V]
        }

        arena.Allocate();
        Arena = arena;
        Block = new LayerActivations(arena, "block.");
        residual = arena.Get("residual");
        finalNormed = arena.Get("final_norm");
        finalNormMean = arena.Get("final_norm.mean");
        finalNormRstd = arena.Get("final_norm.rstd");
        logits = withLogits ? arena.Get("logits") : null;
    }

    public int Batch { get; }

    public int Tokens { get; }

    public bool WithLogits { get; }

    public Arena Arena { get; }

    /// <summary>[N, C] the residual stream, updated in place layer after layer.</summary>
    public Span<float> Residual => residual.Span;

    public LayerActivations Block { get; }

    public Span<float> FinalNormed => finalNormed.Span;

    public Span<float> FinalNormMean => finalNormMean.Span;

    public Span<float> FinalNormRstd => finalNormRstd.Span;

    /// <summary>[N, V] (empty when the pass was run without logits).</summary>
    public Span<float> Logits => logits is null ? [] : logits.Span;
}
