using System.Buffers;
using HeadLens.Attention;
using HeadLens.Embeddings;
using HeadLens.Kernels;
using HeadLens.Tensors;

namespace HeadLens.Model;

// The one block, for every pass. Shapes: N = B·T rows (B sequences of T tokens), C channels, H query heads,
// G key/value heads, D head size, F MLP width, S keys visible to the pass (T, or the cache's slots when decoding).
//   forward:  x_mid = x + W_O·attention(rope(W_Q·norm₁(x)), rope(W_K·norm₁(x)), W_V·norm₁(x)) + b_O
//             x_out = x_mid + mlp(norm₂(x_mid))
// Hook points sit where TransformerLens puts them; with no hook context each costs one null check.
public sealed partial class Transformer
{
    /// <summary>What distinguishes one pass from another: its shape, the decode position and cache, and hooks.</summary>
    /// <param name="Lengths">Per sequence, how many leading tokens are real (the rest is padding); null: all.</param>
    private readonly record struct Pass(int Batch, int Tokens, int Position, KvCache? Cache, HookContext? Hooks, int[]? Lengths = null)
    {
        public int Rows => Batch * Tokens;
    }

    // x [N, C] = token embeddings (+ positions added to the stream) (+ token types); normalised in post-norm models.
    // scratch [N, C] and statistics [N] serve the embedding norm.
    private void Embed(ReadOnlySpan<int> ids, ReadOnlySpan<int> tokenTypes, Pass pass, Span<float> x, Span<float> scratch, Span<float> mean, Span<float> rstd)
    {
        int c = Config.Channels, n = pass.Rows;
        if (Parameters.TokenEmbedding.Dense is { } embeddings)
        {
            Embedding.Forward(ids, embeddings.Span, Config.VocabSize, c, x);
        }
        else
        {
            // A table kept in its file's type: only the looked-up rows are decoded.
            for (int i = 0; i < n; i++)
            {
                Parameters.TokenEmbedding.Row(ids[i], x.Slice(i * c, c));
            }
        }

        pass.Hooks?.Point(HookNames.Embed, x, n, c);
        AddPositions(pass, x);
        if (Parameters.TokenTypeEmbedding is { } types)
        {
            // Token type 0 (sentence A) where none is given.
            var table = types.Span;
            for (int i = 0; i < n; i++)
            {
                int type = tokenTypes.IsEmpty ? 0 : tokenTypes[i];
                Residual.Forward(x.Slice(i * c, c), table.Slice(type * c, c), x.Slice(i * c, c));
            }
        }

        if (Parameters.EmbeddingNorm is { } norm)
        {
            Norm(x, norm, Parameters.EmbeddingNormBias, n, scratch, mean, rstd);
            scratch[..(n * c)].CopyTo(x);
        }
    }

    private void AddPositions(Pass pass, Span<float> x)
    {
        int c = Config.Channels, t = pass.Tokens, n = pass.Rows;
        if (!HookNames.AddsPositions(Config))
        {
            return;
        }

        // Without hooks the positions are added in place; a hook sees them on their own first.
        var positions = pass.Hooks is null ? x : new float[n * c];
        for (int b = 0; b < pass.Batch; b++)
        {
            var sequence = positions.Slice(b * t * c, t * c);
            if (Config.Positions == PositionKind.Learned)
            {
                Positions.AddLearned(Parameters.PositionEmbedding!.Span, Config.ContextLength, c, pass.Position, t, sequence);
            }
            else
            {
                Positions.AddSinusoidal(c, pass.Position, t, sequence);
            }
        }

        if (pass.Hooks is { } hooks)
        {
            hooks.Point(HookNames.PositionEmbed, positions, n, c);
            Residual.Forward(x, positions, x);
        }
    }

