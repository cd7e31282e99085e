using HeadLens.Attention;
using HeadLens.Embeddings;
using HeadLens.Kernels;
using HeadLens.Model;
using HeadLens.Tensors;

namespace HeadLens.Analysis;

/// <summary>
/// Called at a capture point with the activation about to flow on. The hook may read it or change it in place
/// (that is how every intervention works); <paramref name="shape"/> names its layout (see <see cref="HookNames"/>).
/// </summary>
public delegate void ActivationHook(string name, Span<float> activation, ReadOnlySpan<int> shape);

/// <summary>The capture points, named as in TransformerLens. Shapes use T = tokens, C, H, G = kv heads, D, F, V.</summary>
public static class HookNames
{
    public const string Embed = "hook_embed";                                           // [T, C] token embeddings
    public const string PositionEmbed = "hook_pos_embed";                               // [T, C] learned positions
    public const string FinalNormalized = "ln_final.hook_normalized";                  // [T, C]

    public static string ResidPre(int layer) => $"blocks.{layer}.hook_resid_pre";       // [T, C]
    public static string AttentionNormalized(int layer) => $"blocks.{layer}.ln1.hook_normalized"; // [T, C]
    public static string Q(int layer) => $"blocks.{layer}.attn.hook_q";                 // [T, H, D] before RoPE
    public static string K(int layer) => $"blocks.{layer}.attn.hook_k";                 // [T, G, D] before RoPE
    public static string V(int layer) => $"blocks.{layer}.attn.hook_v";                 // [T, G, D]
    public static string RotQ(int layer) => $"blocks.{layer}.attn.hook_rot_q";          // [T, H, D] after RoPE (RoPE models)
    public static string RotK(int layer) => $"blocks.{layer}.attn.hook_rot_k";          // [T, G, D] after RoPE
    public static string Scores(int layer) => $"blocks.{layer}.attn.hook_scores";       // [H, T, T] scaled, −∞ masked
    public static string Pattern(int layer) => $"blocks.{layer}.attn.hook_pattern";     // [H, T, T] post-softmax
    public static string Z(int layer) => $"blocks.{layer}.attn.hook_z";                 // [T, H, D] pattern · V
    public static string Result(int layer) => $"blocks.{layer}.attn.hook_result";       // [T, H, C] each head's W_O output
    public static string AttentionOut(int layer) => $"blocks.{layer}.hook_attn_out";    // [T, C] Σ heads + b_O
    public static string ResidMid(int layer) => $"blocks.{layer}.hook_resid_mid";       // [T, C]
    public static string MlpNormalized(int layer) => $"blocks.{layer}.ln2.hook_normalized"; // [T, C]
    public static string MlpPre(int layer) => $"blocks.{layer}.mlp.hook_pre";           // [T, F] before the activation
    public static string MlpPost(int layer) => $"blocks.{layer}.mlp.hook_post";         // [T, F] after it
    public static string MlpOut(int layer) => $"blocks.{layer}.hook_mlp_out";           // [T, C]
    public static string ResidPost(int layer) => $"blocks.{layer}.hook_resid_post";     // [T, C]

    /// <summary>Every capture point of a model, in the order a forward pass reaches them.</summary>
    public static IEnumerable<string> All(ModelConfig config)
    {
        yield return Embed;
        if (config.LearnedPositions)
        {
            yield return PositionEmbed;
        }

        for (int l = 0; l < config.Layers; l++)
        {
            yield return ResidPre(l);
            yield return AttentionNormalized(l);
            yield return Q(l);
            yield return K(l);
            yield return V(l);
            if (!config.LearnedPositions)
            {
                yield return RotQ(l);
                yield return RotK(l);
            }

            yield return Scores(l);
            yield return Pattern(l);
            yield return Z(l);
            yield return Result(l);
            yield return AttentionOut(l);
            yield return ResidMid(l);
            if (config.HasMlp)
            {
                yield return MlpNormalized(l);
                yield return MlpPre(l);
                yield return MlpPost(l);
                yield return MlpOut(l);
            }

            yield return ResidPost(l);
        }

        yield return FinalNormalized;
    }
}

/// <summary>What one hooked run produced: the logits, the captured activations (as they flowed on, after any hook
/// changed them) with their shapes, and the final norm's 1/scale per token (for direct logit attribution).</summary>
public sealed class HookedRun(int[] ids, float[] logits, Dictionary<string, float[]> cache, Dictionary<string, int[]> shapes, float[] finalRstd)
{
    public int[] Ids { get; } = ids;

    public int Tokens => Ids.Length;

    /// <summary>[T, V].</summary>
    public float[] Logits { get; } = logits;

    public IReadOnlyDictionary<string, float[]> Cache { get; } = cache;

    public IReadOnlyDictionary<string, int[]> Shapes { get; } = shapes;

