using HeadLens.Kernels;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Kernels;

public class NormTests
{
    private const float Epsilon = 1e-5f;

    // 1e-5 relative with floor 1: a normalised value is O(1); the mean and variance over ≤ 300 fp32 values carry
    // ~√cols·ε ≈ 1e-6 relative error.
    [Fact]
    public void LayerNormForwardMatchesFloat64AtOddSizes()
    {
        var random = new Random(3);
        foreach (int cols in TestData.OddLengths)
        {
            int rows = 3;
            float[] x = TestData.Uniform(random, rows * cols, 2), w = TestData.Uniform(random, cols), b = TestData.Uniform(random, cols);
            double[] expected = Float64Kernels.LayerNorm(
                FiniteDifference.ToDouble(x), FiniteDifference.ToDouble(w), FiniteDifference.ToDouble(b), rows, cols, Epsilon);
            foreach (bool fast in new[] { true, false })
            {
                float[] y = new float[x.Length], mean = new float[rows], rstd = new float[rows];
                if (fast)
                {
                    LayerNorm.Forward(x, w, b, rows, cols, Epsilon, y, mean, rstd);
                }
                else
                {
                    LayerNorm.ForwardReference(x, w, b, rows, cols, Epsilon, y, mean, rstd);
                }

                Assert.True(Float64.MaxRelativeError(y, expected) <= 1e-5, $"fast={fast} cols={cols}");
            }
        }
    }

    [Fact]
    public void RmsNormForwardMatchesFloat64AtOddSizes()
    {
        var random = new Random(4);
        foreach (int cols in TestData.OddLengths)
        {
            int rows = 3;
            float[] x = TestData.Uniform(random, rows * cols, 2), w = TestData.Uniform(random, cols);
            double[] expected = Float64Kernels.RmsNorm(FiniteDifference.ToDouble(x), FiniteDifference.ToDouble(w), rows, cols, Epsilon);
            float[] fast = new float[x.Length], reference = new float[x.Length], rstd = new float[rows];
            RmsNorm.Forward(x, w, rows, cols, Epsilon, fast, rstd);
            RmsNorm.ForwardReference(x, w, rows, cols, Epsilon, reference, rstd);
            Assert.True(Float64.MaxRelativeError(fast, expected) <= 1e-5, $"fast cols={cols}");
            Assert.True(Float64.MaxRelativeError(reference, expected) <= 1e-5, $"reference cols={cols}");
        }
    }

