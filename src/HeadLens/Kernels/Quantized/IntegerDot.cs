using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace HeadLens.Kernels.Quantized;

// One weight row (ggml blocks) times one vector of 8-bit activations (Q8Activations), in integers:
//   Q8_0 × Q8 (blocks of 32):  Σ_b (dw_b · dx_b) · Σ_i w_i · q_i
//   Q4_K × Q8 (blocks of 256): Σ_b (dx_b · d) · Σ_j s_j · Σ_{i∈j} u_i · q_i  −  (dx_b · dmin) · Σ_j m_j · Σ_{i∈j} q_i
//                               (u: 4-bit values, s/m: the eight 6-bit scales and mins of 32-value sub-blocks)
//   Q5_K × Q8 (blocks of 256): as Q4_K with 5-bit values u
//   Q6_K × Q8 (blocks of 256): Σ_b (dx_b · d) · Σ_j c_j · Σ_{i∈j} (u_i − 32) · q_i   (u: 6-bit values, c: the
//                               sixteen int8 scales of 16-value runs)
// Every inner sum is an exact integer (bounded well inside int32: 256 · 63 · 127 · 128 < 2³¹); only the per-block
// float factors round. Σ_{i∈j} q_i is the activations' precomputed run sum, so the mins and Q6_K's −32 cost one
// product per block instead of a term per value.
// Why: the fp32 path turns every weight into a float (a widening and a table permute per 16 values, both on the
// shuffle port) and is compute-bound on Q4_K; here 64 weights take one vpmaddubsw (u8 × s8 → adjacent pairs summed
// to s16) and one vpmaddwd (× the block's scales → s32), so the row streams at memory speed.
// The kernels are compiled fully optimised at once (AggressiveOptimization): with tiering, one of several runs
// kept a version of the Q4_K loop at half the speed (same-process A/B on the Ice Lake Xeon). And never inlined
// (NoInlining): Dot512's tier-1 code inlined DotQ8_0 and laid it out anew, and one process in three then ran Q8_0 rows
// at half speed (Zen 4, in L2: 28.7 against 14.7 ns per 256 values; 12.4 ns as a method of its own, in every process).
// Implementations: Reference (scalar, the contract: the integer sums in value order, then the float combination
// block by block); Dot512 (AVX-512BW: the same integer sums; the float factors applied per lane and the lanes summed
// at the end, so it differs from the reference only in float summation order); Dot256 (AVX2: the same integer sums in
// 32-byte registers, activations in their own order). Without AVX2 callers use DecodedRow (the reference's bits).
internal static unsafe class IntegerDot
{
    public static bool Is512 => Vector512.IsHardwareAccelerated && Avx512BW.IsSupported;

    /// <summary>Whether <see cref="Dot256"/> runs here: AVX2 (and FMA), where <see cref="Dot512"/> does not.</summary>
    public static bool Is256 => !Is512 && Vector256.IsHardwareAccelerated && Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Whether <paramref name="type"/> has an integer product with 8-bit activations.</summary>
    public static bool Supports(GgmlType type) => type is GgmlType.Q8_0 or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K;

