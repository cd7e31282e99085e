using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using HeadLens.Kernels;

namespace HeadLens.Attention;

// Causal linear attention (Katharopoulos et al. 2020) with feature map φ(x) = elu(x) + 1 (positive, so the
// normaliser never vanishes). Per head, over tokens i:
//   out_i = φ(q_i)ᵀ·S_i / (φ(q_i)·z_i),   S_i = Σ_{j≤i} φ(k_j)·v_jᵀ  [D, Dv],   z_i = Σ_{j≤i} φ(k_j)  [D]
// It is a different function from softmax attention (the kernel φ(q)·φ(k) replaces exp(q·k)), so it has its own
// reference: the quadratic form out_i = Σ_{j≤i} a_ij·v_j / Σ_{j≤i} a_ij with a_ij = φ(q_i)·φ(k_j).
// Backward (from the quadratic form, with n_i = Σ_j a_ij):
//   dv_j = Σ_{i≥j} (a_ij/n_i)·dout_i;  da_ij = dout_i·(v_j − out_i)/n_i;
//   dφq_i = Σ_j da_ij·φ(k_j);  dφk_j = Σ_i da_ij·φ(q_i);  dx = dφx·φ'(x), φ'(x) = 1 for x > 0, eˣ otherwise.
// Layouts: q, k [T, H, D], v and out [T, H, Dv] (no GQA). Implementations: ForwardReference (quadratic),
// Forward (prefix-sum form: O(T·D·Dv) time and O(D·Dv) state per head, heads on the threads), Backward (quadratic;
// T ≤ a few thousand).
public static class LinearAttention
{
    public static void ForwardReference(int heads, int dqk, int dv, int tokens, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> output)
    {
        var phiQ = FeatureMap(q);
        var phiK = FeatureMap(k);
        for (int h = 0; h < heads; h++)
        {
            for (int i = 0; i < tokens; i++)
            {
                var o = output.Slice((i * heads + h) * dv, dv);
                o.Clear();
                float normaliser = 0f;
                for (int j = 0; j <= i; j++)
                {
                    float a = Dot(phiQ.AsSpan((i * heads + h) * dqk, dqk), phiK.AsSpan((j * heads + h) * dqk, dqk));
                    normaliser += a;
                    var vj = v.Slice((j * heads + h) * dv, dv);
                    for (int d = 0; d < dv; d++)
                    {
                        o[d] += a * vj[d];
                    }
                }

                for (int d = 0; d < dv; d++)
                {
                    o[d] /= normaliser;
                }
            }
        }
    }

