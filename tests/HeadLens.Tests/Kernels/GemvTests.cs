using HeadLens.Kernels;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Kernels;

public class GemvTests
{
    // Both paths against a float64 oracle. An fp32 dot product of length k is within k·ε·Σ|wᵢxᵢ| of the exact value
    // (ε = 2⁻²⁴, whatever the summation order); the bound below is twice that, per output.
    private static void AssertCloseToOracle(float[] actual, float[] w, float[] x, float[] initial, int n, int k, bool accumulate)
    {
        for (int row = 0; row < n; row++)
        {
            double exact = accumulate ? initial[row] : 0, magnitude = accumulate ? Math.Abs(initial[row]) : 0;
            for (int i = 0; i < k; i++)
            {
                exact += (double)w[row * k + i] * x[i];
                magnitude += Math.Abs((double)w[row * k + i] * x[i]);
            }

            double bound = 2 * (k + 1) * Math.Pow(2, -24) * magnitude + 1e-30;
            Assert.True(Math.Abs(actual[row] - exact) <= bound, $"row {row} of [{n}, {k}]: {actual[row]} vs {exact} (bound {bound:E2})");
        }
    }

    public static TheoryData<int, int> Sizes()
    {
        var sizes = new TheoryData<int, int>();
        foreach (int n in (int[])[1, 3, 4, 5, 17, 300, 1031])
        {
            foreach (int k in (int[])[1, 7, 15, 16, 17, 33, 129, 300, 769])
            {
                sizes.Add(n, k);
            }
        }

        return sizes;
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void FastAndReferenceMatchTheOracle(int n, int k)
    {
        var random = new Random(n * 1000 + k);
        float[] w = TestData.Uniform(random, n * k), x = TestData.Uniform(random, k), initial = TestData.Uniform(random, n);
        foreach (bool accumulate in (bool[])[false, true])
        {
            float[] fast = (float[])initial.Clone(), reference = (float[])initial.Clone();
            Gemv.Forward(w, x, n, k, fast, accumulate);
            Gemv.Reference(w, x, n, k, reference, accumulate);
            AssertCloseToOracle(fast, w, x, initial, n, k, accumulate);
            AssertCloseToOracle(reference, w, x, initial, n, k, accumulate);
        }
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void Bf16FastAndReferenceMatchTheOracleOnTheRoundedWeights(int n, int k)
    {
        // The oracle multiplies the bf16-rounded weights exactly: what is left is fp32 accumulation error only.
        var random = new Random(n * 1000 + k + 1);
        float[] w = TestData.Uniform(random, n * k), x = TestData.Uniform(random, k), initial = TestData.Uniform(random, n);
        var packed = new ushort[n * k];
        Gemv.ToBf16(w, packed);
        float[] rounded = packed.Select(Gemv.FromBf16).ToArray();
        foreach (bool accumulate in (bool[])[false, true])
        {
            float[] fast = (float[])initial.Clone(), reference = (float[])initial.Clone();
            Gemv.ForwardBf16(packed, x, n, k, fast, accumulate);
            Gemv.ReferenceBf16(packed, x, n, k, reference, accumulate);
            AssertCloseToOracle(fast, rounded, x, initial, n, k, accumulate);
            AssertCloseToOracle(reference, rounded, x, initial, n, k, accumulate);
        }
    }

    // The bf16 product widens each weight and then sums as the fp32 one does, in the same order at every vector
    // width (CI runs this with AVX-512, with AVX2 only and scalar): on weights that are bf16 values already the two
    // give the same bits, which is what lets a bf16 decode equal the fp32 decode of a rounded model. The sizes reach
    // every tail (k below, at and between multiples of 8, 16, 32 and 64).
    [Theory]
    [MemberData(nameof(Sizes))]
    [InlineData(2, 8)]
    [InlineData(2, 24)]
    [InlineData(2, 40)]
    [InlineData(2, 64)]
    [InlineData(2, 88)]
    public void Bf16ProductGivesTheFp32ProductsBitsOnRoundedWeights(int n, int k)
    {
        var random = new Random(n * 1000 + k + 2);
        float[] w = TestData.Uniform(random, n * k), x = TestData.Uniform(random, k), initial = TestData.Uniform(random, n);
        var packed = new ushort[n * k];
        Gemv.ToBf16(w, packed);
        float[] rounded = packed.Select(Gemv.FromBf16).ToArray();
        foreach (bool accumulate in (bool[])[false, true])
        {
            float[] bf16 = (float[])initial.Clone(), fp32 = (float[])initial.Clone();
            Gemv.ForwardBf16(packed, x, n, k, bf16, accumulate);
            Gemv.Forward(rounded, x, n, k, fp32, accumulate);
            Assert.Equal(fp32, bf16);
        }
    }

    [Fact]
    public void Bf16RoundsToNearestEven()
    {
        float[] values = [1f, -2.5f, 1f + 1f / 256, 1f + 3f / 256, 1f + 1f / 512, float.PositiveInfinity, float.NegativeInfinity, float.NaN, 3.0e38f];
        var packed = new ushort[values.Length];
        Gemv.ToBf16(values, packed);
        float[] back = packed.Select(Gemv.FromBf16).ToArray();
        Assert.Equal(1f, back[0]);
        Assert.Equal(-2.5f, back[1]);
        Assert.Equal(1f, back[2]);                 // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties go to the even 1
        Assert.Equal(1f + 4f / 256, back[3]);      // 1 + 3·2⁻⁸ is halfway: ties go to the even 1 + 2⁻⁶
        Assert.Equal(1f, back[4]);                 // below halfway rounds down
        Assert.Equal(float.PositiveInfinity, back[5]);
        Assert.Equal(float.NegativeInfinity, back[6]);
        Assert.True(float.IsNaN(back[7]));
        Assert.True(Math.Abs(back[8] - 3.0e38f) <= 3.0e38f / 256); // near the top of the range: no overflow to ∞
        // Normal numbers: at most half a unit in the last of 8 significant bits, ≤ 2⁻⁸ relative.
        var random = new Random(3);
        foreach (float value in TestData.Uniform(random, 1000, 1e3))
        {
            Gemv.ToBf16([value], packed);
            Assert.True(Math.Abs(Gemv.FromBf16(packed[0]) - value) <= Math.Abs(value) / 256, $"{value} → {Gemv.FromBf16(packed[0])}");
        }
    }

    [Fact]
    public void ThreadCountDoesNotChangeTheResult()
    {
        // Each output is one row's dot product, computed the same way on whichever thread gets the row: bit-identical.
        const int n = 4099, k = 515;
        var random = new Random(5);
        float[] w = TestData.Uniform(random, n * k), x = TestData.Uniform(random, k);
        float[] one = new float[n], two = new float[n], all = new float[n];
        Gemv.Forward(w, x, n, k, one, threads: 1);
        Gemv.Forward(w, x, n, k, two, threads: 2);
        Gemv.Forward(w, x, n, k, all);
        Assert.Equal(one, two);
        Assert.Equal(one, all);
        var packed = new ushort[n * k];
        Gemv.ToBf16(w, packed);
        Gemv.ForwardBf16(packed, x, n, k, one, threads: 1);
        Gemv.ForwardBf16(packed, x, n, k, two, threads: 2);
        Assert.Equal(one, two);
    }

    // The dots prefetch the weight rows ahead on most machines and not on AMD Zen 4 (Gemv.PrefetchWeights), at 16
    // lanes and at 8 (the suite's AVX-512-off run): the prefetches only move cache lines, so both ways must give the
    // same bits, fp32 and bf16, on whole vector trips and their tails, on 1 and 2 threads.
    [Theory]
    [InlineData(7, 64)]
    [InlineData(33, 100)]
    [InlineData(300, 768)]
    [InlineData(129, 3077)]
    public void PrefetchingTheWeightsDoesNotChangeTheBits(int n, int k)
    {
        var random = new Random(n + k);
        float[] w = TestData.Uniform(random, n * k), x = TestData.Uniform(random, k);
        var bf16 = new ushort[n * k];
        Gemv.ToBf16(w, bf16);
        bool machineDefault = Gemv.PrefetchWeights;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            {
                float[] fp32On = new float[n], fp32Off = new float[n], bf16On = new float[n], bf16Off = new float[n];
                Gemv.PrefetchWeights = true;
                Gemv.Forward(w, x, n, k, fp32On, threads: threads);
                Gemv.ForwardBf16(bf16, x, n, k, bf16On, threads: threads);
                Gemv.PrefetchWeights = false;
                Gemv.Forward(w, x, n, k, fp32Off, threads: threads);
                Gemv.ForwardBf16(bf16, x, n, k, bf16Off, threads: threads);
                Assert.Equal(fp32On, fp32Off);
                Assert.Equal(bf16On, bf16Off);
            }
        }
        finally
        {
            Gemv.PrefetchWeights = machineDefault;
        }
    }

    // Outputs pre-filled with garbage (GemmTests' pattern): without accumulate every output is overwritten, so NaN,
    // ±∞ and huge values leave no trace; with accumulate the old value is added (checked with large finite values,
    // inside the oracle's bound, which counts |initial|). A sentinel past row n must stay untouched either way.
    // Sizes cover the serial path, the threaded path (n·k ≥ 2¹⁶) and vector tails.
    [Theory]
    [InlineData(1, 1)]
    [InlineData(5, 17)]
    [InlineData(300, 33)]
    [InlineData(1031, 129)]
    [InlineData(4099, 515)]
    public void GarbageInTheOutputIsOverwrittenOrAccumulatedAsAsked(int n, int k)
    {
        const float Sentinel = -12345.5f;
        var random = new Random(n + k);
        float[] w = TestData.Uniform(random, n * k), x = TestData.Uniform(random, k);
        var packed = new ushort[n * k];
        Gemv.ToBf16(w, packed);
        float[] rounded = packed.Select(Gemv.FromBf16).ToArray();
        float[] garbage = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, 3e38f, -1e30f, float.Epsilon];
        foreach (float fill in garbage)
        {
            foreach (var (name, weights, run) in Paths(w, packed, rounded, x, n, k))
            {
                float[] y = Filled(n + 1, fill);
                y[n] = Sentinel;
                run(y, false);
                AssertCloseToOracle(y[..n], weights, x, new float[n], n, k, accumulate: false);
                Assert.True(y[n] == Sentinel, $"{name}: wrote past row {n}");
            }
        }

        float[] initial = TestData.Uniform(random, n, 1e6);
        foreach (var (name, weights, run) in Paths(w, packed, rounded, x, n, k))
        {
            float[] y = [.. initial, Sentinel];
            run(y, true);
            AssertCloseToOracle(y[..n], weights, x, initial, n, k, accumulate: true);
            Assert.True(y[n] == Sentinel, $"{name}: wrote past row {n}");
        }
    }