    /// <summary>
    /// The contract: row (<paramref name="columns"/> values in <paramref name="type"/>) · one quantized vector
    /// (values <paramref name="q"/>, block scales <paramref name="scales"/>, run sums <paramref name="sums"/> for the K-quants).
    /// </summary>
    public static float Reference(GgmlType type, ReadOnlySpan<byte> row, int columns, ReadOnlySpan<sbyte> q, ReadOnlySpan<float> scales, ReadOnlySpan<short> sums)
    {
        float sum = 0;
        switch (type)
        {
            case GgmlType.Q8_0:
                for (int b = 0; b < columns / 32; b++)
                {
                    var block = row.Slice(34 * b, 34);
                    int dot = 0;
                    for (int i = 0; i < 32; i++)
                    {
                        dot += (sbyte)block[2 + i] * q[(32 * b) + i];
                    }

                    sum += Dequantize.Half(block, 0) * scales[b] * dot;
                }

                break;
            case GgmlType.Q4_K:
            case GgmlType.Q5_K:
                bool five = type == GgmlType.Q5_K;
                int blockBytes = five ? 176 : 144;
                for (int b = 0; b < columns / 256; b++)
                {
                    var block = row.Slice(blockBytes * b, blockBytes);
                    var quants = block.Slice(five ? 48 : 16, 128);
                    int dots = 0, mins = 0;
                    for (int j = 0; j < 8; j++)
                    {
                        var (scale, min) = Dequantize.ScaleMin(block.Slice(4, 12), j);
                        int dot = 0;
                        for (int l = 0; l < 32; l++)
                        {
                            int packed = quants[(32 * (j / 2)) + l];
                            int u = j % 2 == 0 ? packed & 0xF : packed >> 4;
                            if (five)
                            {
                                u |= ((block[16 + l] >> j) & 1) << 4; // bit j of qh byte l: the fifth bit of sub-block j's value l
                            }

                            dot += u * q[(256 * b) + (32 * j) + l];
                        }

                        dots += scale * dot;
                        mins += min * (sums[(16 * b) + (2 * j)] + sums[(16 * b) + (2 * j) + 1]);
                    }

                    sum += (scales[b] * Dequantize.Half(block, 0) * dots) - (scales[b] * Dequantize.Half(block, 2) * mins);
                }

                break;
            case GgmlType.Q6_K:
                for (int b = 0; b < columns / 256; b++)
                {
                    var block = row.Slice(210 * b, 210);
                    int dots = 0;
                    for (int j = 0; j < 16; j++)
                    {
                        int dot = 0;
                        for (int i = 16 * j; i < (16 * j) + 16; i++)
                        {
                            dot += (Q6(block, i) - 32) * q[(256 * b) + i];
                        }

                        dots += (sbyte)block[192 + j] * dot;
                    }

                    sum += scales[b] * Dequantize.Half(block, 208) * dots;
                }

                break;
            default:
                throw new ArgumentException($"{type} has no product with 8-bit activations");
        }

        return sum;
    }

    // Value i (0..255) of a Q6_K block as its unsigned 6 bits (Dequantize.Q6_K's layout: per 128 values, 64 ql bytes
    // give the low nibbles of four runs of 32, 32 qh bytes their two high bits each).
    internal static int Q6(ReadOnlySpan<byte> block, int i)
    {
        int half = i / 128, run = i % 128 / 32, l = i % 32;
        int low = block[(64 * half) + l + (run % 2 == 1 ? 32 : 0)];
        low = run < 2 ? low & 0xF : low >> 4;
        return low | (((block[128 + (32 * half) + l] >> (2 * run)) & 3) << 4);
    }

    /// <summary>
    /// The AVX-512BW product (see the file header): the reference's integer sums, the float factors applied per lane.
    /// <paramref name="q"/>, <paramref name="paired"/> (Q8Activations.Paired), <paramref name="scales"/> and
    /// <paramref name="sums"/> point at this vector's own.
    /// </summary>
    public static float Dot512(GgmlType type, byte* row, int columns, sbyte* q, sbyte* paired, float* scales, short* sums) => type switch
    {
        GgmlType.Q8_0 => DotQ8_0(row, columns, q, scales, BlockDecoder.PrefetchAhead),
        GgmlType.Q4_K => DotQ4K(row, columns, paired, scales, sums, HalfTable.Values, BlockDecoder.PrefetchAhead),
        GgmlType.Q5_K => DotQ5Kx256(row, columns, q, scales, sums, HalfTable.Values, true), // rare enough for one kernel
        _ => DotQ6K(row, columns, q, scales, sums, HalfTable.Values, BlockDecoder.PrefetchAhead),
    };

    // Four IEEE halves (sign-extended bits) as float32, exactly as BlockDecoder.Half converts one (zero and subnormal
    // halves through their mantissa): four Q8_0 block scales per conversion instead of four scalar ones with branches.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> HalvesToSingles(Vector128<int> signExtended)
    {
        var shifted = Vector128.ShiftLeft(signExtended, 13) & Vector128.Create(unchecked((int)0x8FFFE000));
        var exponent = shifted & Vector128.Create(0x0F800000);
        var normal = shifted + Vector128.ConditionalSelect(Vector128.Equals(exponent, Vector128.Create(0x0F800000)), Vector128.Create(224 << 23), Vector128.Create(112 << 23));
        var subnormal = (Vector128.ConvertToSingle(signExtended & Vector128.Create(0x3FF)) * Vector128.Create(1f / (1 << 24))).AsInt32() | (shifted & Vector128.Create(int.MinValue));
        return Vector128.ConditionalSelect(Vector128.Equals(exponent, Vector128<int>.Zero), subnormal, normal).AsSingle();
    }

