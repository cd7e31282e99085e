using System.Buffers.Binary;
using System.Runtime.Intrinsics;
using HeadLens.Kernels.Quantized;

namespace HeadLens.Tests.Kernels;

/// <summary>
/// The vectorised block decoding (BlockDecoder, reached through QuantizedMatMul.DequantizeRows and the products)
/// against Dequantize.Reference, bit for bit: every 16-bit pattern of F16 and BF16 (subnormals, ±0, ±infinity,
/// NaN), and every block format with edge-case scales (zero, subnormal, the largest half, negative, infinity, NaN)
/// at odd row counts. The products' weights are these values, so only their order of summation differs from the
/// reference. CI reruns the Kernels namespace with AVX-512 off, with AVX off and with every intrinsic off (AVX2,
/// Vector128, then the reference decoding); the Vector128 decoding also runs directly in every pass.
/// </summary>
public sealed class BlockDecoderTests
{
    [Theory]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    public void EverySixteenBitPatternDecodesExactly(GgmlType type)
    {
        // One row of all 65536 patterns and a row of 65535 (the vector loops' tails included), each decoded both ways.
        foreach (int columns in new[] { 65536, 65535 })
        {
            var bytes = new byte[columns * 2];
            for (int i = 0; i < columns; i++)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * i), (ushort)(i * 7919)); // a permutation: every pattern, in no order
            }

            var expected = new float[columns];
            Dequantize.Reference(type, bytes, expected);
            var actual = Enumerable.Repeat(float.NaN, columns + 1).ToArray();
            actual[columns] = 5f;
            QuantizedMatMul.DequantizeRows(type, bytes, 1, columns, actual);
            Assert.Equal(5f, actual[columns]);
            var portable = DecodedWithVector128(type, bytes, 1, columns);
            for (int i = 0; i < columns; i++)
            {
                AssertSameValue(expected[i], actual[i], $"{type} bits 0x{BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(2 * i)):X4}");
                AssertSameValue(expected[i], portable[i], $"{type} Vector128 bits 0x{BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(2 * i)):X4}");
            }
        }
    }

    [Fact]
    public unsafe void ScalarHalfConversionIsExactForEveryPattern()
    {
        var bytes = new byte[2];
        for (int bits = 0; bits < 65536; bits++)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(bytes, (ushort)bits);
            fixed (byte* at = bytes)
            {
                AssertSameValue((float)BitConverter.UInt16BitsToHalf((ushort)bits), BlockDecoder.Half(at), $"bits 0x{bits:X4}");
            }
        }
    }

    public static TheoryData<GgmlType> BlockTypes => [GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];

    [Theory]
    [MemberData(nameof(BlockTypes))]
    public void BlocksWithEdgeScalesDecodeExactly(GgmlType type)
    {
        // Scales: ±0, the smallest and largest subnormal halves, the smallest normal, 65504, a negative, ±∞, NaN.
        ushort[] scales = [0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0xB800, 0x7C00, 0xFC00, 0x7E00, 0x3C00];
        var random = new Random((int)type);
        int per = GgmlTypes.BlockValues(type), size = GgmlTypes.BlockBytes(type);
        foreach (int rows in new[] { 1, 3, 17 })
        {
            int columns = per * 3;
            byte[] bytes = QuantizedMatVecTests.RandomBlocks(type, rows, columns, random);
            for (int block = 0; block < bytes.Length / size; block++)
            {
                var at = bytes.AsSpan(block * size);
                ushort scale = scales[random.Next(scales.Length)], other = scales[random.Next(scales.Length)];
                switch (type)
                {
                    case GgmlType.Q6_K:
                        BinaryPrimitives.WriteUInt16LittleEndian(at[208..], scale);
                        break;
                    case GgmlType.Q4_K or GgmlType.Q5_K:
                        BinaryPrimitives.WriteUInt16LittleEndian(at, scale);
                        BinaryPrimitives.WriteUInt16LittleEndian(at[2..], other);
                        break;
                    default:
                        BinaryPrimitives.WriteUInt16LittleEndian(at, scale);
                        break;
                }
            }

            var expected = new float[rows * columns];
            Dequantize.Reference(type, bytes, expected);
            var actual = Enumerable.Repeat(float.NaN, (rows * columns) + 1).ToArray();
            actual[rows * columns] = 9f;
            QuantizedMatMul.DequantizeRows(type, bytes, rows, columns, actual);
            Assert.Equal(9f, actual[rows * columns]);
            var portable = DecodedWithVector128(type, bytes, rows, columns);
            for (int i = 0; i < expected.Length; i++)
            {
                AssertSameValue(expected[i], actual[i], $"{type} [{rows}, {columns}] value {i} (Vector512 {Vector512.IsHardwareAccelerated}, Vector256 {Vector256.IsHardwareAccelerated})");
                AssertSameValue(expected[i], portable[i], $"{type} [{rows}, {columns}] value {i} with Vector128 only");
            }
        }
    }

    // The decoding of machines with Vector128 only (BlockDecoder.Decode128, reached through the products where
    // BlockDecoder.Has128), run here directly whatever the machine has.
    private static unsafe float[] DecodedWithVector128(GgmlType type, byte[] bytes, int rows, int columns)
    {
        var values = Enumerable.Repeat(float.NaN, (rows * columns) + 1).ToArray();
        values[^1] = 7f;
        int rowBytes = (int)GgmlTypes.RowBytes(type, columns);
        fixed (byte* source = bytes)
        fixed (float* target = values)
        {
            for (int r = 0; r < rows; r++)
            {
                BlockDecoder.Decode128(type, source + (r * rowBytes), columns, target + (r * columns));
            }
        }

        Assert.Equal(7f, values[^1]);
        return values;
    }

    public static TheoryData<GgmlType> PanelTypes => [GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.F16, GgmlType.BF16];

    [Theory]
    [MemberData(nameof(PanelTypes))]
    public void PanelsForTheProductHoldTheReferenceValuesTransposed(GgmlType type) => PanelsHoldTheReferenceValuesTransposed(type, eightLanes: false);

    /// <summary>The AVX2 panels (eight rows at a time), run directly where AVX-512 would otherwise take every panel.</summary>
    [Theory]
    [MemberData(nameof(PanelTypes))]
    public void EightLanePanelsHoldTheReferenceValuesTransposed(GgmlType type)
    {
        if (!BlockDecoder.Is256)
        {
            return;
        }

        PanelsHoldTheReferenceValuesTransposed(type, eightLanes: true);
    }

    private static unsafe void PanelsHoldTheReferenceValuesTransposed(GgmlType type, bool eightLanes)
    {
        // Q4_0, Q4_K, Q5_K, Q6_K, Q8_0, F16 and BF16 with AVX-512 or AVX2 decode straight into the panel
        // (BlockDecoder.PanelOfRows), the others
        // through a scratch: every panel must hold the reference's values, row j of W in column j, zeros past the last
        // row, with edge scales (the ones above; for F16 and BF16 edge values) in some blocks. F16 and BF16 take depth
        // blocks of 40 and 80 values: whole runs of 32 and a tail.
        ushort[] scales = [0x0000, 0x8000, 0x0001, 0x03FF, 0x7BFF, 0xB800, 0x7C00, 0x7E00, 0x3C00];
        var random = new Random((int)type + 3);
        int per = GgmlTypes.BlockValues(type), size = GgmlTypes.BlockBytes(type), width = eightLanes ? 16 : HeadLens.Kernels.Gemm.TileColumns;
        int totalRows = width + 9, columns = per == 1 ? 3 * 40 : 3 * Math.Max(per, 64) / per * per;
        byte[] bytes = QuantizedMatVecTests.RandomBlocks(type, totalRows, columns, random);
        for (int block = 0; block < bytes.Length / size; block += 3)
        {
            int at = type == GgmlType.Q6_K ? (block * size) + 208 : block * size;
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(at), scales[random.Next(scales.Length)]);
        }

        var dense = new float[totalRows * columns];
        Dequantize.Reference(type, bytes, dense);
        int depthBlock = columns / 3;
        foreach (var (firstRow, rows) in new[] { (0, width), (width, 9), (3, 1), (5, width / 2), (7, (width / 2) + 1) })
        {
            foreach (int depthStart in new[] { 0, depthBlock })
            {
                int depth = depthStart == 0 ? depthBlock : 2 * depthBlock;
                var panel = Enumerable.Repeat(float.NaN, (depth * width) + 1).ToArray();
                panel[depth * width] = 5f;
                if (eightLanes)
                {
                    long rowBytes = GgmlTypes.RowBytes(type, columns);
                    fixed (byte* w = bytes)
                    fixed (float* target = panel)
                    {
                        BlockDecoder.PanelOfRows256(type, w + (firstRow * rowBytes) + GgmlTypes.RowBytes(type, depthStart), (int)rowBytes, rows, depth, target, width);
                    }
                }
                else
                {
                    QuantizedMatMul.DecodePanel(type, bytes, totalRows, columns, firstRow, rows, depthStart, depth, panel, width);
                }

                Assert.Equal(5f, panel[depth * width]);
                for (int p = 0; p < depth; p++)
                {
                    for (int j = 0; j < width; j++)
                    {
                        float expected = j < rows ? dense[((firstRow + j) * columns) + depthStart + p] : 0f;
                        AssertSameValue(expected, panel[(p * width) + j], $"{type} rows {firstRow}+{rows}, depth {depthStart + p}, column {j} (Vector512 {Vector512.IsHardwareAccelerated})");
                    }
                }
            }
        }
    }

    // The same float: equal bits (so −0 is not +0), or both NaN (a NaN's payload is not part of the contract).
    private static void AssertSameValue(float expected, float actual, string what) =>
        Assert.True(float.IsNaN(expected) ? float.IsNaN(actual) : BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual),
            $"{what}: {actual} vs {expected}");
}