    // Gradients: fp32 analytic vs float64 numeric, 1e-4 relative (see FiniteDifference.AssertClose).
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void LayerNormBackwardMatchesFiniteDifferences(bool fast)
    {
        var random = new Random(5);
        int rows = 3, cols = 19;
        float[] x = TestData.Uniform(random, rows * cols, 2), w = TestData.Uniform(random, cols), b = TestData.Uniform(random, cols);
        double[] r = FiniteDifference.ToDouble(TestData.Uniform(random, rows * cols));
        double[] xd = FiniteDifference.ToDouble(x), wd = FiniteDifference.ToDouble(w), bd = FiniteDifference.ToDouble(b);
        double[] dxNumeric = FiniteDifference.Gradient(p => FiniteDifference.Project(Float64Kernels.LayerNorm(p, wd, bd, rows, cols, Epsilon), r), xd);
        double[] dwNumeric = FiniteDifference.Gradient(p => FiniteDifference.Project(Float64Kernels.LayerNorm(xd, p, bd, rows, cols, Epsilon), r), wd);
        double[] dbNumeric = FiniteDifference.Gradient(p => FiniteDifference.Project(Float64Kernels.LayerNorm(xd, wd, p, rows, cols, Epsilon), r), bd);

        float[] y = new float[x.Length], mean = new float[rows], rstd = new float[rows];
        LayerNorm.Forward(x, w, b, rows, cols, Epsilon, y, mean, rstd);
        float[] dy = FiniteDifference.ToFloat(r);
        // Accumulation: start dx, dw, db from ones and subtract them afterwards.
        float[] dx = Ones(x.Length), dw = Ones(cols), db = Ones(cols);
        if (fast)
        {
            LayerNorm.Backward(dy, x, w, mean, rstd, rows, cols, dx, dw, db);
        }
        else
        {
            LayerNorm.BackwardReference(dy, x, w, mean, rstd, rows, cols, dx, dw, db);
        }

        FiniteDifference.AssertClose(MinusOne(dx), dxNumeric, 1e-4, "layernorm dx");
        FiniteDifference.AssertClose(MinusOne(dw), dwNumeric, 1e-4, "layernorm dw");
        FiniteDifference.AssertClose(MinusOne(db), dbNumeric, 1e-4, "layernorm db");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void RmsNormBackwardMatchesFiniteDifferences(bool fast)
    {
        var random = new Random(6);
        int rows = 3, cols = 23;
        float[] x = TestData.Uniform(random, rows * cols, 2), w = TestData.Uniform(random, cols);
        double[] r = FiniteDifference.ToDouble(TestData.Uniform(random, rows * cols));
        double[] xd = FiniteDifference.ToDouble(x), wd = FiniteDifference.ToDouble(w);
        double[] dxNumeric = FiniteDifference.Gradient(p => FiniteDifference.Project(Float64Kernels.RmsNorm(p, wd, rows, cols, Epsilon), r), xd);
        double[] dwNumeric = FiniteDifference.Gradient(p => FiniteDifference.Project(Float64Kernels.RmsNorm(xd, p, rows, cols, Epsilon), r), wd);

        float[] y = new float[x.Length], rstd = new float[rows];
        RmsNorm.Forward(x, w, rows, cols, Epsilon, y, rstd);
        float[] dy = FiniteDifference.ToFloat(r);
        float[] dx = Ones(x.Length), dw = Ones(cols);
        if (fast)
        {
            RmsNorm.Backward(dy, x, w, rstd, rows, cols, dx, dw);
        }
        else
        {
            RmsNorm.BackwardReference(dy, x, w, rstd, rows, cols, dx, dw);
        }

        FiniteDifference.AssertClose(MinusOne(dx), dxNumeric, 1e-4, "rmsnorm dx");
        FiniteDifference.AssertClose(MinusOne(dw), dwNumeric, 1e-4, "rmsnorm dw");
    }

    [Fact]
    public void FastBackwardEqualsReferenceAtOddSizes()
    {
        var random = new Random(7);
        foreach (int cols in TestData.OddLengths)
        {
            int rows = 2;
            float[] x = TestData.Uniform(random, rows * cols, 2), w = TestData.Uniform(random, cols), b = TestData.Uniform(random, cols);
            float[] dy = TestData.Uniform(random, rows * cols);
            float[] y = new float[x.Length], mean = new float[rows], rstd = new float[rows];
            LayerNorm.Forward(x, w, b, rows, cols, Epsilon, y, mean, rstd);
            float[] dx1 = new float[x.Length], dw1 = new float[cols], db1 = new float[cols];
            float[] dx2 = new float[x.Length], dw2 = new float[cols], db2 = new float[cols];
            LayerNorm.Backward(dy, x, w, mean, rstd, rows, cols, dx1, dw1, db1);
            LayerNorm.BackwardReference(dy, x, w, mean, rstd, rows, cols, dx2, dw2, db2);
            AssertNear(dx2, dx1, cols);
            AssertNear(dw2, dw1, cols);
            AssertNear(db2, db1, cols);

            float[] rms = new float[rows];
            RmsNorm.Forward(x, w, rows, cols, Epsilon, y, rms);
            Array.Clear(dx1);
            Array.Clear(dx2);
            Array.Clear(dw1);
            Array.Clear(dw2);
            RmsNorm.Backward(dy, x, w, rms, rows, cols, dx1, dw1);
            RmsNorm.BackwardReference(dy, x, w, rms, rows, cols, dx2, dw2);
            AssertNear(dx2, dx1, cols);
            AssertNear(dw2, dw1, cols);
        }
    }

    // Fast and reference sum in different orders; both are fp32, so they agree to ~√cols·ε of the largest term.
    private static void AssertNear(float[] expected, float[] actual, int cols)
    {
        double largest = expected.Max(MathF.Abs);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5 * Math.Max(largest, 1), $"cols={cols} [{i}] {expected[i]} vs {actual[i]}");
        }
    }

    private static float[] Ones(int count) => Enumerable.Repeat(1f, count).ToArray();

    private static float[] MinusOne(float[] values) => values.Select(value => value - 1f).ToArray();
}
