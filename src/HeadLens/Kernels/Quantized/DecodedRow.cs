using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace HeadLens.Kernels.Quantized;

// One row of W (Q8_0, Q4_K, Q5_K or Q6_K) times several 8-bit vectors on machines without IntegerDot's AVX kernels
// (Arm, x86 without AVX2). IntegerDot.Reference unpacks every value of the row again for each vector (Q6_K: ~1 µs per
// 256 values); here the row is unpacked once into signed bytes and integer scales,
//   w[i]      Q8_0: the weight; Q4_K, Q5_K: its unsigned value u (0..31); Q6_K: its value − 32
//   scale[g]  the integer scale of group g (Q4_K, Q5_K: sub-blocks of 32; Q6_K: runs of 16), min[g] (Q4_K, Q5_K)
//   d[b], dmin[b]  the block's float factors
// and each vector's group sums Σ w[i]·q[i] are integers (exact in any order, so Vector128 may add them in its own), then
// combined in the reference's float steps and order: IntegerDot.Reference's bits for every row and vector.
internal sealed class DecodedRow
{
    private readonly GgmlType type;
    private readonly int columns, blockValues, groupValues;
    private readonly sbyte[] values;
    private readonly int[] groupScales, groupMins;
    private readonly float[] factors, minFactors;

    [ThreadStatic]
    private static DecodedRow? ofThisThread;

    /// <summary>
    /// This thread's decoder for rows of <paramref name="type"/> and <paramref name="columns"/> values, kept between
    /// products (a decode step runs every matrix of the model: no allocation per product).
    /// </summary>
    public static DecodedRow ForThisThread(GgmlType type, int columns)
    {
        if (ofThisThread is not { } decoder || decoder.type != type || decoder.columns != columns)
        {
            decoder = ofThisThread = new DecodedRow(type, columns);
        }

        return decoder;
    }

    public DecodedRow(GgmlType type, int columns)
    {
        if (!IntegerDot.Supports(type))
        {
            throw new ArgumentException($"{type} has no product with 8-bit activations");
        }

        this.type = type;
        this.columns = columns;
        blockValues = type == GgmlType.Q8_0 ? 32 : GgmlTypes.SuperBlock;
        groupValues = type == GgmlType.Q6_K ? 16 : 32;
        values = new sbyte[columns];
        groupScales = new int[columns / groupValues];
        groupMins = new int[columns / groupValues];
        factors = new float[columns / blockValues];
        minFactors = new float[columns / blockValues];
    }

    /// <summary>Unpacks <paramref name="row"/> (<c>columns</c> values in the row's type) for the dots that follow.</summary>
    public void Decode(ReadOnlySpan<byte> row)
    {
        int blockBytes = (int)GgmlTypes.RowBytes(type, blockValues);
        for (int b = 0; b < columns / blockValues; b++)
        {
            var block = row.Slice(b * blockBytes, blockBytes);
            var w = values.AsSpan(b * blockValues, blockValues);
            switch (type)
            {
                case GgmlType.Q8_0:
                    factors[b] = Dequantize.Half(block, 0);
                    MemoryMarshal.Cast<byte, sbyte>(block.Slice(2, 32)).CopyTo(w);
                    break;
                case GgmlType.Q4_K:
                case GgmlType.Q5_K:
                    bool five = type == GgmlType.Q5_K;
                    var quants = block.Slice(five ? 48 : 16, 128);
                    factors[b] = Dequantize.Half(block, 0);
                    minFactors[b] = Dequantize.Half(block, 2);
                    for (int j = 0; j < 8; j++)
                    {
                        (groupScales[(8 * b) + j], groupMins[(8 * b) + j]) = Dequantize.ScaleMin(block.Slice(4, 12), j);
                    }

                    UnpackNibbles(quants, five ? block.Slice(16, 32) : [], w);

                    break;
                default: // Q6_K
                    factors[b] = Dequantize.Half(block, 208);
                    for (int j = 0; j < 16; j++)
                    {
                        groupScales[(16 * b) + j] = (sbyte)block[192 + j];
                    }

                    UnpackSixBits(block, w);

                    break;
            }
        }
    }

    // Q4_K, Q5_K: byte l of each 32-byte run of the quants holds value l of sub-block 2p (low nibble) and of 2p + 1
    // (high); Q5_K's bit j of byte l of fifthBits is the fifth bit of sub-block j's value l.
    internal static void UnpackNibbles(ReadOnlySpan<byte> quants, ReadOnlySpan<byte> fifthBits, Span<sbyte> w)
    {
        var u = MemoryMarshal.Cast<sbyte, byte>(w);
        if (Vector128.IsHardwareAccelerated)
        {
            var low = Vector128.Create((byte)0xF);
            for (int i = 0; i < 128; i += 16)
            {
                var packed = Vector128.Create(quants.Slice(i, 16));
                int run = i / 32, l = i % 32;
                var first = packed & low;
                var second = Vector128.ShiftRightLogical(packed, 4);
                if (!fifthBits.IsEmpty)
                {
                    var bits = Vector128.Create(fifthBits.Slice(l, 16));
                    first |= Vector128.ShiftLeft(Vector128.ShiftRightLogical(bits, 2 * run) & Vector128<byte>.One, 4);
                    second |= Vector128.ShiftLeft(Vector128.ShiftRightLogical(bits, (2 * run) + 1) & Vector128<byte>.One, 4);
                }

                first.CopyTo(u.Slice((64 * run) + l, 16));
                second.CopyTo(u.Slice((64 * run) + 32 + l, 16));
            }

            return;
        }

        for (int j = 0; j < 8; j++)
        {
            for (int l = 0; l < 32; l++)
            {
                int packed = quants[(32 * (j / 2)) + l];
                int value = j % 2 == 0 ? packed & 0xF : packed >> 4;
                u[(32 * j) + l] = (byte)(fifthBits.IsEmpty ? value : value | (((fifthBits[l] >> j) & 1) << 4));
            }
        }
    }

