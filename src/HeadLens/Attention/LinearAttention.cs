using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
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
// (quadratic), Forward (prefix sums over blocks of tokens) and Backward (prefix sums token by token): O(T·D·Dv) time
// and O(D·Dv) state per head, heads on the threads.
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
    /// The prefix-sum form in blocks of <see cref="Block"/> tokens, heads shared between the threads. Per block, with ΦQ,
    /// ΦK [c, D] and V [c, Dv] its rows: Num = ΦQ·S + (M ⊙ ΦQ·ΦKᵀ)·V and n = ΦQ·z + rowsum(M ⊙ ΦQ·ΦKᵀ), M the causal
    /// mask of the block's own pairs; then S += ΦKᵀ·V and z += Σ ΦK. Four small products per block instead of a pass
    /// over S per token, whose reads and writes of the 16 KB state bounded the per-token form (twice the multiply-adds,
    /// at several times the rate).
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

    /// <summary>Tokens per block of <see cref="Forward"/>.</summary>
    internal const int Block = 64;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void ForwardHead(int h, int heads, int dqk, int dv, int tokens, float* q, float* k, float* v, float* output)
    {
        var state = new float[dqk * dv]; // S [D, Dv]
        var keySums = new float[dqk]; // z [D]
        var blockQueries = new float[Block * dqk]; // ΦQ [c, D]
        var blockKeys = new float[dqk * Block]; // ΦKᵀ [D, Block]: the block's keys as columns
        var blockValues = new float[Block * dv]; // V [c, Dv]
        var scores = new float[Block * Block]; // M ⊙ ΦQ·ΦKᵀ [c, Block]
        var numerators = new float[Block * dv]; // Num [c, Dv]
        var phiK = new float[dqk];
        fixed (float* s = state, z = keySums, pq = blockQueries, pkT = blockKeys, bv = blockValues, a = scores, num = numerators)
        {
            for (int first = 0; first < tokens; first += Block)
            {
                int count = Math.Min(Block, tokens - first);
                for (int i = 0; i < count; i++)
                {
                    long row = ((long)(first + i) * heads) + h;
                    if (first + i + Block < tokens)
                    {
                        long next = row + ((long)Block * heads);
                        PrefetchRow(q, next, dqk);
                        PrefetchRow(k, next, dqk);
                        PrefetchRow(v, next, dv);
                    }

                    FeatureMap(new ReadOnlySpan<float>(q + (row * dqk), dqk), new Span<float>(pq + ((long)i * dqk), dqk));
                    FeatureMap(new ReadOnlySpan<float>(k + (row * dqk), dqk), phiK);
                    for (int d = 0; d < dqk; d++)
                    {
                        pkT[(d * Block) + i] = phiK[d];
                    }

                    new ReadOnlySpan<float>(v + (row * dv), dv).CopyTo(new Span<float>(bv + ((long)i * dv), dv));
                }

                // Num = ΦQ·S (the earlier blocks), the block's scores ΦQ·ΦKᵀ, masked to j ≤ i.
                new Span<float>(num, count * dv).Clear();
                MultiplyAdd(pq, dqk, s, dv, num, dv, count, dv, dqk, causal: false);
                new Span<float>(a, count * Block).Clear();
                MultiplyAdd(pq, dqk, pkT, Block, a, Block, count, count, dqk, causal: false);
                for (int i = 0; i < count; i++)
                {
                    new Span<float>(a + ((long)i * Block) + i + 1, Block - i - 1).Clear();
                }

                // Num += scores·V; out_i = Num_i / (φ(q_i)·z + Σ_j scores_ij).
                MultiplyAdd(a, Block, bv, dv, num, dv, count, dv, count, causal: true);
                for (int i = 0; i < count; i++)
                {
                    float n = RowDot(pq + ((long)i * dqk), z, dqk) + RowSum(a + ((long)i * Block), i + 1);
                    Scale(num + ((long)i * dv), 1f / n, output + ((((long)(first + i) * heads) + h) * dv), dv);
                }

                // S += ΦKᵀ·V; z += Σ_i φ(k_i).
                MultiplyAdd(pkT, Block, bv, dv, s, dv, dqk, dv, count, causal: false);
                for (int d = 0; d < dqk; d++)
                {
                    z[d] += RowSum(pkT + ((long)d * Block), count);
                }
            }
        }
    }

    // c[i, j] += Σ_p a[i, p]·b[p, j] for i < rows, j < columns, p < depth (row-major, leading dimensions lda, ldb, ldc).
    // causal: a is lower-triangular (a[i, p] = 0 for p > i), so row block i0..i0+3 stops at p = i0 + 3. Four rows of c
    // at a time, 16 columns per vector: each row of b loaded once for the four, each a[i, p] broadcast.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void MultiplyAdd(float* a, int lda, float* b, int ldb, float* c, int ldc, int rows, int columns, int depth, bool causal)
    {
        int i = 0;
        for (; i + 4 <= rows; i += 4)
        {
            int end = causal ? Math.Min(depth, i + 4) : depth;
            float* a0 = a + ((long)i * lda), a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
            float* c0 = c + ((long)i * ldc), c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
            int j = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                for (; j + 16 <= columns; j += 16)
                {
                    Vector512<float> s0 = Vector512.Load(c0 + j), s1 = Vector512.Load(c1 + j), s2 = Vector512.Load(c2 + j), s3 = Vector512.Load(c3 + j);
                    float* bp = b + j;
                    for (int p = 0; p < end; p++, bp += ldb)
                    {
                        var row = Vector512.Load(bp);
                        s0 = Vector512.FusedMultiplyAdd(Vector512.Create(a0[p]), row, s0);
                        s1 = Vector512.FusedMultiplyAdd(Vector512.Create(a1[p]), row, s1);
                        s2 = Vector512.FusedMultiplyAdd(Vector512.Create(a2[p]), row, s2);
                        s3 = Vector512.FusedMultiplyAdd(Vector512.Create(a3[p]), row, s3);
                    }

                    s0.Store(c0 + j);
                    s1.Store(c1 + j);
                    s2.Store(c2 + j);
                    s3.Store(c3 + j);
                }
            }

            if (Vector256.IsHardwareAccelerated)
            {
                for (; j + 8 <= columns; j += 8)
                {
                    Vector256<float> s0 = Vector256.Load(c0 + j), s1 = Vector256.Load(c1 + j), s2 = Vector256.Load(c2 + j), s3 = Vector256.Load(c3 + j);
                    float* bp = b + j;
                    for (int p = 0; p < end; p++, bp += ldb)
                    {
                        var row = Vector256.Load(bp);
                        s0 = Vector256.FusedMultiplyAdd(Vector256.Create(a0[p]), row, s0);
                        s1 = Vector256.FusedMultiplyAdd(Vector256.Create(a1[p]), row, s1);
                        s2 = Vector256.FusedMultiplyAdd(Vector256.Create(a2[p]), row, s2);
                        s3 = Vector256.FusedMultiplyAdd(Vector256.Create(a3[p]), row, s3);
                    }

                    s0.Store(c0 + j);
                    s1.Store(c1 + j);
                    s2.Store(c2 + j);
                    s3.Store(c3 + j);
                }
            }

            for (; j < columns; j++)
            {
                MultiplyAddColumn(a0, b + j, ldb, c0 + j, end);
                MultiplyAddColumn(a1, b + j, ldb, c1 + j, end);
                MultiplyAddColumn(a2, b + j, ldb, c2 + j, end);
                MultiplyAddColumn(a3, b + j, ldb, c3 + j, end);
            }
        }

        for (; i < rows; i++)
        {
            int end = causal ? Math.Min(depth, i + 1) : depth;
            for (int j = 0; j < columns; j++)
            {
                MultiplyAddColumn(a + ((long)i * lda), b + j, ldb, c + ((long)i * ldc) + j, end);
            }
        }
    }

    // Row `row` of a [T·H, width] tensor, one prefetch per 64 bytes: the forward takes the next block's rows of q, k and v
    // for its head, the backward's sweeps the rows a few tokens ahead. A head's rows lie H·D floats apart (3 KB for
    // 12 × 64), so most fall on another 4 KiB page than the last, where the hardware prefetchers stop: without these the
    // reads of q, k and v took a quarter of the blocked forward's time (one thread, T = 4096).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void PrefetchRow(float* x, long row, int width)
    {
        if (Sse.IsSupported)
        {
            for (int offset = 0; offset < width; offset += 16)
            {
                Sse.Prefetch0(x + (row * width) + offset);
            }
        }
    }

    // *c += Σ_p a[p]·b[p·ldb] for p < depth.
    private static unsafe void MultiplyAddColumn(float* a, float* b, int ldb, float* c, int depth)
    {
        float sum = *c;
        for (int p = 0; p < depth; p++)
        {
            sum = MathF.FusedMultiplyAdd(a[p], b[(long)p * ldb], sum);
        }

        *c = sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe float RowSum(float* x, int n)
    {
        int i = 0;
        float sum = 0f;
        if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var sums = Vector256<float>.Zero;
            for (; i + 8 <= n; i += 8)
            {
                sums += Vector256.Load(x + i);
            }

            sum = Vector256.Sum(sums);
        }

        for (; i < n; i++)
        {
            sum += x[i];
        }

        return sum;
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

    // How many tokens ahead the backward's sweeps prefetch their rows (each token's work is ~1 µs per head).
    private const int PrefetchTokens = 4;

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
                if (i + PrefetchTokens < tokens)
                {
                    long ahead = row + ((long)PrefetchTokens * heads);
                    PrefetchRow(q, ahead, dqk);
                    PrefetchRow(k, ahead, dqk);
                    PrefetchRow(v, ahead, dv);
                    PrefetchRow(outputGrad, ahead, dv);
                }

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
                if (i >= PrefetchTokens)
                {
                    long ahead = row - ((long)PrefetchTokens * heads);
                    PrefetchRow(q, ahead, dqk);
                    PrefetchRow(kGrad, ahead, dqk);
                    PrefetchRow(v, ahead, dv);
                    PrefetchRow(outputGrad, ahead, dv);
                }

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

    // φ(x) = elu(x) + 1 = x + 1 for x > 0, eˣ otherwise; in vectors eˣ = 2^(x·log₂e) by the attention kernels' Exp2
    // (relative error ≤ 2e-7; 0 below x ≈ −86.6, where eˣ < 2⁻¹²⁵), inlined: Vector512.Exp is a call per vector into
    // generic code, and with it the feature maps took a third of the blocked forward's time.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FeatureMap(ReadOnlySpan<float> x, Span<float> result)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 16 <= x.Length; i += 16)
            {
                var value = Vector512.Create(x.Slice(i, 16));
                var exponential = AttentionPanels.Exp2(value * Vector512.Create(AttentionPanels.Log2E));
                Vector512.ConditionalSelect(Vector512.GreaterThan(value, Vector512<float>.Zero), value + Vector512<float>.One, exponential).CopyTo(result.Slice(i, 16));
            }
        }

        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= x.Length; i += 8)
            {
                var value = Vector256.Create(x.Slice(i, 8));
                var exponential = AttentionPanels.Exp2(value * Vector256.Create(AttentionPanels.Log2E));
                Vector256.ConditionalSelect(Vector256.GreaterThan(value, Vector256<float>.Zero), value + Vector256<float>.One, exponential).CopyTo(result.Slice(i, 8));
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
