using HeadLens.Kernels;
namespace HeadLens.Attention;

// Scaled dot-product attention, per query head h (key/value head g = h / group):
//   S[i, j] = scale · q[i, h, :]·k[j, g, :] + bias_h(i, j)       (−∞ where the mask hides key j from query i)
//   P[i, :] = softmax(S[i, :])                                     (a row with nothing visible is all zeros)
//   out[i, h, :] = Σ_j P[i, j] · v[j, g, :]
//   logSumExp[h, i] = log Σ_j exp(S[i, j])                         (saved for the backward; −∞ for empty rows)
// Backward (activation gradients, overwritten):
//   dV[j] = Σ_i P[i, j]·dO[i];  dP[i, j] = dO[i]·v[j];  dS[i, j] = P[i, j]·(dP[i, j] − Σ_j' P[i, j']·dP[i, j'])
//   dQ[i] = scale·Σ_j dS[i, j]·k[j];  dK[j] = scale·Σ_i dS[i, j]·q[i]    (summed over the heads of a group)
// Letters: T = tokens (Tq queries, Tk keys), H = heads, G = key/value heads, D = head size (Dqk, Dv).
// Implementations: ForwardReference/BackwardReference (this file: materialise S and P per head, the contract);
// Forward/Backward (FlashAttention.cs: tiled, online softmax, never materialises T×T).
public static partial class ScaledDotProductAttention
{
    public static void ForwardReference(
        AttentionOptions options, int queryLength, int keyLength, int queryOffset,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> output, Span<float> logSumExp)
    {
        options.Validate(queryLength, keyLength, queryOffset);
        CheckSizes(options, queryLength, keyLength, q, k, v, output, logSumExp);
        int heads = options.Heads, dv = options.HeadDimV;
        var probabilities = new float[queryLength * keyLength]; // [Tq, Tk] for one head at a time
        for (int h = 0; h < heads; h++)
        {
            int g = h / options.GroupSize;
            ScoresOfHead(options, queryLength, keyLength, queryOffset, q, k, h, probabilities);
            for (int i = 0; i < queryLength; i++)
            {
                var row = probabilities.AsSpan(i * keyLength, keyLength);
                logSumExp[h * queryLength + i] = Softmax.ReferenceRowInPlace(row);
                var o = output.Slice((i * heads + h) * dv, dv);
                o.Clear();
                for (int j = 0; j < keyLength; j++)
                {
                    float p = row[j];
                    if (p == 0f)
                    {
                        continue;
                    }

                    var vj = v.Slice((j * options.KvHeads + g) * dv, dv);
                    for (int d = 0; d < dv; d++)
                    {
                        o[d] += p * vj[d];
                    }
                }
            }
        }
    }

    /// <summary>The contract for the gradients; recomputes P from q and k (output and logSumExp are not needed).</summary>
    public static void BackwardReference(
        AttentionOptions options, int queryLength, int keyLength, int queryOffset,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> output, ReadOnlySpan<float> outputGrad, ReadOnlySpan<float> logSumExp,
        Span<float> qGrad, Span<float> kGrad, Span<float> vGrad)
    {
        _ = output;
        _ = logSumExp;
        options.Validate(queryLength, keyLength, queryOffset);
        int heads = options.Heads, kvHeads = options.KvHeads, dqk = options.HeadDimQK, dv = options.HeadDimV;
        float scale = options.EffectiveScale;
        qGrad[..(queryLength * heads * dqk)].Clear();
        kGrad[..(keyLength * kvHeads * dqk)].Clear();
        vGrad[..(keyLength * kvHeads * dv)].Clear();
        var probabilities = new float[queryLength * keyLength];
        var scoreGrad = new float[keyLength];
        for (int h = 0; h < heads; h++)
        {
            int g = h / options.GroupSize;
            ScoresOfHead(options, queryLength, keyLength, queryOffset, q, k, h, probabilities);
            for (int i = 0; i < queryLength; i++)
            {
                var p = probabilities.AsSpan(i * keyLength, keyLength);
                Softmax.ReferenceRowInPlace(p);
                var dO = outputGrad.Slice((i * heads + h) * dv, dv);
                float rowDot = 0f;
                for (int j = 0; j < keyLength; j++)
                {
                    float dp = Dot(dO, v.Slice((j * kvHeads + g) * dv, dv));
                    scoreGrad[j] = dp;
                    rowDot += p[j] * dp;
                }

                var qi = q.Slice((i * heads + h) * dqk, dqk);
                var dqi = qGrad.Slice((i * heads + h) * dqk, dqk);
                for (int j = 0; j < keyLength; j++)
                {
                    if (p[j] == 0f)
                    {
                        continue;
                    }

                    var dvj = vGrad.Slice((j * kvHeads + g) * dv, dv);
                    for (int d = 0; d < dv; d++)
                    {
                        dvj[d] += p[j] * dO[d];
                    }

                    float ds = p[j] * (scoreGrad[j] - rowDot) * scale;
                    var kj = k.Slice((j * kvHeads + g) * dqk, dqk);
                    var dkj = kGrad.Slice((j * kvHeads + g) * dqk, dqk);
                    for (int d = 0; d < dqk; d++)
                    {
                        dqi[d] += ds * kj[d];
                        dkj[d] += ds * qi[d];
                    }
                }
            }
        }
    }