    // Q6_K (IntegerDot.Q6's layout): per half of 128 values, runs 0..3 of 32 take their low four bits from ql bytes
    // 0..31 (runs 0, 2: low and high nibble) and 32..63 (runs 1, 3), their top two from bits 2·run of the qh bytes.
    internal static void UnpackSixBits(ReadOnlySpan<byte> block, Span<sbyte> w)
    {
        if (!Vector128.IsHardwareAccelerated)
        {
            for (int i = 0; i < 256; i++)
            {
                w[i] = (sbyte)(IntegerDot.Q6(block, i) - 32);
            }

            return;
        }

        var u = MemoryMarshal.Cast<sbyte, byte>(w);
        var nibble = Vector128.Create((byte)0xF);
        var three = Vector128.Create((byte)3);
        var offset = Vector128.Create((byte)32);
        for (int half = 0; half < 2; half++)
        {
            for (int l = 0; l < 32; l += 16)
            {
                var first = Vector128.Create(block.Slice((64 * half) + l, 16));
                var second = Vector128.Create(block.Slice((64 * half) + 32 + l, 16));
                var top = Vector128.Create(block.Slice(128 + (32 * half) + l, 16));
                var run0 = (first & nibble) | Vector128.ShiftLeft(top & three, 4);
                var run1 = (second & nibble) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(top, 2) & three, 4);
                var run2 = Vector128.ShiftRightLogical(first, 4) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(top, 4) & three, 4);
                var run3 = Vector128.ShiftRightLogical(second, 4) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(top, 6), 4);
                int at = (128 * half) + l;
                (run0 - offset).CopyTo(u.Slice(at, 16));
                (run1 - offset).CopyTo(u.Slice(at + 32, 16));
                (run2 - offset).CopyTo(u.Slice(at + 64, 16));
                (run3 - offset).CopyTo(u.Slice(at + 96, 16));
            }
        }
    }

    /// <summary>
    /// The decoded row · one quantized vector (values <paramref name="q"/>, block scales <paramref name="scales"/>, run
    /// sums <paramref name="sums"/> for the K-quants): IntegerDot.Reference's value, bit for bit.
    /// </summary>
    public float Dot(ReadOnlySpan<sbyte> q, ReadOnlySpan<float> scales, ReadOnlySpan<short> sums)
    {
        float sum = 0;
        switch (type)
        {
            case GgmlType.Q8_0:
                for (int b = 0; b < columns / 32; b++)
                {
                    sum += factors[b] * scales[b] * IntegerSum(values.AsSpan(32 * b, 32), q.Slice(32 * b, 32));
                }

                break;
            case GgmlType.Q4_K:
            case GgmlType.Q5_K:
                for (int b = 0; b < columns / 256; b++)
                {
                    int dots = 0, mins = 0;
                    for (int j = 0; j < 8; j++)
                    {
                        int g = (8 * b) + j;
                        dots += groupScales[g] * IntegerSum(values.AsSpan(32 * g, 32), q.Slice(32 * g, 32));
                        mins += groupMins[g] * (sums[2 * g] + sums[(2 * g) + 1]);
                    }

                    sum += (scales[b] * factors[b] * dots) - (scales[b] * minFactors[b] * mins);
                }

                break;
            default: // Q6_K
                for (int b = 0; b < columns / 256; b++)
                {
                    int dots = 0;
                    for (int j = 0; j < 16; j++)
                    {
                        int g = (16 * b) + j;
                        dots += groupScales[g] * IntegerSum(values.AsSpan(16 * g, 16), q.Slice(16 * g, 16));
                    }

                    sum += scales[b] * factors[b] * dots;
                }

                break;
        }

        return sum;
    }

    // Σ w[i]·q[i] over 16 or 32 values. Each product fits 16 bits (|w| ≤ 128, |q| ≤ 127); they are summed as 32-bit.
    private static int IntegerSum(ReadOnlySpan<sbyte> w, ReadOnlySpan<sbyte> q)
    {
        if (!Vector128.IsHardwareAccelerated)
        {
            int dot = 0;
            for (int i = 0; i < w.Length; i++)
            {
                dot += w[i] * q[i];
            }

            return dot;
        }

        var total = Vector128<int>.Zero;
        for (int i = 0; i < w.Length; i += 16)
        {
            var (wLow, wHigh) = Vector128.Widen(Vector128.Create(w.Slice(i, 16)));
            var (qLow, qHigh) = Vector128.Widen(Vector128.Create(q.Slice(i, 16)));
            var low = wLow * qLow;
            var high = wHigh * qHigh;
            total += Vector128.WidenLower(low) + Vector128.WidenUpper(low) + Vector128.WidenLower(high) + Vector128.WidenUpper(high);
        }

        return Vector128.Sum(total);
    }
}