    /// <summary>
    /// The prefix-sum form, heads shared between the threads. Per token one pass over the head's state S [D, Dv]: each
    /// row takes its φ(k)·v term and at once adds φ(q)_d times itself into the output (which so includes the token itself).
    /// </summary>
    public static unsafe void Forward(int heads, int dqk, int dv, int tokens, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> output)
    {
        long keys = (long)tokens * heads * dqk, values = (long)tokens * heads * dv;
        if (q.Length < keys || k.Length < keys || v.Length < values || output.Length < values)
        {
            throw new ArgumentException($"linear attention over {tokens} tokens × {heads} heads needs q and k of {keys} floats, v and output of {values}");
        }

        fixed (float* qp = q, kp = k, vp = v, op = output)
        {
            nint qa = (nint)qp, ka = (nint)kp, va = (nint)vp, oa = (nint)op;
            ComputeThreads.Run(heads, h => ForwardHead(h, heads, dqk, dv, tokens, (float*)qa, (float*)ka, (float*)va, (float*)oa));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void ForwardHead(int h, int heads, int dqk, int dv, int tokens, float* q, float* k, float* v, float* output)
    {
        var state = new float[dqk * dv]; // S [D, Dv]
        var normaliser = new float[dqk]; // z [D]
        var phiQ = new float[dqk];
        var phiK = new float[dqk];
        fixed (float* s = state, pk = phiK, pq = phiQ)
        {
            for (int i = 0; i < tokens; i++)
            {
                long at = ((long)i * heads) + h;
                FeatureMap(new ReadOnlySpan<float>(k + (at * dqk), dqk), phiK);
                FeatureMap(new ReadOnlySpan<float>(q + (at * dqk), dqk), phiQ);
                // z += φ(k_i);  S += φ(k_i)·v_iᵀ and out_i = φ(q_i)ᵀ·S;  out_i /= φ(q_i)·z
                TensorPrimitives.Add(normaliser, phiK, normaliser);
                float* o = output + (at * dv);
                UpdateAndRead(s, pk, pq, v + (at * dv), o, dqk, dv);
                var outRow = new Span<float>(o, dv);
                TensorPrimitives.Multiply(outRow, 1f / TensorPrimitives.Dot(phiQ, normaliser), outRow);
            }
        }
    }

    // S_d += φk_d·v and o = Σ_d φq_d·S_d over the rows d, in one pass, a block of columns at a time: the block's v and
    // four running sums of o (rows d mod 4, so that each FMA's wait on the last is spread over four chains) stay in
    // registers while the block's column of S is read and written once.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void UpdateAndRead(float* state, float* phiK, float* phiQ, float* v, float* o, int dqk, int dv)
    {
        int c = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; c + 16 <= dv; c += 16)
            {
                var vc = Vector512.Load(v + c);
                Vector512<float> sum0 = default, sum1 = default, sum2 = default, sum3 = default;
                float* row = state + c;
                int d = 0;
                for (; d + 4 <= dqk; d += 4, row += 4L * dv)
                {
                    sum0 = Row512(row, phiK[d], phiQ[d], vc, sum0);
                    sum1 = Row512(row + dv, phiK[d + 1], phiQ[d + 1], vc, sum1);
                    sum2 = Row512(row + (2L * dv), phiK[d + 2], phiQ[d + 2], vc, sum2);
                    sum3 = Row512(row + (3L * dv), phiK[d + 3], phiQ[d + 3], vc, sum3);
                }

                for (; d < dqk; d++, row += dv)
                {
                    sum0 = Row512(row, phiK[d], phiQ[d], vc, sum0);
                }

                ((sum0 + sum1) + (sum2 + sum3)).Store(o + c);
            }
        }

        if (Vector256.IsHardwareAccelerated)
        {
            for (; c + 8 <= dv; c += 8)
            {
                var vc = Vector256.Load(v + c);
                Vector256<float> sum0 = default, sum1 = default;
                float* row = state + c;
                int d = 0;
                for (; d + 2 <= dqk; d += 2, row += 2L * dv)
                {
                    sum0 = Row256(row, phiK[d], phiQ[d], vc, sum0);
                    sum1 = Row256(row + dv, phiK[d + 1], phiQ[d + 1], vc, sum1);
                }

                for (; d < dqk; d++, row += dv)
                {
                    sum0 = Row256(row, phiK[d], phiQ[d], vc, sum0);
                }

                (sum0 + sum1).Store(o + c);
            }
        }

        for (; c < dv; c++)
        {
            float sum = 0f;
            for (int d = 0; d < dqk; d++)
            {
                float* s = state + ((long)d * dv) + c;
                *s = MathF.FusedMultiplyAdd(phiK[d], v[c], *s);
                sum = MathF.FusedMultiplyAdd(phiQ[d], *s, sum);
            }

            o[c] = sum;
        }
    }

