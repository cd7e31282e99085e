using HeadLens.Attention;
using HeadLens.Embeddings;
using HeadLens.Kernels;
using HeadLens.Tensors;

namespace HeadLens.Model;

/// <summary>
/// A decoder-only transformer: embeddings, L blocks, a final norm and the output head.
///   x = embed(ids) (+ learned positions)
///   each block:  x = x + attention(norm₁(x));  x = x + mlp(norm₂(x))
///   logits = norm_f(x) · W_headᵀ
/// GPT-2: LayerNorm, GELU MLP, biases. Llama: RMSNorm, SwiGLU MLP, RoPE, grouped-query attention.
/// Training runs Forward (with targets) then Backward; generation runs DecodeStep with a KV cache.
/// </summary>
public sealed class Transformer
{
    private readonly Lazy<ModelWeights> gradients;
    private Activations? activations;
    private int[] lastIds = [];

    public Transformer(ModelConfig config)
    {
        Config = config.Validated();
        Parameters = new ModelWeights(Config, "parameters");
        // Gradients exist only once something trains: inference keeps half the memory.
        gradients = new Lazy<ModelWeights>(() => new ModelWeights(Config, "gradients"));
        AttentionOptions = new AttentionOptions(Config.Heads, Config.KvHeads, Config.HeadDim, Config.HeadDim);
    }

    public ModelConfig Config { get; }

    public ModelWeights Parameters { get; }

    public ModelWeights Gradients => gradients.Value;

    public AttentionOptions AttentionOptions { get; }

    /// <summary>Logits of the last training Forward: [B·T, V].</summary>
    public ReadOnlySpan<float> Logits => activations is null ? [] : activations["logits"];

    /// <summary>The activations of the last Forward (for analysis and tests).</summary>
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

    public void ZeroGradients() => Gradients.Arena.All.Clear();

    /// <summary>
    /// ids and targets [B, T] row-major. Returns the mean next-token loss (NaN without targets); keeps what Backward
    /// needs. Targets of −1 are ignored.
    /// </summary>
    public float Forward(ReadOnlySpan<int> ids, ReadOnlySpan<int> targets, int batch, int tokens)
    {
        if (tokens > Config.ContextLength)
        {
            throw new HeadLensException($"{tokens} tokens exceed the model's context of {Config.ContextLength}");
        }

        if (ids.Length != batch * tokens || (!targets.IsEmpty && targets.Length != ids.Length))
        {
            throw new ArgumentException($"expected {batch}×{tokens} ids and targets");
        }

        if (activations is null || activations.Batch != batch || activations.Tokens != tokens)
        {
            activations = new Activations(Config, batch, tokens);
        }

        var a = activations;
        int n = batch * tokens, c = Config.Channels;
        lastIds = ids.ToArray();
        var x = a["residual.0"];
        Embedding.Forward(ids, Parameters.TokenEmbedding.Span, Config.VocabSize, c, x);
        if (Parameters.PositionEmbedding is not null)
        {
            for (int b = 0; b < batch; b++)
            {
                Positions.AddLearned(Parameters.PositionEmbedding.Span, Config.ContextLength, c, 0, tokens, x.Slice(b * tokens * c, tokens * c));
            }
        }

        for (int l = 0; l < Config.Layers; l++)
        {
            BlockForward(l, a, batch, tokens);
        }

        var final = a["final_norm"];
        Norm(a[$"residual.{Config.Layers}"], Parameters.FinalNorm, Parameters.FinalNormBias, n, final, a["final_norm.mean"], a["final_norm.rstd"]);
        MatMul.Forward(final, Parameters.OutputHead.Span, [], n, Config.VocabSize, c, a["logits"]);
        if (targets.IsEmpty)
        {
            return float.NaN;
        }

        // The loss gradient comes from the same pass over the logits (fused softmax + cross-entropy).
        return CrossEntropy.ForwardBackward(a["logits"], targets, n, Config.VocabSize, a["losses"], a["logits_grad"]);
    }

