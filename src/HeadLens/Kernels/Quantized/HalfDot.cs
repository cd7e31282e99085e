using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace HeadLens.Kernels.Quantized;

// An F16 row's dot product with x, for AVX-512 and AVX2 without a half-conversion instruction (.NET 10 exposes no
// F16C/vcvtph2ps):
//   y = Σ_k half(W[k]) · x[k]        K = columns; W one row of IEEE halves, x fp32
// x is shared by every row of a product, so it is rearranged once per product (Prepare) and each row then converts
// its halves with five integer operations per 32 values instead of BlockDecoder.Widen16's ten per 16:
//   - a 64-byte load holds 32 halves as 16 dwords: the odd half of each pair in the top 16 bits, the even one in the
//     bottom 16. Shifted arithmetically right by 3, the top half's sign stays on bit 31 and its exponent and mantissa
//     land on the float32 exponent and mantissa fields (bits 27-23 and 22-13); one ternary-logic operation clears the
//     copies of the sign (bits 30-28) and the other half's bits (12-0) and sets bit 28. The even halves are shifted
//     left by 16 first. So each lane holds the float32 with exponent 32 + e and the half's mantissa: for every normal
//     half (exponent e in 1..30) exactly w·2⁻⁸⁰, a normal float32 (2⁻⁹⁴ ≤ |w·2⁻⁸⁰| < 2⁻⁶³).
//   - x is rearranged to match: per 32 values, the 16 even-indexed ones, then the 16 odd-indexed ones, each times
//     2⁸⁰ (exact: a power of two; Accepts keeps |x| < 2⁴⁷ so that nothing overflows). So the products are exactly
//     w·x, and the sums differ from the reference only in their order.
//   - halves with exponent 0 (zero and subnormal) or 31 (infinity, NaN) are wrong in that form. They are not rare
//     enough to branch on: 0.24% of N(0, 0.02) weights, 1.2% of GPT-2's scaled-down output projections
//     (N(0, 0.004)), so one 64-value group in seven, or one in two, would mispredict a branch and take a slow path.
//     A matrix's bytes stay put (a QuantizedMatrix), so they are found once (FindExceptions: for each such half,
//     its place in the prepared x and the exact difference between its value and the split form's, both times
//     2⁻⁸⁰), and each row adds Σ difference · x' after its loop, which then has no test at all. (Testing each 64
//     halves and sending such a group through Widen16's exact conversion instead measured 1.5× faster than
//     Widen16 alone on N(0, 0.02) rows, and 1.4× slower on the output projections.)
//   - the bias of 32 keeps every lane a normal float32: a subnormal operand costs the FMA a microcode assist
//     (~110 cycles, measured here).
// Measured on the Ice Lake Xeon: see BENCHMARKS.md (issue 13, fourth session). The weights stream through the loop at
// two bytes a value with little arithmetic, as in Gemv's dots, so the loop asks for them ahead where those do
// (Gemv.PrefetchWeights: not on AMD Zen 4, where GPT-2 F16 decoded ~25% faster without, BENCHMARKS.md's twelfth session).
// With AVX2 (Dot256) the same prepared x and conversion, 16 halves per 32-byte load: no ternary logic there, so a
// shift, an and and an or per 8 halves (BlockDecoder.Widen8 takes about ten operations and a test per 8); the even
// halves of a load's first 16 are x's first 8 prepared values, its odd ones the 8 from 16 on.
// Implementations: Dot512 (AVX-512 with AVX-512BW) and Dot256 (AVX2), for QuantizedMatrix products; QuantizedMatVec
// keeps its DotHalves for other CPUs, for bytes without a matrix (its span API), and for an x that Accepts refuses.
internal static unsafe class HalfDot
{
    /// <summary>Whether this CPU runs <see cref="Dot"/> (AVX-512BW, or AVX2 with FMA).</summary>
    public static bool IsSupported => (BlockDecoder.Is512 && Avx512BW.IsSupported) || BlockDecoder.Is256;

    /// <summary>Turns the split product on or off (for same-process A/B measurements).</summary>
    internal static bool Enabled = true;

    // 2⁸⁰ and its bound: |x| < 2⁴⁷ keeps x·2⁸⁰ below 2¹²⁷, finite. Constants, not static readonly: no class
    // initialisation check in the loops.
    private const float Scale = 1.2089258196146292e24f;
    private const float Bound = 1.40737488355328e14f;

