using HeadLens.Kernels;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Kernels;

/// <summary>
/// Activation backwards at inputs far outside the usual range. σ(x) = 1/(1 + e^−x) overflows e^−x for x &lt; −88.7
/// and rounds to exactly 1 for x &gt; 17, so a derivative written with σ can turn into ∞·0 = NaN, or lose the digits of
/// 1 − σ to cancellation. These tests pin down what the kernels do there: finite everywhere, and within float32
/// accuracy of a float64 derivative that is written without either hazard.
/// </summary>
public class ActivationExtremesTests
{
    // Around the overflow of e^−x (±87..89), where σ saturates (±17..20), and far beyond (±100, ±1000), plus the
    // zero of SiLU's derivative (−1.2785) and ordinary values.
    private static readonly float[] Inputs =
    [
        -1000f, -100f, -89f, -88f, -87f, -30f, -20f, -17f, -12f, -8f, -5f, -2.5f, -1.2784645f, -1f, -0.25f, -0f,
        0f, 0.25f, 1f, 2.5f, 4f, 5f, 6f, 8f, 10f, 12f, 14f, 16.6355f, 17f, 18f, 20f, 30f, 87f, 88f, 89f, 100f, 1000f,
    ];

    // float32 elementwise slopes against float64, the tolerance ActivationTests uses: 1e-5 relative with floor 1
    // (slopes are at most ~1.13, so 1e-5 absolute for the small ones). Measured worst errors are ~1e-6, from 1 − σ
    // losing its digits where σ is near 1 (SiLU near x = 16.6, GELU near x = 5); an overflow or a wrong branch gives
    // NaN, ∞ or an O(1) error.
    private const double Tolerance = 1e-5;

    [Fact]
    public void SiluAndSwiGluBackwardsAreFiniteAndAccurateForExtremeInputs()
    {
        float[] huge = [-1e30f, 1e30f, -float.MaxValue, float.MaxValue];
        foreach (float x in Inputs.Concat(huge))
        {
            double slope = SiluSlope(x);
            float[] xs = Copies(x), dy = Copies(0.5f), up = Copies(2f);
            float[] dx = new float[xs.Length], dg = new float[xs.Length], du = new float[xs.Length];
            Silu.Backward(xs, dy, dx);
            AssertSlope(dx, 0.5 * slope, $"silu fast x={x}");
            Silu.BackwardReference(xs, dy, dx);
            AssertSlope(dx, 0.5 * slope, $"silu reference x={x}");
            // dg = dy·u·silu'(g) = 0.5·2·slope: powers of two, so the expected value is the slope exactly.
            SwiGlu.Backward(xs, up, dy, dg, du);
            AssertSlope(dg, slope, $"swiglu fast gate x={x}");
            Assert.All(du, v => Assert.True(double.IsFinite(v), $"swiglu fast up gradient {v} at x={x}"));
            SwiGlu.BackwardReference(xs, up, dy, dg, du);
            AssertSlope(dg, slope, $"swiglu reference gate x={x}");
            Assert.All(du, v => Assert.True(double.IsFinite(v), $"swiglu reference up gradient {v} at x={x}"));
        }
    }

    // For x ≪ 0 the SiLU slope ≈ e^x·(1 + x) is tiny but representable down to x ≈ −87; an absolute check cannot see
    // it vanish or change sign, so it is checked relative to itself (floor 1e-30), 1e-5 again: σ = 1/(1 + e^−x) has
    // no cancellation there and the product keeps a few-ulp relative error. Stops at −80, above float's subnormals
    // (σ(−88) ≈ 6e−39 is subnormal and keeps fewer digits).
    [Fact]
    public void SiluSlopeKeepsItsRelativeAccuracyForLargeNegativeInputs()
    {
        foreach (float x in new[] { -80f, -50f, -30f, -20f, -17f, -12f, -8f, -5f, -2.5f, -1f })
        {
            double slope = SiluSlope(x);
            float[] xs = Copies(x), dy = Copies(1f), dx = new float[xs.Length];
            Silu.Backward(xs, dy, dx);
            Assert.True(Float64.MaxRelativeError(dx, Expected(slope), 1e-30) <= Tolerance, $"silu fast x={x}: {dx[0]:G9} vs {slope:G9}");
            Silu.BackwardReference(xs, dy, dx);
            Assert.True(Float64.MaxRelativeError(dx, Expected(slope), 1e-30) <= Tolerance, $"silu reference x={x}: {dx[0]:G9} vs {slope:G9}");
        }
    }

    // GELU only up to |x| = 1000: beyond ~1e13, x³ overflows and PyTorch's own formula gives ∞·0 = NaN as well.
    [Fact]
    public void GeluBackwardIsFiniteAndAccurateForExtremeInputs()
    {
        foreach (float x in Inputs)
        {
            double slope = GeluSlope(x);
            float[] xs = Copies(x), dy = Copies(1f), dx = new float[xs.Length];
            Gelu.Backward(xs, dy, dx);
            AssertSlope(dx, slope, $"gelu fast x={x}");
            Gelu.BackwardReference(xs, dy, dx);
            AssertSlope(dx, slope, $"gelu reference x={x}");
        }
    }

    // 17 copies: 16 fill a Vector512 (or two Vector256) and the 17th goes through the remainder handling, so every
    // value meets both the vector body and the tail of each kernel.
    private static float[] Copies(float value) => Enumerable.Repeat(value, 17).ToArray();

    private static double[] Expected(double value) => Enumerable.Repeat(value, 17).ToArray();

    private static void AssertSlope(float[] actual, double expected, string what)
    {
        Assert.All(actual, v => Assert.True(float.IsFinite(v), $"{what}: {v}"));
        double error = Float64.MaxRelativeError(actual, Expected(expected), 1.0);
        Assert.True(error <= Tolerance, $"{what}: {actual[0]:G9} vs {expected:G9} (error {error:E2})");
    }

    // σ(x)·(1 + x·(1 − σ(x))) with σ and 1 − σ each formed from e^−|x| ≤ 1: no overflow and no cancellation.
    private static double SiluSlope(double x)
    {
        double e = Math.Exp(-Math.Abs(x));
        double sigma = x >= 0 ? 1 / (1 + e) : e / (1 + e);
        double complement = x >= 0 ? e / (1 + e) : 1 / (1 + e);
        return sigma * (1 + x * complement);
    }

    // ½(1 + tanh u) + ½x·sech²u·u′ with sech²u = 1/cosh²u, which underflows cleanly to 0 for large |u| instead of
    // being 1 − tanh²u with tanh u rounded to ±1.
    private static double GeluSlope(double x)
    {
        double a = Math.Sqrt(2 / Math.PI), u = a * (x + 0.044715 * x * x * x);
        double sech = 1 / Math.Cosh(u);
        return 0.5 * (1 + Math.Tanh(u)) + 0.5 * x * sech * sech * a * (1 + 3 * 0.044715 * x * x);
    }
}
