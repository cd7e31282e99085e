using System.Buffers.Binary;
using HeadLens.Kernels;
using HeadLens.Kernels.Quantized;

namespace HeadLens.Tests.Kernels;

/// <summary>
/// The F16 product of a QuantizedMatrix with x rearranged once per product (HalfDot, AVX-512 or AVX2): every 16-bit
/// pattern through each of its loops (64 values, 32 values, the scalar tail), weights full of zero and subnormal
/// halves (the matrix's exception list), several vectors, and the x it must refuse (|x| ≥ 2⁴⁷, infinity, NaN), each
/// against the dequantize-then-multiply reference. Where HalfDot is not supported (CI's runs with AVX-512 or every
/// intrinsic off) the same assertions check the path QuantizedMatVec takes instead.
/// </summary>
public sealed class HalfDotTests
{
    [Theory]
    [InlineData(0)]   // an even lane of the 64-value loop (101 columns: 64-value loop, one 32-value group, a tail of 5)
    [InlineData(17)]  // an odd lane
    [InlineData(62)]
    [InlineData(69)]  // the 32-value group
    [InlineData(98)]  // the scalar tail
    public void EverySixteenBitPatternMultipliesToItsExactValue(int column)
    {
        // Row r holds pattern r at `column` and 1.0 elsewhere; x is 4 at `column` and 0 elsewhere, so y[r] is that
        // pattern times 4, exactly. The ones keep the rest of each group normal, so a normal pattern goes through the
        // split conversion and only zeros, subnormals, infinities and NaNs through the exact groups (−0 + 0 = +0:
        // values are compared, NaN with NaN).
        const int rows = 65536, columns = 101;
        var bytes = new byte[rows * columns * 2];
        for (int r = 0; r < rows; r++)
        {
            for (int k = 0; k < columns; k++)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(((r * columns) + k) * 2), k == column ? (ushort)r : (ushort)0x3C00);
            }
        }

        var x = new float[columns];
        x[column] = 4f;
        var y = new float[rows];
        Multiply(bytes, rows, columns, x, 1, y);
        for (int r = 0; r < rows; r++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)r) * 4f;
            Assert.True(float.IsNaN(expected) ? float.IsNaN(y[r]) : y[r] == expected, $"bits 0x{r:X4} at column {column}: {y[r]} vs {expected}");
        }
    }

    /// <summary>
    /// The AVX2 form (Dot256, with its own Prepare256), run directly wherever AVX2 is (on AVX-512 machines the products
    /// take Dot512): every 16-bit pattern at an even and an odd lane of each 16-half load of the 64-value loop, in the
    /// 32-value group and in the tail, times 4, exactly.
    /// </summary>
    [Fact]
    public unsafe void AvxTwoDotMultipliesEverySixteenBitPatternToItsExactValue()
    {
        if (!BlockDecoder.Is256)
        {
            return;
        }

        const int rows = 65536, columns = 101;
        var bits = new ushort[rows * columns];
        var x = new float[columns];
        var prepared = new float[columns];
        foreach (int column in new[] { 0, 9, 17, 30, 35, 62, 69, 88, 98 })
        {
            for (int r = 0; r < rows; r++)
            {
                bits.AsSpan(r * columns, columns).Fill(0x3C00);
                bits[(r * columns) + column] = (ushort)r;
            }

            x.AsSpan().Clear();
            x[column] = 4f;
            fixed (ushort* w = bits)
            fixed (float* xp = x, pp = prepared)
            {
                var exceptions = HalfDot.FindExceptions((byte*)w, rows, columns);
                HalfDot.Prepare256(xp, columns, pp);
                for (int r = 0; r < rows; r++)
                {
                    float y = HalfDot.Dot256((short*)w + ((long)r * columns), pp, xp, columns, exceptions, r);
                    float expected = (float)BitConverter.UInt16BitsToHalf((ushort)r) * 4f;
                    Assert.True(float.IsNaN(expected) ? float.IsNaN(y) : y == expected, $"bits 0x{r:X4} at column {column}: {y} vs {expected}");
                }
            }
        }
    }

    [Fact]
    public void WeightsFullOfZerosAndSubnormalsMatchTheReference()
    {
        // N(0, 0.02)-like weights with one value in 20 made zero or subnormal (real files: about 1 in 400), so most
        // 64-value groups take the exact path and many do not; widths cover every loop and tail; 1 to 8 vectors.
        var random = new Random(11);
        foreach (int columns in new[] { 32, 64, 96, 160, 768, 1003 })
        {
            foreach (int vectors in new[] { 1, 3, QuantizedMatMul.FewVectors })
            {
                const int rows = 29;
                var bytes = new byte[rows * columns * 2];
                for (int i = 0; i < rows * columns; i++)
                {
                    Half value = random.Next(20) switch
                    {
                        0 => BitConverter.UInt16BitsToHalf((ushort)(random.Next(1024) | (random.Next(2) << 15))), // zero or subnormal, either sign
                        _ => (Half)(Gaussian(random) * 0.02),
                    };
                    BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(2 * i), value);
                }

                var x = Enumerable.Range(0, vectors * columns).Select(_ => (float)(Gaussian(random) * 3)).ToArray();
                AssertMatchesReference(bytes, rows, columns, x, vectors);
            }
        }
    }

    [Theory]
    [InlineData(1.5e14f)]   // just past 2⁴⁷: x·2⁸⁰ would overflow, so the plain widening takes it
    [InlineData(1e30f)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NaN)]
    [InlineData(1.4e14f)]   // just below: the split form still takes it
    [InlineData(1e-40f)]    // a subnormal x: exact either way
    public void LargeAndNonFiniteXGiveTheReferenceResult(float special)
    {
        var random = new Random(5);
        const int rows = 9, columns = 200;
        var bytes = new byte[rows * columns * 2];
        for (int i = 0; i < rows * columns; i++)
        {
            BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(2 * i), (Half)(Gaussian(random) * 0.02));
        }

        var x = Enumerable.Range(0, columns).Select(_ => (float)Gaussian(random)).ToArray();
        x[77] = special;
        AssertMatchesReference(bytes, rows, columns, x, 1);
    }

    // The loop asks for the rows ahead where Gemv's dots do (Gemv.PrefetchWeights, off on AMD Zen 4): both ways must give
    // the same bits, through the 64-value loop, a 32-value group and the tail.
    [Theory]
    [InlineData(5, 64)]
    [InlineData(40, 101)]
    [InlineData(300, 768)]
    [InlineData(77, 3077)]
    public void PrefetchingTheRowsDoesNotChangeTheBits(int rows, int columns)
    {
        var random = new Random(rows + columns);
        var bytes = new byte[rows * columns * 2];
        for (int i = 0; i < rows * columns; i++)
        {
            BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(2 * i), (Half)(Gaussian(random) * 0.02));
        }

        var x = Enumerable.Range(0, columns).Select(_ => (float)Gaussian(random)).ToArray();
        bool machineDefault = Gemv.PrefetchWeights;
        try
        {
            float[] on = new float[rows], off = new float[rows];
            Gemv.PrefetchWeights = true;
            Multiply(bytes, rows, columns, x, 1, on);
            Gemv.PrefetchWeights = false;
            Multiply(bytes, rows, columns, x, 1, off);
            Assert.Equal(on, off);
        }
        finally
        {
            Gemv.PrefetchWeights = machineDefault;
        }
    }

    [Fact]
    public unsafe void ExceptionListHoldsExactlyTheZeroSubnormalInfiniteAndNaNHalves()
    {
        // Every pattern once, in rows of 96 (three 32-value groups) and a tail of 5 that Dot leaves to the plain x.
        const int columns = 101, rows = 65536 / 96 + 1;
        var bits = Enumerable.Repeat((ushort)0x3C00, rows * columns).ToArray(); // 1.0 where no pattern goes
        for (int i = 0; i < 65536; i++)
        {
            bits[((i / 96) * columns) + (i % 96)] = (ushort)(i * 7919);
        }

        bits[columns - 1] = 0; // a zero in the first row's tail: not listed
        if (!HalfDot.IsSupported)
        {
            Assert.False(HalfDot.IsSupported); // nothing else to check: QuantizedMatrix keeps no list there
            return;
        }

        fixed (ushort* pointer = bits)
        {
            var list = HalfDot.FindExceptions((byte*)pointer, rows, columns);
            Assert.Equal(rows + 1, list.RowStarts.Length);
            Assert.Equal(2 * 2048, list.Positions.Length); // exponent 0 and 31, both signs, 1024 mantissas each
            for (int r = 0; r < rows; r++)
            {
                for (int e = list.RowStarts[r]; e < list.RowStarts[r + 1]; e++)
                {
                    int place = list.Positions[e], group = place / 32, lane = place % 32;
                    int column = (group * 32) + (lane < 16 ? 2 * lane : (2 * (lane - 16)) + 1);
                    Assert.True(column < 96, $"row {r}: listed column {column} is past the whole groups");
                    ushort half = bits[(r * columns) + column];
                    Assert.True((half & 0x7C00) is 0 or 0x7C00, $"0x{half:X4} is listed");
                    // The split form plus the difference is the exact value (times 2⁻⁸⁰), or infinity/NaN as it is.
                    float split = BitConverter.Int32BitsToSingle(((half << 16 >> 3) & unchecked((int)0x8FFFE000)) | 0x10000000);
                    float exact = (float)BitConverter.UInt16BitsToHalf(half) * MathF.Pow(2, -80);
                    float sum = split + list.Differences[e];
                    Assert.True(float.IsNaN(exact) ? float.IsNaN(sum) : sum == exact, $"0x{half:X4}: {split} + {list.Differences[e]} vs {exact}");
                }
            }
        }
    }

    [Fact]
    public unsafe void PrepareSplitsEachThirtyTwoIntoEvenAndOddTimesTwoToThe80()
    {
        const int columns = 100;
        var x = Enumerable.Range(0, columns).Select(i => i + 0.25f).ToArray();
        var prepared = Enumerable.Repeat(-7f, columns).ToArray();
        if (HalfDot.IsSupported)
        {
            fixed (float* xp = x, pp = prepared)
            {
                HalfDot.Prepare(xp, columns, pp);
            }

            for (int i = 0; i < 96; i++)
            {
                int block = i / 32, j = i % 32, source = (block * 32) + (j < 16 ? 2 * j : (2 * (j - 16)) + 1);
                Assert.Equal(x[source] * MathF.Pow(2, 80), prepared[i]);
            }

            Assert.All(prepared[96..], value => Assert.Equal(-7f, value)); // the tail is left to the plain x
        }

        Assert.True(HalfDot.Accepts(x));
        Assert.False(HalfDot.Accepts([1f, MathF.Pow(2, 47)]));
        Assert.False(HalfDot.Accepts([float.NaN]));
        Assert.True(HalfDot.Accepts([-MathF.BitDecrement(MathF.Pow(2, 47))]));
    }

    // Fast product (several vectors through QuantizedMatMul.Forward) against the reference, row by row: the same
    // non-finite results, and finite ones within float32 summation error of a float64 oracle.
    private static void AssertMatchesReference(byte[] bytes, int rows, int columns, float[] x, int vectors)
    {
        var dense = new float[rows * columns];
        Dequantize.Reference(GgmlType.F16, bytes, dense);
        var fast = Enumerable.Repeat(float.NaN, (vectors * rows) + 1).ToArray();
        fast[vectors * rows] = 321f;
        Multiply(bytes, rows, columns, x, vectors, fast);
        Assert.Equal(321f, fast[vectors * rows]);
        var reference = new float[rows];
        for (int v = 0; v < vectors; v++)
        {
            var xv = x.AsSpan(v * columns, columns);
            QuantizedMatVec.Reference(GgmlType.F16, bytes, rows, columns, xv, reference);
            for (int r = 0; r < rows; r++)
            {
                double expected = 0, scale = 0;
                for (int k = 0; k < columns; k++)
                {
                    expected += (double)dense[(r * columns) + k] * xv[k];
                    scale += Math.Abs((double)dense[(r * columns) + k] * xv[k]);
                }

                float actual = fast[(v * rows) + r];
                string where = $"[{rows}, {columns}] vector {v} of {vectors}, row {r}: {actual} vs reference {reference[r]}";
                if (!float.IsFinite(reference[r]))
                {
                    Assert.True(float.IsNaN(reference[r]) ? float.IsNaN(actual) : actual == reference[r], where);
                    continue;
                }

                // float32 sums of `columns` products in another order (as QuantizedMatVecTests).
                Assert.True(Math.Abs(actual - expected) <= (1e-5 * scale) + 1e-30, where);
            }
        }
    }

    // Y = X·Wᵀ through a QuantizedMatrix over the bytes (what a GGUF model's products call).
    private static unsafe void Multiply(byte[] bytes, int rows, int columns, float[] x, int vectors, float[] y)
    {
        fixed (byte* pointer = bytes)
        {
            QuantizedMatMul.Forward(new QuantizedMatrix("w", GgmlType.F16, rows, columns, pointer, bytes.Length, bytes), x, vectors, y);
        }
    }

    private static double Gaussian(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
}