    // x [N, C] enters layer l, output [N, C] leaves it; output may be x itself (x is last read before the MLP).
    //   pre-norm:  x_mid = x + attention(norm₁(x));   x_out = x_mid + mlp(norm₂(x_mid))
    //   post-norm: x_mid = norm₁(x + attention(x));   x_out = norm₂(x_mid + mlp(x_mid))
    private void BlockForward(int l, LayerActivations a, Span<float> x, Span<float> output, Pass pass)
    {
        var w = Parameters.Layer(l);
        var hooks = pass.Hooks;
        int n = pass.Rows, c = Config.Channels;
        bool pre = Config.NormPlacement == NormPlacement.Pre;
        hooks?.Point(HookNames.ResidPre(l), x, n, c);

        if (pre)
        {
            Norm(x, w.AttentionNorm, w.AttentionNormBias, n, a.AttentionNormed, a.AttentionNormMean, a.AttentionNormRstd);
            hooks?.Point(HookNames.AttentionNormalized(l), a.AttentionNormed, n, c);
        }

        Attend(l, w, a, pre ? a.AttentionNormed : x, pass);
        hooks?.Point(HookNames.AttentionOut(l), a.Middle, n, c);
        Residual.Forward(x, a.Middle, a.Middle);
        if (!pre)
        {
            Norm(a.Middle, w.AttentionNorm, w.AttentionNormBias, n, a.AttentionNormed, a.AttentionNormMean, a.AttentionNormRstd);
            a.AttentionNormed.CopyTo(a.Middle);
            hooks?.Point(HookNames.AttentionNormalized(l), a.Middle, n, c);
        }

        hooks?.Point(HookNames.ResidMid(l), a.Middle, n, c);
        if (!Config.HasMlp)
        {
            a.Middle.CopyTo(output);
            hooks?.Point(HookNames.ResidPost(l), output, n, c);
            return;
        }

        if (pre)
        {
            Norm(a.Middle, w.MlpNorm!, w.MlpNormBias, n, a.MlpNormed, a.MlpNormMean, a.MlpNormRstd);
            hooks?.Point(HookNames.MlpNormalized(l), a.MlpNormed, n, c);
        }

        Mlp(l, w, a, pre ? a.MlpNormed : a.Middle, pass, output);
        hooks?.Point(HookNames.MlpOut(l), output, n, c);
        Residual.Forward(a.Middle, output, output);
        if (!pre)
        {
            Norm(output, w.MlpNorm!, w.MlpNormBias, n, a.MlpNormed, a.MlpNormMean, a.MlpNormRstd);
            a.MlpNormed.CopyTo(output);
            hooks?.Point(HookNames.MlpNormalized(l), output, n, c);
        }

        hooks?.Point(HookNames.ResidPost(l), output, n, c);
    }

