using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace HeadLens.Attention;

// The same operations at 4 lanes, where the widest accelerated vector is Vector128: Arm's NEON, and x86 without
// AVX2 and FMA. Written with the cross-platform Vector128 operations only, so one body serves both. Each public
// method of AttentionPanels comes here when neither the 16- nor the 8-lane version runs; the contracts are the ones
// documented there. What changes with the width:
//   - one product kernel, four rows × 8 columns (8 accumulators: x86 has 16 registers and, without FMA, needs a
//     spare one for each product), serves MultiplyAdd, MultiplyAdd32, MultiplyAddTransposedA and both products of
//     AttendRows; a block of fewer than four rows repeats its last row (the same sums, stored twice);
//   - AttendRows writes S to p and multiplies P·V as a product, as the 8-lane version does;
//   - multiply-adds are MultiplyAddEstimate: fused where the machine has FMA (Arm), a product then a sum where it
//     has not (x86 SSE), so the bits there differ from the wider versions' by float rounding;
//   - a row's sum keeps 16 lanes as four vectors, the [rows, 16] layout of the other widths;
//   - keys are transposed into their blocks by a plain loop: once per key tile per head, ~1% of the tile's products.
internal static partial class AttentionPanels
{
    /// <summary>
    /// 2^x for 4 lanes: the clamp, rounding, polynomial and zeroing below the floor of the 8-lane version, with
    /// multiply-adds that are fused only where the machine has FMA: there its bits, within 2e-7; without FMA each step
    /// rounds its product too, within 2.3e-7.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Exp2(Vector128<float> x)
    {
        var floor = Vector128.Create(Exp2Floor);
        var visible = Vector128.GreaterThanOrEqual(x, floor);
        // A NaN lane becomes the floor (x86) or stays NaN (Arm); either way `visible` zeroes it at the end.
        x = Vector128.MaxNative(x, floor);
        var magic = Vector128.Create(RoundingMagic);
        var rounded = x + magic;
        var f = x - (rounded - magic);
        var p = Vector128.MultiplyAddEstimate(Vector128.Create(0.0013266970636323094f), f, Vector128.Create(0.009675459936261177f));
        p = Vector128.MultiplyAddEstimate(p, f, Vector128.Create(0.05550742521882057f));
        p = Vector128.MultiplyAddEstimate(p, f, Vector128.Create(0.24022121727466583f));
        p = Vector128.MultiplyAddEstimate(p, f, Vector128.Create(0.6931469440460205f));
        p = Vector128.MultiplyAddEstimate(p, f, Vector128.Create(1.0000001192092896f));
        var power = Vector128.ShiftLeft(rounded.AsInt32(), 23).AsSingle();
        return (p * power) & visible.AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void TransposeBlock128(float* x, int ld, int rows, float factor, float* block)
    {
        for (int d = 0; d < Width; d++)
        {
            float* target = block + ((long)d * Width);
            for (int j = 0; j < rows; j++)
            {
                target[j] = factor * x[((long)j * ld) + d];
            }

            new Span<float>(target + rows, Width - rows).Clear();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe float Dot128(float* x, float* y)
    {
        var sum0 = Vector128.Load(x) * Vector128.Load(y);
        var sum1 = Vector128.Load(x + 4) * Vector128.Load(y + 4);
        for (int j = 8; j < Width; j += 8)
        {
            sum0 = Vector128.MultiplyAddEstimate(Vector128.Load(x + j), Vector128.Load(y + j), sum0);
            sum1 = Vector128.MultiplyAddEstimate(Vector128.Load(x + j + 4), Vector128.Load(y + j + 4), sum1);
        }

        return Vector128.Sum(sum0 + sum1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void ScaleRow128(float* from, float factor, float* to)
    {
        var scale = Vector128.Create(factor);
        for (int j = 0; j < Width; j += 4)
        {
            (Vector128.Load(from + j) * scale).Store(to + j);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void CopyRow128(float* from, float* to)
    {
        for (int j = 0; j < Width; j += 4)
        {
            Vector128.Load(from + j).Store(to + j);
        }
    }

    /// <summary>
    /// Four rows of C, 8 columns: c_r[0..8) (+)= Σ_p a_r[p·step] · b[p·ldb + 0..8) over `depth` steps, for r = 0..3.
    /// step = 1 reads rows of A, step = lda its columns (Aᵀ). Rows may repeat (a block's last row standing in for
    /// the missing ones): every c is loaded before any is stored, so a repeated row gets its own sums, twice.
    /// </summary>
    // Compiled optimized at once, as the 8-lane SixRows is: as tier-0 code a short call's first runs were 2-3× slower.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void FourRows8(
        float* a0, float* a1, float* a2, float* a3, long step, int depth, float* b, int ldb,
        float* c0, float* c1, float* c2, float* c3, bool add)
    {
        Vector128<float> x00, x01, x10, x11, x20, x21, x30, x31;
        if (add)
        {
            x00 = Vector128.Load(c0); x01 = Vector128.Load(c0 + 4); x10 = Vector128.Load(c1); x11 = Vector128.Load(c1 + 4);
            x20 = Vector128.Load(c2); x21 = Vector128.Load(c2 + 4); x30 = Vector128.Load(c3); x31 = Vector128.Load(c3 + 4);
        }
        else
        {
            x00 = x01 = x10 = x11 = x20 = x21 = x30 = x31 = Vector128<float>.Zero;
        }

        float* bp = b;
        long ldbLong = ldb, at = 0;
        int p = 0;
        // Two steps per trip, as in the wider kernels: the loop's own instructions otherwise take issue slots the
        // products need.
        for (; p + 2 <= depth; p += 2, at += 2 * step, bp += 2 * ldbLong)
        {
            var b0 = Vector128.Load(bp);
            var b1 = Vector128.Load(bp + 4);
            var x = Vector128.Create(a0[at]);
            x00 = Vector128.MultiplyAddEstimate(x, b0, x00); x01 = Vector128.MultiplyAddEstimate(x, b1, x01);
            x = Vector128.Create(a1[at]);
            x10 = Vector128.MultiplyAddEstimate(x, b0, x10); x11 = Vector128.MultiplyAddEstimate(x, b1, x11);
            x = Vector128.Create(a2[at]);
            x20 = Vector128.MultiplyAddEstimate(x, b0, x20); x21 = Vector128.MultiplyAddEstimate(x, b1, x21);
            x = Vector128.Create(a3[at]);
            x30 = Vector128.MultiplyAddEstimate(x, b0, x30); x31 = Vector128.MultiplyAddEstimate(x, b1, x31);
            long next = at + step;
            b0 = Vector128.Load(bp + ldbLong);
            b1 = Vector128.Load(bp + ldbLong + 4);
            x = Vector128.Create(a0[next]);
            x00 = Vector128.MultiplyAddEstimate(x, b0, x00); x01 = Vector128.MultiplyAddEstimate(x, b1, x01);
            x = Vector128.Create(a1[next]);
            x10 = Vector128.MultiplyAddEstimate(x, b0, x10); x11 = Vector128.MultiplyAddEstimate(x, b1, x11);
            x = Vector128.Create(a2[next]);
            x20 = Vector128.MultiplyAddEstimate(x, b0, x20); x21 = Vector128.MultiplyAddEstimate(x, b1, x21);
            x = Vector128.Create(a3[next]);
            x30 = Vector128.MultiplyAddEstimate(x, b0, x30); x31 = Vector128.MultiplyAddEstimate(x, b1, x31);
        }

        if (p < depth)
        {
            var b0 = Vector128.Load(bp);
            var b1 = Vector128.Load(bp + 4);
            var x = Vector128.Create(a0[at]);
            x00 = Vector128.MultiplyAddEstimate(x, b0, x00); x01 = Vector128.MultiplyAddEstimate(x, b1, x01);
            x = Vector128.Create(a1[at]);
            x10 = Vector128.MultiplyAddEstimate(x, b0, x10); x11 = Vector128.MultiplyAddEstimate(x, b1, x11);
            x = Vector128.Create(a2[at]);
            x20 = Vector128.MultiplyAddEstimate(x, b0, x20); x21 = Vector128.MultiplyAddEstimate(x, b1, x21);
            x = Vector128.Create(a3[at]);
            x30 = Vector128.MultiplyAddEstimate(x, b0, x30); x31 = Vector128.MultiplyAddEstimate(x, b1, x31);
        }

        x00.Store(c0); x01.Store(c0 + 4); x10.Store(c1); x11.Store(c1 + 4);
        x20.Store(c2); x21.Store(c2 + 4); x30.Store(c3); x31.Store(c3 + 4);
    }

    /// <summary>
    /// C[rows, width] (+)= A·B (rowStep = lda, step = 1) or Aᵀ·B (A stored [depth, rows]: rowStep = 1, step = lda),
    /// width 64 or 32, in blocks of four rows by FourRows8.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void MultiplyAdd128(int rows, int depth, float* a, long rowStep, long step, float* b, int ldb, float* c, int ldc, bool add, int width)
    {
        int last = rows - 1;
        for (int i = 0; i < rows; i += 4)
        {
            int i1 = Math.Min(i + 1, last), i2 = Math.Min(i + 2, last), i3 = Math.Min(i + 3, last);
            float* a0 = a + (i * rowStep), a1 = a + (i1 * rowStep), a2 = a + (i2 * rowStep), a3 = a + (i3 * rowStep);
            float* c0 = c + ((long)i * ldc), c1 = c + ((long)i1 * ldc), c2 = c + ((long)i2 * ldc), c3 = c + ((long)i3 * ldc);
            for (int column = 0; column < width; column += 8)
            {
                FourRows8(a0, a1, a2, a3, step, depth, b + column, ldb, c0 + column, c1 + column, c2 + column, c3 + column, add);
            }
        }
    }

    /// <summary>
    /// The online-softmax update of one 64-wide row of base-2 scores, in place, at 4 lanes (SoftmaxRow256's step):
    /// row ← 2^(row − m), sum[16] += it, m, sum and the acc row (accWidth wide) rescaled when the row's max passes m
    /// by more than the slack. A row with nothing visible so far becomes zeros and leaves acc, sum and m as they were.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void SoftmaxRow128(float* row, float* max, float* sum, float* acc, int accWidth)
    {
        var tileMax = Vector128.Load(row);
        for (int j = 4; j < Width; j += 4)
        {
            tileMax = Vector128.MaxNative(tileMax, Vector128.Load(row + j));
        }

        float m = *max;
        if (float.IsNegativeInfinity(m) || Vector128.GreaterThanAny(tileMax, Vector128.Create(m + RescaleSlack)))
        {
            float newMax = HorizontalMax(tileMax);
            newMax = newMax > m ? newMax : m;
            if (float.IsNegativeInfinity(newMax))
            {
                new Span<float>(row, Width).Clear();
                return;
            }

            // The running max rose: rescale what was summed against the old one (2^−∞ = 0 for the first tile).
            var c = Exp2(Vector128.Create(m - newMax));
            for (int j = 0; j < 16; j += 4)
            {
                (Vector128.Load(sum + j) * c).Store(sum + j);
            }

            for (int j = 0; j < accWidth; j += 4)
            {
                (Vector128.Load(acc + j) * c).Store(acc + j);
            }

            *max = m = newMax;
        }

        var shift = Vector128.Create(m);
        Vector128<float> s0 = Vector128.Load(sum), s1 = Vector128.Load(sum + 4), s2 = Vector128.Load(sum + 8), s3 = Vector128.Load(sum + 12);
        for (int j = 0; j < Width; j += 16)
        {
            var e0 = Exp2(Vector128.Load(row + j) - shift);
            var e1 = Exp2(Vector128.Load(row + j + 4) - shift);
            var e2 = Exp2(Vector128.Load(row + j + 8) - shift);
            var e3 = Exp2(Vector128.Load(row + j + 12) - shift);
            e0.Store(row + j);
            e1.Store(row + j + 4);
            e2.Store(row + j + 8);
            e3.Store(row + j + 12);
            s0 += e0;
            s1 += e1;
            s2 += e2;
            s3 += e3;
        }

        s0.Store(sum);
        s1.Store(sum + 4);
        s2.Store(sum + 8);
        s3.Store(sum + 12);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void OnlineSoftmaxRows128(int rows, float* s, int ls, float* acc, int ldacc, float* max, float* sums, int accWidth)
    {
        for (int i = 0; i < rows; i++)
        {
            SoftmaxRow128(s + ((long)i * ls), max + i, sums + (16L * i), acc + ((long)i * ldacc), accWidth);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void AttendRows128(
        float* q0, float* q1, float* q2, float* q3, float* keys, float* values, int* ranges, int depth, float* acc, float* max, float* sums, float* p)
    {
        // S only as far as the last key a row sees, in whole 8-column blocks: ranges hide everything past depth, and
        // HideOutside128 overwrites the columns left unwritten.
        int columns = ranges == null ? Width : (depth + 7) & ~7;
        float* p1 = p + Width, p2 = p + (2 * Width), p3 = p + (3 * Width);
        for (int column = 0; column < columns; column += 8)
        {
            FourRows8(q0, q1, q2, q3, 1, Width, keys + column, Width, p + column, p1 + column, p2 + column, p3 + column, add: false);
        }

        for (int i = 0; i < 4; i++)
        {
            if (ranges != null)
            {
                HideOutside128(p + (i * Width), ranges[2 * i], ranges[(2 * i) + 1]);
            }

            SoftmaxRow128(p + (i * Width), max + i, sums + (16 * i), acc + (i * Width), Width);
        }

        float* acc1 = acc + Width, acc2 = acc + (2 * Width), acc3 = acc + (3 * Width);
        for (int column = 0; column < Width; column += 8)
        {
            FourRows8(p, p1, p2, p3, 1, depth, values + column, Width, acc + column, acc1 + column, acc2 + column, acc3 + column, add: true);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void HideOutside128(float* row, int first, int end)
    {
        var hidden = Vector128.Create(float.NegativeInfinity);
        var column = Vector128.Create(0, 1, 2, 3);
        var lower = Vector128.Create(first);
        var upper = Vector128.Create(end);
        for (int j = 0; j < Width; j += 4, column += Vector128.Create(4))
        {
            var visible = Vector128.GreaterThanOrEqual(column, lower) & Vector128.LessThan(column, upper);
            Vector128.ConditionalSelect(visible.AsSingle(), Vector128.Load(row + j), hidden).Store(row + j);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void ProbabilitiesAndScoreGrad128(int rows, float* s, float* dp, int ls, float* logSumExp, float* rowTerm, float scale)
    {
        var factor = Vector128.Create(scale);
        for (int i = 0; i < rows; i++)
        {
            float* si = s + ((long)i * ls), di = dp + ((long)i * ls);
            float lse = logSumExp[i];
            var shift = Vector128.Create(float.IsNegativeInfinity(lse) ? float.PositiveInfinity : lse * Log2E);
            var d = Vector128.Create(rowTerm[i]);
            for (int j = 0; j < Width; j += 4)
            {
                var pj = Exp2(Vector128.Load(si + j) - shift);
                pj.Store(si + j);
                (factor * pj * (Vector128.Load(di + j) - d)).Store(di + j);
            }
        }
    }

    /// <summary>The largest of the 4 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HorizontalMax(Vector128<float> m)
    {
        float largest = m.GetElement(0);
        for (int lane = 1; lane < 4; lane++)
        {
            float x = m.GetElement(lane);
            largest = largest > x ? largest : x;
        }

        return largest;
    }
}
