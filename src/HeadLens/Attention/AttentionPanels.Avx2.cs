using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace HeadLens.Attention;

// The same operations on machines with AVX2 and FMA but no AVX-512 (most laptop and desktop CPUs, AMD before Zen 4):
// 8-lane vectors and 16 registers instead of 16 lanes and 32. Each public method of AttentionPanels comes here when
// Wide is false; the contracts are the ones documented there. What changes with the width:
//   - the products run six rows × 16 columns (the backward) or four rows × 24 (AttendRows) at a time, 12
//     accumulators, with two rows × 32 columns for leftover rows, where AVX-512 holds four whole 64-wide rows;
//   - AttendRows cannot keep four rows of S in registers (32 vectors), so it writes S to p, masks and exponentiates
//     it there (L1) and multiplies P·V as a product;
//   - 2^n in Exp2 is built from the exponent bits (AVX2 has no vscalefps): n + 127 shifted into place, exact for the
//     n ≥ −125 the floor leaves;
//   - a row's sum keeps 16 lanes as two vectors, so the [rows, 16] layout of sums is the same at both widths.
// The entry points are compiled fully optimized at once (AggressiveOptimization), as the 16-lane ones are: tier-0
// code calls Vector256.Load and friends instead of inlining them, and a short call (T = 256) ran 2-3× slower for
// its first dozens of calls.
internal static partial class AttentionPanels
{
    // 1.5·2²³ + 127: see Exp2.
    private const float RoundingMagic = 12583039f;

