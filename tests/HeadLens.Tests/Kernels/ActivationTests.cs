using HeadLens.Kernels;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Kernels;

public class ActivationTests
{
    // Elementwise: fast and reference within 1e-5 relative (floor 1) of float64 — tanh, exp and sigmoid in fp32
    // (scalar MathF or vectorised TensorPrimitives) are accurate to a few ulps.
    [Fact]
    public void GeluAndSiluMatchFloat64AtOddLengths()
    {
        var random = new Random(8);
        foreach (int length in TestData.OddLengths.Append(1500))
        {
            float[] x = TestData.Uniform(random, length, 6);
            double[] gelu = x.Select(v => Float64Kernels.Gelu(v)).ToArray();
            double[] silu = x.Select(v => Float64Kernels.Silu(v)).ToArray();
            var y = new float[length];
            Gelu.Forward(x, y);
            Assert.True(Float64.MaxRelativeError(y, gelu) <= 1e-5, $"gelu fast n={length}");
            Gelu.ForwardReference(x, y);
            Assert.True(Float64.MaxRelativeError(y, gelu) <= 1e-5, $"gelu reference n={length}");
            Silu.Forward(x, y);
            Assert.True(Float64.MaxRelativeError(y, silu) <= 1e-5, $"silu fast n={length}");
            Silu.ForwardReference(x, y);
            Assert.True(Float64.MaxRelativeError(y, silu) <= 1e-5, $"silu reference n={length}");
        }
    }

    [Fact]
    public void SwiGluMatchesFloat64()
    {
        var random = new Random(9);
        foreach (int length in TestData.OddLengths.Append(1100))
        {
            float[] gate = TestData.Uniform(random, length, 5), up = TestData.Uniform(random, length, 2);
            double[] expected = gate.Select((g, i) => Float64Kernels.Silu(g) * up[i]).ToArray();
            var y = new float[length];
            SwiGlu.Forward(gate, up, y);
            Assert.True(Float64.MaxRelativeError(y, expected) <= 1e-5, $"fast n={length}");
            SwiGlu.ForwardReference(gate, up, y);
            Assert.True(Float64.MaxRelativeError(y, expected) <= 1e-5, $"reference n={length}");
        }
    }

    // Derivatives of smooth elementwise functions: fp32 analytic vs float64 central differences, 1e-4 relative.
    [Fact]
    public void ElementwiseBackwardsMatchFiniteDifferences()
    {
        var random = new Random(10);
        int n = 37;
        float[] x = TestData.Uniform(random, n, 5), up = TestData.Uniform(random, n, 2), dy = TestData.Uniform(random, n);
        double[] r = FiniteDifference.ToDouble(dy), xd = FiniteDifference.ToDouble(x), ud = FiniteDifference.ToDouble(up);
        double[] geluNumeric = FiniteDifference.Gradient(p => FiniteDifference.Project(p.Select(Float64Kernels.Gelu).ToArray(), r), xd);
        double[] siluNumeric = FiniteDifference.Gradient(p => FiniteDifference.Project(p.Select(Float64Kernels.Silu).ToArray(), r), xd);
        double[] gateNumeric = FiniteDifference.Gradient(
            p => FiniteDifference.Project(p.Select((g, i) => Float64Kernels.Silu(g) * ud[i]).ToArray(), r), xd);
        double[] upNumeric = FiniteDifference.Gradient(
            p => FiniteDifference.Project(p.Select((u, i) => Float64Kernels.Silu(xd[i]) * u).ToArray(), r), ud);

        float[] dx = new float[n], dg = new float[n], du = new float[n];
        Gelu.Backward(x, dy, dx);
        FiniteDifference.AssertClose(dx, geluNumeric, 1e-4, "gelu fast");
        Gelu.BackwardReference(x, dy, dx);
        FiniteDifference.AssertClose(dx, geluNumeric, 1e-4, "gelu reference");
        Silu.Backward(x, dy, dx);
        FiniteDifference.AssertClose(dx, siluNumeric, 1e-4, "silu fast");
        Silu.BackwardReference(x, dy, dx);
        FiniteDifference.AssertClose(dx, siluNumeric, 1e-4, "silu reference");
        SwiGlu.Backward(x, up, dy, dg, du);
        FiniteDifference.AssertClose(dg, gateNumeric, 1e-4, "swiglu gate fast");
        FiniteDifference.AssertClose(du, upNumeric, 1e-4, "swiglu up fast");
        SwiGlu.BackwardReference(x, up, dy, dg, du);
        FiniteDifference.AssertClose(dg, gateNumeric, 1e-4, "swiglu gate reference");
        FiniteDifference.AssertClose(du, upNumeric, 1e-4, "swiglu up reference");
    }