    /// <summary>Whether the split form can take x: every |x| below 2⁴⁷ (false for infinities and NaN).</summary>
    public static bool Accepts(ReadOnlySpan<float> x)
    {
        // NaN compares false, so it fails as infinity does.
        float largest = System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(x);
        return x.IsEmpty || largest is < Bound and > -Bound;
    }

    /// <summary>
    /// x [columns] rearranged for <see cref="Dot"/> into <paramref name="prepared"/> [columns rounded down to 32]:
    /// per 32 values, the even-indexed ones then the odd-indexed ones, times 2⁸⁰.
    /// </summary>
    public static void Prepare(float* x, int columns, float* prepared)
    {
        if (!BlockDecoder.Is512)
        {
            Prepare256(x, columns, prepared);
            return;
        }

        var even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        var odd = even + Vector512<int>.One;
        var scale = Vector512.Create(Scale);
        for (int i = 0; i <= columns - 32; i += 32)
        {
            var low = Vector512.Load(x + i);
            var high = Vector512.Load(x + i + 16);
            (Avx512F.PermuteVar16x32x2(low, even, high) * scale).Store(prepared + i);
            (Avx512F.PermuteVar16x32x2(low, odd, high) * scale).Store(prepared + i + 16);
        }
    }

    // Prepare with AVX2: per 16 values, the even- and odd-indexed ones gathered within each 128-bit lane, then the lanes
    // joined; the first 16's go to places 0-7 and 16-23 of their 32, the second 16's to 8-15 and 24-31.
    internal static void Prepare256(float* x, int columns, float* prepared)
    {
        var pairs = Vector256.Create(0, 2, 4, 6, 1, 3, 5, 7);
        var scale = Vector256.Create(Scale);
        for (int i = 0; i <= columns - 32; i += 32)
        {
            for (int half = 0; half < 2; half++)
            {
                var a = Avx2.PermuteVar8x32(Vector256.Load(x + i + (16 * half)), pairs);
                var b = Avx2.PermuteVar8x32(Vector256.Load(x + i + (16 * half) + 8), pairs);
                (Avx2.Permute2x128(a, b, 0x20) * scale).Store(prepared + i + (8 * half));
                (Avx2.Permute2x128(a, b, 0x31) * scale).Store(prepared + i + 16 + (8 * half));
            }
        }
    }

    // The odd halves of 16 dwords (top 16 bits) as w·2⁻⁸⁰; right for exponents 1..30 only (see the file's header).
    // keep and bias are the constants KeepMask and Bias, passed in so that the loops hold them in registers.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Odd(Vector512<int> pairs, Vector512<int> keep, Vector512<int> bias) =>
        Avx512F.TernaryLogic(Avx512F.ShiftRightArithmetic(pairs, 3), keep, bias, 0xEA).AsSingle(); // (a & b) | c

    // The even halves (bottom 16 bits), likewise.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Even(Vector512<int> pairs, Vector512<int> keep, Vector512<int> bias) =>
        Odd(Avx512F.ShiftLeftLogical(pairs, 16), keep, bias);

    // Sign, exponent and mantissa fields of the shifted halves; bit 28: the exponent bias of 32.
    private const int KeepMask = unchecked((int)0x8FFFE000);
    private const int Bias = 0x10000000;

    // Per half, a zero word where its exponent is 0 or 31: adding 1 to the exponent field leaves 0 or 1 in it exactly
    // then, so its top four bits are zero.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Special(Vector256<short> halves, Vector256<short> one, Vector256<short> top) => (halves + one) & top;

    // The odd halves of 8 dwords (AVX2), as Odd: shift, and, or.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Odd(Vector256<int> pairs, Vector256<int> keep, Vector256<int> bias) =>
        ((Vector256.ShiftRightArithmetic(pairs, 3) & keep) | bias).AsSingle();

    // The even halves of 8 dwords (AVX2).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Even(Vector256<int> pairs, Vector256<int> keep, Vector256<int> bias) =>
        Odd(Vector256.ShiftLeft(pairs, 16), keep, bias);

    /// <summary>
    /// Σ half(row[k])·x[k] for row <paramref name="r"/> of an F16 matrix (<see cref="Dot512"/> or <see cref="Dot256"/>).
    /// </summary>
    public static float Dot(short* row, float* prepared, float* x, int columns, HalfExceptions exceptions, int r) =>
        BlockDecoder.Is512 ? Dot512(row, prepared, x, columns, exceptions, r) : Dot256(row, prepared, x, columns, exceptions, r);

