using System.Buffers.Binary;

namespace HeadLens.Kernels.Quantized;

/// <summary>
/// The reference (scalar) decoding of every block format in <see cref="GgmlType"/>, written as ggml's
/// dequantize_row_* define the values, and Q8_0 quantization (ggml's quantize_row_q8_0_ref) for the writer. This is
/// the contract the fast matrix-vector products (<see cref="QuantizedMatVec"/>) are tested against.
/// </summary>
public static class Dequantize
{
    /// <summary>Decodes <paramref name="destination"/>.Length values (a multiple of the block size) from <paramref name="source"/>.</summary>
    public static void Reference(GgmlType type, ReadOnlySpan<byte> source, Span<float> destination)
    {
        int per = GgmlTypes.BlockValues(type), bytes = GgmlTypes.BlockBytes(type);
        if (destination.Length % per != 0 || source.Length < destination.Length / per * bytes)
        {
            throw new ArgumentException($"{type}: {destination.Length} values need {destination.Length / per * bytes} bytes in whole blocks of {per}");
        }

        for (int block = 0; block < destination.Length / per; block++)
        {
            var from = source.Slice(block * bytes, bytes);
            var to = destination.Slice(block * per, per);
            switch (type)
            {
                case GgmlType.F32:
                    to[0] = BinaryPrimitives.ReadSingleLittleEndian(from);
                    break;
                case GgmlType.F16:
                    to[0] = (float)BinaryPrimitives.ReadHalfLittleEndian(from);
                    break;
                case GgmlType.BF16:
                    to[0] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(from) << 16);
                    break;
                case GgmlType.Q4_0:
                    Q4_0(from, to);
                    break;
                case GgmlType.Q8_0:
                    Q8_0(from, to);
                    break;
                case GgmlType.Q4_K:
                    Q4_K(from, to);
                    break;
                case GgmlType.Q5_K:
                    Q5_K(from, to);
                    break;
                default:
                    Q6_K(from, to);
                    break;
            }
        }
    }

    internal static float Half(ReadOnlySpan<byte> bytes, int at) => (float)BinaryPrimitives.ReadHalfLittleEndian(bytes[at..]);

    private static void Q4_0(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = Half(block, 0);
        var qs = block.Slice(2, 16);
        for (int j = 0; j < 16; j++)
        {
            y[j] = ((qs[j] & 0xF) - 8) * d;
            y[j + 16] = ((qs[j] >> 4) - 8) * d;
        }
    }

    private static void Q8_0(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = Half(block, 0);
        for (int j = 0; j < 32; j++)
        {
            y[j] = (sbyte)block[2 + j] * d;
        }
    }

    /// <summary>
    /// The 6-bit scale and min of sub-block <paramref name="j"/> (0..7) packed in K-quants' 12 bytes: sub-blocks 0-3
    /// use the low 6 bits of bytes j and j+4; 4-7 take a nibble of byte j+4 and the top 2 bits of bytes j−4 and j.
    /// </summary>
    internal static (int Scale, int Min) ScaleMin(ReadOnlySpan<byte> scales, int j) => j < 4
        ? (scales[j] & 63, scales[j + 4] & 63)
        : ((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4), (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));

    private static void Q4_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = Half(block, 0), dmin = Half(block, 2);
        var scales = block.Slice(4, 12);
        var qs = block.Slice(16, 128);
        for (int group = 0; group < 4; group++) // 64 values: the low nibbles of 32 bytes, then their high nibbles
        {
            var (s1, m1) = ScaleMin(scales, 2 * group);
            var (s2, m2) = ScaleMin(scales, (2 * group) + 1);
            for (int l = 0; l < 32; l++)
            {
                y[(64 * group) + l] = (d * s1 * (qs[(32 * group) + l] & 0xF)) - (dmin * m1);
                y[(64 * group) + 32 + l] = (d * s2 * (qs[(32 * group) + l] >> 4)) - (dmin * m2);
            }
        }
    }

    private static void Q5_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = Half(block, 0), dmin = Half(block, 2);
        var scales = block.Slice(4, 12);
        var qh = block.Slice(16, 32);
        var qs = block.Slice(48, 128);
        for (int group = 0; group < 4; group++) // as Q4_K, with bit 2·group (low) and 2·group+1 (high) of qh as a fifth bit
        {
            var (s1, m1) = ScaleMin(scales, 2 * group);
            var (s2, m2) = ScaleMin(scales, (2 * group) + 1);
            for (int l = 0; l < 32; l++)
            {
                int low = (qs[(32 * group) + l] & 0xF) | (((qh[l] >> (2 * group)) & 1) << 4);
                int high = (qs[(32 * group) + l] >> 4) | (((qh[l] >> ((2 * group) + 1)) & 1) << 4);
                y[(64 * group) + l] = (d * s1 * low) - (dmin * m1);
                y[(64 * group) + 32 + l] = (d * s2 * high) - (dmin * m2);
            }
        }
    }

    private static void Q6_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        var ql = block[..128];
        var qh = block.Slice(128, 64);
        var scales = block.Slice(192, 16);
        float d = Half(block, 208);
        for (int half = 0; half < 2; half++) // 128 values from 64 ql bytes, 32 qh bytes and 8 scales
        {
            for (int l = 0; l < 32; l++)
            {
                int h = qh[(32 * half) + l];
                int q1 = ((ql[(64 * half) + l] & 0xF) | ((h & 3) << 4)) - 32;
                int q2 = ((ql[(64 * half) + l + 32] & 0xF) | (((h >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[(64 * half) + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[(64 * half) + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
                int s = (8 * half) + (l / 16);
                y[(128 * half) + l] = d * (sbyte)scales[s] * q1;
                y[(128 * half) + l + 32] = d * (sbyte)scales[s + 2] * q2;
                y[(128 * half) + l + 64] = d * (sbyte)scales[s + 4] * q3;
                y[(128 * half) + l + 96] = d * (sbyte)scales[s + 6] * q4;
            }
        }
    }

    /// <summary>
    /// Q8_0 quantization (ggml's quantize_row_q8_0_ref): per block of 32, d = max|x| / 127 (stored as fp16) and
    /// q = round(x / d), rounding half away from zero as C's roundf does.
    /// </summary>
    public static void QuantizeQ8_0(ReadOnlySpan<float> source, Span<byte> destination)
    {
        if (source.Length % 32 != 0 || destination.Length != source.Length / 32 * 34)
        {
            throw new ArgumentException($"Q8_0: {source.Length} values need whole blocks of 32 and {source.Length / 32 * 34} bytes");
        }

        for (int block = 0; block < source.Length / 32; block++)
        {
            var x = source.Slice(block * 32, 32);
            var to = destination.Slice(block * 34, 34);
            float amax = 0;
            foreach (float value in x)
            {
                amax = MathF.Max(amax, MathF.Abs(value));
            }

            float d = amax / 127, inverse = d != 0 ? 1 / d : 0;
            BinaryPrimitives.WriteHalfLittleEndian(to, (Half)d);
            for (int j = 0; j < 32; j++)
            {
                to[2 + j] = (byte)(sbyte)MathF.Round(x[j] * inverse, MidpointRounding.AwayFromZero);
            }
        }
    }
}
