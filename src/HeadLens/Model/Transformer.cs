using HeadLens.Attention;
using HeadLens.Embeddings;
using HeadLens.Kernels;
using HeadLens.Tensors;

namespace HeadLens.Model;

/// <summary>
/// A transformer described by its features (<see cref="ModelConfig"/>): embeddings, L blocks, a final norm and the
/// output head.
///   x = embed(ids) (+ learned or sinusoidal positions)
///   each block:  x = x + attention(norm₁(x));  x = x + mlp(norm₂(x))
///   logits = norm_f(x) · W_headᵀ
/// Every pass runs the same block code (Transformer.Block.cs): training (<see cref="Forward"/> then
/// <see cref="Backward"/>), batched inference without gradient buffers (<see cref="Infer"/>), the analysis run with
/// hooks (<see cref="Run"/>), and incremental decoding against a KV cache (<see cref="DecodeStep"/>).
/// </summary>
public sealed partial class Transformer
{
    private readonly Lazy<ModelWeights> gradients;
    private Activations? activations;
    private InferenceBuffers? inferenceBuffers;
    private InferenceBuffers? decodeBuffers;
    private int[] lastIds = [];

    // ZeroGradients only marks the gradients as zero; the next Backward then writes the big matrices' gradients
    // instead of adding to them (PyTorch's zero_grad(set_to_none=True)), which saves a pass over all of them
    // (500 MB for GPT-2 124M) and the products' reads of the old values. Reading Gradients first clears them.
    private bool gradientsZeroPending;
    private (int Offset, int Count)[]? overwrittenGradients;

    public Transformer(ModelConfig config)
        : this(config, null)
    {
    }

    /// <summary>A model whose matrices named in <paramref name="stored"/> stay in their file's type (inference only).</summary>
    public Transformer(ModelConfig config, IReadOnlyDictionary<string, Kernels.Quantized.QuantizedMatrix>? stored)
    {
        Config = config.Validated();
        Parameters = new ModelWeights(Config, "parameters", stored);
        // Gradients exist only once something trains: inference keeps half the memory. The weight-gradient products
        // write them a row at a time: on 2 MiB pages (Arena).
        gradients = new Lazy<ModelWeights>(() => new ModelWeights(Config, "gradients", largePages: true));
        AttentionOptions = Config.AttentionOptions();
        Hooks = new HookRegistry(Config);
    }

    public ModelConfig Config { get; }

    public ModelWeights Parameters { get; }

    /// <summary>The parameter gradients (same layout as <see cref="Parameters"/>), zero after <see cref="ZeroGradients"/>.</summary>
    public ModelWeights Gradients
    {
        get
        {
            var values = gradients.Value;
            if (gradientsZeroPending)
            {
                values.Arena.All.Clear();
                gradientsZeroPending = false;
            }

            return values;
        }
    }

    public AttentionOptions AttentionOptions { get; }

    /// <summary>Hooks that <see cref="Run"/> calls at its capture points.</summary>
    public HookRegistry Hooks { get; }

    /// <summary>Logits of the last training Forward: [B·T, V].</summary>
    public ReadOnlySpan<float> Logits => activations is null ? [] : activations.Logits;

    /// <summary>The activations of the last training Forward (for tests).</summary>
    public Activations? LastActivations => activations;

    /// <summary>A new model with GPT-2's initialisation: N(0, 0.02), residual projections N(0, 0.02/√(2L)), norms 1, biases 0.</summary>
    public static Transformer Create(ModelConfig config, int seed)
    {
        var model = new Transformer(config);
        var random = new Random(seed);
        float residualScale = 1f / MathF.Sqrt(2f * config.Layers);
        foreach (var (name, _, decay) in ModelWeights.Layout(config))
        {
            var values = model.Parameters.Arena.Get(name).Span;
            if (name.Contains("norm", StringComparison.Ordinal) && name.EndsWith(".weight", StringComparison.Ordinal))
            {
                values.Fill(1f);
            }
            else if (decay)
            {
                bool residual = name.EndsWith("attention.output.weight", StringComparison.Ordinal)
                    || name.EndsWith("mlp.down.weight", StringComparison.Ordinal);
                float std = 0.02f * (residual ? residualScale : 1f);
                for (int i = 0; i < values.Length; i++)
                {
                    values[i] = std * Gaussian(random);
                }
            }
        }

        return model;
    }

