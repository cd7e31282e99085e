using HeadLens.Attention;
using HeadLens.Embeddings;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Attention;

public class PositionsAndCacheTests
{
    [Theory]
    [InlineData(RopeLayout.Interleaved)]
    [InlineData(RopeLayout.SplitHalves)]
    public void RopeEqualsAHandComputedRotation(RopeLayout layout)
    {
        // One head of size 4 at position 3: pairs rotate by 3·θ_i with θ_0 = 1, θ_1 = 10000^(-1/2) = 0.01.
        float[] x = [1, 2, 3, 4];
        Rope.Forward(x, 1, 1, 4, 3, new RopeSettings(10000f, layout));
        (int a0, int b0, int a1, int b1) = layout == RopeLayout.Interleaved ? (0, 1, 2, 3) : (0, 2, 1, 3);
        float[] source = [1, 2, 3, 4];
        var expected = new double[4];
        foreach (var (a, b, angle) in new[] { (a0, b0, 3.0), (a1, b1, 0.03) })
        {
            expected[a] = source[a] * Math.Cos(angle) - source[b] * Math.Sin(angle);
            expected[b] = source[a] * Math.Sin(angle) + source[b] * Math.Cos(angle);
        }

        Assert.True(Float64.MaxRelativeError(x, expected) <= 1e-6);
    }

    [Fact]
    public void LayoutsAgreeAfterThePermutation()
    {
        // Moving component 2i to i and 2i+1 to i + D/2 turns an interleaved head into a split-halves one.
        var random = new Random(20);
        int tokens = 5, heads = 3, d = 8;
        float[] x = TestData.Uniform(random, tokens * heads * d);
        float[] interleaved = (float[])x.Clone();
        Rope.Forward(interleaved, tokens, heads, d, 7, new RopeSettings(500f, RopeLayout.Interleaved));
        float[] split = Permute(x, d);
        Rope.Forward(split, tokens, heads, d, 7, new RopeSettings(500f, RopeLayout.SplitHalves));
        Assert.Equal(Permute(interleaved, d), split);
    }

    [Fact]
    public void RopeBackwardIsTheInverseRotationAndKeepsDotProductsRelative()
    {
        var random = new Random(21);
        float[] x = TestData.Uniform(random, 4 * 2 * 16);
        float[] rotated = (float[])x.Clone();
        var settings = new RopeSettings { Scaling = RopeScaling.NtkAware, ScalingFactor = 4 };
        Rope.Forward(rotated, 4, 2, 16, 11, settings);
        Rope.Backward(rotated, 4, 2, 16, 11, settings);
        Assert.True(Float64.MaxRelativeError(rotated, FiniteDifference.ToDouble(x)) <= 1e-6);

        // q·k after RoPE depends only on the distance: shifting both positions leaves the score unchanged.
        float[] q = TestData.Uniform(random, 16), k = TestData.Uniform(random, 16);
        float Score(int qPosition, int kPosition)
        {
            float[] qr = (float[])q.Clone(), kr = (float[])k.Clone();
            Rope.Forward(qr, 1, 1, 16, qPosition, new RopeSettings());
            Rope.Forward(kr, 1, 1, 16, kPosition, new RopeSettings());
            return qr.Zip(kr, (a, b) => a * b).Sum();
        }

        Assert.Equal(Score(9, 4), Score(109, 104), 4);
    }

    [Theory]
    [InlineData(RopeLayout.Interleaved)]
    [InlineData(RopeLayout.SplitHalves)]
    public void RopeBackwardMatchesFiniteDifferences(RopeLayout layout)
    {
        // L = Σ r·RoPE(x), computed in float64 from the rotation angles; 1e-4 relative (fp32 analytic gradient).
        var random = new Random(22);
        int tokens = 3, heads = 2, d = 6, offset = 4;
        var settings = new RopeSettings(100f, layout);
        double[] x = FiniteDifference.ToDouble(TestData.Uniform(random, tokens * heads * d));
        double[] r = FiniteDifference.ToDouble(TestData.Uniform(random, tokens * heads * d));
        double Loss(double[] v)
        {
            double sum = 0;
            for (int t = 0; t < tokens; t++)
            {
                for (int h = 0; h < heads; h++)
                {
                    for (int i = 0; i < d / 2; i++)
                    {
                        (int a, int b) = layout == RopeLayout.Interleaved ? (2 * i, 2 * i + 1) : (i, i + d / 2);
                        int at = (t * heads + h) * d;
                        double angle = (offset + t) * Rope.Frequency(i, d, settings);
                        sum += r[at + a] * (v[at + a] * Math.Cos(angle) - v[at + b] * Math.Sin(angle));
                        sum += r[at + b] * (v[at + a] * Math.Sin(angle) + v[at + b] * Math.Cos(angle));
                    }
                }
            }

            return sum;
        }

        float[] grad = FiniteDifference.ToFloat(r);
        Rope.Backward(grad, tokens, heads, d, offset, settings);
        FiniteDifference.AssertClose(grad, FiniteDifference.Gradient(Loss, x), 1e-4, "rope dx");
    }

