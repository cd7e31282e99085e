using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace HeadLens.Kernels.Quantized;

// Vectorised decoding of ggml blocks to fp32: exactly the values Dequantize.Reference writes, bit for bit, so a
// product over decoded values differs from the reference path only in the order of its sums. Each format's value is
// formed with the reference's own operations in the reference's order (e.g. Q4_K: (d·scale)·q − dmin·min, a product
// then a difference, never a fused multiply-add), only many lanes at a time.
// The levers (measured on an Ice Lake Xeon with perf; .NET 10 has no F16C intrinsic and no VNNI):
//   - bytes are widened straight from memory to 32-bit lanes (vpmovzxbd/vpmovsxwd with a memory operand: one
//     shuffle per 16 values), nibbles split afterwards with an AND and a shift in the 32-bit lanes;
//   - with AVX-512, a 4-bit value indexes a 16-entry table of its decoded values (vpermps: one instruction does the
//     int→float conversion, the scale and the offset); the table, iota·(d·scale) − dmin·min, is built once per
//     sub-block of 32 values with the same product-then-difference as the reference. Q5_K's 32 levels use the
//     two-table form (vpermt2ps). Q6_K's 64 levels are converted (vcvtdq2ps) and scaled.
//   - IEEE half → float32 without F16C: sign-extend to 32 bits, shift left 13, keep sign, exponent and mantissa,
//     add 112 (or 224 for exponent 31: infinity, NaN) to the exponent; the rare vectors holding a zero or subnormal
//     half convert those lanes' mantissas (see HalfToSingle). Block scales use the scalar form of the same
//     (Dequantize.Half goes through System.Half's software conversion).
//   - the row dots (Dot512, Dot256) prefetch 4 KiB ahead of the bytes they multiply (PrefetchAhead): a decode step
//     streams every weight once, and the hardware prefetcher alone left one core waiting on memory.
//   - the K-quant row dots (Dot512, Dot256) take each block's constants out of the sum instead of decoding the values:
//     a table iota·(d·scale) per Q4_K sub-block (no −dmin·min in it) or each sub-block's sum times its d·scale once,
//     Q6_K's q without its −32, and the min and offset terms once per super-block from sums of x computed once per
//     product. The same sum, differently rounded.
// Implementations: Decode512 (AVX-512: Avx512F for the widening loads and permutes), Decode256 (AVX2, the
// conversion form for every format); callers fall back to Dequantize.Reference when neither is supported. The row
// dots: Dot512 (AVX-512) and Dot256 (AVX2) for Q4_0, Q8_0, Q4_K, Q5_K and Q6_K.
internal static unsafe partial class BlockDecoder
{
    /// <summary>Values decoded per call by the products (a K-quant super-block; eight Q8_0/Q4_0 blocks): fits L1.</summary>
    public const int Chunk = 256;

    public static bool IsSupported => Is512 || Is256;

    public static bool Is512 => Vector512.IsHardwareAccelerated && Avx512F.IsSupported;

    public static bool Is256 => Vector256.IsHardwareAccelerated && Avx2.IsSupported && Fma.IsSupported;

    private const float TwoToMinus24 = 1f / (1 << 24); // constants, not static readonly: no class-initialisation check in the loops

    /// <summary>
    /// Decodes <paramref name="count"/> values (a whole number of blocks) from <paramref name="source"/> to
    /// <paramref name="destination"/>, with AVX-512 if <paramref name="wide"/>, else AVX2.
    /// </summary>
    public static void Decode(GgmlType type, byte* source, int count, float* destination, bool wide)
    {
        if (wide)
        {
            Decode512(type, source, count, destination);
        }
        else
        {
            Decode256(type, source, count, destination);
        }
    }

    /// <summary>An IEEE half (bits) as float32, exactly; the scalar form of the vector widening.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Half(byte* at)
    {
        int bits = *(short*)at; // sign-extended: the sign lands on bit 31 after the shift
        int shifted = (bits << 13) & unchecked((int)0x8FFFE000), exponent = shifted & 0x0F800000;
        return exponent == 0 ? Subnormal(bits, shifted)
            : BitConverter.Int32BitsToSingle(shifted + (exponent == 0x0F800000 ? Special : Rebias));
    }

    // Exponent bias 15 → 127, added to the exponent field; exponent 31 (infinity, NaN) → 255.
    private const int Rebias = 112 << 23;
    private const int Special = 224 << 23;