    /// <summary>2^x for 8 lanes: the same clamp, polynomial and zeroing below the floor as the 16-lane version.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp2(Vector256<float> x)
    {
        var floor = Vector256.Create(Exp2Floor);
        var visible = Vector256.GreaterThanOrEqual(x, floor);
        x = Avx.Max(x, floor); // vmaxps returns its second operand for a NaN: NaN becomes the floor, then 0
        // Adding 1.5·2²³ + 127 rounds x to the nearest integer n (at that magnitude the float's step is 1) and leaves
        // n + 127 in the low mantissa bits; shifted left by 23 they are 2^n's exponent field, and the constant's own
        // bits shift out. One add and one subtract instead of vroundps (2 µops), vcvttps2dq and an integer add. At an
        // exact half-integer the sum's tie goes to even, and the constant is odd, so n is the odd neighbour where the
        // 16 lanes' vrndscaleps takes the even one: f = +½ here against −½ there. p(½)·2⁻¹ and p(−½) round to the same
        // float, so the bits agree at every x (the Exp2 test checks every half-integer down to the floor).
        var magic = Vector256.Create(RoundingMagic);
        var rounded = x + magic;
        var f = x - (rounded - magic);
        var p = Vector256.FusedMultiplyAdd(Vector256.Create(0.0013266970636323094f), f, Vector256.Create(0.009675459936261177f));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(0.05550742521882057f));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(0.24022121727466583f));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(0.6931469440460205f));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(1.0000001192092896f));
        var power = Vector256.ShiftLeft(rounded.AsInt32(), 23).AsSingle();
        return (p * power) & visible;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void TransposeBlock256(float* x, int ld, int rows, float factor, float* block)
    {
        var scale = Vector256.Create(factor);
        float* zero = stackalloc float[Width];
        new Span<float>(zero, Width).Clear();
        for (int j0 = 0; j0 < Width; j0 += 8)
        {
            float* row0 = Row(0), row1 = Row(1), row2 = Row(2), row3 = Row(3), row4 = Row(4), row5 = Row(5), row6 = Row(6), row7 = Row(7);
            for (int d0 = 0; d0 < Width; d0 += 8)
            {
                // 8×8 in registers: pairs of floats, then pairs of pairs, then 128-bit halves.
                var t0 = Avx.UnpackLow(Vector256.Load(row0 + d0), Vector256.Load(row1 + d0));
                var t1 = Avx.UnpackHigh(Vector256.Load(row0 + d0), Vector256.Load(row1 + d0));
                var t2 = Avx.UnpackLow(Vector256.Load(row2 + d0), Vector256.Load(row3 + d0));
                var t3 = Avx.UnpackHigh(Vector256.Load(row2 + d0), Vector256.Load(row3 + d0));
                var t4 = Avx.UnpackLow(Vector256.Load(row4 + d0), Vector256.Load(row5 + d0));
                var t5 = Avx.UnpackHigh(Vector256.Load(row4 + d0), Vector256.Load(row5 + d0));
                var t6 = Avx.UnpackLow(Vector256.Load(row6 + d0), Vector256.Load(row7 + d0));
                var t7 = Avx.UnpackHigh(Vector256.Load(row6 + d0), Vector256.Load(row7 + d0));
                var u0 = Avx.Shuffle(t0, t2, 0x44);
                var u1 = Avx.Shuffle(t0, t2, 0xEE);
                var u2 = Avx.Shuffle(t1, t3, 0x44);
                var u3 = Avx.Shuffle(t1, t3, 0xEE);
                var u4 = Avx.Shuffle(t4, t6, 0x44);
                var u5 = Avx.Shuffle(t4, t6, 0xEE);
                var u6 = Avx.Shuffle(t5, t7, 0x44);
                var u7 = Avx.Shuffle(t5, t7, 0xEE);

                // Column c of the 8 rows, scaled, into row d0 + c of the block, at keys j0..j0+7.
                float* b = block + ((long)d0 * Width) + j0;
                (Avx.Permute2x128(u0, u4, 0x20) * scale).Store(b);
                (Avx.Permute2x128(u1, u5, 0x20) * scale).Store(b + Width);
                (Avx.Permute2x128(u2, u6, 0x20) * scale).Store(b + (2 * Width));
                (Avx.Permute2x128(u3, u7, 0x20) * scale).Store(b + (3 * Width));
                (Avx.Permute2x128(u0, u4, 0x31) * scale).Store(b + (4 * Width));
                (Avx.Permute2x128(u1, u5, 0x31) * scale).Store(b + (5 * Width));
                (Avx.Permute2x128(u2, u6, 0x31) * scale).Store(b + (6 * Width));
                (Avx.Permute2x128(u3, u7, 0x31) * scale).Store(b + (7 * Width));
            }

            float* Row(int j) => j0 + j < rows ? x + ((long)(j0 + j) * ld) : zero;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe float Dot256(float* x, float* y)
    {
        var sum0 = Vector256.FusedMultiplyAdd(Vector256.Load(x + 8), Vector256.Load(y + 8), Vector256.Load(x) * Vector256.Load(y));
        var sum1 = Vector256.FusedMultiplyAdd(Vector256.Load(x + 24), Vector256.Load(y + 24), Vector256.Load(x + 16) * Vector256.Load(y + 16));
        var sum2 = Vector256.FusedMultiplyAdd(Vector256.Load(x + 40), Vector256.Load(y + 40), Vector256.Load(x + 32) * Vector256.Load(y + 32));
        var sum3 = Vector256.FusedMultiplyAdd(Vector256.Load(x + 56), Vector256.Load(y + 56), Vector256.Load(x + 48) * Vector256.Load(y + 48));
        return Vector256.Sum((sum0 + sum1) + (sum2 + sum3));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void ScaleRow256(float* from, float factor, float* to)
    {
        var scale = Vector256.Create(factor);
        for (int j = 0; j < Width; j += 8)
        {
            (Vector256.Load(from + j) * scale).Store(to + j);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void CopyRow256(float* from, float* to)
    {
        for (int j = 0; j < Width; j += 8)
        {
            Vector256.Load(from + j).Store(to + j);
        }
    }

    /// <summary>
    /// c0 and c1 (width floats each: 64 or 32) (+)= Σ_p a0[p·step]·B[p, :] and Σ_p a1[p·step]·B[p, :] over `depth`
    /// rows of B (stride ldb): two rows of C in halves of 32 columns, 8 accumulators. step = 1 reads rows of A; step = lda
    /// reads columns of A (Aᵀ). For the rows that SixRows leaves.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void RowPair(float* a0, float* a1, long step, int depth, float* b, int ldb, float* c0, float* c1, bool add, int width)
    {
        for (int half = 0; half < width; half += 32)
        {
            Vector256<float> x00, x01, x02, x03, x10, x11, x12, x13;
            if (add)
            {
                x00 = Vector256.Load(c0 + half); x01 = Vector256.Load(c0 + half + 8); x02 = Vector256.Load(c0 + half + 16); x03 = Vector256.Load(c0 + half + 24);
                x10 = Vector256.Load(c1 + half); x11 = Vector256.Load(c1 + half + 8); x12 = Vector256.Load(c1 + half + 16); x13 = Vector256.Load(c1 + half + 24);
            }
            else
            {
                x00 = x01 = x02 = x03 = x10 = x11 = x12 = x13 = Vector256<float>.Zero;
            }

            float* bp = b + half, ap0 = a0, ap1 = a1;
            for (int p = 0; p < depth; p++, bp += ldb, ap0 += step, ap1 += step)
            {
                var b0 = Vector256.Load(bp);
                var b1 = Vector256.Load(bp + 8);
                var b2 = Vector256.Load(bp + 16);
                var b3 = Vector256.Load(bp + 24);
                var x = Vector256.Create(*ap0);
                x00 = Vector256.FusedMultiplyAdd(x, b0, x00); x01 = Vector256.FusedMultiplyAdd(x, b1, x01);
                x02 = Vector256.FusedMultiplyAdd(x, b2, x02); x03 = Vector256.FusedMultiplyAdd(x, b3, x03);
                x = Vector256.Create(*ap1);
                x10 = Vector256.FusedMultiplyAdd(x, b0, x10); x11 = Vector256.FusedMultiplyAdd(x, b1, x11);
                x12 = Vector256.FusedMultiplyAdd(x, b2, x12); x13 = Vector256.FusedMultiplyAdd(x, b3, x13);
            }

            x00.Store(c0 + half); x01.Store(c0 + half + 8); x02.Store(c0 + half + 16); x03.Store(c0 + half + 24);
            x10.Store(c1 + half); x11.Store(c1 + half + 8); x12.Store(c1 + half + 16); x13.Store(c1 + half + 24);
        }
    }

    // One row of C: as RowPair for a single row (8 accumulators over the whole 64 columns).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void OneRow(float* a, long step, int depth, float* b, int ldb, float* c, bool add)
    {
        Vector256<float> x0, x1, x2, x3, x4, x5, x6, x7;
        if (add)
        {
            x0 = Vector256.Load(c); x1 = Vector256.Load(c + 8); x2 = Vector256.Load(c + 16); x3 = Vector256.Load(c + 24);
            x4 = Vector256.Load(c + 32); x5 = Vector256.Load(c + 40); x6 = Vector256.Load(c + 48); x7 = Vector256.Load(c + 56);
        }
        else
        {
            x0 = x1 = x2 = x3 = x4 = x5 = x6 = x7 = Vector256<float>.Zero;
        }

        float* bp = b, ap = a;
        for (int p = 0; p < depth; p++, bp += ldb, ap += step)
        {
            var x = Vector256.Create(*ap);
            x0 = Vector256.FusedMultiplyAdd(x, Vector256.Load(bp), x0); x1 = Vector256.FusedMultiplyAdd(x, Vector256.Load(bp + 8), x1);
            x2 = Vector256.FusedMultiplyAdd(x, Vector256.Load(bp + 16), x2); x3 = Vector256.FusedMultiplyAdd(x, Vector256.Load(bp + 24), x3);
            x4 = Vector256.FusedMultiplyAdd(x, Vector256.Load(bp + 32), x4); x5 = Vector256.FusedMultiplyAdd(x, Vector256.Load(bp + 40), x5);
            x6 = Vector256.FusedMultiplyAdd(x, Vector256.Load(bp + 48), x6); x7 = Vector256.FusedMultiplyAdd(x, Vector256.Load(bp + 56), x7);
        }

        x0.Store(c); x1.Store(c + 8); x2.Store(c + 16); x3.Store(c + 24);
        x4.Store(c + 32); x5.Store(c + 40); x6.Store(c + 48); x7.Store(c + 56);
    }

    /// <summary>
    /// Six rows of C, 16 columns from <paramref name="column"/>: c[r, column..+16] (+)= Σ_p a[r·rowStep + p·step] ·
    /// B[p, column..+16]: 12 accumulators, fed per step by 2 loads of B and 6 broadcasts, which keeps the loads under
    /// the FMAs. With two depth steps per iteration it ran at the 8-lane FMA peak on blocks in L1.
    /// </summary>
    // Too large for the JIT to inline into its callers, so it is a method of its own: compiled optimized at once, as
    // the entry points are. Under tiering it ran as tier-0 code for its first calls, and a short backward (T = 64)
    // took 0.8-2.2 ms in `bench attention` against 0.3-0.5 ms once optimized.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void SixRows(float* a, long rowStep, long step, int depth, float* b, int ldb, float* c, int ldc, int column, bool add)
    {
        float* c0 = c + column, c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc, c4 = c3 + ldc, c5 = c4 + ldc;
        Vector256<float> x00, x01, x10, x11, x20, x21, x30, x31, x40, x41, x50, x51;
        if (add)
        {
            x00 = Vector256.Load(c0); x01 = Vector256.Load(c0 + 8); x10 = Vector256.Load(c1); x11 = Vector256.Load(c1 + 8);
            x20 = Vector256.Load(c2); x21 = Vector256.Load(c2 + 8); x30 = Vector256.Load(c3); x31 = Vector256.Load(c3 + 8);
            x40 = Vector256.Load(c4); x41 = Vector256.Load(c4 + 8); x50 = Vector256.Load(c5); x51 = Vector256.Load(c5 + 8);
        }
        else
        {
            x00 = x01 = x10 = x11 = x20 = x21 = x30 = x31 = x40 = x41 = x50 = x51 = Vector256<float>.Zero;
        }

        float* a0 = a, a1 = a0 + rowStep, a2 = a1 + rowStep, a3 = a2 + rowStep, a4 = a3 + rowStep, a5 = a4 + rowStep;
        float* bp = b + column;
        long ldbLong = ldb, at = 0, p = 0;
        // Two steps per iteration: the loop's own instructions (the front end issues 5 per cycle) otherwise held the
        // 12 FMAs of a step to ~2 per cycle.
        for (; p + 2 <= depth; p += 2, at += 2 * step, bp += 2 * ldbLong)
        {
            var b0 = Vector256.Load(bp);
            var b1 = Vector256.Load(bp + 8);
            var x = Vector256.Create(a0[at]);
            x00 = Vector256.FusedMultiplyAdd(x, b0, x00); x01 = Vector256.FusedMultiplyAdd(x, b1, x01);
            x = Vector256.Create(a1[at]);
            x10 = Vector256.FusedMultiplyAdd(x, b0, x10); x11 = Vector256.FusedMultiplyAdd(x, b1, x11);
            x = Vector256.Create(a2[at]);
            x20 = Vector256.FusedMultiplyAdd(x, b0, x20); x21 = Vector256.FusedMultiplyAdd(x, b1, x21);
            x = Vector256.Create(a3[at]);
            x30 = Vector256.FusedMultiplyAdd(x, b0, x30); x31 = Vector256.FusedMultiplyAdd(x, b1, x31);
            x = Vector256.Create(a4[at]);
            x40 = Vector256.FusedMultiplyAdd(x, b0, x40); x41 = Vector256.FusedMultiplyAdd(x, b1, x41);
            x = Vector256.Create(a5[at]);
            x50 = Vector256.FusedMultiplyAdd(x, b0, x50); x51 = Vector256.FusedMultiplyAdd(x, b1, x51);
            long next = at + step;
            b0 = Vector256.Load(bp + ldbLong);
            b1 = Vector256.Load(bp + ldbLong + 8);
            x = Vector256.Create(a0[next]);
            x00 = Vector256.FusedMultiplyAdd(x, b0, x00); x01 = Vector256.FusedMultiplyAdd(x, b1, x01);
            x = Vector256.Create(a1[next]);
            x10 = Vector256.FusedMultiplyAdd(x, b0, x10); x11 = Vector256.FusedMultiplyAdd(x, b1, x11);
            x = Vector256.Create(a2[next]);
            x20 = Vector256.FusedMultiplyAdd(x, b0, x20); x21 = Vector256.FusedMultiplyAdd(x, b1, x21);
            x = Vector256.Create(a3[next]);
            x30 = Vector256.FusedMultiplyAdd(x, b0, x30); x31 = Vector256.FusedMultiplyAdd(x, b1, x31);
            x = Vector256.Create(a4[next]);
            x40 = Vector256.FusedMultiplyAdd(x, b0, x40); x41 = Vector256.FusedMultiplyAdd(x, b1, x41);
            x = Vector256.Create(a5[next]);
            x50 = Vector256.FusedMultiplyAdd(x, b0, x50); x51 = Vector256.FusedMultiplyAdd(x, b1, x51);
        }

        if (p < depth)
        {
            var b0 = Vector256.Load(bp);
            var b1 = Vector256.Load(bp + 8);
            var x = Vector256.Create(a0[at]);
            x00 = Vector256.FusedMultiplyAdd(x, b0, x00); x01 = Vector256.FusedMultiplyAdd(x, b1, x01);
            x = Vector256.Create(a1[at]);
            x10 = Vector256.FusedMultiplyAdd(x, b0, x10); x11 = Vector256.FusedMultiplyAdd(x, b1, x11);
            x = Vector256.Create(a2[at]);
            x20 = Vector256.FusedMultiplyAdd(x, b0, x20); x21 = Vector256.FusedMultiplyAdd(x, b1, x21);
            x = Vector256.Create(a3[at]);
            x30 = Vector256.FusedMultiplyAdd(x, b0, x30); x31 = Vector256.FusedMultiplyAdd(x, b1, x31);
            x = Vector256.Create(a4[at]);
            x40 = Vector256.FusedMultiplyAdd(x, b0, x40); x41 = Vector256.FusedMultiplyAdd(x, b1, x41);
            x = Vector256.Create(a5[at]);
            x50 = Vector256.FusedMultiplyAdd(x, b0, x50); x51 = Vector256.FusedMultiplyAdd(x, b1, x51);
        }

        x00.Store(c0); x01.Store(c0 + 8); x10.Store(c1); x11.Store(c1 + 8); x20.Store(c2); x21.Store(c2 + 8);
        x30.Store(c3); x31.Store(c3 + 8); x40.Store(c4); x41.Store(c4 + 8); x50.Store(c5); x51.Store(c5 + 8);
    }

    /// <summary>
    /// Four rows of C (stride 64), 24 columns from <paramref name="column"/> (three vectors, 12 accumulators):
    /// AttendRows's products over its four query rows (FourRows16 does the last 16 columns). Each step asks for one
    /// line of <paramref name="prefetch"/> (AttendRows's next blocks; a line already on its way costs one uop).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void FourRows24(float* a0, float* a1, float* a2, float* a3, int depth, float* b, float* c, int column, bool add, float* prefetch)
    {
        float* c0 = c + column, c1 = c0 + Width, c2 = c1 + Width, c3 = c2 + Width;
        Vector256<float> x00, x01, x02, x10, x11, x12, x20, x21, x22, x30, x31, x32;
        if (add)
        {
            x00 = Vector256.Load(c0); x01 = Vector256.Load(c0 + 8); x02 = Vector256.Load(c0 + 16);
            x10 = Vector256.Load(c1); x11 = Vector256.Load(c1 + 8); x12 = Vector256.Load(c1 + 16);
            x20 = Vector256.Load(c2); x21 = Vector256.Load(c2 + 8); x22 = Vector256.Load(c2 + 16);
            x30 = Vector256.Load(c3); x31 = Vector256.Load(c3 + 8); x32 = Vector256.Load(c3 + 16);
        }
        else
        {
            x00 = x01 = x02 = x10 = x11 = x12 = x20 = x21 = x22 = x30 = x31 = x32 = Vector256<float>.Zero;
        }

        float* bp = b + column;
        long p = 0;
        // Four steps per iteration, then two, then one. Against two steps per iteration (SixRows's) the forward ran
        // 4-12% faster in 9 of 10 same-process A/B runs with AVX-512 off on an Emerald Rapids Xeon (T = 256 to 4096, 1
        // and 2 threads; one level), with the same bits: each accumulator still sums in order. AttendRows runs six such
        // loops per call.
        for (; p + 4 <= depth; p += 4, bp += 4 * Width, prefetch += 64)
        {
            Sse.Prefetch0(prefetch);
            Sse.Prefetch0(prefetch + 16);
            Vector256<float> x;
            var b0 = Vector256.Load(bp);
            var b1 = Vector256.Load(bp + 8);
            var b2 = Vector256.Load(bp + 16);
            x = Vector256.Create(a0[p]);
            x00 = Vector256.FusedMultiplyAdd(x, b0, x00); x01 = Vector256.FusedMultiplyAdd(x, b1, x01); x02 = Vector256.FusedMultiplyAdd(x, b2, x02);
            x = Vector256.Create(a1[p]);
            x10 = Vector256.FusedMultiplyAdd(x, b0, x10); x11 = Vector256.FusedMultiplyAdd(x, b1, x11); x12 = Vector256.FusedMultiplyAdd(x, b2, x12);
            x = Vector256.Create(a2[p]);
            x20 = Vector256.FusedMultiplyAdd(x, b0, x20); x21 = Vector256.FusedMultiplyAdd(x, b1, x21); x22 = Vector256.FusedMultiplyAdd(x, b2, x22);
            x = Vector256.Create(a3[p]);
            x30 = Vector256.FusedMultiplyAdd(x, b0, x30); x31 = Vector256.FusedMultiplyAdd(x, b1, x31); x32 = Vector256.FusedMultiplyAdd(x, b2, x32);
            b0 = Vector256.Load(bp + Width);
            b1 = Vector256.Load(bp + Width + 8);
            b2 = Vector256.Load(bp + Width + 16);
            x = Vector256.Create(a0[p + 1]);
            x00 = Vector256.FusedMultiplyAdd(x, b0, x00); x01 = Vector256.FusedMultiplyAdd(x, b1, x01); x02 = Vector256.FusedMultiplyAdd(x, b2, x02);
            x = Vector256.Create(a1[p + 1]);
            x10 = Vector256.FusedMultiplyAdd(x, b0, x10); x11 = Vector256.FusedMultiplyAdd(x, b1, x11); x12 = Vector256.FusedMultiplyAdd(x, b2, x12);
            x = Vector256.Create(a2[p + 1]);
            x20 = Vector256.FusedMultiplyAdd(x, b0, x20); x21 = Vector256.FusedMultiplyAdd(x, b1, x21); x22 = Vector256.FusedMultiplyAdd(x, b2, x22);
            x = Vector256.Create(a3[p + 1]);
            x30 = Vector256.FusedMultiplyAdd(x, b0, x30); x31 = Vector256.FusedMultiplyAdd(x, b1, x31); x32 = Vector256.FusedMultiplyAdd(x, b2, x32);

            Sse.Prefetch0(prefetch + 32);
            Sse.Prefetch0(prefetch + 48);
            b0 = Vector256.Load(bp + (2 * Width));
            b1 = Vector256.Load(bp + (2 * Width) + 8);
            b2 = Vector256.Load(bp + (2 * Width) + 16);
            x = Vector256.Create(a0[p + 2]);
            x00 = Vector256.FusedMultiplyAdd(x, b0, x00); x01 = Vector256.FusedMultiplyAdd(x, b1, x01); x02 = Vector256.FusedMultiplyAdd(x, b2, x02);
            x = Vector256.Create(a1[p + 2]);
            x10 = Vector256.FusedMultiplyAdd(x, b0, x10); x11 = Vector256.FusedMultiplyAdd(x, b1, x11); x12 = Vector256.FusedMultiplyAdd(x, b2, x12);
            x = Vector256.Create(a2[p + 2]);
            x20 = Vector256.FusedMultiplyAdd(x, b0, x20); x21 = Vector256.FusedMultiplyAdd(x, b1, x21); x22 = Vector256.FusedMultiplyAdd(x, b2, x22);
            x = Vector256.Create(a3[p + 2]);
            x30 = Vector256.FusedMultiplyAdd(x, b0, x30); x31 = Vector256.FusedMultiplyAdd(x, b1, x31); x32 = Vector256.FusedMultiplyAdd(x, b2, x32);
            b0 = Vector256.Load(bp + (3 * Width));
            b1 = Vector256.Load(bp + (3 * Width) + 8);
            b2 = Vector256.Load(bp + (3 * Width) + 16);
            x = Vector256.Create(a0[p + 3]);
            x00 = Vector256.FusedMultiplyAdd(x, b0, x00); x01 = Vector256.FusedMultiplyAdd(x, b1, x01); x02 = Vector256.FusedMultiplyAdd(x, b2, x02);
            x = Vector256.Create(a1[p + 3]);
            x10 = Vector256.FusedMultiplyAdd(x, b0, x10); x11 = Vector256.FusedMultiplyAdd(x, b1, x11); x12 = Vector256.FusedMultiplyAdd(x, b2, x12);
            x = Vector256.Create(a2[p + 3]);
            x20 = Vector256.FusedMultiplyAdd(x, b0, x20); x21 = Vector256.FusedMultiplyAdd(x, b1, x21); x22 = Vector256.FusedMultiplyAdd(x, b2, x22);
            x = Vector256.Create(a3[p + 3]);
            x30 = Vector256.FusedMultiplyAdd(x, b0, x30); x31 = Vector256.FusedMultiplyAdd(x, b1, x31); x32 = Vector256.FusedMultiplyAdd(x, b2, x32);
        }

        for (; p + 2 <= depth; p += 2, bp += 2 * Width, prefetch += 32)
        {
            Sse.Prefetch0(prefetch);
            Sse.Prefetch0(prefetch + 16);
            Vector256<float> x;
            var b0 = Vector256.Load(bp);
            var b1 = Vector256.Load(bp + 8);
            var b2 = Vector256.Load(bp + 16);
            x = Vector256.Create(a0[p]);
            x00 = Vector256.FusedMultiplyAdd(x, b0, x00); x01 = Vector256.FusedMultiplyAdd(x, b1, x01); x02 = Vector256.FusedMultiplyAdd(x, b2, x02);
            x = Vector256.Create(a1[p]);
            x10 = Vector256.FusedMultiplyAdd(x, b0, x10); x11 = Vector256.FusedMultiplyAdd(x, b1, x11); x12 = Vector256.FusedMultiplyAdd(x, b2, x12);
            x = Vector256.Create(a2[p]);
            x20 = Vector256.FusedMultiplyAdd(x, b0, x20); x21 = Vector256.FusedMultiplyAdd(x, b1, x21); x22 = Vector256.FusedMultiplyAdd(x, b2, x22);
            x = Vector256.Create(a3[p]);
            x30 = Vector256.FusedMultiplyAdd(x, b0, x30); x31 = Vector256.FusedMultiplyAdd(x, b1, x31); x32 = Vector256.FusedMultiplyAdd(x, b2, x32);
            b0 = Vector256.Load(bp + Width);
            b1 = Vector256.Load(bp + Width + 8);
            b2 = Vector256.Load(bp + Width + 16);
            x = Vector256.Create(a0[p + 1]);
            x00 = Vector256.FusedMultiplyAdd(x, b0, x00); x01 = Vector256.FusedMultiplyAdd(x, b1, x01); x02 = Vector256.FusedMultiplyAdd(x, b2, x02);
            x = Vector256.Create(a1[p + 1]);
            x10 = Vector256.FusedMultiplyAdd(x, b0, x10); x11 = Vector256.FusedMultiplyAdd(x, b1, x11); x12 = Vector256.FusedMultiplyAdd(x, b2, x12);
            x = Vector256.Create(a2[p + 1]);
            x20 = Vector256.FusedMultiplyAdd(x, b0, x20); x21 = Vector256.FusedMultiplyAdd(x, b1, x21); x22 = Vector256.FusedMultiplyAdd(x, b2, x22);
            x = Vector256.Create(a3[p + 1]);
            x30 = Vector256.FusedMultiplyAdd(x, b0, x30); x31 = Vector256.FusedMultiplyAdd(x, b1, x31); x32 = Vector256.FusedMultiplyAdd(x, b2, x32);
        }

        if (p < depth)
        {
            Vector256<float> x;
            var b0 = Vector256.Load(bp);
            var b1 = Vector256.Load(bp + 8);
            var b2 = Vector256.Load(bp + 16);
            x = Vector256.Create(a0[p]);
            x00 = Vector256.FusedMultiplyAdd(x, b0, x00); x01 = Vector256.FusedMultiplyAdd(x, b1, x01); x02 = Vector256.FusedMultiplyAdd(x, b2, x02);
            x = Vector256.Create(a1[p]);
            x10 = Vector256.FusedMultiplyAdd(x, b0, x10); x11 = Vector256.FusedMultiplyAdd(x, b1, x11); x12 = Vector256.FusedMultiplyAdd(x, b2, x12);
            x = Vector256.Create(a2[p]);
            x20 = Vector256.FusedMultiplyAdd(x, b0, x20); x21 = Vector256.FusedMultiplyAdd(x, b1, x21); x22 = Vector256.FusedMultiplyAdd(x, b2, x22);
            x = Vector256.Create(a3[p]);
            x30 = Vector256.FusedMultiplyAdd(x, b0, x30); x31 = Vector256.FusedMultiplyAdd(x, b1, x31); x32 = Vector256.FusedMultiplyAdd(x, b2, x32);
        }

        x00.Store(c0); x01.Store(c0 + 8); x02.Store(c0 + 16);
        x10.Store(c1); x11.Store(c1 + 8); x12.Store(c1 + 16);
        x20.Store(c2); x21.Store(c2 + 8); x22.Store(c2 + 16);
        x30.Store(c3); x31.Store(c3 + 8); x32.Store(c3 + 16);
    }

    // The last 16 of four rows' 64 columns (8 accumulators).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void FourRows16(float* a0, float* a1, float* a2, float* a3, int depth, float* b, float* c, bool add)
    {
        const int column = 48;
        float* c0 = c + column, c1 = c0 + Width, c2 = c1 + Width, c3 = c2 + Width;
        Vector256<float> x00, x01, x10, x11, x20, x21, x30, x31;
        if (add)
        {
            x00 = Vector256.Load(c0); x01 = Vector256.Load(c0 + 8); x10 = Vector256.Load(c1); x11 = Vector256.Load(c1 + 8);
            x20 = Vector256.Load(c2); x21 = Vector256.Load(c2 + 8); x30 = Vector256.Load(c3); x31 = Vector256.Load(c3 + 8);
        }
        else
        {
            x00 = x01 = x10 = x11 = x20 = x21 = x30 = x31 = Vector256<float>.Zero;
        }

        float* bp = b + column;
        long p = 0;
        // Four steps per iteration first, as in FourRows24.
        for (; p + 4 <= depth; p += 4, bp += 4 * Width)
        {
            Vector256<float> x;
            var b0 = Vector256.Load(bp);
            var b1 = Vector256.Load(bp + 8);
            x = Vector256.Create(a0[p]);
            x00 = Vector256.FusedMultiplyAdd(x, b0, x00); x01 = Vector256.FusedMultiplyAdd(x, b1, x01);
            x = Vector256.Create(a1[p]);
            x10 = Vector256.FusedMultiplyAdd(x, b0, x10); x11 = Vector256.FusedMultiplyAdd(x, b1, x11);
            x = Vector256.Create(a2[p]);
            x20 = Vector256.FusedMultiplyAdd(x, b0, x20); x21 = Vector256.FusedMultiplyAdd(x, b1, x21);
            x = Vector256.Create(a3[p]);
            x30 = Vector256.FusedMultiplyAdd(x, b0, x30); x31 = Vector256.FusedMultiplyAdd(x, b1, x31);
            b0 = Vector256.Load(bp + Width);
            b1 = Vector256.Load(bp + Width + 8);
            x = Vector256.Create(a0[p + 1]);
            x00 = Vector256.FusedMultiplyAdd(x, b0, x00); x01 = Vector256.FusedMultiplyAdd(x, b1, x01);
            x = Vector256.Create(a1[p + 1]);
            x10 = Vector256.FusedMultiplyAdd(x, b0, x10); x11 = Vector256.FusedMultiplyAdd(x, b1, x11);
            x = Vector256.Create(a2[p + 1]);
            x20 = Vector256.FusedMultiplyAdd(x, b0, x20); x21 = Vector256.FusedMultiplyAdd(x, b1, x21);
            x = Vector256.Create(a3[p + 1]);
            x30 = Vector256.FusedMultiplyAdd(x, b0, x30); x31 = Vector256.FusedMultiplyAdd(x, b1, x31);

            b0 = Vector256.Load(bp + (2 * Width));
            b1 = Vector256.Load(bp + (2 * Width) + 8);
            x = Vector256.Create(a0[p + 2]);
            x00 = Vector256.FusedMultiplyAdd(x, b0, x00); x01 = Vector256.FusedMultiplyAdd(x, b1, x01);
            x = Vector256.Create(a1[p + 2]);
            x10 = Vector256.FusedMultiplyAdd(x, b0, x10); x11 = Vector256.FusedMultiplyAdd(x, b1, x11);
            x = Vector256.Create(a2[p + 2]);
            x20 = Vector256.FusedMultiplyAdd(x, b0, x20); x21 = Vector256.FusedMultiplyAdd(x, b1, x21);
            x = Vector256.Create(a3[p + 2]);
            x30 = Vector256.FusedMultiplyAdd(x, b0, x30); x31 = Vector256.FusedMultiplyAdd(x, b1, x31);
            b0 = Vector256.Load(bp + (3 * Width));
            b1 = Vector256.Load(bp + (3 * Width) + 8);
            x = Vector256.Create(a0[p + 3]);
            x00 = Vector256.FusedMultiplyAdd(x, b0, x00); x01 = Vector256.FusedMultiplyAdd(x, b1, x01);
            x = Vector256.Create(a1[p + 3]);
            x10 = Vector256.FusedMultiplyAdd(x, b0, x10); x11 = Vector256.FusedMultiplyAdd(x, b1, x11);
            x = Vector256.Create(a2[p + 3]);
            x20 = Vector256.FusedMultiplyAdd(x, b0, x20); x21 = Vector256.FusedMultiplyAdd(x, b1, x21);
            x = Vector256.Create(a3[p + 3]);
            x30 = Vector256.FusedMultiplyAdd(x, b0, x30); x31 = Vector256.FusedMultiplyAdd(x, b1, x31);
        }

        for (; p + 2 <= depth; p += 2, bp += 2 * Width)
        {
            Vector256<float> x;
            var b0 = Vector256.Load(bp);
            var b1 = Vector256.Load(bp + 8);
            x = Vector256.Create(a0[p]);
            x00 = Vector256.FusedMultiplyAdd(x, b0, x00); x01 = Vector256.FusedMultiplyAdd(x, b1, x01);
            x = Vector256.Create(a1[p]);
            x10 = Vector256.FusedMultiplyAdd(x, b0, x10); x11 = Vector256.FusedMultiplyAdd(x, b1, x11);
            x = Vector256.Create(a2[p]);
            x20 = Vector256.FusedMultiplyAdd(x, b0, x20); x21 = Vector256.FusedMultiplyAdd(x, b1, x21);
            x = Vector256.Create(a3[p]);
            x30 = Vector256.FusedMultiplyAdd(x, b0, x30); x31 = Vector256.FusedMultiplyAdd(x, b1, x31);
            b0 = Vector256.Load(bp + Width);
            b1 = Vector256.Load(bp + Width + 8);
            x = Vector256.Create(a0[p + 1]);
            x00 = Vector256.FusedMultiplyAdd(x, b0, x00); x01 = Vector256.FusedMultiplyAdd(x, b1, x01);
            x = Vector256.Create(a1[p + 1]);
            x10 = Vector256.FusedMultiplyAdd(x, b0, x10); x11 = Vector256.FusedMultiplyAdd(x, b1, x11);
            x = Vector256.Create(a2[p + 1]);
            x20 = Vector256.FusedMultiplyAdd(x, b0, x20); x21 = Vector256.FusedMultiplyAdd(x, b1, x21);
            x = Vector256.Create(a3[p + 1]);
            x30 = Vector256.FusedMultiplyAdd(x, b0, x30); x31 = Vector256.FusedMultiplyAdd(x, b1, x31);
        }

        if (p < depth)
        {
            Vector256<float> x;
            var b0 = Vector256.Load(bp);
            var b1 = Vector256.Load(bp + 8);
            x = Vector256.Create(a0[p]);
            x00 = Vector256.FusedMultiplyAdd(x, b0, x00); x01 = Vector256.FusedMultiplyAdd(x, b1, x01);
            x = Vector256.Create(a1[p]);
            x10 = Vector256.FusedMultiplyAdd(x, b0, x10); x11 = Vector256.FusedMultiplyAdd(x, b1, x11);
            x = Vector256.Create(a2[p]);
            x20 = Vector256.FusedMultiplyAdd(x, b0, x20); x21 = Vector256.FusedMultiplyAdd(x, b1, x21);
            x = Vector256.Create(a3[p]);
            x30 = Vector256.FusedMultiplyAdd(x, b0, x30); x31 = Vector256.FusedMultiplyAdd(x, b1, x31);
        }

        x00.Store(c0); x01.Store(c0 + 8); x10.Store(c1); x11.Store(c1 + 8);
        x20.Store(c2); x21.Store(c2 + 8); x30.Store(c3); x31.Store(c3 + 8);
    }

    // C[rows, width] (+)= A·B for width 64 (MultiplyAdd) or 32 (MultiplyAdd32).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void MultiplyAdd256(int rows, int depth, float* a, int lda, float* b, int ldb, float* c, int ldc, bool add, int width)
    {
        int i = 0;
        for (; i + 6 <= rows; i += 6)
        {
            for (int column = 0; column < width; column += 16)
            {
                SixRows(a + ((long)i * lda), lda, 1, depth, b, ldb, c + ((long)i * ldc), ldc, column, add);
            }
        }

        for (; i + 2 <= rows; i += 2)
        {
            float* a0 = a + ((long)i * lda), c0 = c + ((long)i * ldc);
            RowPair(a0, a0 + lda, 1, depth, b, ldb, c0, c0 + ldc, add, width);
        }

        if (i < rows)
        {
            float* ai = a + ((long)i * lda), ci = c + ((long)i * ldc);
            if (width == Width)
            {
                OneRow(ai, 1, depth, b, ldb, ci, add);
            }
            else
            {
                // A last single row 32 wide: the pair's loop on the row twice (the same sums, written twice).
                RowPair(ai, ai, 1, depth, b, ldb, ci, ci, add, width);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void MultiplyAddTransposedA256(int rows, int depth, float* a, int lda, float* b, int ldb, float* c, int ldc)
    {
        int i = 0;
        for (; i + 6 <= rows; i += 6)
        {
            for (int column = 0; column < Width; column += 16)
            {
                SixRows(a + i, 1, lda, depth, b, ldb, c + ((long)i * ldc), ldc, column, add: true);
            }
        }

        for (; i + 2 <= rows; i += 2)
        {
            float* c0 = c + ((long)i * ldc);
            RowPair(a + i, a + i + 1, lda, depth, b, ldb, c0, c0 + ldc, add: true, Width);
        }

        if (i < rows)
        {
            OneRow(a + i, lda, depth, b, ldb, c + ((long)i * ldc), add: true);
        }
    }

    /// <summary>
    /// The online-softmax update of one 64-wide row of base-2 scores, in place (<see cref="OnlineSoftmaxRows"/>'s
    /// step): row ← 2^(row − m), sum[16] += it, and m, sum and the acc row rescaled when the row's max passes m by
    /// more than the slack. A row with nothing visible so far becomes zeros and leaves acc, sum and m as they were.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void SoftmaxRow256(float* row, float* max, float* sum, float* acc, int accWidth)
    {
        if (!UpdateRowMax256(row, max, sum, acc, accWidth))
        {
            return;
        }

        var shift = Vector256.Create(*max);
        var low = Vector256.Load(sum);
        var high = Vector256.Load(sum + 8);
        for (int j = 0; j < Width; j += 16)
        {
            var x0 = Exp2(Vector256.Load(row + j) - shift);
            var x1 = Exp2(Vector256.Load(row + j + 8) - shift);
            x0.Store(row + j);
            x1.Store(row + j + 8);
            low += x0;
            high += x1;
        }

        low.Store(sum);
        high.Store(sum + 8);
    }

    /// <summary>
    /// <see cref="SoftmaxRow256"/> for AttendRows256 (acc rows 64 wide), with the same bits: its exponentials four
    /// vectors at a time through Exp2x4, 1–2% faster there (same-process A/B, AVX-512 off). OnlineSoftmaxRows256 keeps
    /// SoftmaxRow256: in its loop over rows the JIT held Exp2x4's constants in registers and spilled (6–25% slower).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void AttendSoftmaxRow256(float* row, float* max, float* sum, float* acc)
    {
        if (!UpdateRowMax256(row, max, sum, acc, Width))
        {
            return;
        }

        // Two calls rather than a loop, which had the JIT keep the constants in registers and spill; eight vectors in
        // flight would spill too. The sums add in SoftmaxRow256's order: low gets keys 0, 16, 32 and 48, high 8, 24,
        // 40 and 56.
        var shift = Vector256.Create(*max);
        var low = Vector256.Load(sum);
        var high = Vector256.Load(sum + 8);
        Exp2x4(row, shift, out var e0, out var e1, out var e2, out var e3);
        e0.Store(row);
        e1.Store(row + 8);
        e2.Store(row + 16);
        e3.Store(row + 24);
        low += e0;
        high += e1;
        low += e2;
        high += e3;
        Exp2x4(row + 32, shift, out e0, out e1, out e2, out e3);
        e0.Store(row + 32);
        e1.Store(row + 40);
        e2.Store(row + 48);
        e3.Store(row + 56);
        low += e0;
        high += e1;
        low += e2;
        high += e3;

        low.Store(sum);
        high.Store(sum + 8);
    }

    // The first half of both: the row's max against the running max m, and the rare rescale of sum and the acc row
    // when it passes m by more than the slack. False (the row zeroed) when nothing is visible so far.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe bool UpdateRowMax256(float* row, float* max, float* sum, float* acc, int accWidth)
    {
        // Two passes over the row in L1 rather than eight vectors held across the exponentials: with the polynomial's
        // constants that was more than 16 registers, and the spills cost more than the reloads.
        var tileMax = Vector256.Load(row);
        for (int j = 8; j < Width; j += 8)
        {
            tileMax = Avx.Max(tileMax, Vector256.Load(row + j));
        }

        float m = *max;
        if (float.IsNegativeInfinity(m) || Vector256.GreaterThanAny(tileMax, Vector256.Create(m + RescaleSlack)))
        {
            float newMax = HorizontalMax(tileMax);
            newMax = newMax > m ? newMax : m;
            if (float.IsNegativeInfinity(newMax))
            {
                for (int j = 0; j < Width; j += 8)
                {
                    Vector256<float>.Zero.Store(row + j);
                }

                return false;
            }

            var c = Exp2(Vector256.Create(m - newMax));
            (Vector256.Load(sum) * c).Store(sum);
            (Vector256.Load(sum + 8) * c).Store(sum + 8);
            for (int j = 0; j < accWidth; j += 8)
            {
                (Vector256.Load(acc + j) * c).Store(acc + j);
            }

            *max = newMax;
        }

        return true;
    }

    /// <summary>
    /// Exp2(x − shift) for the four vectors at a..a+31, bit for bit: Exp2's operations issued stage by stage across
    /// the four (the four subtractions, then the four compares, ...), so that each enters the scheduler about when its
    /// input is ready instead of ~15 dependent ones waiting there behind each other (one at a time the 8-lane
    /// exponentials took ~9.5 cycles a vector in AttendRows256, ~7 this way).
    /// </summary>
    // 2^n is masked before the multiply, p·(2^n &amp; visible): p is a positive finite float, so p·(+0) = +0, the bits
    // (p·2^n) &amp; 0 had, and the and leaves the end of the chain. The constants are written at each use: the JIT
    // folds them into the instructions as memory operands, where locals were kept in registers and spilled.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Exp2x4(
        float* a, Vector256<float> shift, out Vector256<float> e0, out Vector256<float> e1, out Vector256<float> e2, out Vector256<float> e3)
    {
        var x0 = Vector256.Load(a) - shift;
        var x1 = Vector256.Load(a + 8) - shift;
        var x2 = Vector256.Load(a + 16) - shift;
        var x3 = Vector256.Load(a + 24) - shift;
        var v0 = Vector256.GreaterThanOrEqual(x0, Vector256.Create(Exp2Floor));
        var v1 = Vector256.GreaterThanOrEqual(x1, Vector256.Create(Exp2Floor));
        var v2 = Vector256.GreaterThanOrEqual(x2, Vector256.Create(Exp2Floor));
        var v3 = Vector256.GreaterThanOrEqual(x3, Vector256.Create(Exp2Floor));
        x0 = Avx.Max(x0, Vector256.Create(Exp2Floor));
        x1 = Avx.Max(x1, Vector256.Create(Exp2Floor));
        x2 = Avx.Max(x2, Vector256.Create(Exp2Floor));
        x3 = Avx.Max(x3, Vector256.Create(Exp2Floor));
        var r0 = x0 + Vector256.Create(RoundingMagic);
        var r1 = x1 + Vector256.Create(RoundingMagic);
        var r2 = x2 + Vector256.Create(RoundingMagic);
        var r3 = x3 + Vector256.Create(RoundingMagic);
        x0 -= r0 - Vector256.Create(RoundingMagic);
        x1 -= r1 - Vector256.Create(RoundingMagic);
        x2 -= r2 - Vector256.Create(RoundingMagic);
        x3 -= r3 - Vector256.Create(RoundingMagic);
        v0 &= Vector256.ShiftLeft(r0.AsInt32(), 23).AsSingle();
        v1 &= Vector256.ShiftLeft(r1.AsInt32(), 23).AsSingle();
        v2 &= Vector256.ShiftLeft(r2.AsInt32(), 23).AsSingle();
        v3 &= Vector256.ShiftLeft(r3.AsInt32(), 23).AsSingle();
        var p0 = Vector256.FusedMultiplyAdd(Vector256.Create(0.0013266970636323094f), x0, Vector256.Create(0.009675459936261177f));
        var p1 = Vector256.FusedMultiplyAdd(Vector256.Create(0.0013266970636323094f), x1, Vector256.Create(0.009675459936261177f));
        var p2 = Vector256.FusedMultiplyAdd(Vector256.Create(0.0013266970636323094f), x2, Vector256.Create(0.009675459936261177f));
        var p3 = Vector256.FusedMultiplyAdd(Vector256.Create(0.0013266970636323094f), x3, Vector256.Create(0.009675459936261177f));
        p0 = Vector256.FusedMultiplyAdd(p0, x0, Vector256.Create(0.05550742521882057f));
        p1 = Vector256.FusedMultiplyAdd(p1, x1, Vector256.Create(0.05550742521882057f));
        p2 = Vector256.FusedMultiplyAdd(p2, x2, Vector256.Create(0.05550742521882057f));
        p3 = Vector256.FusedMultiplyAdd(p3, x3, Vector256.Create(0.05550742521882057f));
        p0 = Vector256.FusedMultiplyAdd(p0, x0, Vector256.Create(0.24022121727466583f));
        p1 = Vector256.FusedMultiplyAdd(p1, x1, Vector256.Create(0.24022121727466583f));
        p2 = Vector256.FusedMultiplyAdd(p2, x2, Vector256.Create(0.24022121727466583f));
        p3 = Vector256.FusedMultiplyAdd(p3, x3, Vector256.Create(0.24022121727466583f));
        p0 = Vector256.FusedMultiplyAdd(p0, x0, Vector256.Create(0.6931469440460205f));
        p1 = Vector256.FusedMultiplyAdd(p1, x1, Vector256.Create(0.6931469440460205f));
        p2 = Vector256.FusedMultiplyAdd(p2, x2, Vector256.Create(0.6931469440460205f));
        p3 = Vector256.FusedMultiplyAdd(p3, x3, Vector256.Create(0.6931469440460205f));
        p0 = Vector256.FusedMultiplyAdd(p0, x0, Vector256.Create(1.0000001192092896f));
        p1 = Vector256.FusedMultiplyAdd(p1, x1, Vector256.Create(1.0000001192092896f));
        p2 = Vector256.FusedMultiplyAdd(p2, x2, Vector256.Create(1.0000001192092896f));
        p3 = Vector256.FusedMultiplyAdd(p3, x3, Vector256.Create(1.0000001192092896f));
        e0 = p0 * v0;
        e1 = p1 * v1;
        e2 = p2 * v2;
        e3 = p3 * v3;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void OnlineSoftmaxRows256(int rows, float* s, int ls, float* acc, int ldacc, float* max, float* sums, int accWidth)
    {
        for (int i = 0; i < rows; i++)
        {
            SoftmaxRow256(s + ((long)i * ls), max + i, sums + (16L * i), acc + ((long)i * ldacc), accWidth);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void AttendRows256(
        float* q0, float* q1, float* q2, float* q3, float* keys, float* values, int* ranges, int depth,
        float* prefetchKeys, float* prefetchValues, float* acc, float* max, float* sums, float* p)
    {
        // S only as far as the last key a row sees (ranges hide everything past depth, and HideOutside256 overwrites
        // the columns left unwritten): on the causal diagonal this skipped 7% of the forward at T = 256 and 13% at
        // T = 64 (same-process A/B, AVX-512 off), 2% at T = 1024.
        bool all = ranges == null;
        FourRows24(q0, q1, q2, q3, Width, keys, p, 0, add: false, prefetchKeys);
        if (all || depth > 24)
        {
            FourRows24(q0, q1, q2, q3, Width, keys, p, 24, add: false, prefetchKeys);
        }

        if (all || depth > 48)
        {
            FourRows16(q0, q1, q2, q3, Width, keys, p, add: false);
        }
        for (int i = 0; i < 4; i++)
        {
            if (ranges != null)
            {
                HideOutside256(p + (i * Width), ranges[2 * i], ranges[(2 * i) + 1]);
            }

            AttendSoftmaxRow256(p + (i * Width), max + i, sums + (16 * i), acc + (i * Width));
        }

        float* p0 = p, p1 = p + Width, p2 = p + (2 * Width), p3 = p + (3 * Width);
        FourRows24(p0, p1, p2, p3, depth, values, acc, 0, add: true, prefetchValues);
        FourRows24(p0, p1, p2, p3, depth, values, acc, 24, add: true, prefetchValues);
        FourRows16(p0, p1, p2, p3, depth, values, acc, add: true);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void HideOutside256(float* row, int first, int end)
    {
        var hidden = Vector256.Create(float.NegativeInfinity);
        var column = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        var lower = Vector256.Create(first);
        var upper = Vector256.Create(end);
        for (int j = 0; j < Width; j += 8, column += Vector256.Create(8))
        {
            var visible = Vector256.GreaterThanOrEqual(column, lower) & Vector256.LessThan(column, upper);
            Vector256.ConditionalSelect(visible.AsSingle(), Vector256.Load(row + j), hidden).Store(row + j);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void ProbabilitiesAndScoreGrad256(int rows, float* s, float* dp, int ls, float* logSumExp, float* rowTerm, float scale)
    {
        var factor = Vector256.Create(scale);
        for (int i = 0; i < rows; i++)
        {
            float* si = s + ((long)i * ls), di = dp + ((long)i * ls);
            float lse = logSumExp[i];
            var shift = Vector256.Create(float.IsNegativeInfinity(lse) ? float.PositiveInfinity : lse * Log2E);
            var d = Vector256.Create(rowTerm[i]);
            for (int j = 0; j < Width; j += 8)
            {
                var pj = Exp2(Vector256.Load(si + j) - shift);
                pj.Store(si + j);
                (factor * pj * (Vector256.Load(di + j) - d)).Store(di + j);
            }
        }
    }

    /// <summary>The largest of the 8 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HorizontalMax(Vector256<float> m)
    {
        var m128 = Sse.Max(m.GetLower(), m.GetUpper());
        m128 = Sse.Max(m128, Sse.Shuffle(m128, m128, 0b01_00_11_10));
        return Sse.MaxScalar(m128, Sse.Shuffle(m128, m128, 0b00_00_00_01)).ToScalar();
    }
}