    // One row's block: S_d += φk_d·v, then sum + φq_d·S_d.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector512<float> Row512(float* row, float key, float query, Vector512<float> value, Vector512<float> sum)
    {
        var updated = Vector512.FusedMultiplyAdd(Vector512.Create(key), value, Vector512.Load(row));
        updated.Store(row);
        return Vector512.FusedMultiplyAdd(Vector512.Create(query), updated, sum);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector256<float> Row256(float* row, float key, float query, Vector256<float> value, Vector256<float> sum)
    {
        var updated = Vector256.FusedMultiplyAdd(Vector256.Create(key), value, Vector256.Load(row));
        updated.Store(row);
        return Vector256.FusedMultiplyAdd(Vector256.Create(query), updated, sum);
    }

    public static void Backward(
        int heads, int dqk, int dv, int tokens, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> outputGrad, Span<float> qGrad, Span<float> kGrad, Span<float> vGrad)
    {
        var phiQ = FeatureMap(q);
        var phiK = FeatureMap(k);
        var output = new float[tokens * heads * dv];
        ForwardReference(heads, dqk, dv, tokens, q, k, v, output);
        qGrad[..(tokens * heads * dqk)].Clear();
        kGrad[..(tokens * heads * dqk)].Clear();
        vGrad[..(tokens * heads * dv)].Clear();
        for (int h = 0; h < heads; h++)
        {
            for (int i = 0; i < tokens; i++)
            {
                var pq = phiQ.AsSpan((i * heads + h) * dqk, dqk);
                var dOut = outputGrad.Slice((i * heads + h) * dv, dv);
                var oi = output.AsSpan((i * heads + h) * dv, dv);
                float n = 0f;
                for (int j = 0; j <= i; j++)
                {
                    n += Dot(pq, phiK.AsSpan((j * heads + h) * dqk, dqk));
                }

                float dOutDotOut = Dot(dOut, oi);
                for (int j = 0; j <= i; j++)
                {
                    var pk = phiK.AsSpan((j * heads + h) * dqk, dqk);
                    float a = Dot(pq, pk);
                    var dvj = vGrad.Slice((j * heads + h) * dv, dv);
                    for (int d = 0; d < dv; d++)
                    {
                        dvj[d] += a / n * dOut[d];
                    }

                    float da = (Dot(dOut, v.Slice((j * heads + h) * dv, dv)) - dOutDotOut) / n;
                    var dq = qGrad.Slice((i * heads + h) * dqk, dqk);
                    var dk = kGrad.Slice((j * heads + h) * dqk, dqk);
                    for (int d = 0; d < dqk; d++)
                    {
                        dq[d] += da * pk[d];
                        dk[d] += da * pq[d];
                    }
                }
            }
        }

        // Chain through φ: dx = dφ·φ'(x).
        ApplyFeatureSlope(q, qGrad);
        ApplyFeatureSlope(k, kGrad);
    }

    private static float[] FeatureMap(ReadOnlySpan<float> x)
    {
        var result = new float[x.Length];
        FeatureMap(x, result);
        return result;
    }

    // φ(x) = elu(x) + 1 = x + 1 for x > 0, eˣ otherwise; in vectors e^min(x, 0) + max(x, 0) (e⁰ = 1: the same x + 1).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FeatureMap(ReadOnlySpan<float> x, Span<float> result)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 16 <= x.Length; i += 16)
            {
                var value = Vector512.Create(x.Slice(i, 16));
                (Vector512.Exp(Vector512.Min(value, Vector512<float>.Zero)) + Vector512.Max(value, Vector512<float>.Zero)).CopyTo(result.Slice(i, 16));
            }
        }

        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= x.Length; i += 8)
            {
                var value = Vector256.Create(x.Slice(i, 8));
                (Vector256.Exp(Vector256.Min(value, Vector256<float>.Zero)) + Vector256.Max(value, Vector256<float>.Zero)).CopyTo(result.Slice(i, 8));
            }
        }

        for (; i < x.Length; i++)
        {
            result[i] = x[i] > 0 ? x[i] + 1f : MathF.Exp(x[i]);
        }
    }

    private static void ApplyFeatureSlope(ReadOnlySpan<float> x, Span<float> grad)
    {
        for (int i = 0; i < x.Length; i++)
        {
            grad[i] *= x[i] > 0 ? 1f : MathF.Exp(x[i]);
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
}
