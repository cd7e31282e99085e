using System.Buffers.Binary;
using HeadLens.Kernels.Quantized;

namespace HeadLens.Tests.Kernels;

/// <summary>
/// The opt-in 8-bit-activation products (Q8Activations, IntegerDot, QuantizedMatVecQ8): the activations' quantization
/// against its definition and its scalar reference (bit for bit), the scalar integer dot against a float64 product of
/// the dequantized operands, the AVX-512BW dot against the scalar one (exactly where every float step is exact,
/// else within float rounding), the threaded product against its reference, and the error the quantization of the
/// activations adds to the fp32 product. CI reruns this namespace with AVX-512 off and with every intrinsic off
/// (then Forward takes the scalar arithmetic, and the fast-against-reference checks compare it with itself).
/// </summary>
public sealed class IntegerDotTests
{
    public static TheoryData<GgmlType> Types => [GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];

    private static float[] RandomVector(Random random, int length, float magnitude) =>
        [.. Enumerable.Range(0, length).Select(_ => (float)((random.NextDouble() * 2) - 1) * magnitude)];

    [Theory]
    [InlineData(32)]
    [InlineData(256)]
    public void QuantizationFollowsItsDefinitionAndTheFastPathEqualsTheReference(int block)
    {
        var random = new Random(block);
        int vectors = 3, columns = block * 4;
        var x = RandomVector(random, vectors * columns, 3);
        Array.Clear(x, block, block);                        // an all-zero block: scale 0, values 0
        x[2 * block] = -7.5f;                                // a block whose largest magnitude is negative
        x[3 * block] = 127f;                                 // scale 1: the values k + ½ below are the rounding's ties
        for (int i = (3 * block) + 1; i < 4 * block; i++)
        {
            x[i] = random.Next(-120, 120) + 0.5f;
        }

        var reference = new Q8Activations();
        reference.Quantize(x, vectors, columns, block, reference: true);
        var fast = new Q8Activations();
        fast.Quantize(x, vectors, columns, block);
        Assert.Equal(reference.Values.ToArray(), fast.Values.ToArray());
        Assert.Equal(reference.Scales.ToArray(), fast.Scales.ToArray());
        Assert.Equal(reference.Sums.ToArray(), fast.Sums.ToArray());
        Assert.Equal(block == 256 ? vectors * columns / 16 : 0, fast.Sums.Length);
        Assert.Equal(block == 256 ? vectors * columns : 0, fast.Paired.Length);
        for (int i = 0; i < fast.Paired.Length; i++)
        {
            // Runs of 32 in the order 0, 2, 1, 3 within each 128 values.
            int run = i / 32, source = ((run & ~3) | ((run & 1) << 1) | ((run >> 1) & 1)) * 32;
            Assert.Equal(fast.Values[source + (i % 32)], fast.Paired[i]);
        }


        for (int b = 0; b < vectors * columns / block; b++)
        {
            float amax = x.AsSpan(b * block, block).ToArray().Max(MathF.Abs);
            Assert.Equal(amax / 127f, fast.Scales[b]);
            for (int i = b * block; i < (b + 1) * block; i++)
            {
                int expected = amax == 0 ? 0 : (int)MathF.Round(x[i] * (127f / amax), MidpointRounding.ToEven);
                Assert.Equal(expected, fast.Values[i]);
                Assert.InRange(fast.Values[i], -127, 127);
                // x ≈ d·q within half a step (the step's own float rounding aside).
                Assert.True(Math.Abs(x[i] - ((double)fast.Scales[b] * fast.Values[i])) <= (amax / 254.0 * (1 + 1e-5)) + 1e-30, $"value {i}");
            }
        }

        for (int j = 0; j < fast.Sums.Length; j++)
        {
            int sum = 0;
            for (int i = 16 * j; i < (16 * j) + 16; i++)
            {
                sum += fast.Values[i];
            }

            Assert.Equal(sum, fast.Sums[j]);
        }
    }