    /// <summary>Accumulates the gradients of the last Forward's mean loss into <see cref="Gradients"/>.</summary>
    public void Backward()
    {
        var a = activations ?? throw new InvalidOperationException("Backward needs a Forward with targets first");
        int batch = a.Batch, tokens = a.Tokens, n = batch * tokens, c = Config.Channels;
        var dx = a["grad.residual"];
        var dFinal = a["grad.normed"];
        MatMul.Backward(a["logits_grad"], a["final_norm"], Parameters.OutputHead.Span, n, Config.VocabSize, c, dFinal, Gradients.OutputHead.Span, []);
        dx.Clear();
        NormBackward(dFinal, a[$"residual.{Config.Layers}"], Parameters.FinalNorm, Gradients.FinalNorm, Gradients.FinalNormBias,
            a["final_norm.mean"], a["final_norm.rstd"], n, dx);
        for (int l = Config.Layers - 1; l >= 0; l--)
        {
            BlockBackward(l, a, batch, tokens, dx);
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

        if (Config.LearnedPositions && position + t > Config.ContextLength)
        {
            throw new HeadLensException($"position {position + t - 1} is past the model's context of {Config.ContextLength} tokens");
        }

        var scratch = cache.DecoderScratch is DecodeScratch reused && reused.Tokens == t && ReferenceEquals(reused.Config, Config)
            ? reused : new DecodeScratch(Config, t);
        cache.DecoderScratch = scratch;
        Embedding.Forward(newIds, Parameters.TokenEmbedding.Span, Config.VocabSize, c, scratch.X);
        if (Parameters.PositionEmbedding is not null)
        {
            Positions.AddLearned(Parameters.PositionEmbedding.Span, Config.ContextLength, c, position, t, scratch.X);
        }

        for (int l = 0; l < Config.Layers; l++)
        {
            var w = Parameters.Layer(l);
            // x = x + attention(norm₁(x)) against the cached keys and values
            Norm(scratch.X, w.AttentionNorm, w.AttentionNormBias, t, scratch.Normed, scratch.Mean, scratch.Rstd);
            Project(w, scratch.Normed, t, scratch.Q, scratch.K, scratch.V);
            if (!Config.LearnedPositions)
            {
                Rope.Forward(scratch.Q, t, Config.Heads, Config.HeadDim, position, Config.Rope);
                Rope.Forward(scratch.K, t, Config.KvHeads, Config.HeadDim, position, Config.Rope);
            }

            cache.Append(l, scratch.K, scratch.V, t);
            int slots = cache.Keys(l).Length / (Config.KvHeads * Config.HeadDim);
            ScaledDotProductAttention.Forward(AttentionOptions, t, slots, slots - t, scratch.Q, cache.Keys(l), cache.Values(l), scratch.Heads, scratch.Lse);
            MatMul.Forward(scratch.Heads, w.Output.Span, Bias(w.OutputBias), t, c, Config.Heads * Config.HeadDim, scratch.Branch);
            Residual.Forward(scratch.X, scratch.Branch, scratch.X);
            if (Config.HasMlp)
            {
                Norm(scratch.X, w.MlpNorm!, w.MlpNormBias, t, scratch.Normed, scratch.Mean, scratch.Rstd);
                MlpForward(w, scratch.Normed, t, scratch.Up, scratch.Gate, scratch.Hidden, scratch.Branch);
                Residual.Forward(scratch.X, scratch.Branch, scratch.X);
            }
        }

        cache.Advance(t);
        var last = scratch.X.AsSpan((t - 1) * c, c);
        var lastNormed = scratch.Normed.AsSpan(0, c);
        Norm(last, Parameters.FinalNorm, Parameters.FinalNormBias, 1, lastNormed, scratch.Mean, scratch.Rstd);
        MatMul.Forward(lastNormed, Parameters.OutputHead.Span, [], 1, Config.VocabSize, c, lastLogits);
    }

    private void BlockForward(int l, Activations a, int batch, int tokens)
    {
        var w = Parameters.Layer(l);
        int n = batch * tokens, c = Config.Channels;
        var x = a[$"residual.{l}"];
        var normed = a.Layer(l, "attention_norm");
        Norm(x, w.AttentionNorm, w.AttentionNormBias, n, normed, a.Layer(l, "attention_norm.mean"), a.Layer(l, "attention_norm.rstd"));
        var q = a.Layer(l, "q");
        var k = a.Layer(l, "k");
        var v = a.Layer(l, "v");
        Project(w, normed, n, q, k, v);
        var heads = a.Layer(l, "heads");
        var lse = a.Layer(l, "lse");
        int qRow = Config.Heads * Config.HeadDim, kvRow = Config.KvHeads * Config.HeadDim;
        for (int b = 0; b < batch; b++)
        {
            if (!Config.LearnedPositions)
            {
                Rope.Forward(q.Slice(b * tokens * qRow, tokens * qRow), tokens, Config.Heads, Config.HeadDim, 0, Config.Rope);
                Rope.Forward(k.Slice(b * tokens * kvRow, tokens * kvRow), tokens, Config.KvHeads, Config.HeadDim, 0, Config.Rope);
            }

            ScaledDotProductAttention.Forward(AttentionOptions, tokens, tokens, 0,
                q.Slice(b * tokens * qRow, tokens * qRow), k.Slice(b * tokens * kvRow, tokens * kvRow), v.Slice(b * tokens * kvRow, tokens * kvRow),
                heads.Slice(b * tokens * qRow, tokens * qRow), lse.Slice(b * Config.Heads * tokens, Config.Heads * tokens));
        }

        var middle = a.Layer(l, "middle");
        MatMul.Forward(heads, w.Output.Span, Bias(w.OutputBias), n, c, qRow, middle);
        Residual.Forward(x, middle, middle);
        var next = a[$"residual.{l + 1}"];
        if (!Config.HasMlp)
        {
            middle.CopyTo(next);
            return;
        }

        var mlpNormed = a.Layer(l, "mlp_norm");
        Norm(middle, w.MlpNorm!, w.MlpNormBias, n, mlpNormed, a.Layer(l, "mlp_norm.mean"), a.Layer(l, "mlp_norm.rstd"));
        MlpForward(w, mlpNormed, n, a.Layer(l, "up"), a.Layer(l, "gate"), a.Layer(l, "hidden"), next);
        Residual.Forward(middle, next, next);
    }

    // dx holds d(residual l+1) on entry and d(residual l) on exit.
    private void BlockBackward(int l, Activations a, int batch, int tokens, Span<float> dx)
    {
        var w = Parameters.Layer(l);
        var g = Gradients.Layer(l);
        int n = batch * tokens, c = Config.Channels, f = Config.HiddenChannels;
        int qRow = Config.Heads * Config.HeadDim, kvRow = Config.KvHeads * Config.HeadDim;
        var dNormed = a["grad.normed"];
        var scratch = a["grad.scratch"];
        if (Config.HasMlp)
        {
            // x_{l+1} = middle + mlp(norm₂(middle)): dx flows to middle unchanged and through the MLP.
            var dHidden = a["grad.hidden"][..(n * f)];
            var dUp = a["grad.up"][..(n * f)];
            MatMul.Backward(dx, a.Layer(l, "hidden"), w.Down!.Span, n, c, f, dHidden, g.Down!.Span, Bias(g.DownBias));
            if (Config.Family == ModelFamily.Llama)
            {
                var dGate = a["grad.gate"][..(n * f)];
                SwiGlu.Backward(a.Layer(l, "gate"), a.Layer(l, "up"), dHidden, dGate, dUp);
                MatMul.Backward(dGate, a.Layer(l, "mlp_norm"), w.Gate!.Span, n, f, c, dNormed, g.Gate!.Span, []);
                MatMul.Backward(dUp, a.Layer(l, "mlp_norm"), w.Up!.Span, n, f, c, scratch, g.Up!.Span, []);
                Residual.Forward(dNormed, scratch, dNormed);
            }
            else
            {
                Gelu.Backward(a.Layer(l, "up"), dHidden, dUp);
                MatMul.Backward(dUp, a.Layer(l, "mlp_norm"), w.Up!.Span, n, f, c, dNormed, g.Up!.Span, Bias(g.UpBias));
            }

            NormBackward(dNormed, a.Layer(l, "middle"), w.MlpNorm!, g.MlpNorm!, g.MlpNormBias,
                a.Layer(l, "mlp_norm.mean"), a.Layer(l, "mlp_norm.rstd"), n, dx);
        }

        // middle = x_l + attention(norm₁(x_l))
        var dHeads = a["grad.heads"];
        MatMul.Backward(dx, a.Layer(l, "heads"), w.Output.Span, n, c, qRow, dHeads, g.Output.Span, Bias(g.OutputBias));
        var q = a.Layer(l, "q");
        var k = a.Layer(l, "k");
        var v = a.Layer(l, "v");
        var heads = a.Layer(l, "heads");
        var lse = a.Layer(l, "lse");
        var dq = a["grad.q"];
        var dk = a["grad.k"];
        var dv = a["grad.v"];
        for (int b = 0; b < batch; b++)
        {
            ScaledDotProductAttention.Backward(AttentionOptions, tokens, tokens, 0,
                q.Slice(b * tokens * qRow, tokens * qRow), k.Slice(b * tokens * kvRow, tokens * kvRow), v.Slice(b * tokens * kvRow, tokens * kvRow),
                heads.Slice(b * tokens * qRow, tokens * qRow), dHeads.Slice(b * tokens * qRow, tokens * qRow), lse.Slice(b * Config.Heads * tokens, Config.Heads * tokens),
                dq.Slice(b * tokens * qRow, tokens * qRow), dk.Slice(b * tokens * kvRow, tokens * kvRow), dv.Slice(b * tokens * kvRow, tokens * kvRow));
            if (!Config.LearnedPositions)
            {
                Rope.Backward(dq.Slice(b * tokens * qRow, tokens * qRow), tokens, Config.Heads, Config.HeadDim, 0, Config.Rope);
                Rope.Backward(dk.Slice(b * tokens * kvRow, tokens * kvRow), tokens, Config.KvHeads, Config.HeadDim, 0, Config.Rope);
            }
        }

        var normed = a.Layer(l, "attention_norm");
        MatMul.Backward(dq, normed, w.Query.Span, n, qRow, c, dNormed, g.Query.Span, Bias(g.QueryBias));
        MatMul.Backward(dk, normed, w.Key.Span, n, kvRow, c, scratch, g.Key.Span, Bias(g.KeyBias));
        Residual.Forward(dNormed, scratch, dNormed);
        MatMul.Backward(dv, normed, w.Value.Span, n, kvRow, c, scratch, g.Value.Span, Bias(g.ValueBias));
        Residual.Forward(dNormed, scratch, dNormed);
        NormBackward(dNormed, a[$"residual.{l}"], w.AttentionNorm, g.AttentionNorm, g.AttentionNormBias,
            a.Layer(l, "attention_norm.mean"), a.Layer(l, "attention_norm.rstd"), n, dx);
    }

    private void Project(LayerWeights w, ReadOnlySpan<float> normed, int rows, Span<float> q, Span<float> k, Span<float> v)
    {
        int c = Config.Channels, qRow = Config.Heads * Config.HeadDim, kvRow = Config.KvHeads * Config.HeadDim;
        MatMul.Forward(normed, w.Query.Span, Bias(w.QueryBias), rows, qRow, c, q);
        MatMul.Forward(normed, w.Key.Span, Bias(w.KeyBias), rows, kvRow, c, k);
        MatMul.Forward(normed, w.Value.Span, Bias(w.ValueBias), rows, kvRow, c, v);
    }

    // output = down(act(up(x))) — GPT-2: act = GELU; Llama: silu(gate(x))·up(x).
    private void MlpForward(LayerWeights w, ReadOnlySpan<float> normed, int rows, Span<float> up, Span<float> gate, Span<float> hidden, Span<float> output)
    {
        int c = Config.Channels, f = Config.HiddenChannels;
        MatMul.Forward(normed, w.Up!.Span, Bias(w.UpBias), rows, f, c, up);
        if (Config.Family == ModelFamily.Llama)
        {
            MatMul.Forward(normed, w.Gate!.Span, [], rows, f, c, gate);
            SwiGlu.Forward(gate[..(rows * f)], up, hidden);
        }
        else
        {
            Gelu.Forward(up[..(rows * f)], hidden);
        }

        MatMul.Forward(hidden, w.Down!.Span, Bias(w.DownBias), rows, c, f, output);
    }

    private void Norm(ReadOnlySpan<float> x, Tensor weight, Tensor? bias, int rows, Span<float> y, Span<float> mean, Span<float> rstd)
    {
        if (Config.Family == ModelFamily.Gpt2)
        {
            LayerNorm.Forward(x, weight.Span, bias!.Span, rows, Config.Channels, Config.NormEpsilon, y, mean, rstd);
        }
        else
        {
            RmsNorm.Forward(x, weight.Span, rows, Config.Channels, Config.NormEpsilon, y, rstd);
        }
    }

    private void NormBackward(ReadOnlySpan<float> yGrad, ReadOnlySpan<float> x, Tensor weight, Tensor weightGrad, Tensor? biasGrad,
        ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd, int rows, Span<float> xGrad)
    {
        if (Config.Family == ModelFamily.Gpt2)
        {
            LayerNorm.Backward(yGrad, x, weight.Span, mean, rstd, rows, Config.Channels, xGrad, weightGrad.Span, biasGrad!.Span);
        }
        else
        {
            RmsNorm.Backward(yGrad, x, weight.Span, rstd, rows, Config.Channels, xGrad, weightGrad.Span);
        }
    }

    private static Span<float> Bias(Tensor? bias) => bias is null ? [] : bias.Span;

    private static float Gaussian(Random random)
    {
        // Box–Muller: two uniforms to one standard normal.
        double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
        return (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
    }

    /// <summary>Per-call buffers of DecodeStep (small: t rows).</summary>
    private sealed class DecodeScratch
    {
        public DecodeScratch(ModelConfig config, int t)
        {
            Config = config;
            Tokens = t;
            int c = config.Channels, q = config.Heads * config.HeadDim, kv = config.KvHeads * config.HeadDim, f = Math.Max(config.HiddenChannels, 1);
            X = new float[t * c];
            Normed = new float[t * c];
            Branch = new float[t * c];
            Mean = new float[t];
            Rstd = new float[t];
            Q = new float[t * q];
            K = new float[t * kv];
            V = new float[t * kv];
            Heads = new float[t * q];
            Lse = new float[config.Heads * t];
            Up = new float[t * f];
            Gate = new float[t * f];
            Hidden = new float[t * f];
        }

        public ModelConfig Config { get; }

        public int Tokens { get; }

        public float[] X { get; }

        public float[] Normed { get; }

        public float[] Branch { get; }

        public float[] Mean { get; }

        public float[] Rstd { get; }

        public float[] Q { get; }

        public float[] K { get; }

        public float[] V { get; }

        public float[] Heads { get; }

        public float[] Lse { get; }

        public float[] Up { get; }

        public float[] Gate { get; }

        public float[] Hidden { get; }
    }
}