    /// <summary>[T]: 1/sqrt(var + ε) (LayerNorm) or 1/sqrt(mean x² + ε) (RMSNorm) of the final norm.</summary>
    public float[] FinalRstd { get; } = finalRstd;

    public float[] this[string name] => Cache.TryGetValue(name, out var value) ? value
        : throw new HeadLensException($"activation '{name}' was not captured in this run");
}

/// <summary>
/// An inference-only forward pass of a <see cref="Transformer"/> (one sequence) with a hook at every capture point
/// of <see cref="HookNames"/>. It reads the model's own weights through their per-layer views and calls the same
/// kernels as Transformer.Forward, so with no hooks it reproduces the model's logits (a test holds it to that). Two
/// differences, both for looking inside: attention is computed the reference way (scores and pattern materialised
/// [H, T, T], then z = pattern·V), and when hook_result is hooked or captured, the output projection runs per head
/// (each head's [T, C] contribution) and is then summed.
///   x = embed(ids) (+ positions)
///   each block:  x = x + Σ_h W_O^h (softmax(q_h k_hᵀ·scale) v_h) + b_O;   x = x + mlp(norm₂(x))
///   logits = norm_f(x) · W_Uᵀ
/// </summary>
public sealed class HookedForward(Transformer model)
{
    private readonly Dictionary<string, List<ActivationHook>> hooks = new(StringComparer.Ordinal);

    public Transformer Model { get; } = model;

    public ModelConfig Config => Model.Config;

    /// <summary>Adds a hook at a capture point (several per point run in the order added).</summary>
    public HookedForward AddHook(string name, ActivationHook hook)
    {
        if (!HookNames.All(Config).Contains(name))
        {
            throw new HeadLensException($"no capture point named '{name}' in this model");
        }

        if (!hooks.TryGetValue(name, out var list))
        {
            hooks[name] = list = [];
        }

        list.Add(hook);
        return this;
    }

    public void ClearHooks() => hooks.Clear();