    private static IEnumerable<(string Name, float[] Weights, Action<float[], bool> Run)> Paths(
        float[] w, ushort[] packed, float[] rounded, float[] x, int n, int k)
    {
        yield return ("fast", w, (y, accumulate) => Gemv.Forward(w, x, n, k, y, accumulate));
        yield return ("fast, 1 thread", w, (y, accumulate) => Gemv.Forward(w, x, n, k, y, accumulate, threads: 1));
        yield return ("reference", w, (y, accumulate) => Gemv.Reference(w, x, n, k, y, accumulate));
        yield return ("bf16 fast", rounded, (y, accumulate) => Gemv.ForwardBf16(packed, x, n, k, y, accumulate));
        yield return ("bf16 reference", rounded, (y, accumulate) => Gemv.ReferenceBf16(packed, x, n, k, y, accumulate));
    }

    private static float[] Filled(int length, float value)
    {
        var values = new float[length];
        Array.Fill(values, value);
        return values;
    }

    [Fact]
    public void TooSmallBuffersAreRefused()
    {
        Assert.Throws<ArgumentException>(() => Gemv.Forward(new float[11], new float[4], 3, 4, new float[3]));
        Assert.Throws<ArgumentException>(() => Gemv.Forward(new float[12], new float[3], 3, 4, new float[3]));
        Assert.Throws<ArgumentException>(() => Gemv.Forward(new float[12], new float[4], 3, 4, new float[2]));
        Assert.Throws<ArgumentException>(() => Gemv.ForwardBf16(new ushort[11], new float[4], 3, 4, new float[3]));
    }
}