    /// <summary>(name, parameter, gradient, decays) for every tensor, in layout order.</summary>
    public IEnumerable<(string Name, Tensor Parameter, Tensor Gradient, bool Decay)> NamedParameters() =>
        ModelWeights.Layout(Config).Select(entry =>
            (entry.Name, Parameters.Arena.Get(entry.Name), Gradients.Arena.Get(entry.Name), entry.Decay));

    /// <summary>Sets every gradient to zero: at once in effect, in memory only where Backward does not overwrite it.</summary>
    public void ZeroGradients()
    {
        _ = gradients.Value;
        gradientsZeroPending = true;
    }

    /// <summary>
    /// The training forward. ids and targets [B, T] row-major. Returns the mean next-token loss (NaN without
    /// targets); keeps what Backward needs. Targets of −1 are ignored.
    /// </summary>
    public float Forward(ReadOnlySpan<int> ids, ReadOnlySpan<int> targets, int batch, int tokens)
    {
        CheckTokens(ids, batch, tokens);
        if (!Config.HasOutputHead)
        {
            throw new HeadLensException("the training forward needs an output head; this model ends at its hidden states (use Infer)");
        }

        if (IsPackedForInference)
        {
            throw new HeadLensException("this model's weights are packed for inference; training changes them, so it needs a model that was not packed");
        }

        if (Parameters.HasStoredMatrices)
        {
            var types = Parameters.Stored.Values.Select(matrix => matrix.Type.ToString()).Distinct().Order(StringComparer.Ordinal);
            throw new HeadLensException($"training needs fp32 weights; this model keeps {Parameters.Stored.Count} matrices as {string.Join("/", types)} from its GGUF file (convert it with --type f32 first)");
        }

        if (!targets.IsEmpty && targets.Length != ids.Length)
        {
            throw new ArgumentException($"expected {batch}×{tokens} targets");
        }

        if (activations is null || activations.Batch != batch || activations.Tokens != tokens)
        {
            activations = new Activations(Config, batch, tokens);
        }

        var a = activations;
        var pass = new Pass(batch, tokens, Position: 0, Cache: null, Hooks: null);
        int n = batch * tokens;
        lastIds = ids.ToArray();
        Embed(ids, [], pass, a.Residual(0), a.FinalNormed, a.FinalNormMean, a.FinalNormRstd);
        for (int l = 0; l < Config.Layers; l++)
        {
            BlockForward(l, a.Layer(l), a.Residual(l), a.Residual(l + 1), pass);
        }

        FinalNorm(a.Residual(Config.Layers), n, a.FinalNormed, a.FinalNormMean, a.FinalNormRstd);
        if (lastLogitsOnly)
        {
            // Attribution patching reads the last position's logits only (its gradient is zero elsewhere).
            int c = Config.Channels, v = Config.VocabSize;
            Parameters.OutputHead.Forward(a.FinalNormed.Slice((n - 1) * c, c), [], 1, a.Logits.Slice((n - 1) * v, v));
            return float.NaN;
        }

        Parameters.OutputHead.Forward(a.FinalNormed, [], n, a.Logits);
        if (targets.IsEmpty)
        {
            return float.NaN;
        }

        // The loss gradient comes from the same pass over the logits (fused softmax + cross-entropy).
        return CrossEntropy.ForwardBackward(a.Logits, targets, n, Config.VocabSize, a.Losses, a.LogitsGrad);
    }