    // a.Middle [N, C] = W_O · heads + b_O, heads = softmax(q·kᵀ·scale + mask) · v per sequence (or linear attention's
    // normalised φ(q)·φ(k) in place of the softmax); input [N, C].
    private void Attend(int l, LayerWeights w, LayerActivations a, ReadOnlySpan<float> input, Pass pass)
    {
        var hooks = pass.Hooks;
        int n = pass.Rows, t = pass.Tokens, c = Config.Channels, heads = Config.Heads, kvHeads = Config.KvHeads, d = Config.HeadDim;
        int qRow = heads * d, kvRow = kvHeads * d;
        var q = a.Query;
        var k = a.Key;
        var v = a.Value;
        bool decoding = pass.Cache is not null;
        LinearWeight.ForwardShared(input, n, decoding, w.Query, Bias(w.QueryBias), q, w.Key, Bias(w.KeyBias), k, w.Value, Bias(w.ValueBias), v);
        hooks?.Point(HookNames.Q(l), q, n, heads, d);
        hooks?.Point(HookNames.K(l), k, n, kvHeads, d);
        hooks?.Point(HookNames.V(l), v, n, kvHeads, d);
        if (Config.QkNorm)
        {
            // q, k ← RMSNorm per head over D: rows of D channels, N·H and N·G of them (pre-norm values kept for backward).
            q[..(n * qRow)].CopyTo(a.QueryRaw);
            k[..(n * kvRow)].CopyTo(a.KeyRaw);
            RmsNorm.Forward(a.QueryRaw, w.QueryNorm!.Span, n * heads, d, Config.NormEpsilon, q, a.QueryRstd);
            RmsNorm.Forward(a.KeyRaw, w.KeyNorm!.Span, n * kvHeads, d, Config.NormEpsilon, k, a.KeyRstd);
        }

        bool rotary = Config.Positions == PositionKind.Rotary;
        // The analysis run computes attention the reference way, so what a hook reads or replaces is what flows on and
        // every analysis run of a text agrees to the last bit; a batched intervention sweep runs the fused kernel
        // where nothing wants the scores or the pattern (~10% of a GPT-2 patching sweep at T = 64 was the reference
        // scores and softmax).
        bool reference = hooks is not null
            && (!hooks.FusedAttention || hooks.Wants(HookNames.Scores(l)) || hooks.Wants(HookNames.Pattern(l)));
        // Training and unpadded batches: every sequence in one fused call, so the threads split sequences × heads ×
        // query tiles instead of forking and joining once per sequence (each sequence computes the same bits).
        bool wholeBatch = !reference && !decoding && Config.AttentionForm == AttentionForm.Softmax
            && (pass.Lengths is null || pass.Lengths.All(length => length == t));
        for (int b = 0; b < pass.Batch; b++)
        {
            var qb = q.Slice(b * t * qRow, t * qRow);
            var kb = k.Slice(b * t * kvRow, t * kvRow);
            var vb = v.Slice(b * t * kvRow, t * kvRow);
            if (rotary)
            {
                Rope.Forward(qb, t, heads, d, pass.Position, Config.Rope);
                Rope.Forward(kb, t, kvHeads, d, pass.Position, Config.Rope);
            }

            if (rotary && hooks is not null)
            {
                hooks.Point(HookNames.RotQ(l), qb, t, heads, d);
                hooks.Point(HookNames.RotK(l), kb, t, kvHeads, d);
            }

            // Keys: this sequence's own, or — when decoding — everything the cache holds after appending them.
            ReadOnlySpan<float> keys = kb, values = vb;
            int slots = t;
            if (pass.Cache is { } cache)
            {
                cache.Append(l, kb, vb, t);
                keys = cache.Keys(l);
                values = cache.Values(l);
                slots = keys.Length / kvRow;
            }

            var headsOut = a.Heads.Slice(b * t * qRow, t * qRow);
            if (wholeBatch)
            {
                continue;
            }

            if (reference)
            {
                ReferenceAttention(l, t, slots, qb, keys, values, headsOut, hooks!);
            }
            else if (pass.Lengths is { } lengths && lengths[b] < t)
            {
                // A padded sequence: its real tokens attend among themselves; the padding rows' outputs are zero.
                int real = lengths[b];
                FastAttention(l, real, real, qb[..(real * qRow)], kb[..(real * kvRow)], vb[..(real * kvRow)], headsOut[..(real * qRow)],
                    a.LogSumExp.Slice(b * heads * t, heads * real), cache: null);
                headsOut[(real * qRow)..].Clear();
            }
            else
            {
                FastAttention(l, t, slots, qb, keys, values, headsOut, a.LogSumExp.Slice(b * heads * t, heads * t), pass.Cache);
            }
        }

        if (wholeBatch)
        {
            ScaledDotProductAttention.Forward(AttentionOptions, pass.Batch, t, t, 0, q[..(n * qRow)], k[..(n * kvRow)], v[..(n * kvRow)],
                a.Heads[..(n * qRow)], a.LogSumExp[..(pass.Batch * heads * t)]);
        }

        hooks?.Point(HookNames.Z(l), a.Heads, n, heads, d);
        string result = HookNames.Result(l);
        if (hooks is not null && hooks.Wants(result))
        {
            OutputPerHead(w, a.Heads, n, a.Middle, hooks, result);
        }
        else
        {
            w.Output.Forward(a.Heads, Bias(w.OutputBias), n, a.Middle, decoding);
        }
    }

