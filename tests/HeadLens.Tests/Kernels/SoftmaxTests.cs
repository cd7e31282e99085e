using HeadLens.Kernels;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Kernels;

public class SoftmaxTests
{
    // Tolerance 1e-5 relative (floor 1 on the value scale of probabilities ≤ 1): exp and the row sum in fp32 are
    // within a few ulps (~1e-7 each) for rows up to 300 long.
    [Fact]
    public void ForwardAndReferenceMatchFloat64AtOddSizes()
    {
        var random = new Random(1);
        foreach (int cols in TestData.OddLengths)
        {
            int rows = 3;
            float[] x = TestData.Uniform(random, rows * cols, 8);
            double[] expected = Float64Kernels.Softmax(FiniteDifference.ToDouble(x), rows, cols);
            float[] fast = new float[x.Length], reference = new float[x.Length];
            Softmax.Forward(x, rows, cols, fast);
            Softmax.ForwardReference(x, rows, cols, reference);
            Assert.True(Float64.MaxRelativeError(fast, expected) <= 1e-5, $"fast, cols={cols}");
            Assert.True(Float64.MaxRelativeError(reference, expected) <= 1e-5, $"reference, cols={cols}");
        }
    }

    [Fact]
    public void MaskedEntriesAreExactlyZeroAndAllMaskedRowsAreZero()
    {
        float ninf = float.NegativeInfinity;
        float[] x = [1, ninf, 2, ninf, ninf, ninf, ninf, ninf, 1000, ninf, -1000, 3];
        foreach (var run in new Action<float[]>[] { y => Softmax.Forward(x, 3, 4, y), y => Softmax.ForwardReference(x, 3, 4, y) })
        {
            var y = new float[12];
            run(y);
            Assert.Equal(0f, y[1]);
            Assert.Equal(0f, y[3]);
            Assert.All(y.AsSpan(4, 4).ToArray(), value => Assert.Equal(0f, value));
            Assert.Equal(1f, y[8]); // 1000 dominates; no overflow thanks to the max subtraction
            Assert.Equal(0f, y[9]);
            Assert.Equal(1.0, y[0] + y[2], 6);
        }
    }

    // Analytic fp32 gradient vs float64 finite differences: 1e-4 relative leaves room for fp32 rounding of
    // y·(dy − Σ y·dy) (~1e-6) and nothing more.
    [Fact]
    public void BackwardMatchesFiniteDifferences()
    {
        var random = new Random(2);
        int rows = 2, cols = 7;
        float[] x = TestData.Uniform(random, rows * cols, 3);
        double[] weights = FiniteDifference.ToDouble(TestData.Uniform(random, rows * cols));
        double[] numeric = FiniteDifference.Gradient(
            point => FiniteDifference.Project(Float64Kernels.Softmax(point, rows, cols), weights), FiniteDifference.ToDouble(x));
        var y = new float[x.Length];
        Softmax.Forward(x, rows, cols, y);
        float[] dy = FiniteDifference.ToFloat(weights);
        var fast = new float[x.Length];
        var reference = new float[x.Length];
        Softmax.Backward(y, dy, rows, cols, fast);
        Softmax.BackwardReference(y, dy, rows, cols, reference);
        FiniteDifference.AssertClose(fast, numeric, 1e-4, "softmax dx (fast)");
        FiniteDifference.AssertClose(reference, numeric, 1e-4, "softmax dx (reference)");
    }
}
