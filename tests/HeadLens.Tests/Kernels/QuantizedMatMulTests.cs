using System.Runtime.Intrinsics;
using HeadLens.Kernels;
using HeadLens.Kernels.Quantized;
using HeadLens.Model;
using HeadLens.Tensors;

namespace HeadLens.Tests.Kernels;

/// <summary>
/// Products with W kept in a ggml type, Y[M, N] = X[M, K]·Wᵀ: the few-vector path (M ≤ 8, decoded in registers,
/// rows split between threads) and the panel path (W decoded into Gemm's panels as it asks) against dequantize-then-fp32
/// (<see cref="QuantizedMatMul.Reference"/>), for every type, at odd sizes, with outputs pre-filled with garbage and
/// a sentinel past the end. CI reruns the Kernels namespace with AVX-512 off and with every intrinsic off.
/// </summary>
public sealed class QuantizedMatMulTests
{
    public static TheoryData<GgmlType> Types => QuantizedMatVecTests.Types;

    [Theory]
    [MemberData(nameof(Types))]
    public void ProductsMatchDequantizeThenFloat32(GgmlType type)
    {
        var random = new Random((int)type + 31);
        int per = GgmlTypes.BlockValues(type);
        // (rows N, columns K): small; large enough to be split between threads; more rows than one dequantized panel.
        (int Rows, int Columns)[] shapes = per == 1 ? [(7, 33), (301, 255), (700, 768)] : per == 32 ? [(7, 96), (301, 544), (700, 768)] : [(7, 256), (301, 512), (700, 768)];
        foreach (var (n, k) in shapes)
        {
            byte[] weights = QuantizedMatVecTests.RandomBlocks(type, n, k, random);
            var dense = new float[n * k];
            Dequantize.Reference(type, weights, dense);
            foreach (int m in new[] { 1, 2, QuantizedMatMul.FewVectorsFor(type), QuantizedMatMul.FewVectorsFor(type) + 1, 5, QuantizedMatMul.FewVectors, QuantizedMatMul.FewVectors + 1, 23 })
            {
                var x = Enumerable.Range(0, m * k).Select(_ => (float)((random.NextDouble() * 2) - 1)).ToArray();
                var expected = new float[m * n];
                QuantizedMatMul.Reference(type, weights, n, k, x, m, expected);
                var fast = Enumerable.Repeat(float.NaN, (m * n) + 1).ToArray();
                fast[m * n] = 12345f;
                QuantizedMatMul.Forward(type, weights, n, k, x, m, fast);
                Assert.Equal(12345f, fast[m * n]);
                for (int i = 0; i < m; i++)
                {
                    for (int j = 0; j < n; j++)
                    {
                        // float32 sums of K products in another order: the error grows with Σ|w·x| (see QuantizedMatVecTests
                        // for the second term).
                        double scale = 0, largest = 0;
                        for (int p = 0; p < k; p++)
                        {
                            scale += Math.Abs((double)dense[(j * k) + p] * x[(i * k) + p]);
                            largest = Math.Max(largest, Math.Abs(dense[(j * k) + p]));
                        }

                        double tolerance = (1e-5 * scale) + (2e-6 * k * largest) + 1e-6;
                        Assert.True(Math.Abs(fast[(i * n) + j] - expected[(i * n) + j]) <= tolerance,
                            $"{type} [{m}, {k}]·[{n}, {k}]ᵀ at ({i}, {j}): {fast[(i * n) + j]} vs {expected[(i * n) + j]} " +
                            $"(Vector512 {Vector512.IsHardwareAccelerated}, Vector256 {Vector256.IsHardwareAccelerated}, threads {ComputeThreads.Count})");
                    }
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void PanelsDecodedAsTheProductAsksGiveTheBitsOfTheDequantizedProduct(GgmlType type)
    {
        var random = new Random((int)type + 77);
        int per = GgmlTypes.BlockValues(type);
        // Three depth blocks; N not a whole number of panels; blocks small enough that every loop of the product runs
        // several times, and this machine's own.
        int k = per == 1 ? 3 * 96 : 3 * Math.Max(per, 64), n = (3 * Gemm.TileColumns) + 5;
        byte[] weights = QuantizedMatVecTests.RandomBlocks(type, n, k, random);
        var dense = new float[n * k];
        Dequantize.Reference(type, weights, dense);
        GemmBlocking[] blockings = [new(96, 2 * Gemm.TileRows, 2 * Gemm.TileColumns), new(per == 256 ? 160 : 72, Gemm.TileRows, Gemm.TileColumns), GemmBlocking.ForThisMachine];
        foreach (var blocking in blockings)
        {
            // Fewer rows than one A block (each panel decoded right before its use) and more (panels decoded into the
            // block the threads share).
            foreach (int m in new[] { QuantizedMatMul.FewVectors + 1, 5 * Gemm.TileRows + 3 })
            {
                var x = Enumerable.Range(0, m * k).Select(_ => (float)((random.NextDouble() * 2) - 1)).ToArray();
                var actual = Enumerable.Repeat(float.NaN, (m * n) + 1).ToArray();
                actual[m * n] = 12345f;
                if (!Gemm.TakesPanels)
                {
                    // No vector unit: Forward keeps decoded rows through Gemm.Multiply, and this entry refuses.
                    Assert.Throws<ArgumentException>(() => QuantizedMatMul.MultiplyDecodingPanels(type, weights, n, k, x, m, actual, blocking));
                    return;
                }

                QuantizedMatMul.MultiplyDecodingPanels(type, weights, n, k, x, m, actual, blocking);
                var expected = new float[m * n];
                Gemm.MultiplyWith(QuantizedMatMul.WholeBlocks(type, blocking), false, true, m, n, k, x, k, dense, k, expected, n, accumulate: false, threads: 0);
                Assert.Equal(12345f, actual[m * n]);
                Assert.Equal(expected, actual.AsSpan(0, m * n).ToArray());
            }
        }
    }

    [Theory]
    [InlineData(GgmlType.Q4_K, 160, 256)]
    [InlineData(GgmlType.Q6_K, 352, 256)]
    [InlineData(GgmlType.Q4_K, 400, 512)]
    [InlineData(GgmlType.Q4_K, 64, 256)]
    [InlineData(GgmlType.Q8_0, 160, 160)]
    [InlineData(GgmlType.Q8_0, 100, 96)]
    [InlineData(GgmlType.Q4_0, 10, 32)]
    [InlineData(GgmlType.F16, 161, 161)]
    public void TheDepthBlockIsRoundedToWholeBlocksOfTheType(GgmlType type, int depth, int rounded)
    {
        var blocking = new GemmBlocking(depth, 48, 512);
        Assert.Equal(blocking with { Depth = rounded }, QuantizedMatMul.WholeBlocks(type, blocking));
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void DequantizedRowsEqualTheReferenceDecoding(GgmlType type)
    {
        var random = new Random((int)type + 5);
        int k = GgmlTypes.BlockValues(type) == 1 ? 301 : GgmlTypes.BlockValues(type) == 32 ? 96 : 512;
        int n = 300; // enough values to be split between threads
        byte[] weights = QuantizedMatVecTests.RandomBlocks(type, n, k, random);
        var expected = new float[n * k];
        Dequantize.Reference(type, weights, expected);
        var actual = Enumerable.Repeat(float.NaN, (n * k) + 1).ToArray();
        actual[n * k] = 7f;
        QuantizedMatMul.DequantizeRows(type, weights, n, k, actual);
        Assert.Equal(7f, actual[n * k]);
        Assert.Equal(expected, actual.AsSpan(0, n * k).ToArray());
    }

    [Theory]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    public void EverySixteenBitPatternWidensToItsExactValue(GgmlType type)
    {
        // Row r holds bit pattern r at column r mod 37 (in the vector loop or the tail) and zeros elsewhere; x is all
        // ones, so y[r] is that one value: subnormals, ±0, the largest values, ±infinity and NaNs included.
        const int columns = 37, rows = 65536;
        var bytes = new byte[rows * columns * 2];
        for (int r = 0; r < rows; r++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(((r * columns) + (r % columns)) * 2), (ushort)r);
        }

        var x = Enumerable.Repeat(1f, columns).ToArray();
        var y = new float[rows];
        QuantizedMatVec.Forward(type, bytes, rows, columns, x, y);
        for (int r = 0; r < rows; r++)
        {
            float expected = type == GgmlType.F16 ? (float)BitConverter.UInt16BitsToHalf((ushort)r) : BitConverter.Int32BitsToSingle(r << 16);
            // Zeros add nothing, except that −0 + 0 = +0: compare values (and NaN with NaN).
            Assert.True(float.IsNaN(expected) ? float.IsNaN(y[r]) : y[r] == expected, $"{type} bits 0x{r:X4}: {y[r]} vs {expected}");
        }
    }

    [Fact]
    public unsafe void LinearWeightMultipliesAndLooksUpRowsWhicheverWayItIsStored()
    {
        var random = new Random(3);
        int n = 37, k = 64, m = 11;
        byte[] bytes = QuantizedMatVecTests.RandomBlocks(GgmlType.Q8_0, n, k, random);
        var dense = new float[n * k];
        Dequantize.Reference(GgmlType.Q8_0, bytes, dense);
        var bias = Enumerable.Range(0, n).Select(i => i * 0.5f).ToArray();
        var x = Enumerable.Range(0, m * k).Select(_ => (float)random.NextDouble()).ToArray();
        fixed (byte* pointer = bytes)
        {
            var stored = new LinearWeight(new QuantizedMatrix("w", GgmlType.Q8_0, n, k, pointer, bytes.Length, bytes));
            var plain = new LinearWeight(new Tensor("w", [n, k], dense, 0));
            Assert.Equal(GgmlType.Q8_0, stored.Type);
            Assert.Equal(bytes.Length, stored.Bytes);
            Assert.Equal(dense, stored.ToFloat32().ToArray());
            var row = new float[k];
            stored.Row(5, row);
            Assert.Equal(dense.AsSpan(5 * k, k).ToArray(), row);
            Assert.Contains("Q8_0", Assert.Throws<HeadLensException>(() => stored.Span.Length).Message, StringComparison.Ordinal);
            foreach (int rows in new[] { 1, m })
            {
                var fromStored = new float[rows * n];
                var fromPlain = new float[rows * n];
                stored.Forward(x.AsSpan(0, rows * k), bias, rows, fromStored);
                plain.Forward(x.AsSpan(0, rows * k), bias, rows, fromPlain);
                var expected = new float[rows * n];
                MatMul.Forward(x.AsSpan(0, rows * k), dense, bias, rows, n, k, expected);
                Assert.Equal(expected, fromPlain);
                Assert.All(Enumerable.Range(0, rows * n), i => Assert.True(Math.Abs(fromStored[i] - expected[i]) <= 1e-4 * (1 + Math.Abs(expected[i])), $"{i}: {fromStored[i]} vs {expected[i]}"));
            }
        }
    }
    /// <summary>
    /// LinearWeight.ForwardShared (a layer's Q, K, V or gate and up in one product when decoding) gives each weight
    /// exactly its own Forward, bit for bit, with biases: one product for matrices of one type and width, and the
    /// separate products where it cannot be one (mixed types, fp32 weights in the arena, more rows than a decode step,
    /// not decoding).
    /// </summary>
    [Fact]
    public unsafe void SharedInputProductsEqualEachWeightsOwnForward()
    {
        var random = new Random(5);
        int k = 96;
        int[] rows = [40, 7, 700];
        GgmlType[][] typeSets = [[GgmlType.Q8_0, GgmlType.Q8_0, GgmlType.Q8_0], [GgmlType.F16, GgmlType.F16, GgmlType.F16], [GgmlType.F32, GgmlType.F32, GgmlType.F32], [GgmlType.Q8_0, GgmlType.F16, GgmlType.Q8_0]];
        foreach (var types in typeSets)
        {
            byte[][] bytes = [.. rows.Select((n, i) => QuantizedMatVecTests.RandomBlocks(types[i], n, k, random))];
            float[][] biases = [.. rows.Select(n => Enumerable.Range(0, n).Select(_ => (float)random.NextDouble()).ToArray())];
            fixed (byte* b0 = bytes[0], b1 = bytes[1], b2 = bytes[2])
            {
                nint[] starts = [(nint)b0, (nint)b1, (nint)b2];
                LinearWeight[] stored = [.. rows.Select((n, i) => new LinearWeight(new QuantizedMatrix($"w{i}", types[i], n, k, (byte*)starts[i], bytes[i].Length, bytes[i])))];
                LinearWeight[] plain = [.. stored.Select(w => new LinearWeight(new Tensor(w.Name, [w.Rows, k], w.ToFloat32().ToArray(), 0)))];
                foreach (var weights in new[] { stored, plain })
                {
                    foreach (var (m, decoding) in new[] { (1, true), (3, true), (QuantizedMatMul.FewVectors + 3, true), (1, false) })
                    {
                        var x = Enumerable.Range(0, m * k).Select(_ => (float)((random.NextDouble() * 2) - 1)).ToArray();
                        float[][] shared = [.. rows.Select(n => new float[m * n])];
                        LinearWeight.ForwardShared(x, m, decoding, weights[0], biases[0], shared[0], weights[1], biases[1], shared[1], weights[2], biases[2], shared[2]);
                        float[][] pair = [.. rows.Take(2).Select(n => new float[m * n])];
                        LinearWeight.ForwardShared(x, m, decoding, weights[0], biases[0], pair[0], weights[1], [], pair[1]);
                        for (int i = 0; i < rows.Length; i++)
                        {
                            var own = new float[m * rows[i]];
                            weights[i].Forward(x, biases[i], m, own, decoding);
                            string where = $"{string.Join("/", types)} ({(weights == stored ? "stored" : "fp32")}) weight {i}, {m} rows, decoding {decoding}";
                            Assert.True(own.AsSpan().SequenceEqual(shared[i]), where);
                            if (i < 2)
                            {
                                weights[i].Forward(x, i == 0 ? biases[i] : [], m, own, decoding);
                                Assert.True(own.AsSpan().SequenceEqual(pair[i]), where + ", two weights");
                            }
                        }
                    }
                }
            }
        }
    }
}