    /// <summary>Accumulates the gradients of the last Forward's mean loss into <see cref="Gradients"/>.</summary>
    public void Backward()
    {
        var a = activations ?? throw new InvalidOperationException("Backward needs a Forward with targets first");
        if (Config.NormPlacement == NormPlacement.Post || Config.TokenTypes > 0)
        {
            throw new HeadLensException("training post-norm or token-type models is not implemented (they run for inference)");
        }

        int batch = a.Batch, tokens = a.Tokens, n = batch * tokens, c = Config.Channels;
        // Gradients pending zero: the matrices' gradients are written by their products below (accumulate false);
        // every other gradient (biases, norms, embeddings that are not the tied head) is cleared here.
        bool overwrite = gradientsZeroPending;
        gradientsZeroPending = false;
        if (overwrite)
        {
            ClearGradientsNotOverwritten();
        }

        var dx = a.Scratch("residual");
        var dFinal = a.Scratch("normed");
        if (activationGradientsOnly)
        {
            // Only dFinal: from the first row of the logits' gradient that is not zero (attribution patching's is the
            // last row alone: a product of one row instead of all of them).
            int v = Config.VocabSize, first = 0;
            while (first < n - 1 && !a.LogitsGrad.Slice(first * v, v).ContainsAnyExcept(0f))
            {
                first++;
            }

            dFinal[..(first * c)].Clear();
            MatMul.Backward(a.LogitsGrad[(first * v)..(n * v)], a.FinalNormed[(first * c)..(n * c)], Parameters.OutputHead.Span, n - first, v, c,
                dFinal[(first * c)..(n * c)], [], []);
        }
        else
        {
            MatMul.Backward(a.LogitsGrad, a.FinalNormed, Parameters.OutputHead.Span, n, Config.VocabSize, c, dFinal, Gradients.OutputHead.Span, [],
                accumulateWeightGrad: !overwrite);
        }
        dx.Clear();
        NormBackward(dFinal, a.Residual(Config.Layers), Parameters.FinalNorm, Gradients.FinalNorm, Gradients.FinalNormBias,
            a.FinalNormMean, a.FinalNormRstd, n, dx);
        for (int l = Config.Layers - 1; l >= 0; l--)
        {
            BlockBackward(l, a, batch, tokens, dx, accumulate: !overwrite);
            streamGradientSeen?.Invoke(l, a.Residual(l), dx);
        }

        if (activationGradientsOnly)
        {
            return;
        }

        Embedding.Backward(lastIds, dx, Config.VocabSize, c, Gradients.TokenEmbedding.Span);
        if (Gradients.PositionEmbedding is not null)
        {
            for (int b = 0; b < batch; b++)
            {
                Positions.AddLearnedBackward(dx.Slice(b * tokens * c, tokens * c), c, 0, tokens, Gradients.PositionEmbedding.Span);
            }
        }
    }

    /// <summary>Row <paramref name="row"/> of the last <see cref="Forward"/>'s logits [V].</summary>
    internal ReadOnlySpan<float> LastForwardLogits(int row)
    {
        var a = activations ?? throw new InvalidOperationException("LastForwardLogits needs a Forward first");
        return a.Logits.Slice(row * Config.VocabSize, Config.VocabSize);
    }

    /// <summary>What a backward pass shows of one layer: an activation [B·T, width] and the gradient of the pass's output with respect to it.</summary>
    internal delegate void GradientSeen(int layer, ReadOnlySpan<float> activation, ReadOnlySpan<float> gradient);

    private GradientSeen? headsGradientSeen, streamGradientSeen, attentionGradientSeen, mlpGradientSeen;

    // Set by BackwardFrom: no parameter gradient is computed, only what flows back through the activations.
    private bool activationGradientsOnly;

    // Set by ForwardForLastLogits: the output head runs on the last position only.
    private bool lastLogitsOnly;

    /// <summary>
    /// <see cref="Forward"/> without targets, one sequence, with the output head run on the last position only (row
    /// T − 1 of the logits is computed, <see cref="LastForwardLogits"/>): the forward <see cref="BackwardFrom"/> takes a
    /// gradient of the last position's logits through.
    /// </summary>
    internal void ForwardForLastLogits(ReadOnlySpan<int> ids)
    {
        lastLogitsOnly = true;
        try
        {
            Forward(ids, [], 1, ids.Length);
        }
        finally
        {
            lastLogitsOnly = false;
        }
    }

