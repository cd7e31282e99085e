using HeadLens.Kernels;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Kernels;

public class MatMulTests
{
    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(7, 13, 5)]
    [InlineData(37, 65, 129)]
    public void FastEqualsReferenceForForwardAndBackward(int m, int n, int k)
    {
        var random = new Random(m + 100 * n + 10000 * k);
        float[] x = TestData.Uniform(random, m * k), w = TestData.Uniform(random, n * k), b = TestData.Uniform(random, n);
        float[] dy = TestData.Uniform(random, m * n);
        float[] y1 = new float[m * n], y2 = new float[m * n];
        MatMul.Forward(x, w, b, m, n, k, y1);
        MatMul.ForwardReference(x, w, b, m, n, k, y2);
        AssertClose(y2, y1, k);

        float[] dx1 = new float[m * k], dw1 = Enumerable.Repeat(1f, n * k).ToArray(), db1 = Enumerable.Repeat(1f, n).ToArray();
        float[] dx2 = new float[m * k], dw2 = Enumerable.Repeat(1f, n * k).ToArray(), db2 = Enumerable.Repeat(1f, n).ToArray();
        MatMul.Backward(dy, x, w, m, n, k, dx1, dw1, db1);
        MatMul.BackwardReference(dy, x, w, m, n, k, dx2, dw2, db2);
        AssertClose(dx2, dx1, n);
        AssertClose(dw2, dw1, m);
        AssertClose(db2, db1, m);
    }

    // dx with a depth much longer than its output (the vocabulary head's shape, scaled down) is computed as two depth
    // halves on two cores and summed: against float64, each entry within the rounding of a sum of 16411 terms,
    // measured by Σ|dy·W| (as GemmTests do), and dW still equal to the reference's.
    [Fact]
    public void InputGradWithALongDepthEqualsFloat64()
    {
        int m = 16, n = 16411, k = 64;
        Assert.True(MatMul.SplitsDepth(m, n, k));
        Assert.False(MatMul.SplitsDepth(256, 3072, 768));
        var random = new Random(23);
        float[] x = TestData.Uniform(random, m * k), w = TestData.Uniform(random, n * k), dy = TestData.Uniform(random, m * n);
        float[] dx = Enumerable.Repeat(float.NaN, m * k).ToArray(), dw = new float[n * k], dwReference = new float[n * k];
        MatMul.Backward(dy, x, w, m, n, k, dx, dw, []);
        var (expected, scale) = Float64.GemmWithScale(false, false, m, k, n, dy, n, w, k);
        Assert.True(Float64.MaxScaledError(dx, k, expected, scale, m, k) <= 2 * n * Math.Pow(2, -24));
        MatMul.BackwardReference(dy, x, w, m, n, k, [], dwReference, []);
        AssertClose(dwReference, dw, m);
    }

    // dx += dy·W (an input shared by several products, as x by Q, K and V), on the blocked path and on the long-depth
    // halves: against float64, within the rounding of the depth-long sum plus one addition, measured by Σ|dy·W| + |dx|.
    [Theory]
    [InlineData(37, 65, 129)]
    [InlineData(16, 16411, 64)]
    public void AccumulatingTheInputGradAddsTheProduct(int m, int n, int k)
    {
        var random = new Random(m * n + k);
        float[] w = TestData.Uniform(random, n * k), dy = TestData.Uniform(random, m * n), start = TestData.Uniform(random, m * k);
        float[] dx = (float[])start.Clone();
        MatMul.Backward(dy, [], w, m, n, k, dx, [], [], accumulateInputGrad: true);
        var (product, scale) = Float64.GemmWithScale(false, false, m, k, n, dy, n, w, k);
        double[] expected = product.Select((value, i) => value + start[i]).ToArray();
        double[] magnitude = scale.Select((value, i) => value + Math.Abs(start[i])).ToArray();
        Assert.True(Float64.MaxScaledError(dx, k, expected, magnitude, m, k) <= 2 * (n + 1) * Math.Pow(2, -24));
    }

    // The first backward after zeroing writes dW instead of adding to it: the same values as adding to zeros,
    // whatever the buffer held before.
    [Theory]
    [InlineData(5, 7, 3)]
    [InlineData(64, 96, 80)]
    public void OverwritingTheWeightGradEqualsAccumulatingIntoZeros(int m, int n, int k)
    {
        var random = new Random(m + n + k);
        float[] x = TestData.Uniform(random, m * k), w = TestData.Uniform(random, n * k), dy = TestData.Uniform(random, m * n);
        float[] overwritten = Enumerable.Repeat(float.NaN, n * k).ToArray(), accumulated = new float[n * k];
        MatMul.Backward(dy, x, w, m, n, k, [], overwritten, [], accumulateWeightGrad: false);
        MatMul.Backward(dy, x, w, m, n, k, [], accumulated, []);
        Assert.Equal(accumulated, overwritten);
    }

    // Gradients of L = Σ y·r, y = x·Wᵀ + b, fp32 analytic vs float64 numeric: 1e-4 relative.
    [Fact]
    public void BackwardMatchesFiniteDifferences()
    {
        var random = new Random(17);
        int m = 3, n = 4, k = 5;
        float[] x = TestData.Uniform(random, m * k), w = TestData.Uniform(random, n * k), b = TestData.Uniform(random, n);
        double[] r = FiniteDifference.ToDouble(TestData.Uniform(random, m * n));
        double[] xd = FiniteDifference.ToDouble(x), wd = FiniteDifference.ToDouble(w), bd = FiniteDifference.ToDouble(b);
        double Loss(double[] xv, double[] wv, double[] bv)
        {
            double sum = 0;
            for (int i = 0; i < m; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    double y = bv[j];
                    for (int p = 0; p < k; p++)
                    {
                        y += xv[i * k + p] * wv[j * k + p];
                    }

                    sum += y * r[i * n + j];
                }
            }

            return sum;
        }

        float[] dx = new float[m * k], dw = new float[n * k], db = new float[n];
        MatMul.Backward(FiniteDifference.ToFloat(r), x, w, m, n, k, dx, dw, db);
        FiniteDifference.AssertClose(dx, FiniteDifference.Gradient(p => Loss(p, wd, bd), xd), 1e-4, "dx");
        FiniteDifference.AssertClose(dw, FiniteDifference.Gradient(p => Loss(xd, p, bd), wd), 1e-4, "dW");
        FiniteDifference.AssertClose(db, FiniteDifference.Gradient(p => Loss(xd, wd, p), bd), 1e-4, "db");
    }

    // Both fp32 with reductions of length `depth` in different orders: depth·ε of the value scale.
    private static void AssertClose(float[] expected, float[] actual, int depth)
    {
        double bound = Math.Max(1e-5, depth * Math.Pow(2, -24) * 4);
        Assert.True(Float64.MaxRelativeError(actual, FiniteDifference.ToDouble(expected)) <= bound);
    }
}
