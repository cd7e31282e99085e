using System.Buffers.Binary;
using System.Runtime.Intrinsics;
using HeadLens.Kernels.Quantized;

namespace HeadLens.Tests.Kernels;

/// <summary>
/// The ggml block formats: the reference dequantization against values decoded by hand, Q8_0 quantization, and the
/// fast matrix-vector products against dequantize-then-fp32 at odd sizes. CI reruns this namespace with AVX-512 off
/// and with every intrinsic off, so the Vector512, Vector256 and scalar paths are all checked.
/// </summary>
public sealed class QuantizedMatVecTests
{
    public static TheoryData<GgmlType> Types => [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];

    [Theory]
    [MemberData(nameof(Types))]
    public void FastPathMatchesDequantizeThenFloat32AtOddSizes(GgmlType type)
    {
        var random = new Random((int)type + 7);
        int per = GgmlTypes.BlockValues(type);
        int[] widths = per == 1 ? [1, 7, 33, 255, 301] : per == 32 ? [32, 96, 544] : [256, 768];
        foreach (int columns in widths)
        {
            foreach (int rows in new[] { 1, 3, 7, 17 })
            {
                byte[] weights = RandomBlocks(type, rows, columns, random);
                var x = Enumerable.Range(0, columns).Select(_ => (float)((random.NextDouble() * 2) - 1)).ToArray();
                var dense = new float[rows * columns];
                Dequantize.Reference(type, weights, dense);
                var expected = new double[rows];
                var scale = new double[rows];
                for (int r = 0; r < rows; r++)
                {
                    for (int k = 0; k < columns; k++)
                    {
                        expected[r] += (double)dense[(r * columns) + k] * x[k];
                        scale[r] += Math.Abs((double)dense[(r * columns) + k] * x[k]);
                    }
                }

                var reference = Enumerable.Repeat(float.NaN, rows + 1).ToArray(); // garbage, and a sentinel past the end
                var fast = Enumerable.Repeat(float.NaN, rows + 1).ToArray();
                reference[rows] = fast[rows] = 12345f;
                QuantizedMatVec.Reference(type, weights, rows, columns, x, reference);
                QuantizedMatVec.Forward(type, weights, rows, columns, x, fast);
                Assert.Equal(12345f, fast[rows]);
                for (int r = 0; r < rows; r++)
                {
                    // float32 sums of `columns` products in another order: the error grows with Σ|w·x|; the second
                    // term covers the K-quant row dots (AVX-512, one vector), which split each block as
                    // (d·scale)·Σ q·x − (dmin·min)·Σx: two terms can each be far larger than their difference.
                    double tolerance = (1e-5 * scale[r]) + (2e-6 * columns * MaxAbs(dense, r, columns)) + 1e-6;
                    Assert.True(Math.Abs(reference[r] - expected[r]) <= tolerance, $"{type} [{rows}, {columns}] reference row {r}: {reference[r]} vs {expected[r]}");
                    Assert.True(Math.Abs(fast[r] - expected[r]) <= tolerance, $"{type} [{rows}, {columns}] fast row {r}: {fast[r]} vs {expected[r]} " +
                        $"(Vector512 {Vector512.IsHardwareAccelerated}, Vector256 {Vector256.IsHardwareAccelerated})");
                }
            }
        }
    }

    /// <summary>
    /// A few vectors at once (a short prompt) give each vector what its own product gives (decoding), bit for bit:
    /// up to eight vectors each row's dot runs once per vector, as for one.
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void FewVectorsGiveEachVectorItsOwnProductBitForBit(GgmlType type)
    {
        var random = new Random((int)type + 9);
        int per = GgmlTypes.BlockValues(type);
        int columns = per == 1 ? 301 : per == 32 ? 96 : 512;
        int rows = 37;
        byte[] weights = RandomBlocks(type, rows, columns, random);
        foreach (int vectors in new[] { 2, 3, 8 })
        {
            var x = Enumerable.Range(0, vectors * columns).Select(_ => (float)((random.NextDouble() * 2) - 1)).ToArray();
            var together = Enumerable.Repeat(float.NaN, (vectors * rows) + 1).ToArray();
            together[^1] = 12345f;
            QuantizedMatVec.Forward(type, weights, rows, columns, x, vectors, together);
            Assert.Equal(12345f, together[^1]);
            var alone = new float[rows];
            for (int v = 0; v < vectors; v++)
            {
                QuantizedMatVec.Forward(type, weights, rows, columns, x.AsSpan(v * columns, columns), 1, alone);
                for (int r = 0; r < rows; r++)
                {
                    Assert.True(BitConverter.SingleToInt32Bits(alone[r]) == BitConverter.SingleToInt32Bits(together[(v * rows) + r]),
                        $"{type}, {vectors} vectors: vector {v} row {r}: {together[(v * rows) + r]:R} vs {alone[r]:R} alone");
                }
            }
        }
    }