    /// <summary>
    /// The backward pass of the last <see cref="Forward"/> from a gradient of the logits chosen by the caller
    /// (<paramref name="logitsGrad"/> [B·T, V], say ∂metric/∂logits), showing each layer's z (pattern · V per head,
    /// [B·T, H·D]) with its gradient to <paramref name="heads"/> and the stream entering each layer with its gradient
    /// to <paramref name="stream"/>, and each layer's attention output and MLP output ([B·T, C], before they join the
    /// stream) with theirs to <paramref name="attention"/> and <paramref name="mlp"/>, last layer first (attribution
    /// patching). The projections' weight gradients are not computed (half the pass's products); the norms' and
    /// biases' land in <see cref="Gradients"/>, to be ignored.
    /// </summary>
    internal void BackwardFrom(ReadOnlySpan<float> logitsGrad, GradientSeen? heads, GradientSeen? stream, GradientSeen? attention = null,
        GradientSeen? mlp = null)
    {
        var a = activations ?? throw new InvalidOperationException("BackwardFrom needs a Forward first");
        logitsGrad.CopyTo(a.LogitsGrad);
        (headsGradientSeen, streamGradientSeen, attentionGradientSeen, mlpGradientSeen, activationGradientsOnly) = (heads, stream, attention, mlp, true);

        // No gradient arena cleared first (its embedding tables alone are GPT-2's 150 MB): what lands there is
        // thrown away below.
        gradientsZeroPending = false;
        try
        {
            Backward();
        }
        finally
        {
            (headsGradientSeen, streamGradientSeen, attentionGradientSeen, mlpGradientSeen, activationGradientsOnly) = (null, null, null, null, false);

            // What it left in the gradients (norms, biases; the projections' untouched) is no training step's.
            ZeroGradients();
        }
    }

    // The whole gradient arena (alignment gaps included, so that a global norm over it stays exact) except the
    // matrices whose products overwrite them in Backward: the layers' projections and the output head (which, tied,
    // is the token embedding: the lookup's rows are added to it after the head's product).
    private void ClearGradientsNotOverwritten()
    {
        var all = gradients.Value;
        overwrittenGradients ??= Enumerable.Range(0, Config.Layers).Select(all.Layer)
            .SelectMany(w => new[] { w.Query, w.Key, w.Value, w.Output, w.Up, w.Gate, w.Down })
            .Append(all.OutputHead).OfType<LinearWeight>()
            .Select(matrix => all.Arena.RangeOf(matrix.Dense ?? throw new InvalidOperationException($"gradient '{matrix.Name}' is not in the arena")))
            .Distinct().OrderBy(range => range.Offset).ToArray();
        var values = all.Arena.All;
        int cleared = 0;
        foreach (var (offset, count) in overwrittenGradients)
        {
            values[cleared..offset].Clear();
            cleared = offset + count;
        }

        values[cleared..].Clear();
    }

