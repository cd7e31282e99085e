using System.Runtime.Intrinsics;

namespace HeadLens.Checkpoints;

/// <summary>
/// bfloat16 ↔ float32 for checkpoints. A bfloat16 is the top 16 bits of a float32 (same sign and exponent, 7 mantissa
/// bits), so widening is a 16-bit shift; narrowing rounds to nearest, ties to even (as PyTorch's .to(bfloat16)) and
/// keeps NaN a NaN. (IEEE half precision goes through <see cref="System.Numerics.Tensors.TensorPrimitives"/>.)
/// Implementations: Vector512 and Vector256 widening where accelerated, scalar otherwise.
/// </summary>
internal static class HalfPrecision
{
    public static void BFloat16ToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + Vector512<ushort>.Count <= source.Length; i += Vector512<ushort>.Count)
            {
                var (lower, upper) = Vector512.Widen(Vector512.Create(source[i..]));
                Vector512.ShiftLeft(lower, 16).AsSingle().CopyTo(destination[i..]);
                Vector512.ShiftLeft(upper, 16).AsSingle().CopyTo(destination[(i + Vector512<uint>.Count)..]);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i + Vector256<ushort>.Count <= source.Length; i += Vector256<ushort>.Count)
            {
                var (lower, upper) = Vector256.Widen(Vector256.Create(source[i..]));
                Vector256.ShiftLeft(lower, 16).AsSingle().CopyTo(destination[i..]);
                Vector256.ShiftLeft(upper, 16).AsSingle().CopyTo(destination[(i + Vector256<uint>.Count)..]);
            }
        }

        for (; i < source.Length; i++)
        {
            destination[i] = BitConverter.Int32BitsToSingle(source[i] << 16);
        }
    }

    public static ushort SingleToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            return (ushort)((bits >> 16) | 0x40); // a quiet NaN: rounding could otherwise carry it into infinity
        }

        uint roundingBias = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + roundingBias) >> 16);
    }
}
