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
}