    // u8 × s8 in adjacent pairs (vpmaddubsw: |pair| ≤ 2 · 63 · 127, no saturation), then × s16 scales in adjacent
    // pairs (vpmaddwd): 16 int32 lanes, each the scaled sum of four values.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Products(Vector512<byte> weights, Vector512<sbyte> activations, Vector512<short> scales) =>
        Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(weights, activations), scales);

    // Four blocks per step (two per vector), then two, then one. vpmaddubsw needs one unsigned operand: the weights'
    // magnitudes, their signs moved onto the activations (which are never −128, so the negation cannot overflow).
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static float DotQ8_0(byte* row, int columns, sbyte* q, float* scales, int ahead)
    {
        var acc = Vector512<float>.Zero;
        var ones = Vector512.Create((short)1);
        var firstPair = Vector512.Create(Vector256<int>.Zero, Vector256.Create(1));
        var secondPair = Vector512.Create(Vector256.Create(2), Vector256.Create(3));
        int blocks = columns / 32, b = 0;
        for (; b + 4 <= blocks; b += 4, row += 136, q += 128)
        {
            Sse.Prefetch0(row + ahead);
            Sse.Prefetch0(row + ahead + 64);
            Sse.Prefetch0(row + ahead + 128);
            var halves = Vector128.Create((int)*(short*)row, *(short*)(row + 34), *(short*)(row + 68), *(short*)(row + 102));
            var factors = (HalvesToSingles(halves) * Vector128.Load(scales + b)).ToVector256Unsafe().ToVector512Unsafe();
            for (int pair = 0; pair < 2; pair++)
            {
                var w = Vector512.Create(Vector256.Load((sbyte*)row + 2 + (68 * pair)), Vector256.Load((sbyte*)row + 36 + (68 * pair)));
                var y = Vector512.Load(q + (64 * pair));
                var signed = Vector512.ConditionalSelect(Vector512.LessThan(w, Vector512<sbyte>.Zero), -y, y);
                var dots = Products(Avx512BW.Abs(w), signed, ones);
                var factor = Avx512F.PermuteVar16x32(factors, pair == 0 ? firstPair : secondPair);
                acc = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(dots), factor, acc);
            }
        }

        for (; b + 2 <= blocks; b += 2, row += 68, q += 64)
        {
            Sse.Prefetch0(row + ahead);
            Sse.Prefetch0(row + ahead + 64);
            var w = Vector512.Create(Vector256.Load((sbyte*)row + 2), Vector256.Load((sbyte*)row + 36));
            var y = Vector512.Load(q);
            var signed = Vector512.ConditionalSelect(Vector512.LessThan(w, Vector512<sbyte>.Zero), -y, y);
            var dots = Products(Avx512BW.Abs(w), signed, ones);
            var factor = Vector512.Create(Vector256.Create(BlockDecoder.Half(row) * scales[b]), Vector256.Create(BlockDecoder.Half(row + 34) * scales[b + 1]));
            acc = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(dots), factor, acc);
        }

        float sum = Vector512.Sum(acc);
        for (; b < blocks; b++, row += 34, q += 32)
        {
            int dot = 0;
            for (int i = 0; i < 32; i++)
            {
                dot += ((sbyte*)row)[2 + i] * q[i];
            }

            sum += BlockDecoder.Half(row) * scales[b] * dot;
        }

        return sum;
    }

    // vpshufb controls that spread one Q4_K sub-block's scale over the 16-bit lanes of a product (see DotQ4K):
    // 128-bit lanes 0-1 take byte `first` of the unpacked scales, lanes 2-3 byte `second`, zero-extended to words.
    // Inlined with constant arguments, so the JIT folds them into constants: static fields instead would put a
    // class-initialisation check before the loop, and across its helper call the JIT kept every vector on the stack.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> ScaleControl(byte first, byte second) =>
        Vector512.Create(Vector256.Create((ushort)(first | 0x8000)), Vector256.Create((ushort)(second | 0x8000))).AsByte();

    // Each min twice as a word, against the two run sums of 16 that make its sub-block's 32 values.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> MinControl() => Vector256.Create(
        Vector128.Create((ushort)0x8004, 0x8004, 0x8005, 0x8005, 0x8006, 0x8006, 0x8007, 0x8007).AsByte(),
        Vector128.Create((ushort)0x800C, 0x800C, 0x800D, 0x800D, 0x800E, 0x800E, 0x800F, 0x800F).AsByte());

    // A super-block's 128 bytes of nibbles in two 64-byte loads: bytes 0-31 hold sub-blocks 0 (low nibbles) and 1
    // (high), bytes 32-63 sub-blocks 2 and 3; q is the activations in that order (Q8Activations.Paired: joining two
    // 32-byte halves per vector instead cost eight shuffles per block). The unpacked scales and mins
    // (BlockDecoder.Q4KScaleBytes) are broadcast to the four 128-bit lanes, and an in-lane vpshufb per product spreads
    // each sub-block's scale over its lanes (the cross-lane vpermw it replaces, with a vpmovzxbw before it, cost ~3 more
    // cycles per block on Zen 4); the mins meet the run sums in 256 bits. d and dmin come from HalfTable (`halves`: the
    // caller reads the static, for the reason ScaleControl gives).
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static float DotQ4K(byte* row, int columns, sbyte* q, float* scales, short* sums, float* halves, int ahead)
    {
        var acc = Vector512<float>.Zero;
        var accMins = Vector256<float>.Zero;
        var nibble = Vector512.Create((byte)0x0F);
        Vector512<byte> pick0 = ScaleControl(0, 2), pick1 = ScaleControl(1, 3), pick2 = ScaleControl(8, 10), pick3 = ScaleControl(9, 11);
        var pickMins = MinControl();
        for (int b = 0; b < columns / 256; b++, row += 144, q += 256, sums += 16)
        {
            Sse.Prefetch0(row + ahead);
            Sse.Prefetch0(row + ahead + 64);
            Sse.Prefetch0(row + ahead + 128);
            float dx = scales[b];
            float dotFactor = dx * halves[*(ushort*)row], minFactor = dx * halves[*(ushort*)(row + 2)];
            var unpacked = BlockDecoder.Q4KScaleBytes(row).AsUInt32().ToVector256Unsafe().ToVector512Unsafe();
            var everyLane = Avx512F.Shuffle4x128(unpacked, unpacked, 0).AsByte();
            var q0 = Vector512.Load(row + 16);
            var q1 = Vector512.Load(row + 80);
            var dots = Products(q0 & nibble, Vector512.Load(q), Avx512BW.Shuffle(everyLane, pick0).AsInt16())
                + Products(Vector512.ShiftRightLogical(q0.AsUInt16(), 4).AsByte() & nibble, Vector512.Load(q + 64), Avx512BW.Shuffle(everyLane, pick1).AsInt16())
                + Products(q1 & nibble, Vector512.Load(q + 128), Avx512BW.Shuffle(everyLane, pick2).AsInt16())
                + Products(Vector512.ShiftRightLogical(q1.AsUInt16(), 4).AsByte() & nibble, Vector512.Load(q + 192), Avx512BW.Shuffle(everyLane, pick3).AsInt16());
            var mins = Avx2.MultiplyAddAdjacent(Vector256.Load(sums), Avx2.Shuffle(everyLane.GetLower(), pickMins).AsInt16());
            acc = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(dots), Vector512.Create(dotFactor), acc);
            accMins = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(mins), Vector256.Create(minFactor), accMins);
        }

        return Vector512.Sum(acc) - Vector256.Sum(accMins);
    }

    // Per 128 values: 64 ql bytes (bytes 0-31: runs 0 and 2 of 32 in the low and high nibbles, bytes 32-63: runs 1
    // and 3) and 32 qh bytes, broadcast to both halves and shifted per half (vpsllvw/vpsrlvw: the two bits of run r
    // sit at bit 2r) so that each nibble finds its two high bits at bits 4-5. The values stay unsigned (0..63) for
    // vpmaddubsw; the −32 is taken off once per block as 32 · Σ_j c_j · (run sum j). The block's lanes are then summed as
    // integers, as the reference sums them, and multiplied by its float factor: the −32 terms sit in other lanes than
    // the values they correct, and lanes converted and accumulated apart cancelled in float (an activation far above
    // the rest of its block, 6-bit values near 32: up to 1e-3 of the result lost, found by the AVX2 kernel's tests).
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static float DotQ6K(byte* row, int columns, sbyte* q, float* scales, short* sums, float* halves, int ahead)
    {
        float sum = 0;
        var nibble = Vector512.Create((byte)0x0F);
        var highBits = Vector512.Create((byte)0x30);
        var left = Vector512.Create(Vector256.Create((ushort)4), Vector256.Create((ushort)2));
        var right = Vector512.Create(Vector256<ushort>.Zero, Vector256.Create((ushort)2));
        // Words 0-7 take scale 0, 8-15 scale 1, …: four runs of 16 values per 64-value vector.
        var runs = Vector512.Create(Vector256.Create(Vector128.Create((short)0), Vector128.Create((short)1)), Vector256.Create(Vector128.Create((short)2), Vector128.Create((short)3)));
        Vector512<short> pick0 = runs, pick1 = runs + Vector512.Create((short)4), pick2 = runs + Vector512.Create((short)8), pick3 = runs + Vector512.Create((short)12);
        for (int b = 0; b < columns / 256; b++, row += 210, q += 256, sums += 16)
        {
            Sse.Prefetch0(row + ahead);
            Sse.Prefetch0(row + ahead + 64);
            Sse.Prefetch0(row + ahead + 128);
            Sse.Prefetch0(row + ahead + 192);
            var runScales = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)row + 192)).ToVector512();
            var offset = Avx512BW.MultiplyAddAdjacent(Vector256.Load(sums).ToVector512(), runScales);
            var low = Vector512.Load(row);
            // Avx512F.BroadcastVector256ToVector512((ulong*)(row + 128)) read the wrong bytes on .NET 10.0.401 (the JIT
            // mis-addressed the memory operand: it compressed the displacement 0x80 to disp8 8 as for a 16-byte operand,
            // which the CPU scales by the instruction's 32 bytes, so it read row + 256), so the broadcast is written as
            // two halves. Tier-0 code computes the address apart, so only optimized code shows it (.ci/run's
            // "optimized" test run).
            var qh = Vector256.Load(row + 128);
            var high = Vector512.Create(qh, qh).AsUInt16();
            var dots = Products((low & nibble) | (Avx512BW.ShiftLeftLogicalVariable(high, left).AsByte() & highBits), Vector512.Load(q), Avx512BW.PermuteVar32x16(runScales, pick0))
                + Products((Vector512.ShiftRightLogical(low.AsUInt16(), 4).AsByte() & nibble) | (Avx512BW.ShiftRightLogicalVariable(high, right).AsByte() & highBits), Vector512.Load(q + 64), Avx512BW.PermuteVar32x16(runScales, pick1));
            low = Vector512.Load(row + 64);
            qh = Vector256.Load(row + 160);
            high = Vector512.Create(qh, qh).AsUInt16();
            dots += Products((low & nibble) | (Avx512BW.ShiftLeftLogicalVariable(high, left).AsByte() & highBits), Vector512.Load(q + 128), Avx512BW.PermuteVar32x16(runScales, pick2))
                + Products((Vector512.ShiftRightLogical(low.AsUInt16(), 4).AsByte() & nibble) | (Avx512BW.ShiftRightLogicalVariable(high, right).AsByte() & highBits), Vector512.Load(q + 192), Avx512BW.PermuteVar32x16(runScales, pick3));
            dots -= Vector512.ShiftLeft(offset, 5);
            sum += scales[b] * halves[*(ushort*)(row + 208)] * Vector512.Sum(dots);
        }

        return sum;
    }

    /// <summary>
    /// The AVX2 product (machines without AVX-512BW): Dot512's integer sums with 32 bytes per register and the
    /// activations <paramref name="q"/> in their own order (a Q4_K sub-block pair is 32 bytes, its low nibbles the
    /// first sub-block); the float factors applied per block.
    /// </summary>
    public static float Dot256(GgmlType type, byte* row, int columns, sbyte* q, float* scales, short* sums)
    {
        bool prefetch = Gemv.PrefetchWeights;
        return type switch
        {
            GgmlType.Q8_0 => DotQ8_0x256(row, columns, q, scales, HalfTable.Values, prefetch),
            GgmlType.Q4_K => DotQ4Kx256(row, columns, q, scales, sums, HalfTable.Values, prefetch),
            GgmlType.Q5_K => DotQ5Kx256(row, columns, q, scales, sums, HalfTable.Values, prefetch),
            _ => DotQ6Kx256(row, columns, q, scales, sums, HalfTable.Values, prefetch),
        };
    }

    // Products with 32 bytes: u8 × s8 in adjacent pairs, then × s16 scales in adjacent pairs: 8 int32 lanes.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Products(Vector256<byte> weights, Vector256<sbyte> activations, Vector256<short> scales) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(weights, activations), scales);

    // One block of 32 per step: the weights' magnitudes against the activations carrying the weights' signs (vpsignb),
    // the block's sum converted once and multiplied by dw·dx; two sums, alternate blocks.
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static float DotQ8_0x256(byte* row, int columns, sbyte* q, float* scales, float* halves, bool prefetch)
    {
        var a0 = Vector256<float>.Zero;
        var a1 = Vector256<float>.Zero;
        var ones = Vector256.Create((short)1);
        int ahead = BlockDecoder.PrefetchAhead;
        for (int b = 0; b < columns / 32; b++, row += 34, q += 32)
        {
            if (prefetch)
            {
                Sse.Prefetch0(row + ahead);
            }

            var w = Vector256.Load((sbyte*)row + 2);
            var dots = Vector256.ConvertToSingle(Products(Avx2.Abs(w), Avx2.Sign(Vector256.Load(q), w), ones));
            var factor = Vector256.Create(halves[*(ushort*)row] * scales[b]);
            if ((b & 1) == 0)
            {
                a0 = Vector256.FusedMultiplyAdd(dots, factor, a0);
            }
            else
            {
                a1 = Vector256.FusedMultiplyAdd(dots, factor, a1);
            }
        }

        return Vector256.Sum(a0 + a1);
    }

    // Q4_K: each 32-byte load is a sub-block pair (low nibbles sub-block 2j, high 2j + 1, against q's 64 values in
    // order); the unpacked scales and mins (BlockDecoder.Q4KScaleBytes) sit in both 128-bit lanes, and a vpshufb
    // spreads one sub-block's scale over the words of its product (ScaleWords), the mins meet the run sums as in DotQ4K.
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static float DotQ4Kx256(byte* row, int columns, sbyte* q, float* scales, short* sums, float* halves, bool prefetch)
    {
        var acc = Vector256<float>.Zero;
        var accMins = Vector256<float>.Zero;
        var pickMins = MinControl();
        int ahead = BlockDecoder.PrefetchAhead;
        for (int b = 0; b < columns / 256; b++, row += 144, q += 256, sums += 16)
        {
            if (prefetch)
            {
                Sse.Prefetch0(row + ahead);
                Sse.Prefetch0(row + ahead + 64);
                Sse.Prefetch0(row + ahead + 128);
            }

            float dx = scales[b];
            float dotFactor = dx * halves[*(ushort*)row], minFactor = dx * halves[*(ushort*)(row + 2)];
            var unpacked = BlockDecoder.Q4KScaleBytes(row);
            var everyLane = Vector256.Create(unpacked, unpacked);
            // Sub-block pairs j = 0..3 (written out: the JIT does not unroll, and the scale controls must be constants):
            // the scales of sub-blocks 2j and 2j + 1 are bytes 2j and 2j + 1 of the unpacked ones, 8 + … from sub-block 4.
            var dots = Q4KPair(row + 16, q, everyLane, 0) + Q4KPair(row + 48, q + 64, everyLane, 2)
                + Q4KPair(row + 80, q + 128, everyLane, 8) + Q4KPair(row + 112, q + 192, everyLane, 10);
            var mins = Avx2.MultiplyAddAdjacent(Vector256.Load(sums), Avx2.Shuffle(everyLane, pickMins).AsInt16());
            acc = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(dots), Vector256.Create(dotFactor), acc);
            accMins = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(mins), Vector256.Create(minFactor), accMins);
        }

        return Vector256.Sum(acc) - Vector256.Sum(accMins);
    }

    // One sub-block pair's 32 bytes at w (low nibbles against q[0..32), high against q[32..64)), scaled by bytes
    // `scale` and `scale` + 1 of the unpacked scales.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q4KPair(byte* w, sbyte* q, Vector256<byte> everyLane, int scale)
    {
        var nibble = Vector256.Create((byte)0x0F);
        var bytes = Vector256.Load(w);
        return Products(bytes & nibble, Vector256.Load(q), ScaleWords(everyLane, scale))
            + Products(Vector256.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte() & nibble, Vector256.Load(q + 32), ScaleWords(everyLane, scale + 1));
    }

    // Q5_K: DotQ4Kx256 with each value's fifth bit from qh (32 bytes at 16; bit j of byte l belongs to sub-block j's
    // value l), brought to bit 4 by a shift of qh's 16-bit lanes (the bits that cross into the other byte of a lane
    // are masked off); the nibbles 32 bytes further on. Pair sums ≤ 2 · 31 · 127: no saturation.
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static float DotQ5Kx256(byte* row, int columns, sbyte* q, float* scales, short* sums, float* halves, bool prefetch)
    {
        var acc = Vector256<float>.Zero;
        var accMins = Vector256<float>.Zero;
        var pickMins = MinControl();
        int ahead = BlockDecoder.PrefetchAhead;
        for (int b = 0; b < columns / 256; b++, row += 176, q += 256, sums += 16)
        {
            if (prefetch)
            {
                Sse.Prefetch0(row + ahead);
                Sse.Prefetch0(row + ahead + 64);
                Sse.Prefetch0(row + ahead + 128);
            }

            float dx = scales[b];
            float dotFactor = dx * halves[*(ushort*)row], minFactor = dx * halves[*(ushort*)(row + 2)];
            var unpacked = BlockDecoder.Q4KScaleBytes(row);
            var everyLane = Vector256.Create(unpacked, unpacked);
            var fifth = Vector256.Load(row + 16).AsUInt16();
            var dots = Q5KPair(row + 48, Vector256.ShiftLeft(fifth, 4), Vector256.ShiftLeft(fifth, 3), q, everyLane, 0)
                + Q5KPair(row + 80, Vector256.ShiftLeft(fifth, 2), Vector256.ShiftLeft(fifth, 1), q + 64, everyLane, 2)
                + Q5KPair(row + 112, fifth, Vector256.ShiftRightLogical(fifth, 1), q + 128, everyLane, 8)
                + Q5KPair(row + 144, Vector256.ShiftRightLogical(fifth, 2), Vector256.ShiftRightLogical(fifth, 3), q + 192, everyLane, 10);
            var mins = Avx2.MultiplyAddAdjacent(Vector256.Load(sums), Avx2.Shuffle(everyLane, pickMins).AsInt16());
            acc = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(dots), Vector256.Create(dotFactor), acc);
            accMins = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(mins), Vector256.Create(minFactor), accMins);
        }

        return Vector256.Sum(acc) - Vector256.Sum(accMins);
    }

    // One Q5_K sub-block pair: Q4KPair with the fifth bits at bit 4 of `lowFifth` and `highFifth`.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q5KPair(byte* w, Vector256<ushort> lowFifth, Vector256<ushort> highFifth, sbyte* q, Vector256<byte> everyLane, int scale)
    {
        var nibble = Vector256.Create((byte)0x0F);
        var bit = Vector256.Create((byte)0x10);
        var bytes = Vector256.Load(w);
        return Products((bytes & nibble) | (lowFifth.AsByte() & bit), Vector256.Load(q), ScaleWords(everyLane, scale))
            + Products((Vector256.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte() & nibble) | (highFifth.AsByte() & bit), Vector256.Load(q + 32), ScaleWords(everyLane, scale + 1));
    }

    // Byte `index` of each 128-bit lane as every word of the lane, zero-extended (vpshufb: 0x80 writes a zero).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> ScaleWords(Vector256<byte> lanes, int index) =>
        Avx2.Shuffle(lanes, Vector256.Create((ushort)(index | 0x8000)).AsByte()).AsInt16();

    // Q6_K: per 128 values, ql bytes 0-31 (runs of 32 number 0 and 2 in their nibbles) and 32-63 (1 and 3), and the 32
    // qh bytes whose bits 2m-2m+1 are run m's high bits, moved to bits 4-5 by a shift of the 16-bit lanes. Lane 0 of
    // each product holds a run of 16, lane 1 the next, so their scales (sign-extended words, the half's eight in both
    // 128-bit lanes) are picked per lane by one vpshufb; the −32 leaves as in DotQ6K. The block's lanes are summed as
    // integers before its float factor, as the reference sums them: the −32 terms sit in other lanes than the values
    // they correct, and converted apart they cancelled in float (one activation far above its block's others, 6-bit
    // values near 32: 3e-4 of the result lost).
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static float DotQ6Kx256(byte* row, int columns, sbyte* q, float* scales, short* sums, float* halves, bool prefetch)
    {
        float sum = 0;
        int ahead = BlockDecoder.PrefetchAhead;
        for (int b = 0; b < columns / 256; b++, row += 210, q += 256, sums += 16)
        {
            if (prefetch)
            {
                Sse.Prefetch0(row + ahead);
                Sse.Prefetch0(row + ahead + 64);
                Sse.Prefetch0(row + ahead + 128);
                Sse.Prefetch0(row + ahead + 192);
            }

            var runScales = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)row + 192));
            var dots = Vector256<int>.Zero - Vector256.ShiftLeft(Avx2.MultiplyAddAdjacent(Vector256.Load(sums), runScales), 5);
            dots += Q6KHalf(row, row + 128, row + 192, q) + Q6KHalf(row + 64, row + 160, row + 200, q + 128);
            sum += scales[b] * halves[*(ushort*)(row + 208)] * Vector256.Sum(dots);
        }

        return sum;
    }

    // Half a Q6_K block, 128 values: 64 ql bytes at ql, 32 qh bytes at qh, the eight run scales at runScales, against
    // the activations at x.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q6KHalf(byte* ql, byte* qh, byte* runScales, sbyte* x)
    {
        var nibble = Vector256.Create((byte)0x0F);
        var highBits = Vector256.Create((byte)0x30);
        var words = Sse41.ConvertToVector128Int16((sbyte*)runScales).AsByte();
        var halfScales = Vector256.Create(words, words);
        var low = Vector256.Load(ql);
        var next = Vector256.Load(ql + 32);
        var high = Vector256.Load(qh).AsUInt16();
        return Products((low & nibble) | (Vector256.ShiftLeft(high, 4).AsByte() & highBits), Vector256.Load(x), RunWords(halfScales, 0))
            + Products((next & nibble) | (Vector256.ShiftLeft(high, 2).AsByte() & highBits), Vector256.Load(x + 32), RunWords(halfScales, 2))
            + Products((Vector256.ShiftRightLogical(low.AsUInt16(), 4).AsByte() & nibble) | (high.AsByte() & highBits), Vector256.Load(x + 64), RunWords(halfScales, 4))
            + Products((Vector256.ShiftRightLogical(next.AsUInt16(), 4).AsByte() & nibble) | (Vector256.ShiftRightLogical(high, 2).AsByte() & highBits), Vector256.Load(x + 96), RunWords(halfScales, 6));
    }

    // Word `run` of 128-bit lane 0 and word `run` + 1 of lane 1, each over its lane's eight words.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> RunWords(Vector256<byte> words, int run) =>
        Avx2.Shuffle(words, Vector256.Create(Vector128.Create((ushort)((2 * run) | (((2 * run) + 1) << 8))).AsByte(), Vector128.Create((ushort)((2 * run) + 2 | (((2 * run) + 3) << 8))).AsByte())).AsInt16();
}