    /// <summary>
    /// Batched inference: ids [B, T] row-major through every block with no gradient buffers. The returned buffers
    /// (reused by the next call of the same shape) hold the hidden states [B·T, C] (<see cref="InferenceBuffers.FinalNormed"/>:
    /// after the final norm, or the last block's output in post-norm models) and, when asked for and the model has
    /// an output head, the logits [B·T, V]. <paramref name="tokenTypes"/> [B, T] (empty: type 0) feed token-type
    /// embeddings; <paramref name="lengths"/> [B] says how many leading tokens of each sequence are real: padding
    /// is never attended to, and its rows are not meaningful.
    /// </summary>
    public InferenceBuffers Infer(ReadOnlySpan<int> ids, int batch, int tokens, bool withLogits = true,
        ReadOnlySpan<int> tokenTypes = default, int[]? lengths = null)
    {
        CheckTokenTypes(ids, tokenTypes);
        if (lengths is not null && (lengths.Length != batch || lengths.Any(length => length < 1 || length > tokens)))
        {
            throw new ArgumentException($"expected {batch} lengths between 1 and {tokens}");
        }

        var buffers = InferCore(ids, batch, tokens, withLogits, hooks: null, tokenTypes, lengths);
        if (lengths is null)
        {
            // Padded rows are not meaningful, so only unpadded batches are checked; the first bad sequence is diagnosed.
            bool logits = withLogits && Config.HasOutputHead;
            ReadOnlySpan<float> outputs = logits ? buffers.Logits : buffers.FinalNormed;
            int perSequence = outputs.Length / batch;
            for (int b = 0; b < batch && !AllFinite(outputs); b++)
            {
                ThrowIfNotFinite(outputs.Slice(b * perSequence, perSequence), ids.Slice(b * tokens, tokens), logits ? "logits" : "hidden states");
            }
        }

        return buffers;
    }

    /// <summary>
    /// The analysis run of one sequence: the same blocks, with this model's <see cref="Hooks"/> called at every
    /// capture point and the points <paramref name="capture"/> accepts copied into the result. Attention is
    /// computed the reference way (scores and pattern [H, T, T] materialised) only where a hook or capture wants
    /// the scores or the pattern, and each head's output projection is separated only where hook_result is wanted.
    /// </summary>
    public HookedRun Run(ReadOnlySpan<int> ids, Func<string, bool>? capture = null, bool withLogits = true, ReadOnlySpan<int> tokenTypes = default) =>
        RunWith(ids, capture, withLogits, Hooks, tokenTypes);

    // batch > 1: ids [B, T] row-major, B sequences of ids.Length / B tokens in one pass (hooks see [B·T, ...] rows
    // where they see [T, ...] for one sequence, except the rotated q and k, per sequence; the run's Ids, Logits and
    // captures hold all B). lastLogitsOnly: the logits of each sequence's last position only, [B, V]. lastLayer: stop
    // after that block (no final norm, no logits: the run is for its captures), where a run is read before its end.
    // fusedAttention: HookContext.FusedAttention (batched intervention sweeps).
    internal HookedRun RunWith(ReadOnlySpan<int> ids, Func<string, bool>? capture, bool withLogits, HookRegistry registry, ReadOnlySpan<int> tokenTypes = default,
        int firstLayer = 0, ReadOnlySpan<float> residualIn = default, int batch = 1, bool lastLogitsOnly = false, int? lastLayer = null,
        bool fusedAttention = false)
    {
        if (lastLayer is { } stop && (stop < firstLayer || stop >= Config.Layers))
        {
            throw new ArgumentOutOfRangeException(nameof(lastLayer), stop, $"a run from block {firstLayer} stops at a block in [{firstLayer}, {Config.Layers - 1}]");
        }

        CheckTokenTypes(ids, tokenTypes);
        if (batch < 1 || ids.Length % batch != 0)
        {
            throw new ArgumentException($"{ids.Length} ids do not split into {batch} sequences");
        }

        if ((firstLayer != 0 || !residualIn.IsEmpty) && ((uint)firstLayer >= (uint)Config.Layers || residualIn.Length != ids.Length * Config.Channels))
        {
            throw new ArgumentException($"a run from block {firstLayer} needs the stream entering it, [{ids.Length}, {Config.Channels}]; got {residualIn.Length} values");
        }

        var hooks = new HookContext(registry, capture, fusedAttention);
        int tokens = ids.Length / batch;
        bool logits = withLogits && Config.HasOutputHead;
        if (lastLayer is { } last && last < Config.Layers - 1)
        {
            InferCore(ids, batch, tokens, withLogits: false, hooks, tokenTypes, null, firstLayer, residualIn, endLayer: last + 1);
            return new HookedRun(ids.ToArray(), [], hooks.Cache, hooks.Shapes, []);
        }

        var buffers = InferCore(ids, batch, tokens, withLogits && !lastLogitsOnly, hooks, tokenTypes, null, firstLayer, residualIn);
        float[] outputs;
        if (logits && lastLogitsOnly)
        {
            // Only each sequence's last row through the output head: [B, C] → [B, V], where a prediction after the text
            // is all that is read (patching, a target's loss), at 1/T of the output head's cost.
            int c = Config.Channels;
            var lastRows = new float[batch * c];
            for (int b = 0; b < batch; b++)
            {
                buffers.FinalNormed.Slice((((b * tokens) + tokens - 1) * c), c).CopyTo(lastRows.AsSpan(b * c, c));
            }

            outputs = new float[batch * Config.VocabSize];
            Parameters.OutputHead.Forward(lastRows, [], batch, outputs);
        }
        else
        {
            outputs = buffers.Logits.ToArray();
        }

        ThrowIfNotFinite(logits ? outputs : buffers.FinalNormed, ids[..tokens], logits ? "logits" : "hidden states");
        return new HookedRun(ids.ToArray(), outputs, hooks.Cache, hooks.Shapes,
            Parameters.HasFinalNorm ? buffers.FinalNormRstd.ToArray() : []);
    }

