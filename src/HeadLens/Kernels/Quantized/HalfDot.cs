using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace HeadLens.Kernels.Quantized;

// An F16 row's dot product with x, for AVX-512 without a half-conversion instruction (.NET 10 exposes no
// F16C/vcvtph2ps):
//   y = Σ_k half(W[k]) · x[k]        K = columns; W one row of IEEE halves, x fp32
// x is shared by every row of a product, so it is rearranged once per product (Prepare) and each row then converts
// its halves with three integer operations per 16 values instead of BlockDecoder.Widen16's ten:
//   - a 64-byte load holds 32 halves as 16 dwords: the odd half of each pair in the top 16 bits, the even one in the
//     bottom 16. Shifted arithmetically right by 3, the top half's sign stays on bit 31 and its exponent and mantissa
//     land on the float32 exponent and mantissa fields (bits 27-23 and 22-13); one ternary-logic operation clears the
//     copies of the sign (bits 30-28) and the other half's bits (12-0) and sets bit 28. The even halves are shifted
//     left by 16 first. So each lane holds the float32 with exponent 32 + e and the half's mantissa: for every normal
//     half (exponent e in 1..30) exactly w·2⁻⁸⁰, a normal float32 (2⁻⁹⁴ ≤ |w·2⁻⁸⁰| < 2⁻⁶³).
//   - x is rearranged to match: per 32 values, the 16 even-indexed ones, then the 16 odd-indexed ones, each times
//     2⁸⁰ (exact: a power of two; Accepts keeps |x| < 2⁴⁷ so that nothing overflows). So the products are exactly
//     w·x, and the sums differ from the reference only in their order.
//   - halves with exponent 0 (zero and subnormal: about 0.2% of N(0, 0.02) weights, one 64-value group in seven)
//     or 31 (infinity, NaN) would be wrong in that form; one test per 32 halves (add 1 to the exponent, test its top
//     four bits) sends the rare group through Widen16's exact conversion with the plain x. The bias of 32 keeps every
//     lane a normal float32: a subnormal operand costs the FMA a microcode assist (~110 cycles measured here).
// Measured on the Ice Lake Xeon (one core, the matrix in L2): see QuantizedMatVec and BENCHMARKS.md.
// Implementations: Dot (AVX-512 with AVX-512BW); callers keep QuantizedMatVec's DotHalves elsewhere, and for an x
// that Accepts refuses.
internal static unsafe class HalfDot
{
    /// <summary>Whether this CPU runs <see cref="Dot"/>.</summary>
    public static bool IsSupported => BlockDecoder.Is512 && Avx512BW.IsSupported;

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
    private static Vector512<short> Special(Vector512<int> pairs, Vector512<short> one, Vector512<short> top) =>
        Avx512BW.Add(pairs.AsInt16(), one) & top;

    /// <summary>
    /// Σ half(row[k])·x[k] for one F16 row of <paramref name="columns"/> values: <paramref name="prepared"/> is x as
    /// <see cref="Prepare"/> writes it, <paramref name="x"/> the plain x (for the rare exact groups and the tail).
    /// </summary>
    public static float Dot(short* row, float* prepared, float* x, int columns)
    {
        byte* ahead = (byte*)row + BlockDecoder.PrefetchAhead;
        var a0 = Vector512<float>.Zero;
        var a1 = Vector512<float>.Zero;
        var a2 = Vector512<float>.Zero;
        var a3 = Vector512<float>.Zero;
        var keep = Vector512.Create(KeepMask);
        var bias = Vector512.Create(Bias);
        var one = Vector512.Create((short)0x0400);
        var top = Vector512.Create((short)0x7800);
        int i = 0;
        for (; i <= columns - 64; i += 64)
        {
            Sse.Prefetch0(ahead + (2 * i));
            Sse.Prefetch0(ahead + (2 * i) + 64);
            var d0 = Vector512.Load((int*)(row + i));
            var d1 = Vector512.Load((int*)(row + i + 32));
            if ((Vector512.Equals(Special(d0, one, top), Vector512<short>.Zero) | Vector512.Equals(Special(d1, one, top), Vector512<short>.Zero)) != Vector512<short>.Zero)
            {
                a0 = Vector512.FusedMultiplyAdd(BlockDecoder.Widen16(row + i, true), Vector512.Load(x + i), a0);
                a1 = Vector512.FusedMultiplyAdd(BlockDecoder.Widen16(row + i + 16, true), Vector512.Load(x + i + 16), a1);
                a2 = Vector512.FusedMultiplyAdd(BlockDecoder.Widen16(row + i + 32, true), Vector512.Load(x + i + 32), a2);
                a3 = Vector512.FusedMultiplyAdd(BlockDecoder.Widen16(row + i + 48, true), Vector512.Load(x + i + 48), a3);
                continue;
            }

            a0 = Vector512.FusedMultiplyAdd(Even(d0, keep, bias), Vector512.Load(prepared + i), a0);
            a1 = Vector512.FusedMultiplyAdd(Odd(d0, keep, bias), Vector512.Load(prepared + i + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(Even(d1, keep, bias), Vector512.Load(prepared + i + 32), a2);
            a3 = Vector512.FusedMultiplyAdd(Odd(d1, keep, bias), Vector512.Load(prepared + i + 48), a3);
        }

        if (i <= columns - 32)
        {
            var d = Vector512.Load((int*)(row + i));
            if (Vector512.EqualsAny(Special(d, one, top), Vector512<short>.Zero))
            {
                a0 = Vector512.FusedMultiplyAdd(BlockDecoder.Widen16(row + i, true), Vector512.Load(x + i), a0);
                a1 = Vector512.FusedMultiplyAdd(BlockDecoder.Widen16(row + i + 16, true), Vector512.Load(x + i + 16), a1);
            }
            else
            {
                a0 = Vector512.FusedMultiplyAdd(Even(d, keep, bias), Vector512.Load(prepared + i), a0);
                a1 = Vector512.FusedMultiplyAdd(Odd(d, keep, bias), Vector512.Load(prepared + i + 16), a1);
            }

            i += 32;
        }

        float sum = Vector512.Sum((a0 + a1) + (a2 + a3));
        for (; i < columns; i++)
        {
            sum += BlockDecoder.Half((byte*)(row + i)) * x[i];
        }

        return sum;
    }
}