    [Fact]
    public void LinearScalingDividesThePosition()
    {
        float[] scaled = [1, 2, 3, 4], plain = [1, 2, 3, 4];
        Rope.Forward(scaled, 1, 1, 4, 8, new RopeSettings { Scaling = RopeScaling.Linear, ScalingFactor = 4 });
        Rope.Forward(plain, 1, 1, 4, 2, new RopeSettings());
        Assert.True(Float64.MaxRelativeError(scaled, FiniteDifference.ToDouble(plain)) <= 1e-6);
    }

    [Fact]
    public void AlibiSlopesFollowThePaper()
    {
        Assert.Equal([0.5f, 0.25f, 0.125f, 0.0625f, 0.03125f, 0.015625f, 0.0078125f, 0.00390625f], Positions.AlibiSlopes(8));
        float[] twelve = Positions.AlibiSlopes(12);
        Assert.Equal(12, twelve.Length);
        Assert.Equal(Positions.AlibiSlopes(8), twelve[..8]);
        Assert.Equal(MathF.Pow(2, -0.5f), twelve[8], 6);
    }

    [Fact]
    public void SinusoidalPositionsMatchTheFormula()
    {
        var x = new float[3 * 6];
        Positions.AddSinusoidal(6, 10, 3, x);
        Assert.Equal(Math.Sin(11), x[6], 5);
        Assert.Equal(Math.Cos(11 / Math.Pow(10000, 2.0 / 6)), x[6 + 3], 5);
    }

    [Theory]
    [InlineData(4, 4, 0, 0)]
    [InlineData(6, 2, 0, 0)]
    [InlineData(4, 2, 3, 9)]
    [InlineData(2, 1, 0, 12)]
    public void IncrementalDecodingEqualsFullRecomputation(int heads, int kvHeads, int sinks, int window)
    {
        // Token by token through a (possibly evicting) cache must give what one pass over the whole sequence gives
        // with the equivalent mask: the cache holds exactly the keys that mask leaves visible.
        int t = 40, d = 8, prompt = 5;
        var full = new AttentionOptions(heads, kvHeads, d, d) { Window = window, Sinks = window > 0 ? sinks : 0 };
        var (q, k, v) = ScaledDotProductAttentionTests.Inputs(full, t, t, seed: heads + window);
        float[] expected = new float[t * heads * d], lse = new float[heads * t];
        ScaledDotProductAttention.ForwardReference(full, t, t, 0, q, k, v, expected, lse);

        var cache = new KvCache(layers: 2, capacity: t, kvHeads, d, d, sinks, window);
        var decode = new AttentionOptions(heads, kvHeads, d, d);
        var actual = new float[t * heads * d];
        int row = kvHeads * d;
        for (int start = 0; start < t;)
        {
            int count = start == 0 ? prompt : 1;
            if (window > 0)
            {
                count = 1;
            }

            for (int layer = 0; layer < 2; layer++)
            {
                cache.Append(layer, k.AsSpan(start * row, count * row), v.AsSpan(start * row, count * row), count);
            }

            int slots = cache.Keys(0).Length / row;
            var o = actual.AsSpan(start * heads * d, count * heads * d);
            ScaledDotProductAttention.Forward(decode, count, slots, slots - count, q.AsSpan(start * heads * d, count * heads * d),
                cache.Keys(1), cache.Values(1), o, new float[heads * count]);
            cache.Advance(count);
            start += count;
        }

        Assert.True(Float64.MaxRelativeError(actual, FiniteDifference.ToDouble(expected)) <= 1e-5);
        if (window > 0)
        {
            Assert.Equal(sinks + window, cache.Length);
            Assert.Equal(Enumerable.Range(0, sinks).Concat(Enumerable.Range(t - window, window)).ToArray(), cache.Positions.ToArray());
        }
    }

    [Fact]
    public void AFullCacheWithoutAWindowSaysSo()
    {
        var cache = new KvCache(1, 2, 1, 4, 4);
        cache.Append(0, new float[8], new float[8], 2);
        cache.Advance(2);
        Assert.Throws<HeadLensException>(() => cache.Append(0, new float[4], new float[4], 1));
    }

    private static float[] Permute(float[] x, int d)
    {
        var result = new float[x.Length];
        for (int start = 0; start < x.Length; start += d)
        {
            for (int i = 0; i < d / 2; i++)
            {
                result[start + i] = x[start + 2 * i];
                result[start + i + d / 2] = x[start + 2 * i + 1];
            }
        }

        return result;
    }
}