    /// <summary>
    /// What the model would predict from a stream: the final norm and the output head on <paramref name="rows"/> rows
    /// of <paramref name="stream"/> [R, C], into <paramref name="logits"/> [R, V]. The last block's output gives the
    /// model's own logits; an earlier block's, the logit lens (nostalgebraist 2020).
    /// </summary>
    public void Unembed(ReadOnlySpan<float> stream, int rows, Span<float> logits)
    {
        int c = Config.Channels;
        if (!Config.HasOutputHead)
        {
            throw new HeadLensException("this model has no output head (an encoder): there are no logits to read a stream by");
        }

        if (stream.Length < rows * c || logits.Length < rows * Config.VocabSize)
        {
            throw new ArgumentException($"unembedding {rows} rows needs a stream of [{rows}, {c}] and logits of [{rows}, {Config.VocabSize}]");
        }

        var normed = new float[rows * c];
        FinalNorm(stream, rows, normed, new float[rows], new float[rows]);
        Parameters.OutputHead.Forward(normed, [], rows, logits);
    }

    public KvCache NewCache(int capacity, int sinks = 0, int window = 0) =>
        new(Config.Layers, Math.Min(capacity, Config.ContextLength), Config.KvHeads, Config.HeadDim, Config.HeadDim, sinks, window);

    /// <summary>
    /// Incremental decoding of one sequence: runs <paramref name="newIds"/> (the prompt, then one token at a time)
    /// against the cache, appends their keys and values, and writes the last position's logits [V].
    /// </summary>
    public void DecodeStep(ReadOnlySpan<int> newIds, KvCache cache, Span<float> lastLogits)
    {
        int t = newIds.Length, c = Config.Channels, position = cache.NextPosition;
        if (t == 0)
        {
            throw new ArgumentException("DecodeStep needs at least one token");
        }

        if (Config.Attention != MaskKind.Causal)
        {
            throw new HeadLensException("decoding token by token needs a causal model; this one attends both ways (an encoder)");
        }

        if (Config.Positions == PositionKind.Learned && position + t > Config.ContextLength)
        {
            throw new HeadLensException($"position {position + t - 1} is past the model's context of {Config.ContextLength} tokens");
        }

        if (decodeBuffers is null || decodeBuffers.Tokens != t)
        {
            decodeBuffers = new InferenceBuffers(Config, 1, t, withLogits: false);
        }

        var buffers = decodeBuffers;
        var pass = new Pass(1, t, position, cache, Hooks: null);
        var x = buffers.Residual;
        Embed(newIds, [], pass, x, buffers.FinalNormed, buffers.FinalNormMean, buffers.FinalNormRstd);
        for (int l = 0; l < Config.Layers; l++)
        {
            BlockForward(l, buffers.Block, x, x, pass);
        }

        cache.Advance(t);
        var last = x.Slice((t - 1) * c, c);
        var lastNormed = buffers.FinalNormed[..c];
        FinalNorm(last, 1, lastNormed, buffers.FinalNormMean, buffers.FinalNormRstd);
        Parameters.OutputHead.Forward(lastNormed, [], 1, lastLogits, decoding: true);
    }