    /// <summary>Runs ids through the model; captures the points <paramref name="capture"/> accepts (none when null).</summary>
    public HookedRun Run(ReadOnlySpan<int> ids, Func<string, bool>? capture = null)
    {
        var config = Config;
        int t = ids.Length, c = config.Channels, heads = config.Heads, kvHeads = config.KvHeads, d = config.HeadDim;
        int f = config.HiddenChannels, vocab = config.VocabSize, qRow = heads * d, kvRow = kvHeads * d;
        if (t == 0 || t > config.ContextLength)
        {
            throw new HeadLensException($"{t} tokens: a run needs 1 to {config.ContextLength} (the model's context)");
        }

        var cache = new Dictionary<string, float[]>(StringComparer.Ordinal);
        var shapes = new Dictionary<string, int[]>(StringComparer.Ordinal);
        void Point(string name, Span<float> activation, params int[] shape)
        {
            if (hooks.TryGetValue(name, out var list))
            {
                foreach (var hook in list)
                {
                    hook(name, activation, shape);
                }
            }

            if (capture?.Invoke(name) == true)
            {
                cache[name] = activation.ToArray();
                shapes[name] = shape;
            }
        }

        var p = Model.Parameters;
        var x = new float[t * c];                      // [T, C] the residual stream
        Embedding.Forward(ids, p.TokenEmbedding.Span, vocab, c, x);
        Point(HookNames.Embed, x, t, c);
        if (p.PositionEmbedding is not null)
        {
            var positions = new float[t * c];          // [T, C]
            Positions.AddLearned(p.PositionEmbedding.Span, config.ContextLength, c, 0, t, positions);
            Point(HookNames.PositionEmbed, positions, t, c);
            Residual.Forward(x, positions, x);
        }

        var normed = new float[t * c];
        var mean = new float[t];
        var rstd = new float[t];
        var q = new float[t * qRow];                   // [T, H, D]
        var k = new float[t * kvRow];                  // [T, G, D]
        var v = new float[t * kvRow];                  // [T, G, D]
        var scores = new float[heads * t * t];         // [H, T, T]
        var pattern = new float[heads * t * t];        // [H, T, T]
        var z = new float[t * qRow];                   // [T, H, D]
        var branch = new float[t * c];                 // [T, C]: attention or MLP output
        var up = new float[t * Math.Max(f, 1)];
        var gate = new float[t * Math.Max(f, 1)];
        var hidden = new float[t * Math.Max(f, 1)];
        int[] allHeads = [.. Enumerable.Range(0, heads)];
        for (int l = 0; l < config.Layers; l++)
        {
            var w = p.Layer(l);
            Point(HookNames.ResidPre(l), x, t, c);

            // x = x + attention(norm₁(x))
            Norm(x, w.AttentionNorm, w.AttentionNormBias, t, normed, mean, rstd);
            Point(HookNames.AttentionNormalized(l), normed, t, c);
            MatMul.Forward(normed, w.Query.Span, Bias(w.QueryBias), t, qRow, c, q);
            MatMul.Forward(normed, w.Key.Span, Bias(w.KeyBias), t, kvRow, c, k);
            MatMul.Forward(normed, w.Value.Span, Bias(w.ValueBias), t, kvRow, c, v);
            Point(HookNames.Q(l), q, t, heads, d);
            Point(HookNames.K(l), k, t, kvHeads, d);
            Point(HookNames.V(l), v, t, kvHeads, d);
            if (!config.LearnedPositions)
            {
                Rope.Forward(q, t, heads, d, 0, config.Rope);
                Rope.Forward(k, t, kvHeads, d, 0, config.Rope);
                Point(HookNames.RotQ(l), q, t, heads, d);
                Point(HookNames.RotK(l), k, t, kvHeads, d);
            }

            ScaledDotProductAttention.Scores(Model.AttentionOptions, t, t, 0, q, k, allHeads, scores);
            Point(HookNames.Scores(l), scores, heads, t, t);
            Softmax.Forward(scores, heads * t, t, pattern);
            Point(HookNames.Pattern(l), pattern, heads, t, t);
            for (int h = 0; h < heads; h++)
            {
                // z_h [T, D] = pattern_h [T, T] · v_g [T, D]   (v_g read at stride G·D; z_h written at stride H·D)
                int g = h / (heads / kvHeads);
                Gemm.Multiply(false, false, t, d, t, pattern.AsSpan(h * t * t, t * t), t, v.AsSpan(g * d), kvRow, z.AsSpan(h * d), qRow, false);
            }

            Point(HookNames.Z(l), z, t, heads, d);
            string resultName = HookNames.Result(l);
            if (hooks.ContainsKey(resultName) || capture?.Invoke(resultName) == true)
            {
                var result = new float[t * heads * c];   // [T, H, C]
                for (int h = 0; h < heads; h++)
                {
                    // result_h [T, C] = z_h [T, D] · (W_O^h [C, D])ᵀ, W_O^h = columns h·D.. of W_O [C, H·D]
                    Gemm.Multiply(false, true, t, c, d, z.AsSpan(h * d), qRow, w.Output.Span[(h * d)..], qRow, result.AsSpan(h * c), heads * c, false);
                }

                Point(resultName, result, t, heads, c);
                SumHeads(result, Bias(w.OutputBias), t, heads, c, branch);
            }
            else
            {
                MatMul.Forward(z, w.Output.Span, Bias(w.OutputBias), t, c, qRow, branch);
            }

            Point(HookNames.AttentionOut(l), branch, t, c);
            Residual.Forward(x, branch, x);
            Point(HookNames.ResidMid(l), x, t, c);

            // x = x + mlp(norm₂(x))
            if (config.HasMlp)
            {
                Norm(x, w.MlpNorm!, w.MlpNormBias, t, normed, mean, rstd);
                Point(HookNames.MlpNormalized(l), normed, t, c);
                MatMul.Forward(normed, w.Up!.Span, Bias(w.UpBias), t, f, c, up);
                if (config.Family == ModelFamily.Llama)
                {
                    MatMul.Forward(normed, w.Gate!.Span, [], t, f, c, gate);
                    Point(HookNames.MlpPre(l), gate, t, f);
                    SwiGlu.Forward(gate, up, hidden);
                }
                else
                {
                    Point(HookNames.MlpPre(l), up, t, f);
                    Gelu.Forward(up, hidden);
                }

                Point(HookNames.MlpPost(l), hidden, t, f);
                MatMul.Forward(hidden, w.Down!.Span, Bias(w.DownBias), t, c, f, branch);
                Point(HookNames.MlpOut(l), branch, t, c);
                Residual.Forward(x, branch, x);
            }

            Point(HookNames.ResidPost(l), x, t, c);
        }

        Norm(x, p.FinalNorm, p.FinalNormBias, t, normed, mean, rstd);
        Point(HookNames.FinalNormalized, normed, t, c);
        var logits = new float[t * vocab];             // [T, V]
        MatMul.Forward(normed, p.OutputHead.Span, [], t, vocab, c, logits);
        return new HookedRun(ids.ToArray(), logits, cache, shapes, rstd);
    }

    // output [T, C] = Σ_h result[:, h, :] + bias
    private static void SumHeads(ReadOnlySpan<float> result, ReadOnlySpan<float> bias, int t, int heads, int c, Span<float> output)
    {
        for (int i = 0; i < t; i++)
        {
            var row = output.Slice(i * c, c);
            if (bias.IsEmpty)
            {
                row.Clear();
            }
            else
            {
                bias.CopyTo(row);
            }

            for (int h = 0; h < heads; h++)
            {
                Residual.Forward(row, result.Slice(((i * heads) + h) * c, c), row);
            }
        }
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

    private static ReadOnlySpan<float> Bias(Tensor? bias) => bias is null ? [] : bias.Span;
}
