using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
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

    // Per calling thread: each part's running max [H], sum [H] and unnormalised output [H, Dv], for the merge.
    [ThreadStatic]
    private static float[]? keyPartResults;

    // Per worker: one block's scores [H, KeyBlock].
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
        var scores = keyBlockScores is { } held && held.Length >= heads * KeyBlock ? held : keyBlockScores = new float[heads * KeyBlock];
        fixed (float* blockScores = scores)
        {
            for (int u = from; u < to;)
            {
                // A block of consecutive keys: it never crosses from the sinks into the range.
                int stop = Math.Min(Math.Min(to, u + KeyBlock), u < sinkEnd ? sinkEnd : to);
                int count = stop - u, key = u < sinkEnd ? u : first + (u - sinkEnd);

                // S[h, j] = scale · q_h · k_j, the key rows in order.
                float* keyRow = kb + (key * keyStride);
                for (int j = 0; j < count; j++, keyRow += keyStride)
                {
                    for (int h = 0; h < heads; h++)
                    {
                        blockScores[(h * KeyBlock) + j] = scale * Gemv.Dot(keyRow + ((h / group) * dqk), qb + ((long)h * dqk), dqk);
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

                // outputs_h += Σ_j p_hj · v_j, the value rows in order. One key for every head before the next: blocks
                // of 2, 4 or 8 keys per head read the rows in a stride again and were 5-20% slower.
                float* valueRow = vb + (key * valueStride);
                for (int j = 0; j < count; j++, valueRow += valueStride)
                {
                    for (int h = 0; h < heads; h++)
                    {
                        AccumulateRows(blockScores + (h * KeyBlock) + j, valueRow + ((h / group) * dv), valueStride, 1, outputs + ((long)h * dv), dv);
                    }
                }

                u = stop;
            }
        }
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
                        s = scale * Gemv.Dot(kb + ((((long)j * kvHeads) + g) * dqk), qb + ((((long)i * heads) + h) * dqk), dqk);
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
    // all the rows (four vectors: 64 columns with Vector512), so out is loaded and stored once per slice rather than
    // once per row.
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