    /// <summary>
    /// Σ half(row[k])·x[k] for row <paramref name="r"/> of an F16 matrix of <paramref name="columns"/> values:
    /// <paramref name="prepared"/> is x as <see cref="Prepare"/> writes it, <paramref name="x"/> the plain x (for the
    /// tail past the last whole 32), <paramref name="exceptions"/> the matrix's halves that the split form gets wrong
    /// (<see cref="FindExceptions"/>), whose differences are added after the loop.
    /// </summary>
    internal static float Dot512(short* row, float* prepared, float* x, int columns, HalfExceptions exceptions, int r)
    {
        byte* ahead = (byte*)row + BlockDecoder.PrefetchAhead;
        bool prefetch = Gemv.PrefetchWeights;
        var keep = Vector512.Create(KeepMask);
        var bias = Vector512.Create(Bias);
        var a0 = Vector512<float>.Zero;
        var a1 = Vector512<float>.Zero;
        var a2 = Vector512<float>.Zero;
        var a3 = Vector512<float>.Zero;
        int i = 0;
        for (; i <= columns - 64; i += 64)
        {
            if (prefetch)
            {
                Sse.Prefetch0(ahead + (2 * i));
                Sse.Prefetch0(ahead + (2 * i) + 64);
            }

            var d0 = Vector512.Load((int*)(row + i));
            var d1 = Vector512.Load((int*)(row + i + 32));
            a0 = Vector512.FusedMultiplyAdd(Even(d0, keep, bias), Vector512.Load(prepared + i), a0);
            a1 = Vector512.FusedMultiplyAdd(Odd(d0, keep, bias), Vector512.Load(prepared + i + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(Even(d1, keep, bias), Vector512.Load(prepared + i + 32), a2);
            a3 = Vector512.FusedMultiplyAdd(Odd(d1, keep, bias), Vector512.Load(prepared + i + 48), a3);
        }

        if (i <= columns - 32)
        {
            var d = Vector512.Load((int*)(row + i));
            a0 = Vector512.FusedMultiplyAdd(Even(d, keep, bias), Vector512.Load(prepared + i), a0);
            a1 = Vector512.FusedMultiplyAdd(Odd(d, keep, bias), Vector512.Load(prepared + i + 16), a1);
            i += 32;
        }

        return Finish(Vector512.Sum((a0 + a1) + (a2 + a3)), row, prepared, x, i, columns, exceptions, r);
    }

    /// <summary>As <see cref="Dot512"/> with AVX2: 32 halves per pair of 32-byte loads.</summary>
    internal static float Dot256(short* row, float* prepared, float* x, int columns, HalfExceptions exceptions, int r)
    {
        byte* ahead = (byte*)row + BlockDecoder.PrefetchAhead;
        bool prefetch = Gemv.PrefetchWeights;
        var keep = Vector256.Create(KeepMask);
        var bias = Vector256.Create(Bias);
        var a0 = Vector256<float>.Zero;
        var a1 = Vector256<float>.Zero;
        var a2 = Vector256<float>.Zero;
        var a3 = Vector256<float>.Zero;
        int i = 0;
        for (; i <= columns - 64; i += 64)
        {
            if (prefetch)
            {
                Sse.Prefetch0(ahead + (2 * i));
                Sse.Prefetch0(ahead + (2 * i) + 64);
            }

            // Halves i … i + 15 and i + 16 … i + 31: their even ones are prepared places 0-7 and 8-15, their odd ones
            // 16-23 and 24-31; the same for the second 32.
            var d0 = Vector256.Load((int*)(row + i));
            var d1 = Vector256.Load((int*)(row + i + 16));
            var d2 = Vector256.Load((int*)(row + i + 32));
            var d3 = Vector256.Load((int*)(row + i + 48));
            a0 = Vector256.FusedMultiplyAdd(Even(d0, keep, bias), Vector256.Load(prepared + i), a0);
            a1 = Vector256.FusedMultiplyAdd(Odd(d0, keep, bias), Vector256.Load(prepared + i + 16), a1);
            a2 = Vector256.FusedMultiplyAdd(Even(d1, keep, bias), Vector256.Load(prepared + i + 8), a2);
            a3 = Vector256.FusedMultiplyAdd(Odd(d1, keep, bias), Vector256.Load(prepared + i + 24), a3);
            a0 = Vector256.FusedMultiplyAdd(Even(d2, keep, bias), Vector256.Load(prepared + i + 32), a0);
            a1 = Vector256.FusedMultiplyAdd(Odd(d2, keep, bias), Vector256.Load(prepared + i + 48), a1);
            a2 = Vector256.FusedMultiplyAdd(Even(d3, keep, bias), Vector256.Load(prepared + i + 40), a2);
            a3 = Vector256.FusedMultiplyAdd(Odd(d3, keep, bias), Vector256.Load(prepared + i + 56), a3);
        }

        if (i <= columns - 32)
        {
            var d0 = Vector256.Load((int*)(row + i));
            var d1 = Vector256.Load((int*)(row + i + 16));
            a0 = Vector256.FusedMultiplyAdd(Even(d0, keep, bias), Vector256.Load(prepared + i), a0);
            a1 = Vector256.FusedMultiplyAdd(Odd(d0, keep, bias), Vector256.Load(prepared + i + 16), a1);
            a2 = Vector256.FusedMultiplyAdd(Even(d1, keep, bias), Vector256.Load(prepared + i + 8), a2);
            a3 = Vector256.FusedMultiplyAdd(Odd(d1, keep, bias), Vector256.Load(prepared + i + 24), a3);
            i += 32;
        }

        return Finish(Vector256.Sum((a0 + a1) + (a2 + a3)), row, prepared, x, i, columns, exceptions, r);
    }

    // The loop's sum, plus the tail past the last whole 32 (exact conversion) and the row's exceptions' differences.
    private static float Finish(float sum, short* row, float* prepared, float* x, int i, int columns, HalfExceptions exceptions, int r)
    {
        for (; i < columns; i++)
        {
            sum += BlockDecoder.Half((byte*)(row + i)) * x[i];
        }

        float correction = 0;
        for (int e = exceptions.RowStarts[r], end = exceptions.RowStarts[r + 1]; e < end; e++)
        {
            correction += exceptions.Differences[e] * prepared[exceptions.Positions[e]];
        }

        return sum + correction;
    }

    /// <summary>
    /// The halves of a matrix that the split form gets wrong (exponent 0 or 31) in the whole 32-value groups of each
    /// row, found once: per row, their places in the prepared x and the exact value minus the split form's value.
    /// </summary>
    public static HalfExceptions FindExceptions(byte* data, int rows, int columns)
    {
        var starts = new int[rows + 1];
        var positions = new List<int>();
        var differences = new List<float>();
        var one = Vector256.Create((short)0x0400);
        var top = Vector256.Create((short)0x7800);
        int groups = columns / 32;
        for (int r = 0; r < rows; r++)
        {
            var row = (short*)(data + ((long)r * columns * 2));
            for (int g = 0; g < groups; g++)
            {
                if (!Vector256.EqualsAny(Special(Vector256.Load(row + (32 * g)), one, top), Vector256<short>.Zero)
                    && !Vector256.EqualsAny(Special(Vector256.Load(row + (32 * g) + 16), one, top), Vector256<short>.Zero))
                {
                    continue;
                }

                for (int j = 0; j < 32; j++)
                {
                    int bits = row[(32 * g) + j];
                    int exponent = (bits >> 10) & 0x1F;
                    if (exponent is not (0 or 0x1F))
                    {
                        continue;
                    }

                    // The split form's value: the half in the top 16 bits, shifted and masked as Odd does.
                    float split = BitConverter.Int32BitsToSingle(((bits << 16) >> 3 & KeepMask) | Bias);
                    float exact = BlockDecoder.Half((byte*)(row + (32 * g) + j)) * (1 / Scale);
                    positions.Add((32 * g) + (j % 2 == 0 ? j / 2 : 16 + (j / 2)));
                    differences.Add(exact - split);
                }
            }

            starts[r + 1] = positions.Count;
        }

        return new HalfExceptions(starts, [.. positions], [.. differences]);
    }
}

/// <summary>
/// An F16 matrix's halves with exponent 0 or 31, for <see cref="HalfDot.Dot"/>: row r's entries are
/// [RowStarts[r], RowStarts[r + 1]); each is a place in the prepared x and the exact value minus the split form's
/// value, both times 2⁻⁸⁰ (exact: the difference of two floats that share their scale; infinite or NaN for the
/// halves that are).
/// </summary>
internal sealed class HalfExceptions(int[] rowStarts, int[] positions, float[] differences)
{
    public int[] RowStarts { get; } = rowStarts;

    public int[] Positions { get; } = positions;

    public float[] Differences { get; } = differences;
}