    /// <summary>
    /// The post-softmax pattern [heads.Length, Tq, Tk] of the heads asked for — probabilities, exactly 0 where masked.
    /// Recomputed from q and k, so asking for patterns never changes what a forward pass produced.
    /// </summary>
    public static void Patterns(
        AttentionOptions options, int queryLength, int keyLength, int queryOffset,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<int> heads, Span<float> patterns)
    {
        Scores(options, queryLength, keyLength, queryOffset, q, k, heads, patterns);
        for (int row = 0; row < heads.Length * queryLength; row++)
        {
            Softmax.ReferenceRowInPlace(patterns.Slice(row * keyLength, keyLength));
        }
    }

    /// <summary>The pre-softmax scores [heads.Length, Tq, Tk] (scale·q·k + bias; −∞ where masked).</summary>
    public static void Scores(
        AttentionOptions options, int queryLength, int keyLength, int queryOffset,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<int> heads, Span<float> scores)
    {
        options.Validate(queryLength, keyLength, queryOffset);
        int size = queryLength * keyLength;
        if (scores.Length < heads.Length * size)
        {
            throw new ArgumentException($"attention: pattern buffer holds {scores.Length} floats, needs {heads.Length * size}");
        }

        for (int index = 0; index < heads.Length; index++)
        {
            int h = heads[index];
            if ((uint)h >= (uint)options.Heads)
            {
                throw new ArgumentOutOfRangeException(nameof(heads), $"head {h} of {options.Heads}");
            }

            ScoresOfHead(options, queryLength, keyLength, queryOffset, q, k, h, scores.Slice(index * size, size));
        }
    }

    // S [Tq, Tk] of head h, −∞ where masked.
    private static void ScoresOfHead(
        AttentionOptions options, int queryLength, int keyLength, int queryOffset,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, int h, Span<float> scores)
    {
        int g = h / options.GroupSize, dqk = options.HeadDimQK;
        float scale = options.EffectiveScale;
        for (int i = 0; i < queryLength; i++)
        {
            int queryPosition = queryOffset + i;
            var qi = q.Slice((i * options.Heads + h) * dqk, dqk);
            for (int j = 0; j < keyLength; j++)
            {
                scores[i * keyLength + j] = options.IsVisible(queryPosition, j)
                    ? scale * Dot(qi, k.Slice((j * options.KvHeads + g) * dqk, dqk)) + options.Bias(h, queryPosition, j)
                    : float.NegativeInfinity;
            }
        }
    }

    private static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        float sum = 0f;
        for (int d = 0; d < a.Length; d++)
        {
            sum += a[d] * b[d];
        }

        return sum;
    }

    private static void CheckSizes(
        AttentionOptions options, int queryLength, int keyLength,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> output, ReadOnlySpan<float> logSumExp) =>
        CheckSizes(options, 1, queryLength, keyLength, q, k, v, output, logSumExp);

    private static void CheckSizes(
        AttentionOptions options, int batch, int queryLength, int keyLength,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> output, ReadOnlySpan<float> logSumExp)
    {
        Need("q", q.Length, (long)batch * queryLength * options.Heads * options.HeadDimQK);
        Need("k", k.Length, (long)batch * keyLength * options.KvHeads * options.HeadDimQK);
        Need("v", v.Length, (long)batch * keyLength * options.KvHeads * options.HeadDimV);
        Need("output", output.Length, (long)batch * queryLength * options.Heads * options.HeadDimV);
        Need("logSumExp", logSumExp.Length, (long)batch * queryLength * options.Heads);
    }

    private static void Need(string name, int actual, long required)
    {
        if (actual < required)
        {
            throw new ArgumentException($"attention: {name} holds {actual} floats, needs {required}");
        }
    }
}
