using HeadLens.Kernels;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Kernels;

public class MatrixVectorTests
{
    // The few-rows path of MatMul.Forward (decoding; one row goes to Gemv) against the reference product; sizes
    // include ones large enough to be split across threads. Both fp32 with length-k dot products: k·ε relative to the value scale.
    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(1, 37, 19)]
    [InlineData(1, 1031, 769)]
    [InlineData(3, 513, 131)]
    [InlineData(4, 1031, 769)]
    public void FewRowsEqualTheReferenceProduct(int m, int n, int k)
    {
        var random = new Random(m + n + k);
        float[] x = TestData.Uniform(random, m * k), w = TestData.Uniform(random, n * k), b = TestData.Uniform(random, n);
        float[] fast = new float[m * n], reference = new float[m * n];
        MatMul.Forward(x, w, b, m, n, k, fast);
        MatMul.ForwardReference(x, w, b, m, n, k, reference);
        double bound = Math.Max(1e-5, 4 * k * Math.Pow(2, -24));
        Assert.True(Float64.MaxRelativeError(fast, FiniteDifference.ToDouble(reference)) <= bound);
    }

    // MatMul.Forward overwrites y (y = x·Wᵀ + b, never y +=): outputs pre-filled with garbage (NaN, ±∞, huge) must
    // leave no trace, and a sentinel past [m, n] must stay untouched. m = 1 goes to Gemv, m = 2..4 to the few-rows
    // dot products (serial and, for n·k ≥ 2¹⁸, threaded), m = 5 to Gemm. Bound: each output is one fp32 dot product
    // of length k plus a bias, within (k + 1)·ε·(Σ|x·w| + |b|) of the float64 value (ε = 2⁻²⁴); twice that here.
    [Theory]
    [InlineData(1, 37, 19)]
    [InlineData(1, 1031, 769)]
    [InlineData(2, 5, 3)]
    [InlineData(3, 513, 131)]
    [InlineData(4, 1031, 769)]
    [InlineData(5, 67, 33)]
    public void GarbageInTheOutputIsOverwritten(int m, int n, int k)
    {
        const float Sentinel = -12345.5f;
        var random = new Random(m * 7 + n + k);
        float[] x = TestData.Uniform(random, m * k), w = TestData.Uniform(random, n * k), b = TestData.Uniform(random, n);
        foreach (float fill in (float[])[float.NaN, float.PositiveInfinity, float.NegativeInfinity, 3e38f, -1e30f])
        {
            foreach (bool withBias in (bool[])[false, true])
            {
                float[] bias = withBias ? b : [];
                float[] y = new float[m * n + 1];
                Array.Fill(y, fill);
                y[^1] = Sentinel;
                MatMul.Forward(x, w, bias, m, n, k, y);
                for (int i = 0; i < m; i++)
                {
                    for (int j = 0; j < n; j++)
                    {
                        double exact = withBias ? bias[j] : 0, magnitude = withBias ? Math.Abs(bias[j]) : 0;
                        for (int p = 0; p < k; p++)
                        {
                            exact += (double)x[i * k + p] * w[j * k + p];
                            magnitude += Math.Abs((double)x[i * k + p] * w[j * k + p]);
                        }

                        double bound = 2 * (k + 1) * Math.Pow(2, -24) * magnitude + 1e-30;
                        Assert.True(Math.Abs(y[i * n + j] - exact) <= bound,
                            $"[{m}, {n}, {k}] fill {fill} bias {withBias}: y[{i}, {j}] = {y[i * n + j]}, expected {exact} (bound {bound:E2})");
                    }
                }

                Assert.True(y[^1] == Sentinel, $"[{m}, {n}, {k}]: wrote past the output");
            }
        }
    }

    // Backward: the activation gradient is overwritten (garbage in xGrad leaves no trace), the parameter gradients
    // accumulate onto what is there (large finite values), as the gradient rule says; few rows, as in decoding tests.
    [Theory]
    [InlineData(1, 37, 19)]
    [InlineData(3, 513, 131)]
    [InlineData(4, 70, 769)]
    public void BackwardOverwritesTheInputGradientAndAccumulatesTheParameterGradients(int m, int n, int k)
    {
        var random = new Random(m + n * 3 + k);
        float[] x = TestData.Uniform(random, m * k), w = TestData.Uniform(random, n * k), dy = TestData.Uniform(random, m * n);
        float[] initialW = TestData.Uniform(random, n * k, 1e3), initialB = TestData.Uniform(random, n, 1e3);
        float[] dx = new float[m * k], dw = (float[])initialW.Clone(), db = (float[])initialB.Clone();
        Array.Fill(dx, float.NaN);
        MatMul.Backward(dy, x, w, m, n, k, dx, dw, db);
        float[] expectedDx = new float[m * k], expectedDw = (float[])initialW.Clone(), expectedDb = (float[])initialB.Clone();
        MatMul.BackwardReference(dy, x, w, m, n, k, expectedDx, expectedDw, expectedDb);
        // Both fp32. dx: sums of n products of size ≤ 1 (Σ|terms| ≤ n), each within n·ε·n of the exact value; twice
        // that, relative to 1. dW, db: m products of size ≤ 1 added onto values up to 1e3, within (m + 1)·ε·(1e3 + m);
        // twice that, relative to 1e3. A skipped overwrite leaves NaN, a skipped accumulate is off by up to 1e3.
        double epsilon = Math.Pow(2, -24);
        Assert.True(Float64.MaxRelativeError(dx, FiniteDifference.ToDouble(expectedDx)) <= 2 * n * epsilon * n, "dx");
        double parameterBound = 2 * (m + 1) * epsilon * (1e3 + m) / 1e3;
        Assert.True(Float64.MaxRelativeError(dw, FiniteDifference.ToDouble(expectedDw), floor: 1e3) <= parameterBound, "dW");
        Assert.True(Float64.MaxRelativeError(db, FiniteDifference.ToDouble(expectedDb), floor: 1e3) <= parameterBound, "db");
    }
}
