using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using HeadLens.Kernels;

namespace HeadLens.Attention;

// The forward for a few queries against a cache (a decode step: Tq = 1, or a few for speculative or chunked steps).
// Per (sequence, head, query): the scores are row dots q·k_j over the cached keys as they lie, then the softmax, then
// out = Σ_j p_j·v_j as FMAs over the cached value rows. Nothing is packed: the tiled path's Gemm packed (transposed)
// every head's keys and copied its values on every token, work that a single query row cannot amortise (17% of a
// GPT-2 decode step's calling thread at 300 cached positions, perf). Same visibility rules and the same base-e
// logSumExp as the tiled path.
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
        long work = (long)batch * heads * queryLength * keyLength * (options.HeadDimQK + options.HeadDimV);
        Run(batch * heads, item => AttendFewQueries(options, item / heads, item % heads, queryLength, keyLength, queryOffset, q, k, v, output, logSumExp), work);
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