    // z [T, H·D] from q [T, H·D] against S keys and values [S, G·D], the queries being the last T positions (when
    // decoding, the cache's keys and values after appending this step's); the softmax form also leaves each row's
    // log-sum-exp [H, T] for the backward.
    private void FastAttention(int l, int t, int s, ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, Span<float> z, Span<float> logSumExp,
        KvCache? cache)
    {
        int heads = Config.Heads, d = Config.HeadDim, row = heads * d;
        if (Config.AttentionForm == AttentionForm.Softmax)
        {
            ScaledDotProductAttention.Forward(AttentionOptions, t, s, s - t, q, keys, values, z, logSumExp);
        }
        else if (cache is { Window: 0 })
        {
            // The recurrent form: the new tokens continue from the running sums of the earlier ones (rebuilt from the
            // cached keys and values if they sum any other count), then the sums include them.
            int earlier = s - t;
            var (sums, summed) = cache.RunningSums(l, LinearAttention.StateFloats(heads, d, d));
            if (summed != earlier)
            {
                Array.Clear(sums);
                LinearAttention.AddToState(heads, d, d, earlier, keys, values, sums);
            }

            LinearAttention.Forward(heads, d, d, t, q, keys[(earlier * row)..], values[(earlier * row)..], z, sums);
            cache.SetRunningSums(l, s);
        }
        else if (s == t)
        {
            LinearAttention.Forward(heads, d, d, t, q, keys, values, z);
        }
        else
        {
            // New tokens against a windowed cache (which has evicted tokens that running sums cannot take out): their
            // rows of the pattern, then z_h = pattern_h · v_h.
            var pattern = ArrayPool<float>.Shared.Rent(checked(heads * t * s));   // [H, T, S]
            try
            {
                LinearAttention.Patterns(heads, d, t, s, s - t, q, keys, AllHeads, pattern);
                for (int h = 0; h < heads; h++)
                {
                    Gemm.Multiply(false, false, t, d, s, pattern.AsSpan(h * t * s, t * s), s, values[(h * d)..], row, z[(h * d)..], row, false);
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(pattern);
            }
        }
    }

    private int[] AllHeads => allHeads ??= [.. Enumerable.Range(0, Config.Heads)];

    private int[]? allHeads;

    // The reference form's scores [heads.Length, T, S]: scale·q·k (+ bias, −∞ where hidden) before a softmax, or linear
    // attention's affinities φ(q)·φ(k) (0 where hidden); and the pattern from them, row by row.
    private void ReferenceScores(int t, int s, ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<int> heads, Span<float> scores)
    {
        if (Config.AttentionForm == AttentionForm.Softmax)
        {
            ScaledDotProductAttention.Scores(AttentionOptions, t, s, s - t, q, keys, heads, scores);
        }
        else
        {
            LinearAttention.Affinities(Config.Heads, Config.HeadDim, t, s, s - t, q, keys, heads, scores);
        }
    }

    private void ReferencePattern(ReadOnlySpan<float> scores, int rows, int s, Span<float> pattern)
    {
        if (Config.AttentionForm == AttentionForm.Softmax)
        {
            Softmax.ForwardReference(scores, rows, s, pattern);
        }
        else
        {
            LinearAttention.Normalise(scores, rows, s, pattern);
        }
    }

    /// <summary>
    /// The attention pattern [heads.Length, Tq, Tk] of the selected heads from q [Tq, H·D] (as the layer sees them:
    /// after QK-norm and RoPE) and k [Tk, G·D]; query i sits at position queryOffset + i. The same numbers as the
    /// pattern hook.
    /// </summary>
    public void Patterns(int queryLength, int keyLength, int queryOffset, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<int> heads, Span<float> patterns)
    {
        if (Config.AttentionForm == AttentionForm.Softmax)
        {
            ScaledDotProductAttention.Patterns(AttentionOptions, queryLength, keyLength, queryOffset, q, k, heads, patterns);
        }
        else
        {
            LinearAttention.Patterns(Config.Heads, Config.HeadDim, queryLength, keyLength, queryOffset, q, k, heads, patterns);
        }
    }

    // For looking inside: scores and pattern [H, T, S] materialised (and hooked), then z_h = pattern_h · v_g. The
    // pattern is the same reference softmax as ScaledDotProductAttention.Patterns, to the last bit. When no hook reads
    // or replaces the scores or the pattern, one head at a time: the same arithmetic, to the last bit, in [T, S] of
    // memory instead of [H, T, S] (the viewer captures only q and k, at up to thousands of tokens).
    private void ReferenceAttention(int l, int t, int s, ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values,
        Span<float> z, HookContext hooks)
    {
        int heads = Config.Heads, d = Config.HeadDim, qRow = heads * d, kvRow = Config.KvHeads * d;
        if (!hooks.Wants(HookNames.Scores(l)) && !hooks.Wants(HookNames.Pattern(l)))
        {
            var headScores = hooks.Scratch(0, t * s);   // [T, S]
            var headPattern = hooks.Scratch(1, t * s);  // [T, S]
            for (int h = 0; h < heads; h++)
            {
                ReferenceScores(t, s, q, keys, [h], headScores);
                ReferencePattern(headScores, t, s, headPattern);
                int g = h / AttentionOptions.GroupSize;
                Gemm.Multiply(false, false, t, d, s, headPattern, s, values[(g * d)..], kvRow, z[(h * d)..], qRow, false);
            }

            return;
        }

        var scores = hooks.Scratch(0, checked(heads * t * s));   // [H, T, S]
        var pattern = hooks.Scratch(1, heads * t * s);           // [H, T, S]
        ReferenceScores(t, s, q, keys, AllHeads, scores);
        hooks.Point(HookNames.Scores(l), scores, heads, t, s);
        ReferencePattern(scores, heads * t, s, pattern);
        hooks.Point(HookNames.Pattern(l), pattern, heads, t, s);
        for (int h = 0; h < heads; h++)
        {
            // z_h [T, D] = pattern_h [T, S] · v_g [S, D]   (v_g read at stride G·D; z_h written at stride H·D)
            int g = h / AttentionOptions.GroupSize;
            Gemm.Multiply(false, false, t, d, s, pattern.Slice(h * t * s, t * s), s, values[(g * d)..], kvRow, z[(h * d)..], qRow, false);
        }
    }

    // output [N, C] = Σ_h result_h + b_O with result_h [N, C] = z_h [N, D] · (W_O^h [C, D])ᵀ, hooked as [N, H, C].
    private void OutputPerHead(LayerWeights w, ReadOnlySpan<float> z, int n, Span<float> output, HookContext hooks, string name)
    {
        int heads = Config.Heads, d = Config.HeadDim, c = Config.Channels, qRow = heads * d;
        var result = new float[n * heads * c];         // [N, H, C]
        var projection = w.Output.ToFloat32();         // [C, H·D]
        for (int h = 0; h < heads; h++)
        {
            // W_O^h = columns h·D .. h·D+D−1 of W_O [C, H·D]
            Gemm.Multiply(false, true, n, c, d, z[(h * d)..], qRow, projection[(h * d)..], qRow, result.AsSpan(h * c), heads * c, false);
        }

        hooks.Point(name, result, n, heads, c);
        var bias = Bias(w.OutputBias);
        for (int i = 0; i < n; i++)
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
                Residual.Forward(row, result.AsSpan(((i * heads) + h) * c, c), row);
            }
        }
    }

    // output [N, C] = down(act(...)) — GELU: act = gelu(up(x)); SwiGLU: act = silu(gate(x))·up(x).
    private void Mlp(int l, LayerWeights w, LayerActivations a, ReadOnlySpan<float> input, Pass pass, Span<float> output)
    {
        int n = pass.Rows;
        var hooks = pass.Hooks;
        bool decoding = pass.Cache is not null;
        int c = Config.Channels, f = Config.HiddenChannels;
        var up = a.Up[..(n * f)];
        var hidden = a.Hidden[..(n * f)];
        var gate = Config.Mlp == MlpKind.SwiGlu ? a.Gate[..(n * f)] : [];
        if (w.Gate is { } gateWeight)
        {
            LinearWeight.ForwardShared(input, n, decoding, w.Up!, Bias(w.UpBias), up, gateWeight, [], gate);
        }
        else
        {
            w.Up!.Forward(input, Bias(w.UpBias), n, up, decoding);
        }

        switch (Config.Mlp)
        {
            case MlpKind.SwiGlu:
                hooks?.Point(HookNames.MlpPre(l), gate, n, f);
                SwiGlu.Forward(gate, up, hidden);
                break;
            case MlpKind.GeluTanh:
                hooks?.Point(HookNames.MlpPre(l), up, n, f);
                Gelu.Forward(up, hidden);
                break;
            case MlpKind.GeluErf:
                hooks?.Point(HookNames.MlpPre(l), up, n, f);
                GeluErf.Forward(up, hidden);
                break;
            default:
                throw new InvalidOperationException($"MLP kind {Config.Mlp} has no forward");
        }

        hooks?.Point(HookNames.MlpPost(l), hidden, n, f);
        w.Down!.Forward(hidden, Bias(w.DownBias), n, output, decoding);
    }

    // a − b, for an activation attribution patching is shown that the pass keeps only as a difference of two others.
    private static float[] Difference(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        var result = new float[a.Length];
        System.Numerics.Tensors.TensorPrimitives.Subtract(a, b, result);
        return result;
    }

    // A projection's weight gradient, or none (an empty span: MatMul.Backward skips it) when a backward pass wants only
    // the activations' gradients (BackwardFrom).
    private Span<float> WeightGrad(LinearWeight gradient) => activationGradientsOnly ? [] : gradient.Span;

    // dx holds d(x_out) on entry and d(x) on exit. Parameter gradients accumulate; activation gradients overwrite.
    // accumulate false: the projection matrices' gradients are overwritten (they were zero: see ZeroGradients).
    private void BlockBackward(int l, Activations activations, int batch, int tokens, Span<float> dx, bool accumulate)
    {
        var w = Parameters.Layer(l);
        var g = Gradients.Layer(l);
        var a = activations.Layer(l);
        int n = batch * tokens, c = Config.Channels, f = Config.HiddenChannels;
        int heads = Config.Heads, qRow = heads * Config.HeadDim, kvRow = Config.KvHeads * Config.HeadDim;
        var dNormed = activations.Scratch("normed");
        if (mlpGradientSeen is { } seeMlp && Config.HasMlp)
        {
            // The MLP's output is x_out − x_mid; its gradient is x_out's.
            seeMlp(l, Difference(activations.Residual(l + 1), a.Middle), dx);
        }

        if (Config.HasMlp)
        {
            // x_out = x_mid + mlp(norm₂(x_mid)): dx flows to x_mid unchanged and through the MLP.
            var dHidden = activations.Scratch("hidden")[..(n * f)];
            var dUp = activations.Scratch("up")[..(n * f)];
            MatMul.Backward(dx, a.Hidden, w.Down!.Span, n, c, f, dHidden, WeightGrad(g.Down!), Bias(g.DownBias), accumulate);
            switch (Config.Mlp)
            {
                case MlpKind.SwiGlu:
                    var dGate = activations.Scratch("gate")[..(n * f)];
                    SwiGlu.Backward(a.Gate, a.Up, dHidden, dGate, dUp);
                    MatMul.Backward(dGate, a.MlpNormed, w.Gate!.Span, n, f, c, dNormed, WeightGrad(g.Gate!), [], accumulate);
                    MatMul.Backward(dUp, a.MlpNormed, w.Up!.Span, n, f, c, dNormed, WeightGrad(g.Up!), Bias(g.UpBias), accumulate, accumulateInputGrad: true);
                    break;
                case MlpKind.GeluTanh:
                    Gelu.Backward(a.Up, dHidden, dUp);
                    MatMul.Backward(dUp, a.MlpNormed, w.Up!.Span, n, f, c, dNormed, WeightGrad(g.Up!), Bias(g.UpBias), accumulate);
                    break;
                case MlpKind.GeluErf:
                    GeluErf.Backward(a.Up, dHidden, dUp);
                    MatMul.Backward(dUp, a.MlpNormed, w.Up!.Span, n, f, c, dNormed, WeightGrad(g.Up!), Bias(g.UpBias), accumulate);
                    break;
                default:
                    throw new InvalidOperationException($"MLP kind {Config.Mlp} has no backward");
            }

            NormBackward(dNormed, a.Middle, w.MlpNorm!, g.MlpNorm!, g.MlpNormBias, a.MlpNormMean, a.MlpNormRstd, n, dx);
        }

        // x_mid = x + attention(norm₁(x))
        var dHeads = activations.Scratch("heads");
        MatMul.Backward(dx, a.Heads, w.Output.Span, n, c, qRow, dHeads, WeightGrad(g.Output), Bias(g.OutputBias), accumulate);
        headsGradientSeen?.Invoke(l, a.Heads, dHeads);
        if (attentionGradientSeen is { } seeAttention)
        {
            // Here dx is x_mid's gradient, which is the attention output's (x_mid = x + attention output).
            seeAttention(l, Difference(a.Middle, activations.Residual(l)), dx);
        }
        var dq = activations.Scratch("q");
        var dk = activations.Scratch("k");
        var dv = activations.Scratch("v");
        if (Config.AttentionForm == AttentionForm.Softmax)
        {
            // All sequences in one call (one fork–join; the threads split sequences × kv heads).
            ScaledDotProductAttention.Backward(AttentionOptions, batch, tokens, tokens, 0,
                a.Query[..(n * qRow)], a.Key[..(n * kvRow)], a.Value[..(n * kvRow)], a.Heads[..(n * qRow)], dHeads[..(n * qRow)],
                a.LogSumExp[..(batch * heads * tokens)], dq[..(n * qRow)], dk[..(n * kvRow)], dv[..(n * kvRow)]);
        }
        else
        {
            for (int b = 0; b < batch; b++)
            {
                int rows = tokens * qRow;
                LinearAttention.Backward(heads, Config.HeadDim, Config.HeadDim, tokens,
                    a.Query.Slice(b * rows, rows), a.Key.Slice(b * rows, rows), a.Value.Slice(b * rows, rows), dHeads.Slice(b * rows, rows),
                    dq.Slice(b * rows, rows), dk.Slice(b * rows, rows), dv.Slice(b * rows, rows));
            }
        }
        if (Config.Positions == PositionKind.Rotary)
        {
            for (int b = 0; b < batch; b++)
            {
                Rope.Backward(dq.Slice(b * tokens * qRow, tokens * qRow), tokens, heads, Config.HeadDim, 0, Config.Rope);
                Rope.Backward(dk.Slice(b * tokens * kvRow, tokens * kvRow), tokens, Config.KvHeads, Config.HeadDim, 0, Config.Rope);
            }
        }

        if (Config.QkNorm)
        {
            // Through the per-head RMSNorms back to the raw projections (norm input gradients accumulate: cleared first).
            var dqRaw = activations.Scratch("q_raw");
            var dkRaw = activations.Scratch("k_raw");
            dqRaw.Clear();
            dkRaw.Clear();
            RmsNorm.Backward(dq, a.QueryRaw, w.QueryNorm!.Span, a.QueryRstd, n * heads, Config.HeadDim, dqRaw, g.QueryNorm!.Span);
            RmsNorm.Backward(dk, a.KeyRaw, w.KeyNorm!.Span, a.KeyRstd, n * Config.KvHeads, Config.HeadDim, dkRaw, g.KeyNorm!.Span);
            dq = dqRaw;
            dk = dkRaw;
        }

        // d norm₁(x) = dq·W_Q + dk·W_K + dv·W_V: the K and V products add their shares into it.
        MatMul.Backward(dq, a.AttentionNormed, w.Query.Span, n, qRow, c, dNormed, WeightGrad(g.Query), Bias(g.QueryBias), accumulate);
        MatMul.Backward(dk, a.AttentionNormed, w.Key.Span, n, kvRow, c, dNormed, WeightGrad(g.Key), Bias(g.KeyBias), accumulate, accumulateInputGrad: true);
        MatMul.Backward(dv, a.AttentionNormed, w.Value.Span, n, kvRow, c, dNormed, WeightGrad(g.Value), Bias(g.ValueBias), accumulate, accumulateInputGrad: true);
        NormBackward(dNormed, activations.Residual(l), w.AttentionNorm, g.AttentionNorm, g.AttentionNormBias,
            a.AttentionNormMean, a.AttentionNormRstd, n, dx);
    }

    // Pre-norm models normalise the final stream; post-norm blocks already end normalised (y = x).
    private void FinalNorm(ReadOnlySpan<float> x, int rows, Span<float> y, Span<float> mean, Span<float> rstd)
    {
        if (Parameters.HasFinalNorm)
        {
            Norm(x, Parameters.FinalNorm, Parameters.FinalNormBias, rows, y, mean, rstd);
        }
        else
        {
            x[..(rows * Config.Channels)].CopyTo(y);
        }
    }

    private void Norm(ReadOnlySpan<float> x, Tensor weight, Tensor? bias, int rows, Span<float> y, Span<float> mean, Span<float> rstd)
    {
        switch (Config.Norm)
        {
            case NormKind.LayerNorm:
                LayerNorm.Forward(x, weight.Span, bias!.Span, rows, Config.Channels, Config.NormEpsilon, y, mean, rstd);
                break;
            case NormKind.RmsNorm:
                RmsNorm.Forward(x, weight.Span, rows, Config.Channels, Config.NormEpsilon, y, rstd);
                break;
        }
    }

    private void NormBackward(ReadOnlySpan<float> yGrad, ReadOnlySpan<float> x, Tensor weight, Tensor weightGrad, Tensor? biasGrad,
        ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd, int rows, Span<float> xGrad)
    {
        switch (Config.Norm)
        {
            case NormKind.LayerNorm:
                LayerNorm.Backward(yGrad, x, weight.Span, mean, rstd, rows, Config.Channels, xGrad, weightGrad.Span, biasGrad!.Span);
                break;
            case NormKind.RmsNorm:
                RmsNorm.Backward(yGrad, x, weight.Span, rstd, rows, Config.Channels, xGrad, weightGrad.Span);
                break;
        }
    }

    private static Span<float> Bias(Tensor? bias) => bias is null ? [] : bias.Span;
}
