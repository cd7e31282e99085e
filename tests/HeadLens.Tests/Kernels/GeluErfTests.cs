using HeadLens.Kernels;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Kernels;

public class GeluErfTests
{
    // erf at points on both sides of the switch from series to continued fraction (values from C99 erf, 16 digits).
    [Theory]
    [InlineData(0.0, 0.0)]
    [InlineData(0.1, 0.1124629160182849)]
    [InlineData(0.5, 0.5204998778130465)]
    [InlineData(1.0, 0.8427007929497149)]
    [InlineData(2.0, 0.9953222650189527)]
    [InlineData(2.4999, 0.9995928300996666)]
    [InlineData(2.5, 0.9995930479825550)]
    [InlineData(3.0, 0.9999779095030014)]
    [InlineData(5.0, 0.9999999999984626)]
    [InlineData(-1.0, -0.8427007929497149)]
    [InlineData(-3.0, -0.9999779095030014)]
    public void ErfMatchesItsTable(double x, double expected) => Assert.Equal(expected, GeluErf.Erf(x), 1e-14);

    // The float path's erf error is below 1.5e-7 (Abramowitz & Stegun 7.1.26), so y = ½x(1 + erf) is within
    // ½|x|·1.5e-7 of the reference, plus float rounding of y: 2e-7·(1 + |x|) allows both.
    [Fact]
    public void ForwardMatchesTheReferenceAtOddLengthsAndExtremes()
    {
        var random = new Random(51);
        foreach (int length in TestData.OddLengths.Append(1500))
        {
            float[] x = WithExtremes(TestData.Uniform(random, length, 8));
            float[] fast = new float[length], reference = new float[length];
            GeluErf.Forward(x, fast);
            GeluErf.ForwardReference(x, reference);
            for (int i = 0; i < length; i++)
            {
                Assert.True(Math.Abs(fast[i] - reference[i]) <= 2e-7 * (1 + Math.Abs(x[i])), $"n={length} x={x[i]}: {fast[i]} vs {reference[i]}");
            }
        }
    }

    // The forward's float pieces give the slope Φ(x) + x·φ(x): Φ carries A&S's 7.5e-8 plus the float Horner sum of
    // coefficients near ±1.4 that cancel to ~1 (a few 1e-8 each), x·φ(x) ≤ 0.25 float's relative rounding. Over a
    // dense sweep of [−10, 10] the slope's largest error was 2.98e-7 at every SIMD width, so xGrad is bounded by
    // 3.5e-7·|yGrad| plus the rounding of the product. 40,003 elements run in pieces on the threads, with a tail.
    [Fact]
    public void BackwardMatchesTheReferenceAtOddLengthsAndExtremes()
    {
        var random = new Random(53);
        foreach (int length in TestData.OddLengths.Append(1500).Append(40_003))
        {
            float[] x = WithExtremes(TestData.Uniform(random, length, 8));
            float[] yGrad = TestData.Uniform(random, length, 2);
            float[] fast = new float[length], reference = new float[length];
            GeluErf.Backward(x, yGrad, fast);
            GeluErf.BackwardReference(x, yGrad, reference);
            for (int i = 0; i < length; i++)
            {
                double bound = (3.5e-7 * Math.Abs(yGrad[i])) + (6e-8 * Math.Abs(reference[i]));
                Assert.True(Math.Abs(fast[i] - reference[i]) <= bound, $"n={length} x={x[i]} g={yGrad[i]}: {fast[i]} vs {reference[i]}");
            }
        }
    }

    [Fact]
    public void BackwardMatchesFiniteDifferences()
    {
        var random = new Random(52);
        float[] x = TestData.Uniform(random, 41, 6);
        float[] yGrad = TestData.Uniform(random, 41, 1);
        var xGrad = new float[41];
        GeluErf.Backward(x, yGrad, xGrad);
        double Gelu(double v) => 0.5 * v * (1 + GeluErf.Erf(v / Math.Sqrt(2)));
        for (int i = 0; i < x.Length; i++)
        {
            double h = 1e-5, numeric = (Gelu(x[i] + h) - Gelu(x[i] - h)) / (2 * h) * yGrad[i];
            Assert.Equal(numeric, xGrad[i], 1e-5);
        }
    }

    // Both tails of the float approximation and the signed zeros of the branch on x ≥ 0, where there is room.
    private static float[] WithExtremes(float[] x)
    {
        if (x.Length > 4)
        {
            x[0] = -40f;
            x[1] = 40f;
            x[2] = 0f;
            x[3] = -1e-30f;
        }

        return x;
    }
}
