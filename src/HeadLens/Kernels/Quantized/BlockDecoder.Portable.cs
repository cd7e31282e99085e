using System.Runtime.Intrinsics;

namespace HeadLens.Kernels.Quantized;

// Rows decoded to fp32 with Vector128 only (Arm's NEON, x86 without AVX2), where Decode512 and Decode256 do not run:
// each block's values unpacked to signed bytes (DecodedRow's unpackers), then 16 at a time widened to int, converted,
// and scaled with the reference's float steps in its order (Q4_K: (d·scale)·q − dmin·min, each product rounded on its
// own, no fused multiply-add): Dequantize.Reference's values, bit for bit.
internal static unsafe partial class BlockDecoder
{
    /// <summary>Whether <see cref="Decode128"/> runs here for <paramref name="type"/>: Vector128 without AVX2.</summary>
    public static bool Has128(GgmlType type) => !IsSupported && Vector128.IsHardwareAccelerated
        && type is GgmlType.Q4_0 or GgmlType.Q8_0 or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.F16 or GgmlType.BF16;

    /// <summary>Decodes <paramref name="count"/> values (whole blocks) with Vector128 (see <see cref="Has128"/>).</summary>
    public static void Decode128(GgmlType type, byte* source, int count, float* y)
    {
        if (type is GgmlType.F16 or GgmlType.BF16)
        {
            bool f16 = type == GgmlType.F16;
            int i = 0;
            for (; i <= count - 8; i += 8)
            {
                var (low, high) = Vector128.Widen(Vector128.Load((short*)source + i));
                (f16 ? HalfToSingle(low) : Vector128.ShiftLeft(low, 16).AsSingle()).Store(y + i);
                (f16 ? HalfToSingle(high) : Vector128.ShiftLeft(high, 16).AsSingle()).Store(y + i + 4);
            }

            Tail(type, source, i, count, y);
            return;
        }

        Span<sbyte> values = stackalloc sbyte[GgmlTypes.SuperBlock];
        int blockValues = GgmlTypes.BlockValues(type), blockBytes = GgmlTypes.BlockBytes(type);
        for (int b = 0; b < count / blockValues; b++, source += blockBytes, y += blockValues)
        {
            var block = new ReadOnlySpan<byte>(source, blockBytes);
            switch (type)
            {
                case GgmlType.Q8_0:
                    Scale16(new ReadOnlySpan<sbyte>(source + 2, 32), Dequantize.Half(block, 0), 0, y);
                    break;
                case GgmlType.Q4_0:
                    {
                        // q − 8 as the reference: an integer, then times d.
                        var packed = Vector128.Load(source + 2);
                        var eight = Vector128.Create((byte)8);
                        var low = (packed & Vector128.Create((byte)0xF)) - eight;
                        var high = Vector128.ShiftRightLogical(packed, 4) - eight;
                        low.AsSByte().CopyTo(values);
                        high.AsSByte().CopyTo(values[16..]);
                        Scale16(values[..32], Dequantize.Half(block, 0), 0, y);
                        break;
                    }

                case GgmlType.Q4_K:
                case GgmlType.Q5_K:
                    {
                        bool five = type == GgmlType.Q5_K;
                        DecodedRow.UnpackNibbles(block.Slice(five ? 48 : 16, 128), five ? block.Slice(16, 32) : [], values);
                        float d = Dequantize.Half(block, 0), dmin = Dequantize.Half(block, 2);
                        for (int j = 0; j < 8; j++)
                        {
                            var (scale, min) = Dequantize.ScaleMin(block.Slice(4, 12), j);
                            Scale16(values.Slice(32 * j, 32), d * scale, dmin * min, y + (32 * j));
                        }

                        break;
                    }

                default: // Q6_K
                    {
                        DecodedRow.UnpackSixBits(block, values);
                        float d = Dequantize.Half(block, 208);
                        for (int j = 0; j < 16; j++)
                        {
                            Scale16(values.Slice(16 * j, 16), d * (sbyte)block[192 + j], 0, y + (16 * j));
                        }

                        break;
                    }
            }
        }
    }

    // y[i] = q[i]·factor − offset for 16 or 32 values. The formats without an offset pass 0: x − (+0) is x for every
    // x, −0 included, so their values stay the reference's.
    private static void Scale16(ReadOnlySpan<sbyte> q, float factor, float offset, float* y)
    {
        var scale = Vector128.Create(factor);
        var shift = Vector128.Create(offset);
        for (int i = 0; i < q.Length; i += 16)
        {
            var (low, high) = Vector128.Widen(Vector128.Create(q.Slice(i, 16)));
            var (a, b) = Vector128.Widen(low);
            var (c, e) = Vector128.Widen(high);
            ((Vector128.ConvertToSingle(a) * scale) - shift).Store(y + i);
            ((Vector128.ConvertToSingle(b) * scale) - shift).Store(y + i + 4);
            ((Vector128.ConvertToSingle(c) * scale) - shift).Store(y + i + 8);
            ((Vector128.ConvertToSingle(e) * scale) - shift).Store(y + i + 12);
        }
    }
}
