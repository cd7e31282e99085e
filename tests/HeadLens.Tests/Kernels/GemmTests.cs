using HeadLens.Kernels;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Kernels;

public class GemmTests
{
    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void ReferenceMatchesFloat64Oracle(bool transposeA, bool transposeB)
    {
        var random = new Random(7);
        int m = 5, n = 7, k = 11;
        float[] a = Random(random, m * k), b = Random(random, k * n), c = new float[m * n];
        Gemm.Reference(transposeA, transposeB, m, n, k, a, transposeA ? m : k, b, transposeB ? k : n, c, n, false);
        double[] expected = Float64.Gemm(transposeA, transposeB, m, n, k, a, b);
        Assert.True(Float64.MaxRelativeError(c, expected) < 1e-5);
    }

    internal static float[] Random(Random random, int count)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            values[i] = (float)(random.NextDouble() * 2 - 1);
        }

        return values;
    }
}
