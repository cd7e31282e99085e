using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using HeadLens.Kernels;

namespace HeadLens.Attention;

// The forward for a few queries against a cache (a decode step: Tq = 1, or a few for speculative or chunked steps).
// The scores are row dots q·k_j over the cached keys as they lie, then the softmax, then out = Σ_j p_j·v_j as FMAs over
// the cached value rows. Nothing is packed: the tiled path's Gemm packed (transposed) every head's keys and copied its
// values on every token, work that a single query row cannot amortise (17% of a GPT-2 decode step's calling thread at
// 300 cached positions, perf). One query without per-key masks or biases (every decode step of the models here) reads
// the cache in key order, every head at once (ForwardOneQueryInKeyOrder); otherwise one work item per (sequence, head)
// reads that head's slice of every key (AttendFewQueries). Same visibility rules and the same base-e logSumExp as the
// tiled path.
public static partial class ScaledDotProductAttention
{
    // Up to this many queries the row-dot path beats blocking the keys (each key row is read once per query from L1/L2).
    internal const int FewQueries = 4;

    // Per thread: one query's scores over the cache, kept between calls.
    [ThreadStatic]
    private static float[]? fewQueryScores;

    private static unsafe void ForwardFewQueries(
        AttentionOptions options, int batch, int queryLength, int keyLength, int queryOffset,
        float* q, float* k, float* v, float* output, float* logSumExp)
    {
        int heads = options.Heads;
        if (queryLength == 1 && !options.NeedsElementMask && options.AlibiSlopes is null)
        {
            ForwardOneQueryInKeyOrder(options, batch, keyLength, queryOffset, q, k, v, output, logSumExp);
            return;
        }

        long work = (long)batch * heads * queryLength * keyLength * (options.HeadDimQK + options.HeadDimV);
        Run(batch * heads, item => AttendFewQueries(options, item / heads, item % heads, queryLength, keyLength, queryOffset, q, k, v, output, logSumExp), work);
    }

    // The one-query path's parts: at least this many keys each, at most MaxKeyParts of them. The split depends on the
    // number of visible keys only, never on the thread count, so the results do not either.
    private const int KeysPerPart = 128;
    private const int MaxKeyParts = 32;

    // Keys per online-softmax block of a part.
    private const int KeyBlock = 64;

    // Whether the key rows' dots ask for memory ahead (Gemv.Dot's prefetch): as they did before the 8-lane dots had
    // prefetches, at 16 lanes where Gemv.PrefetchWeights allows; not measured at 8.
    private static bool KeyPrefetch => Vector512.IsHardwareAccelerated && Gemv.PrefetchWeights;

    // Per calling thread: each part's running max [H], sum [H] and unnormalised output [H, Dv], for the merge.
    [ThreadStatic]
    private static float[]? keyPartResults;

    // Per worker: one block's scores [H, KeyBlock], then the 16-lane path's partial dot products [16, 16].
    [ThreadStatic]
    private static float[]? keyBlockScores;

    /// <summary>
    /// A decode step (one query per sequence, no per-key masks or biases) read in key order: each part of the cache's
    /// visible keys is one work item over every head, so a key's row (all its kv heads, G·Dqk floats) and then its
    /// value row are read whole, one after another, and the cache streams from memory as a sequential read. By head,
    /// each item read one head's 64 floats of every 3 KB row (GPT-2): a stride the hardware prefetchers do not follow,
    /// so a long cache was read at a third of the memory's bandwidth. Each part keeps an online softmax per head over
    /// blocks of KeyBlock keys; the parts' results are merged as in split-key (flash-decoding) attention.
    /// </summary>
    private static unsafe void ForwardOneQueryInKeyOrder(
        AttentionOptions options, int batch, int keyLength, int queryOffset, float* q, float* k, float* v, float* output, float* logSumExp)
    {
        int heads = options.Heads, dv = options.HeadDimV;
        var (first, end) = options.KeyRange(queryOffset, queryOffset + 1, keyLength);
        int sinkEnd = options.Window > 0 && options.Sinks > 0 ? Math.Min(Math.Min(options.Sinks, first), keyLength) : 0;
        int visible = sinkEnd + (end - first);
        int parts = Math.Clamp((visible + KeysPerPart - 1) / KeysPerPart, 1, MaxKeyParts);
        int partKeys = (visible + parts - 1) / parts;
        int resultLength = heads * (dv + 2);
        long length = (long)batch * parts * resultLength;
        var held = keyPartResults is { } kept && kept.LongLength >= length
            ? kept
            : keyPartResults = GC.AllocateUninitializedArray<float>((int)Math.Max(length, 1024), pinned: true);
        float* results = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(held));
        Run(batch * parts, item =>
        {
            int part = item % parts, from = Math.Min(visible, part * partKeys);
            AttendKeysInOrder(options, item / parts, keyLength, from, Math.Min(visible, from + partKeys), sinkEnd, first, q, k, v, results + ((long)item * resultLength));
        });

