namespace HeadLens.Kernels.Quantized;

/// <summary>
/// Tensor element types as ggml numbers them (the values GGUF files store). Only the types HeadLens reads are
/// named; every other number is refused by the reader, naming the tensor.
/// </summary>
public enum GgmlType : uint
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q8_0 = 8,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    BF16 = 30,
}

/// <summary>
/// Block layouts (ggml's ggml-common.h). A row of a quantized matrix is a sequence of blocks; each block holds
/// <see cref="BlockValues"/> values in <see cref="BlockBytes"/> bytes, little-endian, fp16 scales:
/// <code>
/// F32   1 value   4 bytes
/// F16   1 value   2 bytes  (IEEE half)
/// BF16  1 value   2 bytes  (top half of a float32)
/// Q4_0  32 values 18 bytes  d:f16, qs[16]: value j = d·(lo nibble of qs[j] − 8), value j+16 = d·(hi nibble − 8)
/// Q8_0  32 values 34 bytes  d:f16, qs[32]:int8: value j = d·qs[j]
/// Q4_K  256 values 144 bytes  d:f16, dmin:f16, scales[12] (8 six-bit scales, 8 six-bit mins), qs[128] nibbles
/// Q5_K  256 values 176 bytes  d, dmin, scales[12], qh[32] (fifth bits), qs[128] nibbles
/// Q6_K  256 values 210 bytes  ql[128] low nibbles, qh[64] two high bits, scales[16]:int8, d:f16
/// </code>
/// </summary>
public static class GgmlTypes
{
    /// <summary>Values per K-quant super-block (ggml's QK_K).</summary>
    public const int SuperBlock = 256;

    public static bool IsKnown(uint type) => Enum.IsDefined((GgmlType)type);

    public static int BlockValues(GgmlType type) => type switch
    {
        GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 => 1,
        GgmlType.Q4_0 or GgmlType.Q8_0 => 32,
        GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K => SuperBlock,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown ggml type"),
    };

    public static int BlockBytes(GgmlType type) => type switch
    {
        GgmlType.F32 => 4,
        GgmlType.F16 or GgmlType.BF16 => 2,
        GgmlType.Q4_0 => 18,
        GgmlType.Q8_0 => 34,
        GgmlType.Q4_K => 144,
        GgmlType.Q5_K => 176,
        GgmlType.Q6_K => 210,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown ggml type"),
    };

    /// <summary>Bytes of one row of <paramref name="columns"/> values (a multiple of the block size).</summary>
    public static long RowBytes(GgmlType type, long columns) => columns / BlockValues(type) * BlockBytes(type);

    /// <summary>Whether <paramref name="type"/> is a block format (a scale per group of values).</summary>
    public static bool IsQuantized(GgmlType type) => BlockValues(type) > 1;
}