    // Inlined: where it stays a call, the JIT keeps a loop's vector sums in memory across it (a zero or subnormal scale
    // is rare, so with profile-guided optimisation it was left as a call, and Q8_0's row dot ran ~2.5× slower).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Subnormal(int bits, int shifted) =>
        BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits((bits & 0x3FF) * TwoToMinus24) | (shifted & int.MinValue));

    // Vector form of Half: the exponent rebiased with an integer add (the special exponent 31 with its own), and
    // the lanes with exponent 0 (zero, subnormal halves: 0.2% of N(0, 0.02) weights, so one vector in thirty) by a
    // conversion of the mantissa, only when a vector holds one. Multiplying the shifted bits by 2¹¹² instead would
    // feed float32 subnormals to the multiplier, which costs a microcode assist per such vector on Intel cores.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> HalfToSingle(Vector512<int> signExtended)
    {
        var shifted = Vector512.ShiftLeft(signExtended, 13) & Vector512.Create(unchecked((int)0x8FFFE000));
        var exponent = shifted & Vector512.Create(0x0F800000);
        var value = shifted + Vector512.ConditionalSelect(Vector512.Equals(exponent, Vector512.Create(0x0F800000)), Vector512.Create(Special), Vector512.Create(Rebias));
        if (Vector512.EqualsAny(exponent, Vector512<int>.Zero))
        {
            var subnormal = (Vector512.ConvertToSingle(signExtended & Vector512.Create(0x3FF)) * Vector512.Create(TwoToMinus24)).AsInt32() | (shifted & Vector512.Create(int.MinValue));
            value = Vector512.ConditionalSelect(Vector512.Equals(exponent, Vector512<int>.Zero), subnormal, value);
        }

        return value.AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> HalfToSingle(Vector256<int> signExtended)
    {
        var shifted = Vector256.ShiftLeft(signExtended, 13) & Vector256.Create(unchecked((int)0x8FFFE000));
        var exponent = shifted & Vector256.Create(0x0F800000);
        var value = shifted + Vector256.ConditionalSelect(Vector256.Equals(exponent, Vector256.Create(0x0F800000)), Vector256.Create(Special), Vector256.Create(Rebias));
        if (Vector256.EqualsAny(exponent, Vector256<int>.Zero))
        {
            var subnormal = (Vector256.ConvertToSingle(signExtended & Vector256.Create(0x3FF)) * Vector256.Create(TwoToMinus24)).AsInt32() | (shifted & Vector256.Create(int.MinValue));
            value = Vector256.ConditionalSelect(Vector256.Equals(exponent, Vector256<int>.Zero), subnormal, value);
        }

        return value.AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> HalfToSingle(Vector128<int> signExtended)
    {
        var shifted = Vector128.ShiftLeft(signExtended, 13) & Vector128.Create(unchecked((int)0x8FFFE000));
        var exponent = shifted & Vector128.Create(0x0F800000);
        var value = shifted + Vector128.ConditionalSelect(Vector128.Equals(exponent, Vector128.Create(0x0F800000)), Vector128.Create(Special), Vector128.Create(Rebias));
        if (Vector128.EqualsAny(exponent, Vector128<int>.Zero))
        {
            var subnormal = (Vector128.ConvertToSingle(signExtended & Vector128.Create(0x3FF)) * Vector128.Create(TwoToMinus24)).AsInt32() | (shifted & Vector128.Create(int.MinValue));
            value = Vector128.ConditionalSelect(Vector128.Equals(exponent, Vector128<int>.Zero), subnormal, value);
        }

        return value.AsSingle();
    }

    /// <summary>16 F16 (or BF16) values at <paramref name="at"/> as float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Widen16(short* at, bool f16)
    {
        var bits = Avx512F.ConvertToVector512Int32(Vector256.Load(at));
        return f16 ? HalfToSingle(bits) : Vector512.ShiftLeft(bits, 16).AsSingle();
    }

    /// <summary>8 F16 (or BF16) values at <paramref name="at"/> as float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Widen8(short* at, bool f16)
    {
        var bits = Avx2.ConvertToVector256Int32(at);
        return f16 ? HalfToSingle(bits) : Vector256.ShiftLeft(bits, 16).AsSingle();
    }

    /// <summary>16 bytes widened to 16 int32 lanes (vpmovzxbd from memory).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Bytes16(byte* at) => Avx512F.ConvertToVector512Int32(Vector128.Load(at));

    /// <summary>8 bytes widened to 8 int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Bytes8(byte* at) => Avx2.ConvertToVector256Int32(at);

    /// <summary>
    /// A K-quant block's d (at 0) and dmin (at 2) times its 8 six-bit scales and mins (12 bytes at 4, packed as
    /// Dequantize.ScaleMin reads them), as [d·s0..3, dmin·m0..3, d·s4..7, dmin·m4..7]: four 32-bit words unpack all
    /// sixteen at once (bytes 0-3: low 6 bits are s0..3, top 2 bits the high bits of s4..7; bytes 4-7 the same for
    /// the mins; bytes 8-11: low nibbles s4..7, high nibbles m4..7), then one conversion and one product.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ScalesAndMins(byte* block, float* factors) => Factors(block, HalfTable.Values).Store(factors);

    /// <summary>
    /// The sixteen factors of <see cref="ScalesAndMins"/> in a register: the unpacked scales and mins converted, times
    /// d and dmin from <paramref name="halves"/> (HalfTable.Values, read once by the caller before its loop). The
    /// scalar unpacking and two scalar half conversions (with a call for a zero dmin) took a fifth of the Q4_K row dot;
    /// a vector conversion with a branch for zero and subnormal halves made the JIT keep the loop's sums on the stack.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Factors(byte* block, float* halves)
    {
        var counts = Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(Q4KScaleBytes(block)));
        var dAndMin = Vector128.Create(halves[*(ushort*)block], halves[*(ushort*)(block + 2)], 0, 0);
        return counts * Avx512F.PermuteVar16x32(dAndMin.ToVector256Unsafe().ToVector512Unsafe(), Vector512.Create(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1));
    }

    /// <summary>
    /// A Q4_K block's eight six-bit scales and eight mins (Dequantize.ScaleMin) as the bytes [s0..3, m0..3, s4..7,
    /// m4..7], unpacked in a vector register from its 12 scale bytes (at 4). As words a, b, c: lanes [a, b, c, c] and
    /// [a, b, a, b] give s0..3 = a &amp; 63, m0..3 = b &amp; 63, s4..7 = (c &amp; 15) | ((a >> 2) &amp; 48) and
    /// m4..7 = ((c >> 4) &amp; 15) | ((b >> 2) &amp; 48), bytewise.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<byte> Q4KScaleBytes(byte* block)
    {
        var abcc = Vector128.Shuffle(Vector128.Load((uint*)(block + 4)), Vector128.Create(0u, 1, 2, 2));
        var abab = Vector128.Create(*(ulong*)(block + 4)).AsUInt32();
        var low = Avx2.ShiftRightLogicalVariable(abcc, Vector128.Create(0u, 0, 0, 4)) & Vector128.Create(0x3F3F3F3Fu, 0x3F3F3F3F, 0x0F0F0F0F, 0x0F0F0F0F);
        var high = Avx2.ShiftRightLogicalVariable(abab, Vector128.Create(32u, 32, 2, 2)) & Vector128.Create(0x30303030u); // a shift of 32 clears the lane
        return (low | high).AsByte();
    }

    private static Vector512<float> Iota16 => Vector512.Create(0f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

    private static Vector512<float> Iota16Minus8 => Vector512.Create(-8f, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);

    private static void Decode512(GgmlType type, byte* source, int count, float* y)
    {
        switch (type)
        {
            case GgmlType.F16:
            case GgmlType.BF16:
                {
                    bool f16 = type == GgmlType.F16;
                    var halves = (short*)source;
                    int i = 0;
                    for (; i <= count - 16; i += 16)
                    {
                        Widen16(halves + i, f16).Store(y + i);
                    }

                    Tail(type, source, i, count, y);
                    break;
                }

            case GgmlType.Q8_0:
                for (int b = 0; b < count / 32; b++, source += 34, y += 32)
                {
                    var d = Vector512.Create(Half(source));
                    (Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(Vector128.Load((sbyte*)source + 2))) * d).Store(y);
                    (Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(Vector128.Load((sbyte*)source + 18))) * d).Store(y + 16);
                }

                break;
            case GgmlType.Q4_0:
                for (int b = 0; b < count / 32; b++, source += 18, y += 32)
                {
                    var table = Iota16Minus8 * Vector512.Create(Half(source)); // ((q − 8) as float)·d, as the reference
                    var q = Bytes16(source + 2);
                    Avx512F.PermuteVar16x32(table, q).Store(y); // vpermps reads the low 4 bits of each index
                    Avx512F.PermuteVar16x32(table, Vector512.ShiftRightLogical(q, 4)).Store(y + 16);
                }

                break;
            case GgmlType.Q4_K:
                {
                    // Per super-block, the eight scales and eight mins as (d·scale, dmin·min) in one vector, lanes
                    // [d·s0..3, dmin·m0..3, d·s4..7, dmin·m4..7], stored so each sub-block broadcasts its pair from L1.
                    var factors = stackalloc float[16];
                    for (int b = 0; b < count / 256; b++, source += 144, y += 256)
                    {
                        ScalesAndMins(source, factors);
                        for (int group = 0; group < 4; group++)
                        {
                            int j = 2 * group, first = j < 4 ? j : j + 4, second = first + 1;
                            var low = (Iota16 * Vector512.Create(factors[first])) - Vector512.Create(factors[first + 4]);
                            var high = (Iota16 * Vector512.Create(factors[second])) - Vector512.Create(factors[second + 4]);
                            var q0 = Bytes16(source + 16 + (32 * group));
                            var q1 = Bytes16(source + 32 + (32 * group));
                            float* to = y + (64 * group);
                            Avx512F.PermuteVar16x32(low, q0).Store(to); // vpermps reads the low 4 bits of each index
                            Avx512F.PermuteVar16x32(low, q1).Store(to + 16);
                            Avx512F.PermuteVar16x32(high, Vector512.ShiftRightLogical(q0, 4)).Store(to + 32);
                            Avx512F.PermuteVar16x32(high, Vector512.ShiftRightLogical(q1, 4)).Store(to + 48);
                        }
                    }

                    break;
                }

            case GgmlType.Q5_K:
                for (int b = 0; b < count / 256; b++, source += 176, y += 256)
                {
                    float d = Half(source), dmin = Half(source + 2);
                    var scales = new ReadOnlySpan<byte>(source + 4, 12);
                    var h0 = Bytes16(source + 16);
                    var h1 = Bytes16(source + 32);
                    var nibble = Vector512.Create(0xF);
                    var fifth = Vector512.Create(0x10);
                    for (int group = 0; group < 4; group++)
                    {
                        var (s1, m1) = Dequantize.ScaleMin(scales, 2 * group);
                        var (s2, m2) = Dequantize.ScaleMin(scales, (2 * group) + 1);
                        // 32 levels: the lower 16 in one table, the upper 16 in the other (vpermt2ps reads 5 index bits).
                        var lowA = (Iota16 * Vector512.Create(d * s1)) - Vector512.Create(dmin * m1);
                        var lowB = ((Iota16 + Vector512.Create(16f)) * Vector512.Create(d * s1)) - Vector512.Create(dmin * m1);
                        var highA = (Iota16 * Vector512.Create(d * s2)) - Vector512.Create(dmin * m2);
                        var highB = ((Iota16 + Vector512.Create(16f)) * Vector512.Create(d * s2)) - Vector512.Create(dmin * m2);
                        var q0 = Bytes16(source + 48 + (32 * group));
                        var q1 = Bytes16(source + 64 + (32 * group));
                        // Bit 2·group of qh is the fifth bit of the low nibbles, bit 2·group + 1 of the high ones.
                        var i0 = (q0 & nibble) | (Vector512.ShiftLeft(Vector512.ShiftRightLogical(h0, 2 * group), 4) & fifth);
                        var i1 = (q1 & nibble) | (Vector512.ShiftLeft(Vector512.ShiftRightLogical(h1, 2 * group), 4) & fifth);
                        var i2 = Vector512.ShiftRightLogical(q0, 4) | (Vector512.ShiftLeft(Vector512.ShiftRightLogical(h0, (2 * group) + 1), 4) & fifth);
                        var i3 = Vector512.ShiftRightLogical(q1, 4) | (Vector512.ShiftLeft(Vector512.ShiftRightLogical(h1, (2 * group) + 1), 4) & fifth);
                        float* to = y + (64 * group);
                        Avx512F.PermuteVar16x32x2(lowA, i0, lowB).Store(to);
                        Avx512F.PermuteVar16x32x2(lowA, i1, lowB).Store(to + 16);
                        Avx512F.PermuteVar16x32x2(highA, i2, highB).Store(to + 32);
                        Avx512F.PermuteVar16x32x2(highA, i3, highB).Store(to + 48);
                    }
                }

                break;
            default: // Q6_K
                var runScales = stackalloc float[16]; // d·scale of the block's sixteen runs of 16 values
                for (int b = 0; b < count / 256; b++, source += 210, y += 256)
                {
                    float d = Half(source + 208);
                    (Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(Vector128.Load((sbyte*)source + 192))) * Vector512.Create(d)).Store(runScales);
                    var nibble = Vector512.Create(0xF);
                    var two = Vector512.Create(0x30);
                    var offset = Vector512.Create(32);
                    for (int half = 0; half < 2; half++)
                    {
                        for (int part = 0; part < 2; part++) // values l = 16·part … 16·part + 15 of this half's four runs of 32
                        {
                            var a = Bytes16(source + (64 * half) + (16 * part));
                            var c = Bytes16(source + (64 * half) + 32 + (16 * part));
                            var h = Bytes16(source + 128 + (32 * half) + (16 * part));
                            int s = (8 * half) + part;
                            float* to = y + (128 * half) + (16 * part);
                            var q1 = ((a & nibble) | (Vector512.ShiftLeft(h, 4) & two)) - offset;
                            var q2 = ((c & nibble) | (Vector512.ShiftLeft(h, 2) & two)) - offset;
                            var q3 = (Vector512.ShiftRightLogical(a, 4) | (h & two)) - offset;
                            var q4 = (Vector512.ShiftRightLogical(c, 4) | (Vector512.ShiftRightLogical(h, 2) & two)) - offset;
                            (Vector512.ConvertToSingle(q1) * Vector512.Create(runScales[s])).Store(to);
                            (Vector512.ConvertToSingle(q2) * Vector512.Create(runScales[s + 2])).Store(to + 32);
                            (Vector512.ConvertToSingle(q3) * Vector512.Create(runScales[s + 4])).Store(to + 64);
                            (Vector512.ConvertToSingle(q4) * Vector512.Create(runScales[s + 6])).Store(to + 96);
                        }
                    }
                }

                break;
        }
    }

    /// <summary>
    /// How far ahead of the bytes being multiplied the decoding products prefetch (Dot512, the F16/BF16 and fp32 row
    /// dots). A decode step streams every weight from memory once, and one core's hardware prefetcher keeps too few
    /// lines in flight (it also stops at each 4 KiB page), so a core drew well under its share of the bandwidth while
    /// the decoding itself waited. One prefetch per 64 bytes, 4 KiB ahead (about two Q8_0 rows of 2048 values):
    /// measured on the Ice Lake Xeon against none, 1.1B Q8_0 decode +25–30%, GPT-2 F16 +28%, F32 +8–13%, Q4_K_M
    /// +12% (same-process A/B); 4 KiB against 2 KiB: F16 and Q8_0 a further 3–10%, 8 KiB no better; non-temporal
    /// prefetches no better than none. 0 turns the prefetches off (for that A/B); a prefetch past the end of the data
    /// never faults.
    /// </summary>
    internal static int PrefetchAhead = 4096;

    /// <summary>Whether <see cref="Dot512"/> multiplies this type in registers.</summary>
    public static bool HasDot512(GgmlType type) => Is512 && type is GgmlType.Q4_0 or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_0;

    /// <summary>
    /// Floats of x's sums that <see cref="Dot512"/> takes for this type (<see cref="PrepareSums"/>): Q4_K and Q6_K
    /// one per 16 values, Q8_0 none.
    /// </summary>
    public static int SumsLength(GgmlType type, int count) => type switch
    {
        // With AVX-512 followed by x in the order Q4_K's nibbles or DotQ6K's words meet it (PrepareSums); Dot256 reads
        // x as it is.
        GgmlType.Q4_K or GgmlType.Q6_K => (count / 16) + (Is512 ? count : 0),
        GgmlType.Q5_K => count / 16, // Q4_K's sums; its dots read x as it is
        _ => 0,
    };

    /// <summary>
    /// The sums of x that the factored K-quant row dots use, computed once per product (x is shared by every row):
    /// Q4_K, per super-block, 16 floats laid out as <see cref="Factors"/>'s lanes, [0, 0, 0, 0, Σx over sub-blocks
    /// 0..3, 0, 0, 0, 0, Σx over sub-blocks 4..7] (32 values each), so one FMA with the factors gives Σ dmin·min·Σx;
    /// Q6_K, Σx over each run of 16 values (one scale each). The sums are followed by x itself, rearranged per
    /// super-block in the order <see cref="DotQ4K"/> or <see cref="DotQ6K"/> meets it: for each 64 bytes of nibbles
    /// (half h of the block), each byte t of a 32-bit lane and each nibble n (low, high), 16 lanes where lane i holds
    /// value 128·h + 64·(i / 8) + 32·n + 4·(i mod 8) + t (Q4_K) or 128·h + 32·(i / 8 + 2·n) + 4·(i mod 8) + t (Q6_K).
    /// </summary>
    public static void PrepareSums(GgmlType type, float* x, int count, float* sums)
    {
        if (!Is512)
        {
            PrepareSums256(type, x, count, sums);
            return;
        }

        if (type == GgmlType.Q6_K)
        {
            for (int run = 0; run < count / 16; run++)
            {
                sums[run] = Vector512.Sum(Vector512.Load(x + (16 * run)));
            }

            float* arranged = sums + (count / 16);
            for (int b = 0; b < count / 256; b++, x += 256, arranged += 256)
            {
                for (int half = 0; half < 2; half++)
                {
                    for (int t = 0; t < 4; t++)
                    {
                        for (int n = 0; n < 2; n++)
                        {
                            for (int i = 0; i < 16; i++)
                            {
                                arranged[(128 * half) + (32 * t) + (16 * n) + i] = x[(128 * half) + (32 * ((i / 8) + (2 * n))) + (4 * (i % 8)) + t];
                            }
                        }
                    }
                }
            }
        }
        else if (type == GgmlType.Q5_K)
        {
            PrepareSums256(type, x, count, sums);
        }
        else if (type == GgmlType.Q4_K)
        {
            float* arranged = sums + (count / 16);
            for (int b = 0; b < count / 256; b++, x += 256, sums += 16, arranged += 256)
            {
                for (int s = 0; s < 8; s++)
                {
                    int lane = s < 4 ? 4 + s : 8 + s;
                    sums[lane] = Vector512.Sum(Vector512.Load(x + (32 * s)) + Vector512.Load(x + (32 * s) + 16));
                    sums[lane - 4] = 0;
                }

                for (int half = 0; half < 2; half++)
                {
                    for (int t = 0; t < 4; t++)
                    {
                        for (int n = 0; n < 2; n++)
                        {
                            for (int i = 0; i < 16; i++)
                            {
                                arranged[(128 * half) + (32 * t) + (16 * n) + i] = x[(128 * half) + (64 * (i / 8)) + (32 * n) + (4 * (i % 8)) + t];
                            }
                        }
                    }
                }
            }
        }
    }

    // PrepareSums for Dot256 (and Q5_K's Dot512): the same sums (8-lane additions), without the rearranged x.
    private static void PrepareSums256(GgmlType type, float* x, int count, float* sums)
    {
        if (type == GgmlType.Q6_K)
        {
            for (int run = 0; run < count / 16; run++)
            {
                sums[run] = Vector256.Sum(Vector256.Load(x + (16 * run)) + Vector256.Load(x + (16 * run) + 8));
            }
        }
        else if (type is GgmlType.Q4_K or GgmlType.Q5_K)
        {
            for (int b = 0; b < count / 256; b++, x += 256, sums += 16)
            {
                for (int s = 0; s < 8; s++)
                {
                    int lane = s < 4 ? 4 + s : 8 + s;
                    float* at = x + (32 * s);
                    sums[lane] = Vector256.Sum((Vector256.Load(at) + Vector256.Load(at + 8)) + (Vector256.Load(at + 16) + Vector256.Load(at + 24)));
                    sums[lane - 4] = 0;
                }
            }
        }
    }

    /// <summary>
    /// One Q4_0, Q8_0, Q4_K, Q5_K or Q6_K row's dot product with x, multiplied straight from the registers (no store of
    /// the decoded values). Q8_0 decodes as Decode512 and multiplies, Q4_0 sums each block's (q − 8)·x and multiplies by d; the K-quants take each block's constant factors out
    /// of the sum, with <paramref name="sums"/> from <see cref="PrepareSums"/> for this x: Q4_K and Q5_K as
    /// Σ_s (d·scale_s)·Σ q·x − Σ_s (dmin·min_s)·Σx_s, Q6_K as Σ_r (d·scale_r)·(Σ q·x − 32·Σx_r). The same sums as
    /// over Dequantize.Reference's values, with other roundings: one product with d·scale per value instead of a
    /// product and a difference, and the min (Q4_K) or offset (Q6_K) term once per block from the sums of x.
    /// </summary>
    public static float Dot512(GgmlType type, byte* row, int count, float* x, float* sums)
    {
        if (type == GgmlType.Q4_K)
        {
            return DotQ4K(row, count, sums, HalfTable.Values, PrefetchAhead);
        }

        if (type == GgmlType.Q6_K)
        {
            return DotQ6K(row, count, sums, HalfTable.Values, PrefetchAhead);
        }

        if (type == GgmlType.Q5_K)
        {
            return DotQ5K(row, count, x, sums, HalfTable.Values, PrefetchAhead);
        }

        if (type == GgmlType.Q4_0)
        {
            return DotQ4_0(row, count, x, HalfTable.Values, PrefetchAhead);
        }

        int ahead = PrefetchAhead;
        float* halves = HalfTable.Values;
        var a0 = Vector512<float>.Zero;
        var a1 = Vector512<float>.Zero;
        for (int b = 0; b < count / 32; b++, row += 34, x += 32)
        {
            Sse.Prefetch0(row + ahead);
            var d = Vector512.Create(halves[*(ushort*)row]);
            a0 = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(Vector128.Load((sbyte*)row + 2))) * d, Vector512.Load(x), a0);
            a1 = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(Vector128.Load((sbyte*)row + 18))) * d, Vector512.Load(x + 16), a1);
        }

        return Vector512.Sum(a0 + a1);
    }

    // Q4_K's part of Dot512, a method of its own so that the JIT inlines the helpers below (inside Dot512 it ran out
    // of inlining budget, called them and kept the sums on the stack: half the speed). 64 bytes of nibbles are loaded
    // as 16 lanes of four bytes; a shift brings each lane's byte t, low or high nibble, to the lane's low four bits,
    // where vpermps looks its float up, multiplied with x (rearranged to match by PrepareSums) into two sums, one per
    // nibble. Lanes 0-7 hold one sub-block pair and lanes 8-15 the next, so the two sums take their d·scale per lane
    // once per 128 values. The mins cost one FMA per super-block: factors × sums, whose scale lanes hold zeros. Against
    // the earlier loop (each 16 values widened from bytes and looked up in a table iota·(d·scale), two shuffles per 16
    // values), one thread: 1.8–1.9× in L2, 1.3× from memory (Zen 4; BENCHMARKS.md, eighteenth session). The lookup
    // instead of a mask and a conversion (which issues on the FMA pipes on Zen 4): 50 → 44 cycles per super-block
    // (twenty-first session).
    // Two sums, in DotQ4KPair's order, so that a row gives the same bits alone as in a pair: which rows pair up
    // depends on where a thread's chunk of rows ends, and the bits must not depend on the thread count.
    private static float DotQ4K(byte* row, int count, float* sums, float* halves, int ahead)
    {
        var a0 = Vector512<float>.Zero;
        var a1 = Vector512<float>.Zero;
        var mins = Vector512<float>.Zero;
        float* arranged = sums + (count / 16);
        for (int b = 0; b < count / 256; b++, row += 144, sums += 16, arranged += 256)
        {
            Sse.Prefetch0(row + ahead);
            Sse.Prefetch0(row + ahead + 64);
            Sse.Prefetch0(row + ahead + 128);
            var factors = Factors(row, halves);
            mins = Vector512.FusedMultiplyAdd(factors, Vector512.Load(sums), mins);
            Q4KHalf(factors, 0, row + 16, arranged, ref a0, ref a1);
            Q4KHalf(factors, 1, row + 80, arranged + 128, ref a0, ref a1);
        }

        return Vector512.Sum((a0 + a1) - mins);
    }

    /// <summary>
    /// Two Q4_K rows' dot products with x (<see cref="Dot512"/>'s arithmetic in its order, bit for bit), into
    /// y[0] and y[1]: the two rows' factors and products are independent chains the core overlaps, and x (as
    /// PrepareSums arranged it, after the sums) is loaded once for both.
    /// </summary>
    internal static void DotQ4KPair(byte* row, byte* other, int count, float* sums, float* y)
    {
        int ahead = PrefetchAhead;
        float* halves = HalfTable.Values;
        var a0 = Vector512<float>.Zero;
        var a1 = Vector512<float>.Zero;
        var b0 = Vector512<float>.Zero;
        var b1 = Vector512<float>.Zero;
        var mins = Vector512<float>.Zero;
        var minsOther = Vector512<float>.Zero;
        float* arranged = sums + (count / 16);
        for (int b = 0; b < count / 256; b++, row += 144, other += 144, sums += 16, arranged += 256)
        {
            Sse.Prefetch0(row + ahead);
            Sse.Prefetch0(row + ahead + 64);
            Sse.Prefetch0(row + ahead + 128);
            Sse.Prefetch0(other + ahead);
            Sse.Prefetch0(other + ahead + 64);
            Sse.Prefetch0(other + ahead + 128);
            var factors = Factors(row, halves);
            var factorsOther = Factors(other, halves);
            var s = Vector512.Load(sums);
            mins = Vector512.FusedMultiplyAdd(factors, s, mins);
            minsOther = Vector512.FusedMultiplyAdd(factorsOther, s, minsOther);
            Q4KHalf(factors, 0, row + 16, arranged, ref a0, ref a1);
            Q4KHalf(factorsOther, 0, other + 16, arranged, ref b0, ref b1);
            Q4KHalf(factors, 1, row + 80, arranged + 128, ref a0, ref a1);
            Q4KHalf(factorsOther, 1, other + 80, arranged + 128, ref b0, ref b1);
        }

        y[0] = Vector512.Sum((a0 + a1) - mins);
        y[1] = Vector512.Sum((b0 + b1) - minsOther);
    }

    // 128 Q4_K values: the 64 bytes at q (sub-blocks 4·half … 4·half + 3: bytes 0-31 the first pair, 32-63 the second,
    // low nibbles the pair's first sub-block), times x as PrepareSums arranged it, into the two sums.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q4KHalf(Vector512<float> factors, int half, byte* q, float* x, ref Vector512<float> a0, ref Vector512<float> a1)
    {
        // vpermps reads only the low four bits of each index lane, so a lane shifted right by 4t looks its nibble up in
        // the 16 floats 0..15 without a mask or a conversion: the same floats as converting the nibble.
        var values = Vector512<float>.Indices;
        var bytes = Vector512.Load((int*)q);
        var low = Avx512F.PermuteVar16x32(values, bytes) * Vector512.Load(x);
        var high = Avx512F.PermuteVar16x32(values, Vector512.ShiftRightLogical(bytes, 4)) * Vector512.Load(x + 16);
        low = Vector512.FusedMultiplyAdd(Avx512F.PermuteVar16x32(values, Vector512.ShiftRightLogical(bytes, 8)), Vector512.Load(x + 32), low);
        high = Vector512.FusedMultiplyAdd(Avx512F.PermuteVar16x32(values, Vector512.ShiftRightLogical(bytes, 12)), Vector512.Load(x + 48), high);
        low = Vector512.FusedMultiplyAdd(Avx512F.PermuteVar16x32(values, Vector512.ShiftRightLogical(bytes, 16)), Vector512.Load(x + 64), low);
        high = Vector512.FusedMultiplyAdd(Avx512F.PermuteVar16x32(values, Vector512.ShiftRightLogical(bytes, 20)), Vector512.Load(x + 80), high);
        low = Vector512.FusedMultiplyAdd(Avx512F.PermuteVar16x32(values, Vector512.ShiftRightLogical(bytes, 24)), Vector512.Load(x + 96), low);
        high = Vector512.FusedMultiplyAdd(Avx512F.PermuteVar16x32(values, Vector512.ShiftRightLogical(bytes, 28)), Vector512.Load(x + 112), high);
        // d·scale per lane: lanes 0-7 the first pair's sub-blocks, 8-15 the second's (Factors' lanes 0-3 and 8-11).
        var lowScales = half == 0 ? Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2) : Vector512.Create(8, 8, 8, 8, 8, 8, 8, 8, 10, 10, 10, 10, 10, 10, 10, 10);
        a0 = Vector512.FusedMultiplyAdd(low, Avx512F.PermuteVar16x32(factors, lowScales), a0);
        a1 = Vector512.FusedMultiplyAdd(high, Avx512F.PermuteVar16x32(factors, lowScales + Vector512<int>.One), a1);
    }

    // Q6_K's part of Dot512. Per 128 values, the 64 ql bytes are loaded as 16 lanes of four bytes (lanes 0-7: runs 0
    // and 2 of 32 in their low and high nibbles, lanes 8-15: runs 1 and 3) and the 32 qh bytes broadcast to both halves,
    // shifted right by 2 bits in lanes 8-15, so that every lane finds the two high bits of its byte t's nibble n at bits
    // 8t + 4n. A mask and an or join each nibble with its two bits into four six-bit values per lane (one per byte, per
    // nibble); a shift and a mask per byte t then give 16 values, converted and multiplied with x (rearranged to match
    // by PrepareSums) into two sums, one per nibble. Each lane keeps one run of 16 for a given
    // nibble, so the sums take their d·scale per lane once per 128 values. The −32 of every value leaves the loop as
    // −32·Σ (d·scale_r)·Σx_r, one FMA per super-block. Against the earlier loop (16 bytes widened per vector from three
    // loads, a scale permuted and a product per vector), one thread: BENCHMARKS.md, nineteenth session.
    private static float DotQ6K(byte* row, int count, float* sums, float* halves, int ahead)
    {
        var a0 = Vector512<float>.Zero;
        var a1 = Vector512<float>.Zero;
        var offsets = Vector512<float>.Zero;
        float* arranged = sums + (count / 16);
        for (int b = 0; b < count / 256; b++, row += 210, sums += 16, arranged += 256)
        {
            Sse.Prefetch0(row + ahead);
            Sse.Prefetch0(row + ahead + 64);
            Sse.Prefetch0(row + ahead + 128);
            Sse.Prefetch0(row + ahead + 192);
            var scales = Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(Vector128.Load((sbyte*)row + 192))) * Vector512.Create(halves[*(ushort*)(row + 208)]);
            offsets = Vector512.FusedMultiplyAdd(scales, Vector512.Load(sums), offsets);
            Q6KHalf(scales, 0, row, row + 128, arranged, ref a0, ref a1);
            Q6KHalf(scales, 1, row + 64, row + 160, arranged + 128, ref a0, ref a1);
        }

        return Vector512.Sum((a0 + a1) - (offsets * Vector512.Create(32f)));
    }

    // 128 Q6_K values (half h of a block): the 64 ql bytes at ql, the 32 qh bytes at qh, times x as PrepareSums
    // arranged it, into the two sums. Lane i's scale: run (i / 8) + 2n's (i mod 8) / 4-th of 16 values.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q6KHalf(Vector512<float> scales, int half, byte* ql, byte* qh, float* x, ref Vector512<float> a0, ref Vector512<float> a1)
    {
        var nibbles = Vector512.Create(0x0F0F0F0Fu);
        var twos = Vector512.Create(0x30303030u);
        var bytes = Vector512.Load((uint*)ql);
        // Lanes 8-15 take the bits of runs 1 and 3 (bits 2-3 and 6-7 of each qh byte) where lanes 0-7 take runs 0 and 2's.
        // The shifts are one constant (built from two halves, the JIT rebuilt them with two inserts every 128 values).
        // The 32 bytes fill the upper half by an insert from memory: Avx512F.BroadcastVector256ToVector512 from memory is
        // mis-addressed by the .NET 10 JIT (see IntegerDot.DotQ6K), and Vector512.Create(half, half) takes two inserts.
        var high = Avx512F.ShiftRightLogicalVariable(Avx512F.InsertVector256(Vector256.Load((uint*)qh).ToVector512Unsafe(), Vector256.Load((uint*)qh), 1), Vector512.Create(0u, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2));
        // Four six-bit values per lane, one per byte, their bits 6-7 clear: the low nibbles' (first) and the high
        // nibbles' (second).
        var first = (bytes & nibbles) | (Vector512.ShiftLeft(high, 4) & twos);
        var second = (Vector512.ShiftRightLogical(bytes, 4) & nibbles) | (high & twos);
        // Bytes 1 and 2 reach the lane's low byte, the other three zeroed, by one vpshufb each (a shift and a mask
        // before); byte 0 by a mask, byte 3 by a shift.
        var low = Vector512.ConvertToSingle((first & Vector512.Create(0xFFu)).AsInt32()) * Vector512.Load(x);
        var upper = Vector512.ConvertToSingle((second & Vector512.Create(0xFFu)).AsInt32()) * Vector512.Load(x + 16);
        low = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(LaneByte(first, 1)), Vector512.Load(x + 32), low);
        upper = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(LaneByte(second, 1)), Vector512.Load(x + 48), upper);
        low = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(LaneByte(first, 2)), Vector512.Load(x + 64), low);
        upper = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(LaneByte(second, 2)), Vector512.Load(x + 80), upper);
        low = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(Vector512.ShiftRightLogical(first, 24).AsInt32()), Vector512.Load(x + 96), low);
        upper = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(Vector512.ShiftRightLogical(second, 24).AsInt32()), Vector512.Load(x + 112), upper);

        // d·scale per lane: run (i / 8) + 2n of 32 values, its (i mod 8) / 4-th run of 16: index 8·half + 2·run + (i mod 8) / 4.
        var lowScales = Vector512.Create(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3) + Vector512.Create(8 * half);
        a0 = Vector512.FusedMultiplyAdd(low, Avx512F.PermuteVar16x32(scales, lowScales), a0);
        a1 = Vector512.FusedMultiplyAdd(upper, Avx512F.PermuteVar16x32(scales, lowScales + Vector512.Create(4)), a1);
    }

    // Q4_0's part of Dot512: DotQ4_0x256's arithmetic with 16 lanes (a block's 16 bytes widened by one load).
    private static float DotQ4_0(byte* row, int count, float* x, float* halves, int ahead)
    {
        var a0 = Vector512<float>.Zero;
        var a1 = Vector512<float>.Zero;
        var nibble = Vector512.Create(0xF);
        var eight = Vector512.Create(8);
        for (int b = 0; b < count / 32; b++, row += 18, x += 32)
        {
            Sse.Prefetch0(row + ahead);
            var q = Bytes16(row + 2);
            var block = Vector512.ConvertToSingle((q & nibble) - eight) * Vector512.Load(x);
            block = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(Vector512.ShiftRightLogical(q, 4) - eight), Vector512.Load(x + 16), block);
            var d = Vector512.Create(halves[*(ushort*)row]);
            if ((b & 1) == 0)
            {
                a0 = Vector512.FusedMultiplyAdd(block, d, a0);
            }
            else
            {
                a1 = Vector512.FusedMultiplyAdd(block, d, a1);
            }
        }

        return Vector512.Sum(a0 + a1);
    }

    // Q5_K's part of Dot512: DotQ5K256's form with 16 lanes (16 bytes widened per load, x in its own order), the
    // sub-block scales broadcast from Factors' lanes; Q4_K's 16-float lookup would need a 32-entry table here
    // (vpermt2ps) and the fifth bit joined to each index first.
    private static float DotQ5K(byte* row, int count, float* x, float* sums, float* halves, int ahead)
    {
        var a0 = Vector512<float>.Zero;
        var a1 = Vector512<float>.Zero;
        var mins = Vector512<float>.Zero;
        for (int b = 0; b < count / 256; b++, row += 176, x += 256, sums += 16)
        {
            Sse.Prefetch0(row + ahead);
            Sse.Prefetch0(row + ahead + 64);
            Sse.Prefetch0(row + ahead + 128);
            var factors = Factors(row, halves);
            mins = Vector512.FusedMultiplyAdd(factors, Vector512.Load(sums), mins);
            Q5KPair512(row + 48, row + 16, 0, x, Avx512F.PermuteVar16x32(factors, Vector512.Create(0)), Avx512F.PermuteVar16x32(factors, Vector512.Create(1)), ref a0, ref a1);
            Q5KPair512(row + 80, row + 16, 2, x + 64, Avx512F.PermuteVar16x32(factors, Vector512.Create(2)), Avx512F.PermuteVar16x32(factors, Vector512.Create(3)), ref a0, ref a1);
            Q5KPair512(row + 112, row + 16, 4, x + 128, Avx512F.PermuteVar16x32(factors, Vector512.Create(8)), Avx512F.PermuteVar16x32(factors, Vector512.Create(9)), ref a0, ref a1);
            Q5KPair512(row + 144, row + 16, 6, x + 192, Avx512F.PermuteVar16x32(factors, Vector512.Create(10)), Avx512F.PermuteVar16x32(factors, Vector512.Create(11)), ref a0, ref a1);
        }

        return Vector512.Sum((a0 + a1) - mins);
    }

    // One Q5_K sub-block pair with 16 lanes (Q5KPair256's arithmetic).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q5KPair512(byte* q, byte* qh, int bit, float* x, Vector512<float> lowScale, Vector512<float> highScale, ref Vector512<float> a0, ref Vector512<float> a1)
    {
        var sixteen = Vector512.Create(16);
        var bytes = Bytes16(q);
        var fifth = Vector512.ShiftRightLogical(Bytes16(qh), bit);
        var low = Vector512.ConvertToSingle((bytes & Vector512.Create(0xF)) | (Vector512.ShiftLeft(fifth, 4) & sixteen)) * Vector512.Load(x);
        var high = Vector512.ConvertToSingle(Vector512.ShiftRightLogical(bytes, 4) | (Vector512.ShiftLeft(fifth, 3) & sixteen)) * Vector512.Load(x + 32);
        bytes = Bytes16(q + 16);
        fifth = Vector512.ShiftRightLogical(Bytes16(qh + 16), bit);
        low = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle((bytes & Vector512.Create(0xF)) | (Vector512.ShiftLeft(fifth, 4) & sixteen)), Vector512.Load(x + 16), low);
        high = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(Vector512.ShiftRightLogical(bytes, 4) | (Vector512.ShiftLeft(fifth, 3) & sixteen)), Vector512.Load(x + 48), high);
        a0 = Vector512.FusedMultiplyAdd(low, lowScale, a0);
        a1 = Vector512.FusedMultiplyAdd(high, highScale, a1);
    }

    // Byte t of each 32-bit lane as the lane's value (vpshufb: 0x80 in a control byte writes a zero).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> LaneByte(Vector512<uint> lanes, uint t) =>
        Avx512BW.Shuffle(lanes.AsByte(), (Vector512.Create(0x80808000u, 0x80808004u, 0x80808008u, 0x8080800Cu, 0x80808000u, 0x80808004u, 0x80808008u, 0x8080800Cu, 0x80808000u, 0x80808004u, 0x80808008u, 0x8080800Cu, 0x80808000u, 0x80808004u, 0x80808008u, 0x8080800Cu) + Vector512.Create(t)).AsByte()).AsInt32();

    /// <summary>Whether <see cref="Dot256"/> multiplies this type in registers (AVX2 machines, without AVX-512).</summary>
    public static bool HasDot256(GgmlType type) => !Is512 && Is256 && type is GgmlType.Q4_0 or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_0;

    /// <summary>
    /// One Q4_0, Q8_0, Q4_K, Q5_K or Q6_K row's dot product with x in 8-lane registers, for machines without AVX-512: the
    /// factoring of <see cref="Dot512"/> with x in its own order. <paramref name="sums"/> holds what
    /// <see cref="PrepareSums"/> writes for the K-quants (the sums only: <see cref="SumsLength"/> without AVX-512).
    /// Each byte is widened straight from memory to a 32-bit lane (vpmovzxbd), its nibbles split by a mask and a
    /// shift and converted (8 lanes leave no room for Dot512's 16-float lookup); the products of one sub-block
    /// (Q4_K, 32 values), run (Q6_K, 16) or block (Q8_0, 32) gather in a sum of their own, multiplied by its d·scale
    /// once. Decoding to a buffer and multiplying it (Decode256, then Gemv.Dot) stored and reloaded every value.
    /// </summary>
    public static float Dot256(GgmlType type, byte* row, int count, float* x, float* sums)
    {
        bool prefetch = Gemv.PrefetchWeights;
        return type switch
        {
            GgmlType.Q4_K => DotQ4K256(row, count, x, sums, HalfTable.Values, prefetch),
            GgmlType.Q5_K => DotQ5K256(row, count, x, sums, HalfTable.Values, prefetch),
            GgmlType.Q4_0 => DotQ4_0x256(row, count, x, HalfTable.Values, prefetch),
            GgmlType.Q6_K => DotQ6K256(row, count, x, sums, HalfTable.Values, prefetch),
            _ => DotQ8256(row, count, x, HalfTable.Values, prefetch),
        };
    }

    // Q4_K with 8 lanes. The factors come as DotQ4K's, in two registers: [d·s0..3, dmin·m0..3] and [d·s4..7,
    // dmin·m4..7]; against the sums [0, 0, 0, 0, Σx over sub-blocks 0..3] and the same for 4..7 they give the min terms
    // with two FMAs per super-block, and vpermps broadcasts each sub-block's d·scale from them.
    private static float DotQ4K256(byte* row, int count, float* x, float* sums, float* halves, bool prefetch)
    {
        int ahead = PrefetchAhead;
        var a0 = Vector256<float>.Zero;
        var a1 = Vector256<float>.Zero;
        var mins = Vector256<float>.Zero;
        for (int b = 0; b < count / 256; b++, row += 144, x += 256, sums += 16)
        {
            if (prefetch)
            {
                Sse.Prefetch0(row + ahead);
                Sse.Prefetch0(row + ahead + 64);
                Sse.Prefetch0(row + ahead + 128);
            }

            Factors256(row, sums, halves, ref mins, out var first, out var second);
            Q4KPair256(row + 16, x, Lane(first, 0), Lane(first, 1), ref a0, ref a1);
            Q4KPair256(row + 48, x + 64, Lane(first, 2), Lane(first, 3), ref a0, ref a1);
            Q4KPair256(row + 80, x + 128, Lane(second, 0), Lane(second, 1), ref a0, ref a1);
            Q4KPair256(row + 112, x + 192, Lane(second, 2), Lane(second, 3), ref a0, ref a1);
        }

        return Vector256.Sum((a0 + a1) - mins);
    }

    // A Q4_K or Q5_K super-block's factors (the same 12 scale bytes) in two registers, [d·s0..3, dmin·m0..3] and
    // [d·s4..7, dmin·m4..7], and its min terms added to `mins` against the sums [0, 0, 0, 0, Σx over sub-blocks 0..3]
    // and the same for 4..7.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Factors256(byte* row, float* sums, float* halves, ref Vector256<float> mins, out Vector256<float> first, out Vector256<float> second)
    {
        var counts = Q4KScaleBytes(row);
        var dAndMin = Vector256.Create(Vector128.Create(halves[*(ushort*)row]), Vector128.Create(halves[*(ushort*)(row + 2)]));
        first = Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(counts)) * dAndMin;
        second = Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(counts, 8))) * dAndMin;
        mins = Vector256.FusedMultiplyAdd(first, Vector256.Load(sums), mins);
        mins = Vector256.FusedMultiplyAdd(second, Vector256.Load(sums + 8), mins);
    }

    // One Q4_K sub-block pair: 32 bytes at q, their low nibbles the first sub-block (x[0..32)), their high nibbles the
    // second (x[32..64)).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q4KPair256(byte* q, float* x, Vector256<float> lowScale, Vector256<float> highScale, ref Vector256<float> a0, ref Vector256<float> a1)
    {
        var nibble = Vector256.Create(0xF);
        var bytes = Bytes8(q);
        var low = Vector256.ConvertToSingle(bytes & nibble) * Vector256.Load(x);
        var high = Vector256.ConvertToSingle(Vector256.ShiftRightLogical(bytes, 4)) * Vector256.Load(x + 32);
        for (int l = 8; l < 32; l += 8)
        {
            bytes = Bytes8(q + l);
            low = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(bytes & nibble), Vector256.Load(x + l), low);
            high = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Vector256.ShiftRightLogical(bytes, 4)), Vector256.Load(x + 32 + l), high);
        }

        a0 = Vector256.FusedMultiplyAdd(low, lowScale, a0);
        a1 = Vector256.FusedMultiplyAdd(high, highScale, a1);
    }

    // Q5_K with 8 lanes: Q4_K's dot with each value's fifth bit from qh (32 bytes at 16: bit 2j of byte l is value l's
    // of sub-block 2j, bit 2j + 1 of sub-block 2j + 1), the nibbles 32 bytes further on. A super-block's 256 values are
    // first formed as bytes, 32 per vector (a mask, a shift and an or per 32 values instead of per 8), into a stack
    // buffer in L1 that the products then widen from (vpmovzxbd with a memory operand: a load, no FMA-port work). A
    // pass over GPT-2's matrices in Q5_K, AVX-512 off: 9.1–9.3 ms forming the values per 8 widened lanes, 6.5–7.3 ms so.
    // Q4_K, one operation per value fewer, widens its bytes directly: through the same buffer it took 6.7–6.8 ms
    // instead of 5.3–5.6.
    [SkipLocalsInit]
    private static float DotQ5K256(byte* row, int count, float* x, float* sums, float* halves, bool prefetch)
    {
        int ahead = PrefetchAhead;
        var a0 = Vector256<float>.Zero;
        var a1 = Vector256<float>.Zero;
        var mins = Vector256<float>.Zero;
        byte* values = stackalloc byte[256];
        for (int b = 0; b < count / 256; b++, row += 176, x += 256, sums += 16)
        {
            if (prefetch)
            {
                Sse.Prefetch0(row + ahead);
                Sse.Prefetch0(row + ahead + 64);
                Sse.Prefetch0(row + ahead + 128);
            }

            Factors256(row, sums, halves, ref mins, out var first, out var second);
            var fifth = Vector256.Load(row + 16).AsUInt16();
            Q5KBytes(row + 48, fifth, 4, 3, values);
            Q5KBytes(row + 80, fifth, 2, 1, values + 64);
            Q5KBytes(row + 112, fifth, 0, -1, values + 128);
            Q5KBytes(row + 144, fifth, -2, -3, values + 192);
            a0 = Vector256.FusedMultiplyAdd(Dot32(values, x), Lane(first, 0), a0);
            a1 = Vector256.FusedMultiplyAdd(Dot32(values + 32, x + 32), Lane(first, 1), a1);
            a0 = Vector256.FusedMultiplyAdd(Dot32(values + 64, x + 64), Lane(first, 2), a0);
            a1 = Vector256.FusedMultiplyAdd(Dot32(values + 96, x + 96), Lane(first, 3), a1);
            a0 = Vector256.FusedMultiplyAdd(Dot32(values + 128, x + 128), Lane(second, 0), a0);
            a1 = Vector256.FusedMultiplyAdd(Dot32(values + 160, x + 160), Lane(second, 1), a1);
            a0 = Vector256.FusedMultiplyAdd(Dot32(values + 192, x + 192), Lane(second, 2), a0);
            a1 = Vector256.FusedMultiplyAdd(Dot32(values + 224, x + 224), Lane(second, 3), a1);
        }

        return Vector256.Sum((a0 + a1) - mins);
    }

    // One Q5_K sub-block pair as 64 five-bit bytes at `to` (the low nibbles' sub-block, then the high nibbles'): the
    // 32 nibble bytes at q, each value's fifth bit brought to bit 4 by a shift of qh's 16-bit lanes (left by `lowShift`
    // or `highShift`, right by minus it; the bits that cross into the other byte of a lane are masked off).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q5KBytes(byte* q, Vector256<ushort> fifth, int lowShift, int highShift, byte* to)
    {
        var nibble = Vector256.Create((byte)0x0F);
        var bit = Vector256.Create((byte)0x10);
        var bytes = Vector256.Load(q);
        var lowBits = lowShift >= 0 ? Vector256.ShiftLeft(fifth, lowShift) : Vector256.ShiftRightLogical(fifth, -lowShift);
        var highBits = highShift >= 0 ? Vector256.ShiftLeft(fifth, highShift) : Vector256.ShiftRightLogical(fifth, -highShift);
        ((bytes & nibble) | (lowBits.AsByte() & bit)).Store(to);
        ((Vector256.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte() & nibble) | (highBits.AsByte() & bit)).Store(to + 32);
    }

    // Σ values[i]·x[i] over 32 unsigned bytes, as 8 lanes of partial sums.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Dot32(byte* values, float* x)
    {
        var sum = Vector256.ConvertToSingle(Bytes8(values)) * Vector256.Load(x);
        sum = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Bytes8(values + 8)), Vector256.Load(x + 8), sum);
        sum = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Bytes8(values + 16)), Vector256.Load(x + 16), sum);
        return Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Bytes8(values + 24)), Vector256.Load(x + 24), sum);
    }

    // Lane i of v in every lane (vpermps with a constant index: no store and reload).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Lane(Vector256<float> v, int i) => Avx2.PermuteVar8x32(v, Vector256.Create(i));

    // Q6_K with 8 lanes: the 16 runs' d·scale in two registers, the −32 of every value out of the loop as in DotQ6K.
    // Half h of the block, 8 columns l at a time: ql bytes l and 32 + l give the low nibbles of values l, 32 + l (low
    // nibble) and 64 + l, 96 + l (high nibble), qh byte l their two high bits each.
    private static float DotQ6K256(byte* row, int count, float* x, float* sums, float* halves, bool prefetch)
    {
        int ahead = PrefetchAhead;
        var a0 = Vector256<float>.Zero;
        var a1 = Vector256<float>.Zero;
        var offsets = Vector256<float>.Zero;
        for (int b = 0; b < count / 256; b++, row += 210, x += 256, sums += 16)
        {
            if (prefetch)
            {
                Sse.Prefetch0(row + ahead);
                Sse.Prefetch0(row + ahead + 64);
                Sse.Prefetch0(row + ahead + 128);
                Sse.Prefetch0(row + ahead + 192);
            }

            var d = Vector256.Create(halves[*(ushort*)(row + 208)]);
            var scales0 = Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32((sbyte*)row + 192)) * d;
            var scales1 = Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32((sbyte*)row + 200)) * d;
            offsets = Vector256.FusedMultiplyAdd(scales0, Vector256.Load(sums), offsets);
            offsets = Vector256.FusedMultiplyAdd(scales1, Vector256.Load(sums + 8), offsets);
            Q6KRuns256(row, row + 128, x, scales0, 0, ref a0, ref a1);
            Q6KRuns256(row, row + 128, x, scales0, 16, ref a0, ref a1);
            Q6KRuns256(row + 64, row + 160, x + 128, scales1, 0, ref a0, ref a1);
            Q6KRuns256(row + 64, row + 160, x + 128, scales1, 16, ref a0, ref a1);
        }

        return Vector256.Sum((a0 + a1) - (offsets * Vector256.Create(32f)));
    }

    // Columns l .. l + 16 of a Q6_K half (l = 0 or 16): one run of 16 values in each of the four 32-value quarters,
    // runs 2m + l / 16 of the half (lane of scales).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q6KRuns256(byte* ql, byte* qh, float* x, Vector256<float> scales, int l, ref Vector256<float> a0, ref Vector256<float> a1)
    {
        Q6KValues256(ql + l, qh + l, out var q0, out var q1, out var q2, out var q3);
        var r0 = q0 * Vector256.Load(x + l);
        var r1 = q1 * Vector256.Load(x + 32 + l);
        var r2 = q2 * Vector256.Load(x + 64 + l);
        var r3 = q3 * Vector256.Load(x + 96 + l);
        Q6KValues256(ql + l + 8, qh + l + 8, out q0, out q1, out q2, out q3);
        r0 = Vector256.FusedMultiplyAdd(q0, Vector256.Load(x + l + 8), r0);
        r1 = Vector256.FusedMultiplyAdd(q1, Vector256.Load(x + 40 + l), r1);
        r2 = Vector256.FusedMultiplyAdd(q2, Vector256.Load(x + 72 + l), r2);
        r3 = Vector256.FusedMultiplyAdd(q3, Vector256.Load(x + 104 + l), r3);
        int run = l / 16;
        a0 = Vector256.FusedMultiplyAdd(r0, Lane(scales, run), a0);
        a1 = Vector256.FusedMultiplyAdd(r1, Lane(scales, 2 + run), a1);
        a0 = Vector256.FusedMultiplyAdd(r2, Lane(scales, 4 + run), a0);
        a1 = Vector256.FusedMultiplyAdd(r3, Lane(scales, 6 + run), a1);
    }

    // Eight columns of a Q6_K half as floats without the −32: the value at column c of quarter m is
    // (ql[c + 32·(m mod 2)] >> 4·(m / 2)) &amp; 15 | ((qh[c] >> 2m) &amp; 3) << 4.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q6KValues256(byte* ql, byte* qh, out Vector256<float> q0, out Vector256<float> q1, out Vector256<float> q2, out Vector256<float> q3)
    {
        var nibble = Vector256.Create(0xF);
        var twoBits = Vector256.Create(0x30);
        var a = Bytes8(ql);
        var c = Bytes8(ql + 32);
        var h = Bytes8(qh);
        q0 = Vector256.ConvertToSingle((a & nibble) | (Vector256.ShiftLeft(h, 4) & twoBits));
        q1 = Vector256.ConvertToSingle((c & nibble) | (Vector256.ShiftLeft(h, 2) & twoBits));
        q2 = Vector256.ConvertToSingle(Vector256.ShiftRightLogical(a, 4) | (h & twoBits));
        q3 = Vector256.ConvertToSingle(Vector256.ShiftRightLogical(c, 4) | (Vector256.ShiftRightLogical(h, 2) & twoBits));
    }

    // Q4_0 with 8 lanes: each block's 32 values (q − 8, q its nibbles: bytes 0-15 low values 0-15, high values 16-31)
    // converted and multiplied with x, the block's sum multiplied by its d once; two sums, alternate blocks.
    private static float DotQ4_0x256(byte* row, int count, float* x, float* halves, bool prefetch)
    {
        int ahead = PrefetchAhead;
        var a0 = Vector256<float>.Zero;
        var a1 = Vector256<float>.Zero;
        var nibble = Vector256.Create(0xF);
        var eight = Vector256.Create(8);
        for (int b = 0; b < count / 32; b++, row += 18, x += 32)
        {
            if (prefetch)
            {
                Sse.Prefetch0(row + ahead);
            }

            var q = Bytes8(row + 2);
            var block = Vector256.ConvertToSingle((q & nibble) - eight) * Vector256.Load(x);
            var other = Vector256.ConvertToSingle(Vector256.ShiftRightLogical(q, 4) - eight) * Vector256.Load(x + 16);
            q = Bytes8(row + 10);
            block = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle((q & nibble) - eight), Vector256.Load(x + 8), block);
            other = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Vector256.ShiftRightLogical(q, 4) - eight), Vector256.Load(x + 24), other);
            var d = Vector256.Create(halves[*(ushort*)row]);
            if ((b & 1) == 0)
            {
                a0 = Vector256.FusedMultiplyAdd(block + other, d, a0);
            }
            else
            {
                a1 = Vector256.FusedMultiplyAdd(block + other, d, a1);
            }
        }

        return Vector256.Sum(a0 + a1);
    }

    // Q8_0 with 8 lanes: each block's 32 products summed, then multiplied by its d.
    private static float DotQ8256(byte* row, int count, float* x, float* halves, bool prefetch)
    {
        int ahead = PrefetchAhead;
        var a0 = Vector256<float>.Zero;
        var a1 = Vector256<float>.Zero;
        for (int b = 0; b < count / 32; b++, row += 34, x += 32)
        {
            if (prefetch)
            {
                Sse.Prefetch0(row + ahead);
            }

            var q = (sbyte*)row + 2;
            var block = Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(q)) * Vector256.Load(x);
            var other = Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(q + 8)) * Vector256.Load(x + 8);
            block = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(q + 16)), Vector256.Load(x + 16), block);
            other = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(q + 24)), Vector256.Load(x + 24), other);
            var d = Vector256.Create(halves[*(ushort*)row]);
            if ((b & 1) == 0)
            {
                a0 = Vector256.FusedMultiplyAdd(block + other, d, a0);
            }
            else
            {
                a1 = Vector256.FusedMultiplyAdd(block + other, d, a1);
            }
        }

        return Vector256.Sum(a0 + a1);
    }

    private static void Decode256(GgmlType type, byte* source, int count, float* y)
    {
        var nibble = Vector256.Create(0xF);
        switch (type)
        {
            case GgmlType.F16:
            case GgmlType.BF16:
                {
                    bool f16 = type == GgmlType.F16;
                    var halves = (short*)source;
                    int i = 0;
                    for (; i <= count - 8; i += 8)
                    {
                        Widen8(halves + i, f16).Store(y + i);
                    }

                    Tail(type, source, i, count, y);
                    break;
                }

            case GgmlType.Q8_0:
                for (int b = 0; b < count / 32; b++, source += 34, y += 32)
                {
                    var d = Vector256.Create(Half(source));
                    for (int j = 0; j < 32; j += 8)
                    {
                        (Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32((sbyte*)source + 2 + j)) * d).Store(y + j);
                    }
                }

                break;
            case GgmlType.Q4_0:
                for (int b = 0; b < count / 32; b++, source += 18, y += 32)
                {
                    var d = Vector256.Create(Half(source));
                    var eight = Vector256.Create(8);
                    for (int j = 0; j < 16; j += 8)
                    {
                        var q = Bytes8(source + 2 + j);
                        (Vector256.ConvertToSingle((q & nibble) - eight) * d).Store(y + j);
                        (Vector256.ConvertToSingle(Vector256.ShiftRightLogical(q, 4) - eight) * d).Store(y + 16 + j);
                    }
                }

                break;
            case GgmlType.Q4_K:
            case GgmlType.Q5_K:
                {
                    bool five = type == GgmlType.Q5_K;
                    int bytes = five ? 176 : 144, quants = five ? 48 : 16;
                    var one = Vector256.Create(1);
                    for (int b = 0; b < count / 256; b++, source += bytes, y += 256)
                    {
                        float d = Half(source), dmin = Half(source + 2);
                        var scales = new ReadOnlySpan<byte>(source + 4, 12);
                        for (int group = 0; group < 4; group++)
                        {
                            var (s1, m1) = Dequantize.ScaleMin(scales, 2 * group);
                            var (s2, m2) = Dequantize.ScaleMin(scales, (2 * group) + 1);
                            Vector256<float> ds1 = Vector256.Create(d * s1), dm1 = Vector256.Create(dmin * m1);
                            Vector256<float> ds2 = Vector256.Create(d * s2), dm2 = Vector256.Create(dmin * m2);
                            for (int l = 0; l < 32; l += 8)
                            {
                                var q = Bytes8(source + quants + (32 * group) + l);
                                var low = q & nibble;
                                var high = Vector256.ShiftRightLogical(q, 4);
                                if (five)
                                {
                                    var h = Bytes8(source + 16 + l);
                                    low |= Vector256.ShiftLeft(Vector256.ShiftRightLogical(h, 2 * group) & one, 4);
                                    high |= Vector256.ShiftLeft(Vector256.ShiftRightLogical(h, (2 * group) + 1) & one, 4);
                                }

                                ((Vector256.ConvertToSingle(low) * ds1) - dm1).Store(y + (64 * group) + l);
                                ((Vector256.ConvertToSingle(high) * ds2) - dm2).Store(y + (64 * group) + 32 + l);
                            }
                        }
                    }

                    break;
                }

            default: // Q6_K
                for (int b = 0; b < count / 256; b++, source += 210, y += 256)
                {
                    float d = Half(source + 208);
                    var scales = (sbyte*)source + 192;
                    var three = Vector256.Create(3);
                    var offset = Vector256.Create(32);
                    for (int half = 0; half < 2; half++)
                    {
                        for (int l = 0; l < 32; l += 8)
                        {
                            var a = Bytes8(source + (64 * half) + l);
                            var c = Bytes8(source + (64 * half) + 32 + l);
                            var h = Bytes8(source + 128 + (32 * half) + l);
                            int s = (8 * half) + (l / 16);
                            float* to = y + (128 * half) + l;
                            var q1 = ((a & nibble) | Vector256.ShiftLeft(h & three, 4)) - offset;
                            var q2 = ((c & nibble) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(h, 2) & three, 4)) - offset;
                            var q3 = (Vector256.ShiftRightLogical(a, 4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(h, 4) & three, 4)) - offset;
                            var q4 = (Vector256.ShiftRightLogical(c, 4) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(h, 6) & three, 4)) - offset;
                            (Vector256.ConvertToSingle(q1) * Vector256.Create(d * scales[s])).Store(to);
                            (Vector256.ConvertToSingle(q2) * Vector256.Create(d * scales[s + 2])).Store(to + 32);
                            (Vector256.ConvertToSingle(q3) * Vector256.Create(d * scales[s + 4])).Store(to + 64);
                            (Vector256.ConvertToSingle(q4) * Vector256.Create(d * scales[s + 6])).Store(to + 96);
                        }
                    }
                }

                break;
        }
    }

    // The last few 16-bit values of a row whose length is not a multiple of the vector: one at a time.
    private static void Tail(GgmlType type, byte* source, int from, int count, float* y)
    {
        for (int i = from; i < count; i++)
        {
            y[i] = type == GgmlType.F16 ? Half(source + (2 * i)) : BitConverter.Int32BitsToSingle(((short*)source)[i] << 16);
        }
    }

    /// <summary>Whether <see cref="PanelOfRows"/> decodes this type straight into a panel (else: a scratch, then a transpose).</summary>
    public static bool HasPanelOfRows(GgmlType type) =>
        (Is512 && type is GgmlType.Q4_0 or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_0 or GgmlType.F16 or GgmlType.BF16)
        || (!Is512 && Is256 && type is GgmlType.Q4_0 or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_0 or GgmlType.F16 or GgmlType.BF16);

    /// <summary>
    /// Q4_0, Q4_K, Q5_K, Q6_K, Q8_0, F16 or BF16 rows decoded straight into a matrix product's packed panel (QuantizedMatMul's DecodedPanels),
    /// transposed: panel[p · <paramref name="width"/> + j] = value p of row j, for <paramref name="depth"/> values (whole
    /// blocks) from <paramref name="first"/> (row j at first + j · <paramref name="rowBytes"/>), j &lt;
    /// <paramref name="lines"/>; zero for j from lines to width (a multiple of 16; of 8 with AVX2 only, which takes
    /// every type eight rows at a time: BlockDecoder.Panel256.cs). The values are
    /// Dequantize.Reference's, bit for bit.
    /// </summary>
    /// <remarks>
    /// Sixteen rows at a time, one per lane: four bytes of each row, whose values (Q8_0's bytes, Q4_K's nibbles, Q6_K's
    /// nibbles and high bits, two F16 or BF16 halves) are two, four or eight depths of the panel, each a 64-byte row of 16 lanes stored whole; the
    /// scales come lane-wise too. The rows' words are transposed in registers (RowWords); Q8_0's scales are gathered. Decoding rows and then transposing them wrote each value twice and read it back once, with four-lane
    /// stores: in a 16-token prompt of a 1.1B Q4_K_M model (Zen 4) that took 44% of the time, against 40% for the
    /// kernel. Gathering Q4_K's words instead of transposing them took 2,400 cycles per 32 rows and super-block, and
    /// Q6_K's (three gathers per four bytes) ran slower than the decode-and-transpose.
    /// </remarks>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PanelOfRows(GgmlType type, byte* first, int rowBytes, int lines, int depth, float* panel, int width)
    {
        if (!Is512)
        {
            PanelOfRows256(type, first, rowBytes, lines, depth, panel, width);
            return;
        }

        int blockValues = GgmlTypes.BlockValues(type), blockBytes = GgmlTypes.BlockBytes(type);
        // Q4_K: per sub-block, d·scale and dmin·min of each lane's row; Q6_K: d·scale of each run of 16.
        var scale = stackalloc Vector512<float>[16];
        var min = stackalloc Vector512<float>[8];
        // RowWords' transposes: words in flight, and Q6_K's high bits.
        var quads = stackalloc Vector512<int>[16];
        var words = stackalloc Vector512<int>[16];
        for (int column = 0; column < width; column += 16)
        {
            int count = Math.Clamp(lines - column, 0, 16);
            if (count == 0)
            {
                for (int p = 0; p < depth; p++)
                {
                    Vector512<float>.Zero.Store(panel + ((long)p * width) + column);
                }

                continue;
            }

            // Lanes past the last row read this half's first row again; their factors are zeroed (and Q8_0's −0s
            // masked), so they write zeros.
            var lane = Vector512<int>.Indices;
            var valid = Vector512.LessThan(lane, Vector512.Create(count)).AsSingle();
            var offsets = Vector512.ConditionalSelect(valid.AsInt32(), (lane + Vector512.Create(column)) * Vector512.Create(rowBytes), Vector512.Create(column * rowBytes));
            var rows = new RowLanes(offsets.GetLower(), offsets.GetUpper());
            if (type is GgmlType.F16 or GgmlType.BF16)
            {
                HalfLanes(type == GgmlType.F16, first + ((long)column * rowBytes), rowBytes, count, depth, valid, panel + column, width, quads);
                continue;
            }

            for (int b = 0; b < depth / blockValues; b++)
            {
                byte* block = first + ((long)b * blockBytes);
                float* target = panel + ((long)blockValues * b * width) + column;
                byte* rowsBlock = block + ((long)column * rowBytes);
                if (type == GgmlType.Q4_K)
                {
                    Q4KLanes(rowsBlock, rowBytes, count, valid, scale, min, target, width, quads, words);
                }
                else if (type == GgmlType.Q5_K)
                {
                    Q5KLanes(rowsBlock, rowBytes, count, valid, scale, min, target, width, quads, words);
                }
                else if (type == GgmlType.Q6_K)
                {
                    Q6KLanes(rowsBlock, rowBytes, count, valid, scale, target, width, quads, words);
                }
                else if (type == GgmlType.Q4_0)
                {
                    Q40Lanes(block, rows, rowsBlock, rowBytes, count, valid, target, width, words);
                }
                else
                {
                    Q8Lanes(block, rows, rowsBlock, rowBytes, count, valid, target, width, words);
                }
            }
        }
    }

    // The byte offsets of 16 rows, as two halves for AVX2's 8-lane gathers (.NET 10 has no AVX-512 gather).
    private readonly struct RowLanes(Vector256<int> low, Vector256<int> high)
    {
        // The four bytes at `at` of each lane's row.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector512<int> Gather(byte* at) =>
            Vector512.Create(Avx2.GatherVector256((int*)at, low, 1), Avx2.GatherVector256((int*)at, high, 1));
    }

    // One Q4_K super-block of 16 rows (row i at first + i·rowBytes, those from `count` on repeat row 0):
    // (d·scale)·q − dmin·min, as Decode512's tables compute them, the rows' words transposed into lanes (RowWords).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q4KLanes(byte* first, int rowBytes, int count, Vector512<float> valid, Vector512<float>* scale, Vector512<float>* min,
        float* target, int width, Vector512<int>* quads, Vector512<int>* words)
    {
        KFactors(first, rowBytes, count, valid, scale, min, words);

        // Quant bytes 64h … 64h + 63: word j is bytes l … l + 3 (l = 4·(j % 8)) of group g = 2h + j / 8, whose low
        // nibbles are depths 64g + l + t (sub-block 2g) and high nibbles 32 later (sub-block 2g + 1).
        for (int h = 0; h < 2; h++)
        {
            RowWords.Quads(first, rowBytes, count, 16 + (64 * h), quads);
            for (int c = 0; c < 4; c++)
            {
                RowWords.Columns(quads, c, out var word0, out var word4, out var word8, out var word12);
                int g = 2 * h;
                Q4KWord(word0.AsUInt32(), scale[2 * g], min[2 * g], scale[(2 * g) + 1], min[(2 * g) + 1], target + ((long)((64 * g) + (4 * c)) * width), width);
                Q4KWord(word4.AsUInt32(), scale[2 * g], min[2 * g], scale[(2 * g) + 1], min[(2 * g) + 1], target + ((long)((64 * g) + 16 + (4 * c)) * width), width);
                g++;
                Q4KWord(word8.AsUInt32(), scale[2 * g], min[2 * g], scale[(2 * g) + 1], min[(2 * g) + 1], target + ((long)((64 * g) + (4 * c)) * width), width);
                Q4KWord(word12.AsUInt32(), scale[2 * g], min[2 * g], scale[(2 * g) + 1], min[(2 * g) + 1], target + ((long)((64 * g) + 16 + (4 * c)) * width), width);
            }
        }
    }

    // Q4_K's and Q5_K's d·scale and dmin·min per sub-block of each lane's row (zero past `count`), from the block's
    // first 16 bytes.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void KFactors(byte* first, int rowBytes, int count, Vector512<float> valid, Vector512<float>* scale, Vector512<float>* min, Vector512<int>* words)
    {
        RowWords.Transpose4(first, rowBytes, count, 0, words);
        var halves = words[0];
        var d = Vector512.ConditionalSelect(valid, HalfToSingle(Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(halves, 16), 16)), Vector512<float>.Zero);
        var dmin = Vector512.ConditionalSelect(valid, HalfToSingle(Vector512.ShiftRightArithmetic(halves, 16)), Vector512<float>.Zero);
        for (int j = 0; j < 8; j++)
        {
            Q4KScaleMin(words[1], words[2], words[3], j, out var scaleJ, out var minJ);
            scale[j] = Vector512.ConvertToSingle(scaleJ) * d;
            min[j] = Vector512.ConvertToSingle(minJ) * dmin;
        }
    }

    // One Q5_K super-block of 16 rows: Q4KLanes' layout with the quant bytes from byte 48 and each value's fifth bit
    // from qh (bytes 16-47): bit 2g of byte l for value l of sub-block 2g, bit 2g + 1 for sub-block 2g + 1.
    // A method of its own, as Q40Lanes.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q5KLanes(byte* first, int rowBytes, int count, Vector512<float> valid, Vector512<float>* scale, Vector512<float>* min,
        float* target, int width, Vector512<int>* quads, Vector512<int>* words)
    {
        KFactors(first, rowBytes, count, valid, scale, min, words);
        RowWords.Eights(first, rowBytes, count, 16, words);
        for (int h = 0; h < 2; h++)
        {
            RowWords.Quads(first, rowBytes, count, 48 + (64 * h), quads);
            for (int c = 0; c < 4; c++)
            {
                // Words c and 4 + c of the half (group 2h), 8 + c and 12 + c (group 2h + 1); qh word j % 8 for word j.
                RowWords.Columns(quads, c, out var word0, out var word4, out var word8, out var word12);
                int g = 2 * h;
                Q5KWord(word0, words[c], g, scale, min, target + ((long)((64 * g) + (4 * c)) * width), width);
                Q5KWord(word4, words[4 + c], g, scale, min, target + ((long)((64 * g) + 16 + (4 * c)) * width), width);
                g++;
                Q5KWord(word8, words[c], g, scale, min, target + ((long)((64 * g) + (4 * c)) * width), width);
                Q5KWord(word12, words[4 + c], g, scale, min, target + ((long)((64 * g) + 16 + (4 * c)) * width), width);
            }
        }
    }

    // Four quant bytes of each lane's row (group g) with their fifth bits: the low nibbles' values at depths `low` + t
    // (sub-block 2g), the high nibbles' 32 depths later (2g + 1); each five-bit value's float looked up by vpermt2ps,
    // which reads the low five bits of each index lane.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q5KWord(Vector512<int> bytes, Vector512<int> fifth, int g, Vector512<float>* scale, Vector512<float>* min, float* low, int width)
    {
        Q5KValues(bytes, fifth, g, out var lowValues, out var highValues);
        Vector512<float> lowScale = scale[2 * g], lowMin = min[2 * g], highScale = scale[(2 * g) + 1], highMin = min[(2 * g) + 1];
        var values = Vector512<float>.Indices;
        var upper = values + Vector512.Create(16f);
        float* high = low + ((long)32 * width);
        for (int t = 0; t < 4; t++)
        {
            var q = Avx512F.PermuteVar16x32x2(values, Vector512.ShiftRightLogical(lowValues, 8 * t), upper);
            ((q * lowScale) - lowMin).Store(low + ((long)t * width));
            q = Avx512F.PermuteVar16x32x2(values, Vector512.ShiftRightLogical(highValues, 8 * t), upper);
            ((q * highScale) - highMin).Store(high + ((long)t * width));
        }
    }

    /// <summary>
    /// Four Q5_K quant bytes per lane (of group <paramref name="g"/>) joined with their fifth bits from qh's word
    /// <paramref name="fifth"/>: sub-block 2g's values (the low nibbles with bit 2g) and sub-block 2g + 1's (the high
    /// nibbles with bit 2g + 1), one value per byte.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Q5KValues(Vector512<int> bytes, Vector512<int> fifth, int g, out Vector512<int> low, out Vector512<int> high)
    {
        var nibbles = Vector512.Create(0x0F0F0F0F);
        var bit = Vector512.Create(0x01010101);
        low = (bytes & nibbles) | Vector512.ShiftLeft(Vector512.ShiftRightLogical(fifth, 2 * g) & bit, 4);
        high = (Vector512.ShiftRightLogical(bytes, 4) & nibbles) | Vector512.ShiftLeft(Vector512.ShiftRightLogical(fifth, (2 * g) + 1) & bit, 4);
    }

    /// <summary>As the 16-lane <see cref="Q5KValues(Vector512{int}, Vector512{int}, int, out Vector512{int}, out Vector512{int})"/>, for 8 lanes (AVX2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Q5KValues(Vector256<int> bytes, Vector256<int> fifth, int g, out Vector256<int> low, out Vector256<int> high)
    {
        var nibbles = Vector256.Create(0x0F0F0F0F);
        var bit = Vector256.Create(0x01010101);
        low = (bytes & nibbles) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(fifth, 2 * g) & bit, 4);
        high = (Vector256.ShiftRightLogical(bytes, 4) & nibbles) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(fifth, (2 * g) + 1) & bit, 4);
    }

    /// <summary>
    /// Sub-block <paramref name="j"/>'s six-bit scale and min of each lane's Q4_K block (Dequantize.ScaleMin, lane-wise),
    /// from the block's 12 scale bytes as three words per lane (bytes 4-7, 8-11, 12-15).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Q4KScaleMin(Vector512<int> w0, Vector512<int> w1, Vector512<int> w2, int j, out Vector512<int> scale, out Vector512<int> min)
    {
        int shift = 8 * (j % 4);
        if (j < 4)
        {
            scale = Vector512.ShiftRightLogical(w0, shift) & Vector512.Create(63);
            min = Vector512.ShiftRightLogical(w1, shift) & Vector512.Create(63);
        }
        else
        {
            scale = (Vector512.ShiftRightLogical(w2, shift) & Vector512.Create(0xF)) | Vector512.ShiftLeft(Vector512.ShiftRightLogical(w0, shift + 6) & Vector512.Create(3), 4);
            min = (Vector512.ShiftRightLogical(w2, shift + 4) & Vector512.Create(0xF)) | Vector512.ShiftLeft(Vector512.ShiftRightLogical(w1, shift + 6) & Vector512.Create(3), 4);
        }
    }

    /// <summary>As the 16-lane <see cref="Q4KScaleMin(Vector512{int}, Vector512{int}, Vector512{int}, int, out Vector512{int}, out Vector512{int})"/>, for 8 lanes (AVX2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Q4KScaleMin(Vector256<int> w0, Vector256<int> w1, Vector256<int> w2, int j, out Vector256<int> scale, out Vector256<int> min)
    {
        int shift = 8 * (j % 4);
        if (j < 4)
        {
            scale = Vector256.ShiftRightLogical(w0, shift) & Vector256.Create(63);
            min = Vector256.ShiftRightLogical(w1, shift) & Vector256.Create(63);
        }
        else
        {
            scale = (Vector256.ShiftRightLogical(w2, shift) & Vector256.Create(0xF)) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(w0, shift + 6) & Vector256.Create(3), 4);
            min = (Vector256.ShiftRightLogical(w2, shift + 4) & Vector256.Create(0xF)) | Vector256.ShiftLeft(Vector256.ShiftRightLogical(w1, shift + 6) & Vector256.Create(3), 4);
        }
    }

    // Four bytes of each lane's row: their low nibbles at depths `low` + t, their high nibbles 32 depths later.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q4KWord(Vector512<uint> bytes, Vector512<float> lowScale, Vector512<float> lowMin, Vector512<float> highScale, Vector512<float> highMin, float* low, int width)
    {
        // Each nibble's float looked up by vpermps, which reads the low four bits of each index lane (as Q4KHalf).
        var values = Vector512<float>.Indices;
        float* high = low + ((long)32 * width);
        for (int t = 0; t < 4; t++)
        {
            var q = Avx512F.PermuteVar16x32(values, Vector512.ShiftRightLogical(bytes, 8 * t).AsInt32());
            ((q * lowScale) - lowMin).Store(low + ((long)t * width));
            q = Avx512F.PermuteVar16x32(values, Vector512.ShiftRightLogical(bytes, (8 * t) + 4).AsInt32());
            ((q * highScale) - highMin).Store(high + ((long)t * width));
        }
    }

    // One Q6_K super-block of 16 rows: (d·scale)·(q − 32) as Dequantize.Reference computes it. Per 128 values (half
    // h), ql bytes 64h + l hold runs 0 (low nibbles) and 2 (high) of value l, bytes 64h + 32 + l runs 1 and 3, and qh
    // byte 128 + 32h + l the two high bits of run r at bit 2r. Lanes past `count` hold 0·(q − 32), −0 where q < 32:
    // masked to +0.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q6KLanes(byte* first, int rowBytes, int count, Vector512<float> valid, Vector512<float>* runScale,
        float* target, int width, Vector512<int>* quads, Vector512<int>* highBits)
    {
        // d is the half at byte 208: the upper word of bytes 206-209 (a word at 208 would reach past the block).
        RowWords.Transpose4(first, rowBytes, count, 194, highBits);
        var d = HalfToSingle(Vector512.ShiftRightArithmetic(highBits[3], 16));
        RowWords.Transpose4(first, rowBytes, count, 192, highBits);
        for (int t = 0; t < 4; t++)
        {
            for (int i = 0; i < 4; i++)
            {
                var scale = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(highBits[t], 24 - (8 * i)), 24);
                runScale[(4 * t) + i] = Vector512.ConvertToSingle(scale) * d;
            }
        }

        RowWords.Quads(first, rowBytes, count, 128, quads);
        for (int c = 0; c < 4; c++)
        {
            RowWords.Columns(quads, c, out highBits[c], out highBits[4 + c], out highBits[8 + c], out highBits[12 + c]);
        }

        var low = Vector512.Create(0x0F0F0F0F);
        var two = Vector512.Create(0x30303030);
        for (int h = 0; h < 2; h++)
        {
            RowWords.Quads(first, rowBytes, count, 64 * h, quads);
            for (int c = 0; c < 4; c++)
            {
                RowWords.Columns(quads, c, out var word0, out var word4, out var word8, out var word12);
                for (int pair = 0; pair < 2; pair++)
                {
                    // Word i of runs 0 and 2 (`firstRuns`) and of runs 1 and 3 (`secondRuns`): values l = 4i … 4i + 3.
                    int i = c + (4 * pair);
                    Vector512<int> firstRuns = pair == 0 ? word0 : word4, secondRuns = pair == 0 ? word8 : word12, high = highBits[(8 * h) + i];
                    var run0 = (firstRuns & low) | (Vector512.ShiftLeft(high, 4) & two);
                    var run1 = (secondRuns & low) | (Vector512.ShiftLeft(high, 2) & two);
                    var run2 = (Vector512.ShiftRightLogical(firstRuns, 4) & low) | (high & two);
                    var run3 = (Vector512.ShiftRightLogical(secondRuns, 4) & low) | (Vector512.ShiftRightLogical(high, 2) & two);
                    int s = (8 * h) + (i / 4);
                    float* to = target + ((long)((128 * h) + (4 * i)) * width);
                    Q6KWord(run0, runScale[s], valid, to, width);
                    Q6KWord(run1, runScale[s + 2], valid, to + ((long)32 * width), width);
                    Q6KWord(run2, runScale[s + 4], valid, to + ((long)64 * width), width);
                    Q6KWord(run3, runScale[s + 6], valid, to + ((long)96 * width), width);
                }
            }
        }
    }

    // Four six-bit values per lane (one per byte) at depths `to` + t: (d·scale)·(q − 32).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q6KWord(Vector512<int> values, Vector512<float> runScale, Vector512<float> valid, float* to, int width)
    {
        for (int t = 0; t < 4; t++)
        {
            var q = (Vector512.ShiftRightLogical(values, 8 * t) & Vector512.Create(0x3F)) - Vector512.Create(32);
            ((Vector512.ConvertToSingle(q) * runScale) & valid).Store(to + ((long)t * width));
        }
    }

    // 16 rows of F16 or BF16 values (row i at first + i·rowBytes, those from `count` on repeat row 0), `depth` of
    // them: per 32 values, the rows' 64 bytes transposed into lanes (RowWords), each word two depths; the values
    // Widen16's (HalfToSingle, or the bits shifted up). The last depth % 32 values one row at a time. The lanes past
    // `count` are masked to +0.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void HalfLanes(bool f16, byte* first, int rowBytes, int count, int depth, Vector512<float> valid, float* target, int width, Vector512<int>* quads)
    {
        int whole = depth / 32 * 32;
        for (int p = 0; p < whole; p += 32)
        {
            RowWords.Quads(first, rowBytes, count, 2 * p, quads);
            for (int c = 0; c < 4; c++)
            {
                RowWords.Columns(quads, c, out var word0, out var word4, out var word8, out var word12);
                float* to = target + ((long)(p + (2 * c)) * width);
                HalfWord(f16, word0, valid, to, width);
                HalfWord(f16, word4, valid, to + ((long)8 * width), width);
                HalfWord(f16, word8, valid, to + ((long)16 * width), width);
                HalfWord(f16, word12, valid, to + ((long)24 * width), width);
            }
        }

        for (int p = whole; p < depth; p++)
        {
            float* to = target + ((long)p * width);
            Vector512<float>.Zero.Store(to);
            for (int i = 0; i < count; i++)
            {
                ushort bits = ((ushort*)(first + ((long)i * rowBytes)))[p];
                to[i] = f16 ? (float)BitConverter.UInt16BitsToHalf(bits) : BitConverter.Int32BitsToSingle(bits << 16);
            }
        }
    }

    // Two values per lane (the low half of each word one depth, the high half the next) as float32, stored at `to`
    // and one depth later.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void HalfWord(bool f16, Vector512<int> word, Vector512<float> valid, float* to, int width)
    {
        var low = f16 ? HalfToSingle(Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(word, 16), 16)) : Vector512.ShiftLeft(word, 16).AsSingle();
        var high = f16 ? HalfToSingle(Vector512.ShiftRightArithmetic(word, 16)) : (word & Vector512.Create(unchecked((int)0xFFFF0000))).AsSingle();
        (low & valid).Store(to);
        (high & valid).Store(to + width);
    }

    // One Q4_0 block of 16 rows: (q − 8)·d as Decode256 computes it; d from each row's first word (a gather, as Q8_0's),
    // the 16 nibble bytes transposed (word j, byte t: values 4j + t in its low nibble, 16 + 4j + t in its high one).
    // A method of its own: inlined into PanelOfRows it left the JIT no inlining budget for its vector helpers, which
    // then ran as calls (a third of the panel's time).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q40Lanes(byte* block, RowLanes rows, byte* rowsBlock, int rowBytes, int count, Vector512<float> valid, float* target, int width, Vector512<int>* words)
    {
        var d = HalfToSingle(Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(rows.Gather(block), 16), 16));
        RowWords.Transpose4(rowsBlock, rowBytes, count, 2, words);
        var nibble = Vector512.Create(0xF);
        var eight = Vector512.Create(8);
        for (int j = 0; j < 4; j++)
        {
            var bytes = words[j];
            for (int t = 0; t < 4; t++)
            {
                var low = Vector512.ConvertToSingle((Vector512.ShiftRightLogical(bytes, 8 * t) & nibble) - eight);
                var high = Vector512.ConvertToSingle((Vector512.ShiftRightLogical(bytes, (8 * t) + 4) & nibble) - eight);
                ((low * d) & valid).Store(target + ((long)((4 * j) + t) * width));
                ((high * d) & valid).Store(target + ((long)(16 + (4 * j) + t) * width));
            }
        }
    }

    // One Q8_0 block of 16 rows (`block` with the gather's offsets, `rowsBlock` their first row's): (q as float)·d,
    // the 32 value bytes transposed into lanes (RowWords.Eights), d gathered. The lanes past the last row hold 0·q, −0 where q < 0: masked to +0.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q8Lanes(byte* block, RowLanes rows, byte* rowsBlock, int rowBytes, int count, Vector512<float> valid, float* target, int width, Vector512<int>* words)
    {
        var d = HalfToSingle(Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(rows.Gather(block), 16), 16));
        RowWords.Eights(rowsBlock, rowBytes, count, 2, words);
        for (int j = 0; j < 8; j++)
        {
            var bytes = words[j];
            float* to = target + ((long)(4 * j) * width);
            for (int t = 0; t < 4; t++)
            {
                var q = Vector512.ConvertToSingle(Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(bytes, 24 - (8 * t)), 24));
                ((q * d) & valid).Store(to + ((long)t * width));
            }
        }
    }
}
