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
// Layouts: q, k [T, H, D], v and out [T, H, Dv] (no GQA). Implementations: ForwardReference and BackwardReference
// (quadratic), Forward and Backward (prefix-sum forms: O(T·D·Dv) time and O(D·Dv) state per head, heads on the
// threads).
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
        fixed (float* s = state, z = normaliser, pk = phiK, pq = phiQ)
        {
            for (int i = 0; i < tokens; i++)
            {
                long at = ((long)i * heads) + h;
                FeatureMap(new ReadOnlySpan<float>(k + (at * dqk), dqk), phiK);
                FeatureMap(new ReadOnlySpan<float>(q + (at * dqk), dqk), phiQ);
                // z += φ(k_i);  S += φ(k_i)·v_iᵀ and out_i = φ(q_i)ᵀ·S;  out_i /= φ(q_i)·z
                AddScaled(pk, 1f, z, dqk);
                float* o = output + (at * dv);
                UpdateAndRead(s, pk, pq, v + (at * dv), o, dqk, dv);
                Scale(o, 1f / RowDot(pq, z, dqk), o, dv);
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

    /// <summary>
    /// The gradients in the prefix-sum form, heads shared between the threads: O(T·D·Dv) time, O(D·Dv + T) working
    /// memory per head. A forward sweep rebuilds S_i and z_i and gives dφq_i = S_i·dnum_i + z_i·dn_i, with
    /// dnum_i = dout_i / n_i and dn_i = −dout_i·out_i / n_i; a backward sweep sums R_j = Σ_{i≥j} φq_i·dnum_iᵀ and
    /// r_j = Σ_{i≥j} φq_i·dn_i and gives dφk_j = R_j·v_j + r_j and dv_j = R_jᵀ·φk_j. (The quadratic form's sums over
    /// i or j, grouped: <see cref="BackwardReference"/>.) φ(k) waits in <paramref name="kGrad"/> between the sweeps, and
    /// φ'(x) comes from φ(x), so each token's features take one exponential per value of k and two of q.
    /// </summary>
    public static unsafe void Backward(
        int heads, int dqk, int dv, int tokens, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> outputGrad, Span<float> qGrad, Span<float> kGrad, Span<float> vGrad)
    {
        long keys = (long)tokens * heads * dqk, values = (long)tokens * heads * dv;
        if (q.Length < keys || k.Length < keys || qGrad.Length < keys || kGrad.Length < keys
            || v.Length < values || outputGrad.Length < values || vGrad.Length < values)
        {
            throw new ArgumentException($"linear attention over {tokens} tokens × {heads} heads needs q, k and their gradients of {keys} floats, v, the output's gradient and v's of {values}");
        }

        fixed (float* qp = q, kp = k, vp = v, gp = outputGrad, dqp = qGrad, dkp = kGrad, dvp = vGrad)
        {
            var tensors = new BackwardTensors((nint)qp, (nint)kp, (nint)vp, (nint)gp, (nint)dqp, (nint)dkp, (nint)dvp);
            ComputeThreads.Run(heads, h => BackwardHead(h, heads, dqk, dv, tokens, tensors));
        }
    }

    // The tensors of Backward, pinned, as addresses a lambda can capture.
    private readonly record struct BackwardTensors(nint Q, nint K, nint V, nint OutputGrad, nint QGrad, nint KGrad, nint VGrad);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void BackwardHead(int h, int heads, int dqk, int dv, int tokens, BackwardTensors at)
    {
        float* q = (float*)at.Q, k = (float*)at.K, v = (float*)at.V, outputGrad = (float*)at.OutputGrad;
        float* qGrad = (float*)at.QGrad, kGrad = (float*)at.KGrad, vGrad = (float*)at.VGrad;
        var state = new float[dqk * dv]; // S [D, Dv], then R [D, Dv]
        var sums = new float[dqk]; // z [D], then r [D]
        var phiQ = new float[dqk];
        var phiGrad = new float[dqk]; // dφq or dφk of one token
        var output = new float[dv]; // out_i, then dv_i
        var outputScaled = new float[dv]; // dnum_i
        var normalisers = new float[tokens]; // n_i
        var normaliserGrads = new float[tokens]; // dn_i
        fixed (float* s = state, z = sums, pq = phiQ, dphi = phiGrad, o = output, dnum = outputScaled)
        {
            for (int i = 0; i < tokens; i++)
            {
                long row = ((long)i * heads) + h;
                float* pk = kGrad + (row * dqk); // φ(k_i), kept there for the backward sweep
                FeatureMap(new ReadOnlySpan<float>(k + (row * dqk), dqk), new Span<float>(pk, dqk));
                FeatureMap(new ReadOnlySpan<float>(q + (row * dqk), dqk), phiQ);
                AddScaled(pk, 1f, z, dqk);
                UpdateAndRead(s, pk, pq, v + (row * dv), o, dqk, dv); // S_i and num_i = φ(q_i)ᵀ·S_i
                float n = RowDot(pq, z, dqk);
                float* g = outputGrad + (row * dv);
                float dn = -RowDot(g, o, dv) / (n * n); // −dout·num / n² = −dout·out / n
                Scale(g, 1f / n, dnum, dv);
                for (int d = 0; d < dqk; d++)
                {
                    dphi[d] = RowDot(s + ((long)d * dv), dnum, dv) + (z[d] * dn);
                }

                FeatureSlope(q + (row * dqk), pq, dphi, qGrad + (row * dqk), dqk);
                normalisers[i] = n;
                normaliserGrads[i] = dn;
            }

            Array.Clear(state);
            Array.Clear(sums);
            for (int i = tokens - 1; i >= 0; i--)
            {
                long row = ((long)i * heads) + h;
                float* pk = kGrad + (row * dqk);
                FeatureMap(new ReadOnlySpan<float>(q + (row * dqk), dqk), phiQ);
                Scale(outputGrad + (row * dv), 1f / normalisers[i], dnum, dv);
                AddScaled(pq, normaliserGrads[i], z, dqk); // r_i
                Array.Clear(output);
                float* vi = v + (row * dv);
                for (int d = 0; d < dqk; d++)
                {
                    dphi[d] = ReverseRow(s + ((long)d * dv), pq[d], pk[d], dnum, vi, o, dv) + z[d];
                }

                FeatureSlope(k + (row * dqk), pk, dphi, pk, dqk); // dk_i over φ(k_i)
                output.CopyTo(new Span<float>(vGrad + (row * dv), dv));
            }
        }
    }

    // R_d += φq_d·dnum, over one row of R; adds φk_d·R_d into vGrad and returns R_d·v.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe float ReverseRow(float* row, float query, float key, float* dnum, float* v, float* vGrad, int dv)
    {
        int c = 0;
        float dot = 0f;
        if (Vector512.IsHardwareAccelerated && dv >= 16)
        {
            var sum = Vector512<float>.Zero;
            for (; c + 16 <= dv; c += 16)
            {
                var updated = Vector512.FusedMultiplyAdd(Vector512.Create(query), Vector512.Load(dnum + c), Vector512.Load(row + c));
                updated.Store(row + c);
                sum = Vector512.FusedMultiplyAdd(updated, Vector512.Load(v + c), sum);
                Vector512.FusedMultiplyAdd(Vector512.Create(key), updated, Vector512.Load(vGrad + c)).Store(vGrad + c);
            }

            dot = Vector512.Sum(sum);
        }

        if (Vector256.IsHardwareAccelerated && c + 8 <= dv)
        {
            var sum = Vector256<float>.Zero;
            for (; c + 8 <= dv; c += 8)
            {
                var updated = Vector256.FusedMultiplyAdd(Vector256.Create(query), Vector256.Load(dnum + c), Vector256.Load(row + c));
                updated.Store(row + c);
                sum = Vector256.FusedMultiplyAdd(updated, Vector256.Load(v + c), sum);
                Vector256.FusedMultiplyAdd(Vector256.Create(key), updated, Vector256.Load(vGrad + c)).Store(vGrad + c);
            }

            dot += Vector256.Sum(sum);
        }

        for (; c < dv; c++)
        {
            float updated = MathF.FusedMultiplyAdd(query, dnum[c], row[c]);
            row[c] = updated;
            dot = MathF.FusedMultiplyAdd(updated, v[c], dot);
            vGrad[c] = MathF.FusedMultiplyAdd(key, updated, vGrad[c]);
        }

        return dot;
    }

    // y += a·x over n floats. The short vectors of the per-token steps go through these rather than TensorPrimitives,
    // whose generic methods run their tier-0 code for the first ~100 ms of calls: a benchmark's 200 calls at T = 64
    // took 3× their time later.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void AddScaled(float* x, float a, float* y, int n)
    {
        int c = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; c + 8 <= n; c += 8)
            {
                Vector256.FusedMultiplyAdd(Vector256.Create(a), Vector256.Load(x + c), Vector256.Load(y + c)).Store(y + c);
            }
        }

        for (; c < n; c++)
        {
            y[c] = MathF.FusedMultiplyAdd(a, x[c], y[c]);
        }
    }

    // result = a·x over n floats (result may be x).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Scale(float* x, float a, float* result, int n)
    {
        int c = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; c + 8 <= n; c += 8)
            {
                (Vector256.Create(a) * Vector256.Load(x + c)).Store(result + c);
            }
        }

        for (; c < n; c++)
        {
            result[c] = a * x[c];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe float RowDot(float* a, float* b, int n)
    {
        int c = 0;
        float dot = 0f;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var sum = Vector512<float>.Zero;
            for (; c + 16 <= n; c += 16)
            {
                sum = Vector512.FusedMultiplyAdd(Vector512.Load(a + c), Vector512.Load(b + c), sum);
            }

            dot = Vector512.Sum(sum);
        }

        if (Vector256.IsHardwareAccelerated && c + 8 <= n)
        {
            var sum = Vector256<float>.Zero;
            for (; c + 8 <= n; c += 8)
            {
                sum = Vector256.FusedMultiplyAdd(Vector256.Load(a + c), Vector256.Load(b + c), sum);
            }

            dot += Vector256.Sum(sum);
        }

        for (; c < n; c++)
        {
            dot = MathF.FusedMultiplyAdd(a[c], b[c], dot);
        }

        return dot;
    }

    // dx = dφ·φ'(x), with φ'(x) = 1 for x > 0 and eˣ = φ(x) otherwise: from φ(x), no exponential again. grad may be phi.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void FeatureSlope(float* x, float* phi, float* phiGrad, float* grad, int n)
    {
        int d = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; d + 8 <= n; d += 8)
            {
                var g = Vector256.Load(phiGrad + d);
                Vector256.ConditionalSelect(Vector256.GreaterThan(Vector256.Load(x + d), Vector256<float>.Zero), g, g * Vector256.Load(phi + d)).Store(grad + d);
            }
        }

        for (; d < n; d++)
        {
            grad[d] = x[d] > 0 ? phiGrad[d] : phiGrad[d] * phi[d];
        }
    }

    /// <summary>The gradients from the quadratic form (the header's formulas as written): the reference for <see cref="Backward"/>.</summary>
    public static void BackwardReference(
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