    // With residualIn [B·T, C], the stream entering block firstLayer: the embedding and the blocks before it are skipped.
    private InferenceBuffers InferCore(ReadOnlySpan<int> ids, int batch, int tokens, bool withLogits, HookContext? hooks,
        ReadOnlySpan<int> tokenTypes, int[]? lengths, int firstLayer = 0, ReadOnlySpan<float> residualIn = default, int? endLayer = null)
    {
        CheckTokens(ids, batch, tokens);
        withLogits &= Config.HasOutputHead;
        if (inferenceBuffers is null || inferenceBuffers.Batch != batch || inferenceBuffers.Tokens != tokens || inferenceBuffers.WithLogits != withLogits)
        {
            inferenceBuffers = null; // let the old buffers go before the new ones are allocated
            inferenceBuffers = new InferenceBuffers(Config, batch, tokens, withLogits);
        }

        var buffers = inferenceBuffers;
        var pass = new Pass(batch, tokens, Position: 0, Cache: null, hooks, lengths);
        int n = batch * tokens;
        var x = buffers.Residual;
        if (residualIn.IsEmpty)
        {
            Embed(ids, tokenTypes, pass, x, buffers.FinalNormed, buffers.FinalNormMean, buffers.FinalNormRstd);
        }
        else
        {
            residualIn.CopyTo(x);
        }

        for (int l = firstLayer; l < (endLayer ?? Config.Layers); l++)
        {
            BlockForward(l, buffers.Block, x, x, pass);
        }

        if (endLayer < Config.Layers)
        {
            return buffers; // stopped early: the caller reads captures only
        }

        FinalNorm(x, n, buffers.FinalNormed, buffers.FinalNormMean, buffers.FinalNormRstd);
        if (Parameters.HasFinalNorm)
        {
            hooks?.Point(HookNames.FinalNormalized, buffers.FinalNormed, n, Config.Channels);
        }
        if (withLogits)
        {
            Parameters.OutputHead.Forward(buffers.FinalNormed, [], n, buffers.Logits);
        }

        return buffers;
    }

    private void CheckTokenTypes(ReadOnlySpan<int> ids, ReadOnlySpan<int> tokenTypes)
    {
        if (!tokenTypes.IsEmpty && tokenTypes.Length != ids.Length)
        {
            throw new ArgumentException($"expected {ids.Length} token types, got {tokenTypes.Length}");
        }

        foreach (int type in tokenTypes)
        {
            if ((uint)type >= (uint)Math.Max(Config.TokenTypes, 1))
            {
                throw new HeadLensException($"token type {type} is outside the model's {Math.Max(Config.TokenTypes, 1)} types");
            }
        }
    }

    private void CheckTokens(ReadOnlySpan<int> ids, int batch, int tokens)
    {
        if (tokens <= 0 || tokens > Config.ContextLength)
        {
            throw new HeadLensException(tokens <= 0 ? "a pass needs at least one token"
                : $"{tokens} tokens exceed the model's context of {Config.ContextLength}");
        }

        if (batch <= 0 || ids.Length != batch * tokens)
        {
            throw new ArgumentException($"expected {batch}×{tokens} ids, got {ids.Length}");
        }

        foreach (int id in ids)
        {
            if ((uint)id >= (uint)Config.VocabSize)
            {
                throw new HeadLensException($"token id {id} is outside the vocabulary (0..{Config.VocabSize - 1})");
            }
        }
    }

    private static float Gaussian(Random random)
    {
        // Box–Muller: two uniforms to one standard normal.
        double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
        return (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
    }
}