        for (int b = 0; b < batch; b++)
        {
            MergeKeyParts(heads, dv, parts, results + ((long)b * parts * resultLength), output + ((long)b * heads * dv), logSumExp + ((long)b * heads));
        }
    }

    // One part: visible keys [from, to) (the sinks [0, sinkEnd) first, then keys from `first` on), every head.
    // result: max [H], sum [H], Σ_j e^(s_j − max)·v_j [H, Dv].
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void AttendKeysInOrder(
        AttentionOptions options, int b, int keyLength, int from, int to, int sinkEnd, int first,
        float* q, float* k, float* v, float* result)
    {
        int heads = options.Heads, kvHeads = options.KvHeads, dqk = options.HeadDimQK, dv = options.HeadDimV;
        int group = options.GroupSize;
        float scale = options.EffectiveScale;
        float* max = result, sum = result + heads, outputs = result + (2 * heads);
        new Span<float>(max, heads).Fill(float.NegativeInfinity);
        new Span<float>(sum, heads).Clear();
        new Span<float>(outputs, heads * dv).Clear();
        long keyStride = (long)kvHeads * dqk, valueStride = (long)kvHeads * dv;
        float* qb = q + ((long)b * heads * dqk), kb = k + ((long)b * keyLength * keyStride), vb = v + ((long)b * keyLength * valueStride);
        var scores = keyBlockScores is { } held && held.Length >= (heads * KeyBlock) + (ScoreGroup * ScoreGroup)
            ? held
            : keyBlockScores = new float[(heads * KeyBlock) + (ScoreGroup * ScoreGroup)];
        // Where several heads share each kv head (grouped-query models), each byte of the cache feeds `group` heads and
        // the arithmetic, not the memory, sets the pace: there the values' sums stay in registers over a block, and with
        // AVX-512 the scores come 16 keys at a time (32 heads on 4 kv heads: 3.1x the plain loops below in L2, 1.4-1.6x
        // from memory; with AVX2 the blocked values alone, 1.3-1.9x from L3). With one head per kv head a long cache is
        // read at the memory's pace, and from memory those kernels were 15-55% slower than the plain loops (one row dot
        // and one row update per pair, in key order; Zen 4), though 20% faster from L3, so the plain loops stay for it.
        bool sixteenLanes = group > 1 && Vector512.IsHardwareAccelerated && Avx512F.IsSupported && dqk % ScoreGroup == 0 && dv % ScoreGroup == 0;
        fixed (float* blockScores = scores)
        {
            float* partials = blockScores + (heads * KeyBlock);
            for (int u = from; u < to;)
            {
                // A block of consecutive keys: it never crosses from the sinks into the range.
                int stop = Math.Min(Math.Min(to, u + KeyBlock), u < sinkEnd ? sinkEnd : to);
                int count = stop - u, key = u < sinkEnd ? u : first + (u - sinkEnd);

                // S[h, j] = scale · q_h · k_j, the key rows in order.
                float* keyRow = kb + (key * keyStride);
                if (sixteenLanes)
                {
                    for (int j = 0; j < count; j += ScoreGroup, keyRow += ScoreGroup * keyStride)
                    {
                        ScoreSixteenKeys(keyRow, keyStride, Math.Min(ScoreGroup, count - j), qb, heads, group, dqk, scale, partials, blockScores + j);
                    }
                }
                else
                {
                    for (int j = 0; j < count; j++, keyRow += keyStride)
                    {
                        for (int h = 0; h < heads; h++)
                        {
                            blockScores[(h * KeyBlock) + j] = scale * Gemv.Dot(keyRow + ((h / group) * dqk), qb + ((long)h * dqk), dqk, KeyPrefetch);
                        }
                    }
                }

                // Online softmax per head: rescale what the part has when the block raises its max.
                for (int h = 0; h < heads; h++)
                {
                    float* row = blockScores + (h * KeyBlock);
                    float newMax = Math.Max(max[h], TensorPrimitives.Max(new ReadOnlySpan<float>(row, count)));
                    if (float.IsNegativeInfinity(newMax))
                    {
                        new Span<float>(row, count).Clear();
                        continue;
                    }

                    if (newMax > max[h] && sum[h] > 0f)
                    {
                        float correction = MathF.Exp(max[h] - newMax);
                        sum[h] *= correction;
                        var o = new Span<float>(outputs + ((long)h * dv), dv);
                        TensorPrimitives.Multiply(o, correction, o);
                    }

                    max[h] = newMax;
                    sum[h] += AttentionPanels.ExpShiftedRow(row, count, newMax);
                }

                // outputs_h += Σ_j p_hj · v_j.
                float* valueRow = vb + (key * valueStride);
                if (group > 1)
                {
                    AccumulateValueBlock(valueRow, valueStride, count, blockScores, heads, group, dv, outputs);
                }
                else
                {
                    // The value rows in order, one key for every head before the next: blocks of 2 or 4 keys per head
                    // read the rows in a stride again and were 6-27% slower (8 keys: no faster).
                    for (int j = 0; j < count; j++, valueRow += valueStride)
                    {
                        for (int h = 0; h < heads; h++)
                        {
                            AccumulateRows(blockScores + (h * KeyBlock) + j, valueRow + ((h / group) * dv), valueStride, 1, outputs + ((long)h * dv), dv);
                        }
                    }
                }

                u = stop;
            }
        }
    }

    // Keys whose scores the 16-lane path computes together.
    private const int ScoreGroup = 16;

    /// <summary>
    /// scores[h·KeyBlock + j] = scale · q_h · k_j for the `count` ≤ 16 key rows from keyRow (key stride keyStride;
    /// head h reads its kv head's slice), through 16-lane partial dot products: per head, one vector per key into
    /// partials [16, 16] (zero for keys past count), then the 16 summed across lanes together, one vector of 16 scores
    /// out. A head's partials are summed before the next head's are written, so they stay in L1 (all heads' partials
    /// first, 1 KB each, pushed the key rows out of it: 7% slower at 32 heads in L2). Dqk is a multiple of 16.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void ScoreSixteenKeys(float* keyRow, long keyStride, int count, float* q, int heads, int group, int dqk, float scale, float* partials, float* scores)
    {
        var scaleVector = Vector512.Create(scale);
        for (int g = 0, h = 0; h < heads; g++)
        {
            float* keys = keyRow + ((long)g * dqk);
            for (int end = h + group; h < end; h++)
            {
                float* qh = q + ((long)h * dqk);
                float* k = keys;
                if (dqk == AttentionPanels.Width)
                {
                    // The query in registers: loaded in the loop, it was read again for every key (the stores to
                    // partials could alias it, so the JIT keeps the loads where they are).
                    var q0 = Vector512.Load(qh);
                    var q1 = Vector512.Load(qh + 16);
                    var q2 = Vector512.Load(qh + 32);
                    var q3 = Vector512.Load(qh + 48);
                    for (int j = 0; j < ScoreGroup; j++, k += keyStride)
                    {
                        var sum = j < count
                            ? Vector512.FusedMultiplyAdd(Vector512.Load(k + 48), q3, Vector512.FusedMultiplyAdd(Vector512.Load(k + 32), q2,
                                Vector512.FusedMultiplyAdd(Vector512.Load(k + 16), q1, Vector512.Load(k) * q0)))
                            : Vector512<float>.Zero;
                        sum.Store(partials + (j * ScoreGroup));
                    }
                }
                else
                {
                    for (int j = 0; j < ScoreGroup; j++, k += keyStride)
                    {
                        var sum = Vector512<float>.Zero;
                        if (j < count)
                        {
                            sum = Vector512.Load(k) * Vector512.Load(qh);
                            for (int d = ScoreGroup; d < dqk; d += ScoreGroup)
                            {
                                sum = Vector512.FusedMultiplyAdd(Vector512.Load(k + d), Vector512.Load(qh + d), sum);
                            }
                        }

                        sum.Store(partials + (j * ScoreGroup));
                    }
                }

                (SumsAcrossLanes(partials) * scaleVector).Store(scores + (h * KeyBlock));
            }
        }
    }

    /// <summary>
    /// The 16 vectors x_0..x_15 at partials [16, 16] to one vector of their lane sums, Σ_l x_j[l] in lane j: halving
    /// the count at each step, pairs of vectors are interleaved and added (within 128-bit lanes: 32-bit, then 64-bit
    /// elements; then the 128-bit lanes across vectors, twice). 15 additions and 30 shuffles for 16 sums.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector512<float> SumsAcrossLanes(float* partials)
    {
        // Per 128-bit lane: [x_2i(0) + x_2i(2), x_2i+1(0) + x_2i+1(2), x_2i(1) + x_2i(3), x_2i+1(1) + x_2i+1(3)].
        static Vector512<float> Pairs(float* x) =>
            Avx512F.UnpackLow(Vector512.Load(x), Vector512.Load(x + 16)) + Avx512F.UnpackHigh(Vector512.Load(x), Vector512.Load(x + 16));

        // Per 128-bit lane: the lane's sums of x_4i .. x_4i+3, in that order.
        static Vector512<float> Quads(Vector512<float> a, Vector512<float> b) =>
            Avx512F.Shuffle(a, b, 0x44) + Avx512F.Shuffle(a, b, 0xEE);

        // 128-bit lanes: [a.0 + a.1, a.2 + a.3, b.0 + b.1, b.2 + b.3].
        static Vector512<float> Lanes(Vector512<float> a, Vector512<float> b) =>
            Avx512F.Shuffle4x128(a, b, 0x88) + Avx512F.Shuffle4x128(a, b, 0xDD);

        var z0 = Quads(Pairs(partials), Pairs(partials + 32));
        var z1 = Quads(Pairs(partials + 64), Pairs(partials + 96));
        var z2 = Quads(Pairs(partials + 128), Pairs(partials + 160));
        var z3 = Quads(Pairs(partials + 192), Pairs(partials + 224));
        return Lanes(Lanes(z0, z1), Lanes(z2, z3));
    }

    // outputs_h += Σ_j p[h·KeyBlock + j] · v_j over the block's `count` value rows, per kv head: with AVX-512 four heads
    // of its group at a time with their outputs in registers (16 accumulators per 64 columns), the rest one head at a
    // time (AccumulateRows, any width).
    private static unsafe void AccumulateValueBlock(float* valueRow, long valueStride, int count, float* p, int heads, int group, int dv, float* outputs)
    {
        for (int g = 0, h = 0; h < heads; g++)
        {
            float* values = valueRow + ((long)g * dv);
            int end = h + group;
            for (; h + 4 <= end && dv % 64 == 0 && Vector512.IsHardwareAccelerated && Avx512F.IsSupported; h += 4)
            {
                for (int d = 0; d < dv; d += 64)
                {
                    AccumulateFourHeads(values + d, valueStride, count, p + (h * KeyBlock), outputs + ((long)h * dv) + d, dv);
                }
            }

            for (; h < end; h++)
            {
                AccumulateRows(p + (h * KeyBlock), values, valueStride, count, outputs + ((long)h * dv), dv);
            }
        }
    }

    // output[i·dv, +64) += Σ_j p[i·KeyBlock + j] · values[j·stride, +64) for the four heads i = 0..3 that share these
    // value rows.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void AccumulateFourHeads(float* values, long stride, int count, float* p, float* output, int dv)
    {
        float* o0 = output, o1 = output + dv, o2 = output + (2 * dv), o3 = output + (3 * dv);
        var a00 = Vector512.Load(o0);
        var a01 = Vector512.Load(o0 + 16);
        var a02 = Vector512.Load(o0 + 32);
        var a03 = Vector512.Load(o0 + 48);
        var a10 = Vector512.Load(o1);
        var a11 = Vector512.Load(o1 + 16);
        var a12 = Vector512.Load(o1 + 32);
        var a13 = Vector512.Load(o1 + 48);
        var a20 = Vector512.Load(o2);
        var a21 = Vector512.Load(o2 + 16);
        var a22 = Vector512.Load(o2 + 32);
        var a23 = Vector512.Load(o2 + 48);
        var a30 = Vector512.Load(o3);
        var a31 = Vector512.Load(o3 + 16);
        var a32 = Vector512.Load(o3 + 32);
        var a33 = Vector512.Load(o3 + 48);
        for (int j = 0; j < count; j++, values += stride)
        {
            var v0 = Vector512.Load(values);
            var v1 = Vector512.Load(values + 16);
            var v2 = Vector512.Load(values + 32);
            var v3 = Vector512.Load(values + 48);
            var w = Vector512.Create(p[j]);
            a00 = Vector512.FusedMultiplyAdd(v0, w, a00);
            a01 = Vector512.FusedMultiplyAdd(v1, w, a01);
            a02 = Vector512.FusedMultiplyAdd(v2, w, a02);
            a03 = Vector512.FusedMultiplyAdd(v3, w, a03);
            w = Vector512.Create(p[KeyBlock + j]);
            a10 = Vector512.FusedMultiplyAdd(v0, w, a10);
            a11 = Vector512.FusedMultiplyAdd(v1, w, a11);
            a12 = Vector512.FusedMultiplyAdd(v2, w, a12);
            a13 = Vector512.FusedMultiplyAdd(v3, w, a13);
            w = Vector512.Create(p[(2 * KeyBlock) + j]);
            a20 = Vector512.FusedMultiplyAdd(v0, w, a20);
            a21 = Vector512.FusedMultiplyAdd(v1, w, a21);
            a22 = Vector512.FusedMultiplyAdd(v2, w, a22);
            a23 = Vector512.FusedMultiplyAdd(v3, w, a23);
            w = Vector512.Create(p[(3 * KeyBlock) + j]);
            a30 = Vector512.FusedMultiplyAdd(v0, w, a30);
            a31 = Vector512.FusedMultiplyAdd(v1, w, a31);
            a32 = Vector512.FusedMultiplyAdd(v2, w, a32);
            a33 = Vector512.FusedMultiplyAdd(v3, w, a33);
        }

        a00.Store(o0);
        a01.Store(o0 + 16);
        a02.Store(o0 + 32);
        a03.Store(o0 + 48);
        a10.Store(o1);
        a11.Store(o1 + 16);
        a12.Store(o1 + 32);
        a13.Store(o1 + 48);
        a20.Store(o2);
        a21.Store(o2 + 16);
        a22.Store(o2 + 32);
        a23.Store(o2 + 48);
        a30.Store(o3);
        a31.Store(o3 + 16);
        a32.Store(o3 + 32);
        a33.Store(o3 + 48);
    }

    // The parts' results [parts][max [H], sum [H], outputs [H, Dv]] into output [H, Dv] and logSumExp [H]:
    // M = max_p m_p, L = Σ_p l_p·e^(m_p − M), out = Σ_p e^(m_p − M)·o_p / L.
    private static unsafe void MergeKeyParts(int heads, int dv, int parts, float* results, float* output, float* logSumExp)
    {
        int resultLength = heads * (dv + 2);
        for (int h = 0; h < heads; h++)
        {
            float max = float.NegativeInfinity;
            for (int p = 0; p < parts; p++)
            {
                max = Math.Max(max, results[((long)p * resultLength) + h]);
            }

            var o = new Span<float>(output + ((long)h * dv), dv);
            o.Clear();
            if (float.IsNegativeInfinity(max))
            {
                logSumExp[h] = float.NegativeInfinity; // nothing visible: a zero row, as the tiled path
                continue;
            }

            float sum = 0f;
            for (int p = 0; p < parts; p++)
            {
                float* part = results + ((long)p * resultLength);
                if (float.IsNegativeInfinity(part[h]))
                {
                    continue;
                }

                float weight = MathF.Exp(part[h] - max);
                sum += weight * part[heads + h];
                TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(part + (2 * heads) + ((long)h * dv), dv), weight, o, o);
            }

            TensorPrimitives.Multiply(o, 1f / sum, o);
            logSumExp[h] = max + MathF.Log(sum);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void AttendFewQueries(
        AttentionOptions options, int b, int h, int queryLength, int keyLength, int queryOffset,
        float* q, float* k, float* v, float* output, float* logSumExp)
    {
        int heads = options.Heads, kvHeads = options.KvHeads, dqk = options.HeadDimQK, dv = options.HeadDimV;
        int g = h / options.GroupSize;
        float scale = options.EffectiveScale;
        // Padding, sparsity and ALiBi need each key checked (and biased); otherwise a query sees its positional range
        // and, beside a window, the sinks before it.
        bool perKey = options.NeedsElementMask || options.AlibiSlopes is not null;
        long qRow = (long)queryLength * heads, kRow = (long)keyLength * kvHeads;
        float* qb = q + (b * qRow * dqk), kb = k + (b * kRow * dqk), vb = v + (b * kRow * dv);
        float* ob = output + (b * qRow * dv), lb = logSumExp + (b * qRow);
        var scores = (fewQueryScores is { } held && held.Length >= keyLength ? held : fewQueryScores = new float[Math.Max(keyLength, 256)]).AsSpan();
        for (int i = 0; i < queryLength; i++)
        {
            int position = queryOffset + i;
            var (first, end) = options.KeyRange(position, position + 1, keyLength);
            int sinkEnd = options.Window > 0 && options.Sinks > 0 ? Math.Min(Math.Min(options.Sinks, first), keyLength) : 0;
            var o = new Span<float>(ob + ((((long)i * heads) + h) * dv), dv);

            // scores[0, sinkEnd) for the sinks, scores[sinkEnd, sinkEnd + end − first) for the range.
            int count = 0;
            float max = float.NegativeInfinity;
            for (int part = 0; part < 2; part++)
            {
                int from = part == 0 ? 0 : first, to = part == 0 ? sinkEnd : end;
                for (int j = from; j < to; j++, count++)
                {
                    float s;
                    if (perKey && !options.IsVisible(position, j))
                    {
                        s = float.NegativeInfinity;
                    }
                    else
                    {
                        s = scale * Gemv.Dot(kb + ((((long)j * kvHeads) + g) * dqk), qb + ((((long)i * heads) + h) * dqk), dqk, KeyPrefetch);
                        if (perKey)
                        {
                            s += options.Bias(h, position, j);
                        }
                    }

                    scores[count] = s;
                    max = Math.Max(max, s);
                }
            }

            o.Clear();
            if (float.IsNegativeInfinity(max))
            {
                lb[(h * queryLength) + i] = float.NegativeInfinity; // nothing visible: a zero row, as the tiled path
                continue;
            }

            var p = scores[..count];
            TensorPrimitives.Subtract(p, max, p);
            TensorPrimitives.Exp(p, p);
            float sum = TensorPrimitives.Sum(p);
            fixed (float* pp = p, op = o)
            {
                float* values = vb + ((long)g * dv);
                long stride = (long)kvHeads * dv;
                if (sinkEnd > 0)
                {
                    AccumulateRows(pp, values, stride, sinkEnd, op, dv);
                }

                AccumulateRows(pp + sinkEnd, values + (first * stride), stride, end - first, op, dv);
            }

            TensorPrimitives.Multiply(o, 1f / sum, o);
            lb[(h * queryLength) + i] = max + MathF.Log(sum);
        }
    }

    // out[0, dv) += Σ_j p[j]·values[j·stride, +dv): a slice of the output's columns at a time kept in registers over
    // all the rows (four vectors: 64 columns with Vector512, 16 with Vector128), so out is loaded and stored once per
    // slice rather than once per row.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void AccumulateRows(float* p, float* values, long stride, int rows, float* output, int dv)
    {
        int d = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            const int width = 16;
            for (; d <= dv - (4 * width); d += 4 * width)
            {
                float* column = values + d;
                var a0 = Vector512.Load(output + d);
                var a1 = Vector512.Load(output + d + width);
                var a2 = Vector512.Load(output + d + (2 * width));
                var a3 = Vector512.Load(output + d + (3 * width));
                for (int j = 0; j < rows; j++, column += stride)
                {
                    var pj = Vector512.Create(p[j]);
                    a0 = Vector512.FusedMultiplyAdd(Vector512.Load(column), pj, a0);
                    a1 = Vector512.FusedMultiplyAdd(Vector512.Load(column + width), pj, a1);
                    a2 = Vector512.FusedMultiplyAdd(Vector512.Load(column + (2 * width)), pj, a2);
                    a3 = Vector512.FusedMultiplyAdd(Vector512.Load(column + (3 * width)), pj, a3);
                }

                a0.Store(output + d);
                a1.Store(output + d + width);
                a2.Store(output + d + (2 * width));
                a3.Store(output + d + (3 * width));
            }

            for (; d <= dv - width; d += width)
            {
                float* column = values + d;
                var a0 = Vector512.Load(output + d);
                for (int j = 0; j < rows; j++, column += stride)
                {
                    a0 = Vector512.FusedMultiplyAdd(Vector512.Load(column), Vector512.Create(p[j]), a0);
                }

                a0.Store(output + d);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            const int width = 8;
            for (; d <= dv - (4 * width); d += 4 * width)
            {
                float* column = values + d;
                var a0 = Vector256.Load(output + d);
                var a1 = Vector256.Load(output + d + width);
                var a2 = Vector256.Load(output + d + (2 * width));
                var a3 = Vector256.Load(output + d + (3 * width));
                for (int j = 0; j < rows; j++, column += stride)
                {
                    var pj = Vector256.Create(p[j]);
                    a0 = Vector256.FusedMultiplyAdd(Vector256.Load(column), pj, a0);
                    a1 = Vector256.FusedMultiplyAdd(Vector256.Load(column + width), pj, a1);
                    a2 = Vector256.FusedMultiplyAdd(Vector256.Load(column + (2 * width)), pj, a2);
                    a3 = Vector256.FusedMultiplyAdd(Vector256.Load(column + (3 * width)), pj, a3);
                }

                a0.Store(output + d);
                a1.Store(output + d + width);
                a2.Store(output + d + (2 * width));
                a3.Store(output + d + (3 * width));
            }

            for (; d <= dv - width; d += width)
            {
                float* column = values + d;
                var a0 = Vector256.Load(output + d);
                for (int j = 0; j < rows; j++, column += stride)
                {
                    a0 = Vector256.FusedMultiplyAdd(Vector256.Load(column), Vector256.Create(p[j]), a0);
                }

                a0.Store(output + d);
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            // Arm's NEON, x86 without AVX: fused where the hardware fuses (see Gemv.Dot).
            const int width = 4;
            for (; d <= dv - (4 * width); d += 4 * width)
            {
                float* column = values + d;
                var a0 = Vector128.Load(output + d);
                var a1 = Vector128.Load(output + d + width);
                var a2 = Vector128.Load(output + d + (2 * width));
                var a3 = Vector128.Load(output + d + (3 * width));
                for (int j = 0; j < rows; j++, column += stride)
                {
                    var pj = Vector128.Create(p[j]);
                    a0 = Vector128.MultiplyAddEstimate(Vector128.Load(column), pj, a0);
                    a1 = Vector128.MultiplyAddEstimate(Vector128.Load(column + width), pj, a1);
                    a2 = Vector128.MultiplyAddEstimate(Vector128.Load(column + (2 * width)), pj, a2);
                    a3 = Vector128.MultiplyAddEstimate(Vector128.Load(column + (3 * width)), pj, a3);
                }

                a0.Store(output + d);
                a1.Store(output + d + width);
                a2.Store(output + d + (2 * width));
                a3.Store(output + d + (3 * width));
            }
        }

        for (; d < dv; d++)
        {
            float sum = output[d];
            float* column = values + d;
            for (int j = 0; j < rows; j++, column += stride)
            {
                sum += p[j] * column[0];
            }

            output[d] = sum;
        }
    }
}