    [Fact]
    public void FastBackwardsEqualReferenceAtOddLengths()
    {
        var random = new Random(11);
        foreach (int length in TestData.OddLengths.Append(1300))
        {
            float[] x = TestData.Uniform(random, length, 6), up = TestData.Uniform(random, length), dy = TestData.Uniform(random, length);
            float[] a = new float[length], b = new float[length], c = new float[length], d = new float[length];
            Gelu.Backward(x, dy, a);
            Gelu.BackwardReference(x, dy, b);
            AssertClose(b, a);
            Silu.Backward(x, dy, a);
            Silu.BackwardReference(x, dy, b);
            AssertClose(b, a);
            SwiGlu.Backward(x, up, dy, a, c);
            SwiGlu.BackwardReference(x, up, dy, b, d);
            AssertClose(b, a);
            AssertClose(d, c);
        }
    }

    // In the tails σ(2u) saturates (the fast form's e^(−2|u|) underflows to 0 from |2u| ≈ 87 on) and the results are
    // x or ±0; ±∞ and NaN give what the reference gives (NaN where it does). Three rounds of the values: whole vectors
    // and a scalar tail, at each SIMD width that .ci/run tests (16 lanes, 8 lanes, scalar).
    [Fact]
    public void GeluMatchesItsReferenceInTheTailsAndAtNonFiniteInputs()
    {
        float[] values = [-1e30f, -100f, -30f, -9f, -5f, -2f, -1e-30f, 0f, 1e-30f, 2f, 5f, 9f, 30f, 100f, 1e30f,
            float.PositiveInfinity, float.NegativeInfinity, float.NaN, -0f, 0.5f, -0.5f, 3.5f, -3.5f, 12f, -12f];
        float[] x = [.. values, .. values, .. values];
        float[] dy = x.Select((_, i) => 1f + (0.25f * (i % 5))).ToArray();
        float[] fast = new float[x.Length], reference = new float[x.Length];
        Gelu.Forward(x, fast);
        Gelu.ForwardReference(x, reference);
        AssertSameOrClose(reference, fast, "forward");
        Gelu.Backward(x, dy, fast);
        Gelu.BackwardReference(x, dy, reference);
        AssertSameOrClose(reference, fast, "backward");

        void AssertSameOrClose(float[] expected, float[] actual, string what)
        {
            for (int i = 0; i < expected.Length; i++)
            {
                bool close = float.IsNaN(expected[i]) ? float.IsNaN(actual[i])
                    : expected[i] == actual[i] || Math.Abs(expected[i] - actual[i]) <= 1e-5 * Math.Max(1, Math.Abs(expected[i]));
                Assert.True(close, $"gelu {what} at x = {x[i]}: {actual[i]}, reference {expected[i]}");
            }
        }
    }

    [Fact]
    public void ResidualAddsAndItsBackwardAccumulatesIntoBothBranches()
    {
        var random = new Random(12);
        foreach (int length in TestData.OddLengths)
        {
            float[] a = TestData.Uniform(random, length), b = TestData.Uniform(random, length), dy = TestData.Uniform(random, length);
            float[] fast = new float[length], reference = new float[length];
            Residual.Forward(a, b, fast);
            Residual.ForwardReference(a, b, reference);
            for (int i = 0; i < length; i++)
            {
                Assert.Equal(a[i] + b[i], fast[i]);
                Assert.Equal(a[i] + b[i], reference[i]);
            }

            float[] da = (float[])a.Clone(), db = (float[])b.Clone();
            Residual.Backward(dy, da, db);
            float[] da2 = (float[])a.Clone(), db2 = (float[])b.Clone();
            Residual.BackwardReference(dy, da2, db2);
            for (int i = 0; i < length; i++)
            {
                Assert.Equal(a[i] + dy[i], da[i]);
                Assert.Equal(b[i] + dy[i], db[i]);
                Assert.Equal(da[i], da2[i]);
                Assert.Equal(db[i], db2[i]);
            }
        }
    }

    // Both fp32; they differ only in rounding order: 1e-5 relative with floor 1.
    private static void AssertClose(float[] expected, float[] actual) =>
        Assert.True(Float64.MaxRelativeError(actual, FiniteDifference.ToDouble(expected)) <= 1e-5);
}