    /// <summary>Σ over a row of |the float terms the dot adds| (the scale of its rounding error), in float64.</summary>
    private static double Magnitude(GgmlType type, byte[] row, int columns, Q8Activations x)
    {
        var dense = new float[columns];
        Dequantize.Reference(type, row, dense);
        double magnitude = 0;
        for (int i = 0; i < columns; i++)
        {
            double activation = Math.Abs((double)x.Scales[i / x.BlockValues] * x.Values[i]);
            double weight = Math.Abs(dense[i]);
            if (type is GgmlType.Q4_K or GgmlType.Q5_K)
            {
                // The scale and the min parts are summed apart: each can exceed their difference.
                int size = GgmlTypes.BlockBytes(type);
                var block = row.AsSpan(size * (i / 256), size);
                var (scale, min) = Dequantize.ScaleMin(block.Slice(4, 12), i % 256 / 32);
                weight = (Math.Abs(Dequantize.Half(block, 0)) * scale * (type == GgmlType.Q4_K ? 15 : 31)) + (Math.Abs(Dequantize.Half(block, 2)) * min);
            }

            magnitude += weight * activation;
        }

        return magnitude;
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void ReferenceDotEqualsTheProductOfTheDequantizedOperands(GgmlType type)
    {
        // Checks the integer formulas and the block layouts: Σ dequantized weight · (d·q) in float64.
        var random = new Random(11 + (int)type);
        int columns = type == GgmlType.Q8_0 ? 96 : 768;
        for (int trial = 0; trial < 20; trial++)
        {
            byte[] row = QuantizedMatVecTests.RandomBlocks(type, 1, columns, random);
            var x = new Q8Activations();
            x.Quantize(RandomVector(random, columns, 2), 1, columns, Q8Activations.BlockFor(type), reference: true);
            var dense = new float[columns];
            Dequantize.Reference(type, row, dense);
            double expected = 0;
            for (int i = 0; i < columns; i++)
            {
                expected += (double)dense[i] * x.Scales[i / x.BlockValues] * x.Values[i];
            }

            float actual = IntegerDot.Reference(type, row, columns, x.Values, x.Scales, x.Sums);
            // Float32 rounding of the block factors and the sums (≤ columns/16 + 8 roundings of terms ≤ the magnitude).
            double tolerance = ((columns / 16) + 8) * Math.Pow(2, -23) * Magnitude(type, row, columns, x);
            Assert.True(Math.Abs(actual - expected) <= tolerance, $"{type} trial {trial}: {actual} vs {expected} (tolerance {tolerance})");
        }
    }

    /// <summary>
    /// Machines without the AVX kernels (Arm, x86 without AVX2) unpack each row once and multiply it with every vector
    /// (DecodedRow): the reference's bits. Here with Vector128 (the tests' first pass) and with scalar code (CI's pass
    /// with every intrinsic off). One row decoder reused for several rows, as the product's threads do; rows of every
    /// byte pattern (Q8_0's −128 included) and vectors with a zero block and one dominating value.
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void DecodedRowGivesTheReferenceDotBitForBit(GgmlType type)
    {
        var random = new Random(29 + (int)type);
        int columns = type == GgmlType.Q8_0 ? 544 : 768, rows = 6, rowBytes = (int)GgmlTypes.RowBytes(type, columns);
        byte[] weights = QuantizedMatVecTests.RandomBlocks(type, rows, columns, random);
        var decoded = new DecodedRow(type, columns);
        for (int r = 0; r < rows; r++)
        {
            var row = weights.AsSpan(r * rowBytes, rowBytes);
            decoded.Decode(row);
            for (int trial = 0; trial < 4; trial++)
            {
                var values = RandomVector(random, columns, 2);
                values.AsSpan(0, 32).Clear();
                values[40 + trial] = 1e4f;
                var x = new Q8Activations();
                x.Quantize(values, 1, columns, Q8Activations.BlockFor(type), reference: true);
                float expected = IntegerDot.Reference(type, row, columns, x.Values, x.Scales, x.Sums);
                float actual = decoded.Dot(x.Values, x.Scales, x.Sums);
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual), $"{type} row {r} trial {trial}: {actual:R} vs {expected:R}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void FastDotEqualsTheReferenceExactlyWhenEveryFloatStepIsExact(GgmlType type)
    {
        // Power-of-two scales (weights 2⁻¹², activations 2⁻⁷) and integer sums far below 2²⁴: every float product and
        // sum of the combination is exact in both paths, so equal results mean equal integer sums.
        var random = new Random(23 + (int)type);
        int columns = type == GgmlType.Q8_0 ? 32 * 7 : 512; // Q8_0: an odd number of blocks takes the one-block tail too
        for (int trial = 0; trial < 20; trial++)
        {
            byte[] row = QuantizedMatVecTests.RandomBlocks(type, 1, columns, random);
            int size = GgmlTypes.BlockBytes(type);
            for (int block = 0; block < row.Length / size; block++)
            {
                foreach (int at in type switch { GgmlType.Q8_0 => new[] { 0 }, GgmlType.Q4_K or GgmlType.Q5_K => [0, 2], _ => [208] })
                {
                    BinaryPrimitives.WriteHalfLittleEndian(row.AsSpan((block * size) + at), (Half)(1f / 4096));
                }

                if (type == GgmlType.Q6_K)
                {
                    for (int j = 0; j < 16; j++)
                    {
                        row[(block * size) + 192 + j] = (byte)(sbyte)random.Next(-31, 32); // small run scales: sums stay far below 2²⁴
                    }
                }
            }

            // Values k·2⁻⁷ with one ±127·2⁻⁷ per block: amax = 127·2⁻⁷, so the scale is exactly 2⁻⁷ and q = k.
            int blockValues = Q8Activations.BlockFor(type);
            var values = new float[columns];
            for (int i = 0; i < columns; i++)
            {
                values[i] = (i % blockValues == 0 ? (random.Next(2) == 0 ? -127 : 127) : random.Next(-15, 16)) / 128f;
            }

            var x = new Q8Activations();
            x.Quantize(values, 1, columns, blockValues);
            Assert.All(x.Scales.ToArray(), scale => Assert.Equal(1f / 128, scale));
            // The largest partial sum either path can form, in units of 2⁻¹²·2⁻⁷ (Q6_K sums u·q and 32·q apart: |u| + 32 ≤ 95).
            double bound = 0;
            for (int i = 0; i < columns; i++)
            {
                var block = row.AsSpan(size * (i / GgmlTypes.BlockValues(type)), size);
                double weight = type switch
                {
                    GgmlType.Q8_0 => Math.Abs((int)(sbyte)block[2 + (i % 32)]),
                    GgmlType.Q4_K or GgmlType.Q5_K => (Dequantize.ScaleMin(block.Slice(4, 12), i % 256 / 32).Scale * (type == GgmlType.Q4_K ? 15 : 31)) + Dequantize.ScaleMin(block.Slice(4, 12), i % 256 / 32).Min,
                    _ => Math.Abs((int)(sbyte)block[192 + (i % 256 / 16)]) * 95,
                };
                bound += weight * Math.Abs((int)x.Values[i]);
            }

            Assert.True(bound < 1 << 24, $"{type}: integer sums up to {bound} are not exact in float32");

            float expected = IntegerDot.Reference(type, row, columns, x.Values, x.Scales, x.Sums);
            Assert.Equal(expected, Fast(type, row, columns, x));
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void FastDotMatchesTheReferenceWithinFloatRounding(GgmlType type)
    {
        var random = new Random(31 + (int)type);
        foreach (int columns in type == GgmlType.Q8_0 ? new[] { 32, 64, 96, 2048, 2080 } : [256, 768, 2048, 5632])
        {
            byte[] row = QuantizedMatVecTests.RandomBlocks(type, 1, columns, random);
            var x = new Q8Activations();
            x.Quantize(RandomVector(random, columns, 4), 1, columns, Q8Activations.BlockFor(type));
            float expected = IntegerDot.Reference(type, row, columns, x.Values, x.Scales, x.Sums);
            float actual = Fast(type, row, columns, x);
            // The same integer sums (the test above); the float factors applied per lane and summed in another order:
            // each path rounds at most columns/16 + 32 times, each rounding ≤ 2⁻²⁴ of the magnitude.
            double tolerance = ((columns / 16) + 32) * Math.Pow(2, -23) * Magnitude(type, row, columns, x);
            Assert.True(Math.Abs(actual - expected) <= tolerance, $"{type} [{columns}]: {actual} vs {expected} (tolerance {tolerance})");
        }
    }

    /// <summary>
    /// One activation far above the rest of its block (an outlier channel, common in LLMs: the others quantize to 0 or
    /// ±1): Q6_K's fast dots sum each block's integers as the reference does, so they give its bits exactly (their
    /// −32 terms, converted to float apart from the values they correct, once lost up to 1e-3 of the result here);
    /// Q8_0 and Q4_K stay within float rounding of the terms' magnitudes.
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void FastDotKeepsTheReferencesResultWithAnOutlierActivation(GgmlType type)
    {
        var random = new Random(37 + (int)type);
        int columns = type == GgmlType.Q8_0 ? 96 : 768;
        for (int trial = 0; trial < 400; trial++)
        {
            byte[] row = QuantizedMatVecTests.RandomBlocks(type, 1, columns, random);
            var values = RandomVector(random, columns, 2);
            values[random.Next(columns)] = 3e4f;
            var x = new Q8Activations();
            x.Quantize(values, 1, columns, Q8Activations.BlockFor(type));
            float expected = IntegerDot.Reference(type, row, columns, x.Values, x.Scales, x.Sums);
            float actual = Fast(type, row, columns, x);
            if (type == GgmlType.Q6_K)
            {
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual), $"Q6_K trial {trial}: {actual:R} vs {expected:R}");
            }
            else
            {
                double tolerance = ((columns / 16) + 32) * Math.Pow(2, -23) * Magnitude(type, row, columns, x);
                Assert.True(Math.Abs(actual - expected) <= tolerance, $"{type} trial {trial}: {actual} vs {expected} (tolerance {tolerance})");
            }
        }
    }

    /// <summary>
    /// HalfTable holds every half's float32 value: System.Half's conversion bit for bit (zeros, subnormals,
    /// infinities), a NaN for every NaN, and BlockDecoder.Half's bits everywhere (it keeps a NaN's payload unquieted).
    /// </summary>
    [Fact]
    public unsafe void HalfTableHoldsEveryHalfsValue()
    {
        for (int bits = 0; bits < 65536; bits++)
        {
            ushort half = (ushort)bits;
            float value = HalfTable.Values[bits], expected = (float)BitConverter.UInt16BitsToHalf(half);
            Assert.Equal(BitConverter.SingleToInt32Bits(BlockDecoder.Half((byte*)&half)), BitConverter.SingleToInt32Bits(value));
            if (float.IsNaN(expected))
            {
                Assert.True(float.IsNaN(value), $"half 0x{bits:X4}");
            }
            else
            {
                Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(value));
            }
        }
    }

    /// <summary>
    /// The fast dots read the block scales' rare halves as the reference does: zero, negative zero, subnormal and the
    /// largest finite d and dmin, block by block in one row (the sums stay within float rounding of each other).
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void FastDotReadsZeroSubnormalAndExtremeBlockScalesAsTheReference(GgmlType type)
    {
        var random = new Random(41 + (int)type);
        Half[] rare = [(Half)0f, BitConverter.UInt16BitsToHalf(0x8000), BitConverter.UInt16BitsToHalf(0x0001), BitConverter.UInt16BitsToHalf(0x83FF),
            BitConverter.UInt16BitsToHalf(0x0400), Half.MaxValue, (Half)(-0.001f)];
        int columns = 256 * 8;
        byte[] row = QuantizedMatVecTests.RandomBlocks(type, 1, columns, random);
        int size = GgmlTypes.BlockBytes(type);
        for (int block = 0; block < row.Length / size; block++)
        {
            foreach (int at in type switch { GgmlType.Q8_0 => new[] { 0 }, GgmlType.Q4_K or GgmlType.Q5_K => [0, 2], _ => [208] })
            {
                BinaryPrimitives.WriteHalfLittleEndian(row.AsSpan((block * size) + at), rare[random.Next(rare.Length)]);
            }
        }

        var x = new Q8Activations();
        x.Quantize(RandomVector(random, columns, 2), 1, columns, Q8Activations.BlockFor(type));
        float expected = IntegerDot.Reference(type, row, columns, x.Values, x.Scales, x.Sums);
        float actual = Fast(type, row, columns, x);
        Assert.True(float.IsFinite(expected), $"{type}: the reference gave {expected}");
        double tolerance = ((columns / 16) + 32) * Math.Pow(2, -23) * Magnitude(type, row, columns, x);
        Assert.True(Math.Abs(actual - expected) <= tolerance, $"{type}: {actual} vs {expected} (tolerance {tolerance})");
    }

    // IntegerDot.Dot512 where the machine has AVX-512BW, Dot256 where it has AVX2 only, else the reference (what
    // Forward then uses).
    private static unsafe float Fast(GgmlType type, byte[] row, int columns, Q8Activations x)
    {
        if (!IntegerDot.Is512 && !IntegerDot.Is256)
        {
            return IntegerDot.Reference(type, row, columns, x.Values, x.Scales, x.Sums);
        }

        fixed (byte* r = row)
        fixed (sbyte* q = x.Values, paired = x.Paired)
        fixed (float* s = x.Scales)
        fixed (short* sums = x.Sums)
        {
            return IntegerDot.Is512 ? IntegerDot.Dot512(type, r, columns, q, paired, s, sums) : IntegerDot.Dot256(type, r, columns, q, s, sums);
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void ThreadedProductMatchesItsReferenceForOneAndManyVectors(GgmlType type)
    {
        var random = new Random(41 + (int)type);
        int columns = type == GgmlType.Q8_0 ? 544 : 768;
        // 301 rows: enough bytes to split between the threads; 9 vectors: a prompt's path (with AVX, Gemm over the
        // dequantized x̂ or the blocked product; without, DecodedRow as for fewer vectors).
        foreach (int rows in new[] { 1, 3, 17, 301 })
        {
            byte[] weights = QuantizedMatVecTests.RandomBlocks(type, rows, columns, random);
            foreach (int vectors in new[] { 1, 3, 9 })
            {
                var x = RandomVector(random, vectors * columns, 1.5f);
                var reference = new float[vectors * rows];
                var fast = Enumerable.Repeat(float.NaN, (vectors * rows) + 1).ToArray(); // garbage, and a sentinel past the end
                fast[^1] = 12345f;
                QuantizedMatVecQ8.Reference(type, weights, rows, columns, x, vectors, reference);
                QuantizedMatVecQ8.Forward(type, weights, rows, columns, x, vectors, fast);
                Assert.Equal(12345f, fast[^1]);
                var quantized = new Q8Activations();
                quantized.Quantize(x, vectors, columns, Q8Activations.BlockFor(type), reference: true);
                int rowBytes = (int)GgmlTypes.RowBytes(type, columns);
                for (int v = 0; v < vectors; v++)
                {
                    var one = new Q8Activations();
                    one.Quantize(x.AsSpan(v * columns, columns), 1, columns, Q8Activations.BlockFor(type), reference: true);
                    for (int r = 0; r < rows; r++)
                    {
                        byte[] row = weights.AsSpan(r * rowBytes, rowBytes).ToArray();
                        double tolerance = ((columns / 16) + 32) * Math.Pow(2, -23) * Magnitude(type, row, columns, one);
                        int i = (v * rows) + r;
                        Assert.True(Math.Abs(fast[i] - reference[i]) <= tolerance, $"{type} [{rows}, {columns}] × {vectors}: vector {v} row {r}: {fast[i]} vs {reference[i]}");
                        if (!IntegerDot.Is512 && !IntegerDot.Is256)
                        {
                            Assert.Equal(reference[i], fast[i]); // every vector count: DecodedRow, the reference's arithmetic
                        }
                    }
                }
            }
        }
    }

    public static TheoryData<GgmlType> SuperBlockTypes => [GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];

    /// <summary>
    /// Prompts (IntegerMatMul.FromVectors vectors or more) of K-quant rows go through the blocked integer product
    /// (IntegerMatMul), which keeps IntegerDot.Reference's integer sums and its float steps in its order: every output
    /// equals the reference's bit for bit. Rows: one, a partial panel, whole panels and a partial one after them;
    /// vectors: whole tiles of four and remainders of one to three; edge activations (all zero, one huge value).
    /// </summary>
    [Theory]
    [MemberData(nameof(SuperBlockTypes))]
    public void BlockedProductForPromptsEqualsTheReferenceBitForBit(GgmlType type)
    {
        var random = new Random(57 + (int)type);
        foreach (int columns in new[] { 256, 768 })
        {
            foreach (int rows in new[] { 1, 17, 64, 97 })
            {
                byte[] weights = QuantizedMatVecTests.RandomBlocks(type, rows, columns, random);
                foreach (int vectors in new[] { IntegerMatMul.FromVectors, 9, 14, 15 })
                {
                    var x = RandomVector(random, vectors * columns, 2f);
                    x.AsSpan(columns, columns).Clear(); // a vector of zeros: scale 0
                    x[(2 * columns) + 5] = 3e4f; // one value dominates its block: the rest round to 0 or ±1
                    var reference = new float[vectors * rows];
                    var fast = Enumerable.Repeat(float.NaN, (vectors * rows) + 1).ToArray();
                    fast[^1] = 12345f;
                    QuantizedMatVecQ8.Reference(type, weights, rows, columns, x, vectors, reference);
                    QuantizedMatVecQ8.Forward(type, weights, rows, columns, x, vectors, fast);
                    Assert.Equal(12345f, fast[^1]);
                    if (IntegerDot.Is512)
                    {
                        // The AVX2 kernels run here too: the same bits as the reference.
                        var narrow = Blocked(type, weights, rows, columns, x, vectors, wide: false);
                        for (int i = 0; i < reference.Length; i++)
                        {
                            Assert.True(BitConverter.SingleToInt32Bits(reference[i]) == BitConverter.SingleToInt32Bits(narrow[i]),
                                $"{type} AVX2 [{rows}, {columns}] × {vectors}: vector {i / rows} row {i % rows}: {narrow[i]:R} vs {reference[i]:R}");
                        }
                    }

                    for (int i = 0; i < reference.Length; i++)
                    {
                        if (IntegerMatMul.Supports(type))
                        {
                            Assert.True(BitConverter.SingleToInt32Bits(reference[i]) == BitConverter.SingleToInt32Bits(fast[i]),
                                $"{type} [{rows}, {columns}] × {vectors}: vector {i / rows} row {i % rows}: {fast[i]:R} vs {reference[i]:R}");
                        }
                        else
                        {
                            // Without AVX2: the row dots' scalar arithmetic or the fp32 panel product of x̂, within
                            // float rounding of the terms' magnitudes (as ThreadedProductMatchesItsReference… bounds it).
                            var one = new Q8Activations();
                            one.Quantize(x.AsSpan(i / rows * columns, columns), 1, columns, 256, reference: true);
                            int rowBytes = (int)GgmlTypes.RowBytes(type, columns);
                            double tolerance = ((columns / 16) + 32) * Math.Pow(2, -23) * Magnitude(type, weights.AsSpan(i % rows * rowBytes, rowBytes).ToArray(), columns, one);
                            Assert.True(Math.Abs(fast[i] - reference[i]) <= tolerance, $"{type}: {fast[i]} vs {reference[i]}");
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// The blocked product's 16-bit sums hold at their extremes: every weight at its largest value (Q4_K 15, Q5_K 31,
    /// Q6_K 63) against activations all at +127 or alternating ±127 per value pair, where one more step per chunk
    /// would overflow; every output equals the reference's bit for bit, with both kernel widths where present.
    /// </summary>
    [Theory]
    [MemberData(nameof(SuperBlockTypes))]
    public void BlockedProductKeepsItsSumsAtTheExtremes(GgmlType type)
    {
        if (!IntegerMatMul.Supports(type))
        {
            return;
        }

        var random = new Random(71 + (int)type);
        int columns = 512, rows = 40, vectors = 8, rowBytes = (int)GgmlTypes.RowBytes(type, columns), blockBytes = GgmlTypes.BlockBytes(type);
        byte[] weights = QuantizedMatVecTests.RandomBlocks(type, rows, columns, random);
        (int from, int to) values = type switch { GgmlType.Q4_K => (16, 144), GgmlType.Q5_K => (16, 176), _ => (0, 192) };
        for (int block = 0; block < rows * columns / 256; block++)
        {
            weights.AsSpan((block * blockBytes) + values.from, values.to - values.from).Fill(0xFF);
        }

        var x = new float[vectors * columns];
        for (int i = 0; i < x.Length; i++)
        {
            x[i] = i / columns % 2 == 0 ? 1f : (i / 2 % 2 == 0 ? 1f : -1f);
        }

        var reference = new float[vectors * rows];
        QuantizedMatVecQ8.Reference(type, weights, rows, columns, x, vectors, reference);
        foreach (bool wide in IntegerDot.Is512 ? new[] { true, false } : [false])
        {
            var fast = Blocked(type, weights, rows, columns, x, vectors, wide);
            for (int i = 0; i < reference.Length; i++)
            {
                Assert.True(BitConverter.SingleToInt32Bits(reference[i]) == BitConverter.SingleToInt32Bits(fast[i]),
                    $"{type} {(wide ? "AVX-512" : "AVX2")}: vector {i / rows} row {i % rows}: {fast[i]:R} vs {reference[i]:R}");
            }
        }
    }

    // IntegerMatMul's product with the 16-lane kernels (wide) or the 8-lane ones.
    private static unsafe float[] Blocked(GgmlType type, byte[] weights, int rows, int columns, float[] x, int vectors, bool wide)
    {
        var activations = new Q8Activations();
        activations.Quantize(x, vectors, columns, Q8Activations.BlockFor(type));
        var y = new float[vectors * rows];
        fixed (byte* w = weights)
        fixed (float* target = y)
        {
            IntegerMatMul.Multiply(type, w, rows, activations, target, wide);
        }

        return y;
    }

    /// <summary>
    /// The blocked product's panel holds, per row lane, the super-block's unsigned values four to a 32-bit lane in
    /// value order, and its scales, corrections and factors as the file header of IntegerMatMul says: read back
    /// against the reference decoding of each value (u = the value's 4 or 6 bits).
    /// </summary>
    [Theory]
    [MemberData(nameof(SuperBlockTypes))]
    public unsafe void BlockedProductPanelHoldsEachRowsValuesInOrder(GgmlType type)
    {
        if (!IntegerMatMul.Supports(type))
        {
            Assert.False(IntegerDot.Is512 || IntegerDot.Is256, "the blocked product is missing where AVX-512BW or AVX2 is present");
            return;
        }

        foreach (bool wide in IntegerDot.Is512 ? new[] { true, false } : [false])
        {
            PanelHoldsEachRowsValuesInOrder(type, wide);
        }
    }

    private static unsafe void PanelHoldsEachRowsValuesInOrder(GgmlType type, bool wide)
    {

        var random = new Random(61 + (int)type);
        int columns = 512, rows = 21, rowBytes = (int)GgmlTypes.RowBytes(type, columns);
        byte[] weights = QuantizedMatVecTests.RandomBlocks(type, rows, columns, random);
        var panel = new byte[16 << 10];
        fixed (byte* w = weights)
        fixed (byte* target = panel)
        {
            for (int b = 0; b < columns / 256; b++)
            {
                IntegerMatMul.BuildPanel(type, w + (b * GgmlTypes.BlockBytes(type)), rowBytes, rows, target, wide);
                for (int r = 0; r < rows; r++)
                {
                    var block = weights.AsSpan((r * rowBytes) + (b * GgmlTypes.BlockBytes(type)), GgmlTypes.BlockBytes(type));
                    for (int i = 0; i < 256; i++)
                    {
                        int expected = type switch
                        {
                            GgmlType.Q4_K => (block[16 + (32 * (i / 64)) + (i % 32)] >> (4 * (i % 64 / 32))) & 0xF,
                            GgmlType.Q5_K => ((block[48 + (32 * (i / 64)) + (i % 32)] >> (4 * (i % 64 / 32))) & 0xF) | (((block[16 + (i % 32)] >> (i / 32)) & 1) << 4),
                            _ => Q6Value(block, i),
                        };
                        Assert.Equal(expected, target[((i / 4) * 128) + (4 * r) + (i % 4)]);
                    }

                    int groups = type == GgmlType.Q6_K ? 16 : 8;
                    for (int g = 0; g < groups; g++)
                    {
                        int scale = type == GgmlType.Q6_K ? (sbyte)block[192 + g] : Dequantize.ScaleMin(block.Slice(4, 12), g).Scale;
                        Assert.Equal(scale, ((short*)(target + 8192 + (g * 128) + (4 * r)))[0]);
                        Assert.Equal(scale, ((short*)(target + 8192 + (g * 128) + (4 * r)))[1]);
                    }
                }
            }
        }
    }

    // Value i of a Q6_K block as its unsigned six bits (ggml's layout: per 128 values, ql bytes l and l + 32 hold runs
    // 0 and 1 of 32 in their low nibbles and runs 2 and 3 in their high ones; qh byte l the two high bits of run r at bit 2r).
    private static int Q6Value(ReadOnlySpan<byte> block, int i)
    {
        int half = i / 128, run = i % 128 / 32, l = i % 32;
        int low = block[(64 * half) + l + (run % 2 == 1 ? 32 : 0)] >> (run < 2 ? 0 : 4);
        return (low & 0xF) | (((block[128 + (32 * half) + l] >> (2 * run)) & 3) << 4);
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void QuantizingTheActivationsMovesTheProductByAtMostItsRounding(GgmlType type)
    {
        // |W·x − W·x̂| ≤ Σ_i |w_i| · amax_b/254 (each x moves by at most half a step), plus float rounding: the error
        // the option adds, stated per product.
        var random = new Random(53 + (int)type);
        int rows = 64, columns = 2048;
        byte[] weights = QuantizedMatVecTests.RandomBlocks(type, rows, columns, random);
        var x = RandomVector(random, columns, 2);
        var exact = new float[rows];
        var q8 = new float[rows];
        QuantizedMatVec.Forward(type, weights, rows, columns, x, exact);
        QuantizedMatVecQ8.Forward(type, weights, rows, columns, x, 1, q8);
        var dense = new float[rows * columns];
        Dequantize.Reference(type, weights, dense);
        int block = Q8Activations.BlockFor(type);
        double worstShare = 0;
        for (int r = 0; r < rows; r++)
        {
            double bound = 0, magnitude = 0;
            for (int i = 0; i < columns; i++)
            {
                float amax = x.AsSpan(i / block * block, block).ToArray().Max(MathF.Abs);
                bound += Math.Abs(dense[(r * columns) + i]) * amax / 254;
                magnitude += Math.Abs(dense[(r * columns) + i] * x[i]);
            }

            double difference = Math.Abs(q8[r] - exact[r]);
            Assert.True(difference <= bound + (1e-5 * magnitude), $"{type} row {r}: {q8[r]} vs fp32 {exact[r]}, bound {bound}");
            worstShare = Math.Max(worstShare, difference / bound);
        }

        // Random rounding errors add up like a random walk, far inside the worst case: a share near 1 would mean a bias.
        Assert.True(worstShare < 0.25, $"{type}: the largest difference is {worstShare:P0} of its worst-case bound");
    }
}