    /// <summary>
    /// Several matrices that multiply the same x as one product (QuantizedMatVec's parts: a layer's Q, K and V) give
    /// every matrix exactly what its own product gives, bit for bit, with enough rows that the threads' chunks straddle
    /// the matrices' boundaries (F16 through its exception lists, as a model's products run), within float rounding
    /// of the reference, and write nothing past any output.
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public unsafe void PartsGiveEveryMatrixItsOwnProductBitForBit(GgmlType type)
    {
        var random = new Random((int)type + 11);
        int per = GgmlTypes.BlockValues(type);
        int columns = per == 1 ? 301 : per == 32 ? 96 : 256;
        // 1312 rows of ≥ 54 bytes: past the products' parallel threshold, in chunks of 82 rows, so the first chunk
        // holds all of the first two matrices and part of the third.
        int[] rows = [5, 17, 1290];
        byte[][] weights = [.. rows.Select(r => RandomBlocks(type, r, columns, random))];
        fixed (byte* w0 = weights[0], w1 = weights[1], w2 = weights[2])
        {
            QuantizedMatrix[] matrices = [.. new[] { (nint)w0, (nint)w1, (nint)w2 }.Select((w, i) =>
                new QuantizedMatrix($"w{i}", type, rows[i], columns, (byte*)w, weights[i].Length, weights[i]))];
            foreach (int vectors in new[] { 1, 3 })
            {
                var x = Enumerable.Range(0, vectors * columns).Select(_ => (float)((random.NextDouble() * 2) - 1)).ToArray();
                // Garbage, and a sentinel past the end of each output.
                float[][] together = [.. rows.Select(r => Enumerable.Repeat(float.NaN, (vectors * r) + 1).Select((v, i) => i == vectors * r ? 12345f : v).ToArray())];
                fixed (float* y0 = together[0], y1 = together[1], y2 = together[2])
                {
                    float*[] outputs = [y0, y1, y2];
                    QuantizedMatVec.Forward(type, columns, x, vectors,
                        [.. matrices.Select((matrix, i) => new QuantizedMatVec.Part(matrix.Start, matrix.Rows, outputs[i], vectors <= QuantizedMatMul.FewVectors ? matrix.HalfExceptions : null))]);
                }

                for (int i = 0; i < rows.Length; i++)
                {
                    Assert.Equal(12345f, together[i][vectors * rows[i]]);
                    var alone = new float[vectors * rows[i]];
                    QuantizedMatMul.Forward(matrices[i], x, vectors, alone);
                    Assert.True(alone.AsSpan().SequenceEqual(together[i].AsSpan(0, vectors * rows[i])), $"{type} matrix {i}, {vectors} vectors: the parts' product differs from the matrix's own");
                    var dense = new float[rows[i] * columns];
                    Dequantize.Reference(type, weights[i], dense);
                    var reference = new float[rows[i]];
                    for (int v = 0; v < vectors; v++)
                    {
                        QuantizedMatVec.Reference(type, weights[i], rows[i], columns, x.AsSpan(v * columns, columns), reference);
                        for (int r = 0; r < rows[i]; r++)
                        {
                            double scale = 0;
                            for (int k = 0; k < columns; k++)
                            {
                                scale += Math.Abs((double)dense[(r * columns) + k] * x[(v * columns) + k]);
                            }

                            float actual = together[i][(v * rows[i]) + r];
                            Assert.True(Math.Abs(actual - reference[r]) <= (2e-5 * scale) + 1e-6, $"{type} matrix {i} vector {v} row {r}: {actual} vs reference {reference[r]}");
                        }
                    }
                }
            }
        }
    }

    private static double MaxAbs(float[] dense, int row, int columns) => dense.AsSpan(row * columns, columns).ToArray().Max(v => Math.Abs((double)v));

    /// <summary>Random quantized bytes with finite, moderate fp16 scales (random bytes there could be NaN or 65504).</summary>
    internal static byte[] RandomBlocks(GgmlType type, int rows, int columns, Random random)
    {
        int per = GgmlTypes.BlockValues(type), size = GgmlTypes.BlockBytes(type);
        var bytes = new byte[rows * columns / per * size];
        random.NextBytes(bytes);
        void Scale(int at, double magnitude) => BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(at), (Half)((random.NextDouble() + 0.05) * magnitude));
        for (int block = 0; block < bytes.Length / size; block++)
        {
            int b = block * size;
            switch (type)
            {
                case GgmlType.F32:
                    BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(b), (float)((random.NextDouble() * 2) - 1));
                    break;
                case GgmlType.F16:
                    BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(b), (Half)((random.NextDouble() * 2) - 1));
                    break;
                case GgmlType.BF16:
                    bytes[b + 1] = (byte)(0x3C + random.Next(4) + (random.Next(2) << 7)); // sign, exponent near 1
                    break;
                case GgmlType.Q4_0 or GgmlType.Q8_0:
                    Scale(b, 0.02);
                    break;
                case GgmlType.Q4_K or GgmlType.Q5_K:
                    Scale(b, 0.002);
                    Scale(b + 2, 0.002);
                    break;
                default:
                    Scale(b + 208, 0.002);
                    break;
            }
        }

        return bytes;
    }

    [Fact]
    public void ReferenceDecodesHandWrittenBlocks()
    {
        // Q4_0: d = 0.5, byte j = (hi 0xF, lo j): value j = (j − 8)·0.5, value j+16 = (15 − 8)·0.5.
        var q4 = new byte[18];
        BinaryPrimitives.WriteHalfLittleEndian(q4, (Half)0.5f);
        for (int j = 0; j < 16; j++)
        {
            q4[2 + j] = (byte)(0xF0 | j);
        }

        var values = new float[32];
        Dequantize.Reference(GgmlType.Q4_0, q4, values);
        for (int j = 0; j < 16; j++)
        {
            Assert.Equal((j - 8) * 0.5f, values[j]);
            Assert.Equal(3.5f, values[j + 16]);
        }

        // Q4_K: d = 1, dmin = 0.25; sub-block 0 scale 3 min 2, sub-block 5 scale (0xF | 1<<4) = 31, min (0x2 | 2<<4) = 34.
        var q4k = new byte[144];
        BinaryPrimitives.WriteHalfLittleEndian(q4k, (Half)1f);
        BinaryPrimitives.WriteHalfLittleEndian(q4k.AsSpan(2), (Half)0.25f);
        q4k[4 + 0] = 3;
        q4k[4 + 4] = 2;
        q4k[4 + 9] = 0x2F;             // sub-block 5: scale low nibble 0xF, min low nibble 0x2
        q4k[4 + 1] |= 1 << 6;          // scale high bits (from byte j − 4 = 1)
        q4k[4 + 5] |= 2 << 6;          // min high bits (from byte j = 5)
        q4k[16] = 0x97;                // value 0: lo nibble 7 (sub-block 0); value 32: hi nibble 9 (sub-block 1)
        q4k[16 + 64 + 3] = 0x50;       // value 128+32+3 = 163 (sub-block 5): hi nibble 5
        var k = new float[256];
        Dequantize.Reference(GgmlType.Q4_K, q4k, k);
        Assert.Equal((3 * 7) - (0.25f * 2), k[0]);
        Assert.Equal(31 * 5 - (0.25f * 34), k[163]);

        // Q6_K: d = 2, scale[0] = −3: value 0 = 2·(−3)·((ql lo 5 | qh bits 2 << 4) − 32) = −6·(37 − 32).
        var q6 = new byte[210];
        q6[0] = 5;
        q6[128] = 2;
        q6[192] = unchecked((byte)-3);
        BinaryPrimitives.WriteHalfLittleEndian(q6.AsSpan(208), (Half)2f);
        var six = new float[256];
        Dequantize.Reference(GgmlType.Q6_K, q6, six);
        Assert.Equal(-30f, six[0]);
        Assert.Equal(2 * -3 * -32f, six[1]);
    }

    [Fact]
    public void Q8_0QuantizationRoundTripsWithinHalfAStep()
    {
        var random = new Random(3);
        var x = Enumerable.Range(0, 32 * 9).Select(i => i % 32 == 5 ? 0f : (float)((random.NextDouble() * 2) - 1) * (1 + (i / 32))).ToArray();
        Array.Clear(x, 64, 32); // an all-zero block: d = 0, no division by zero
        var bytes = new byte[9 * 34];
        Dequantize.QuantizeQ8_0(x, bytes);
        var back = new float[x.Length];
        Dequantize.Reference(GgmlType.Q8_0, bytes, back);
        for (int block = 0; block < 9; block++)
        {
            float amax = x.AsSpan(block * 32, 32).ToArray().Max(MathF.Abs);
            for (int j = 0; j < 32; j++)
            {
                int i = (block * 32) + j;
                Assert.True(Math.Abs(back[i] - x[i]) <= (amax / 127 * 0.5) + (amax * 1e-3), $"value {i}: {back[i]} vs {x[i]}");
            }
        }

        Assert.All(back.AsSpan(64, 32).ToArray(), value => Assert.Equal(0f, value));
    }
}
