using HeadLens.Kernels;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Kernels;

/// <summary>
/// Weights packed once (Gemm.Pack) give the same product as the per-call packing path, to the bit (same blocking,
/// same micro-kernel, same order of sums), and agree with the plain reference; at every SIMD width in .ci/run.
/// </summary>
public sealed class PackedGemmTests
{
    // Shapes across the blocking: tails of the 12/4/6-row and 32/16-column tiles, depth past one block (768),
    // columns past one column block (2048), and tiny products that fall back to the plain loop.
    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(5, 7, 3)]
    [InlineData(16, 384, 384)]
    [InlineData(13, 97, 769)]
    [InlineData(37, 33, 1600)]
    [InlineData(128, 1536, 384)]
    [InlineData(25, 2100, 40)]
    [InlineData(300, 17, 129)]
    public void PackedEqualsUnpackedAndReference(int m, int n, int k)
    {
        var random = new Random(m * 7919 + n * 31 + k);
        float[] x = TestData.Uniform(random, m * k), w = TestData.Uniform(random, n * k);
        var packed = Gemm.Pack(w, n, k);
        foreach (int threads in new[] { 1, 2 })
        {
            foreach (bool accumulate in new[] { false, true })
            {
                float[] start = TestData.Uniform(random, m * n);
                float[] expected = (float[])start.Clone(), actual = (float[])start.Clone(), reference = (float[])start.Clone();
                Gemm.Multiply(false, true, m, n, k, x, k, w, k, expected, n, accumulate, threads);
                if (packed is null)
                {
                    Gemm.Multiply(false, true, m, n, k, x, k, w, k, actual, n, accumulate, threads);
                }
                else
                {
                    Gemm.MultiplyPacked(m, x, k, packed, actual, n, accumulate, threads);
                }

                Gemm.Reference(false, true, m, n, k, x, k, w, k, reference, n, accumulate);
                Assert.Equal(expected, actual);
                for (int i = 0; i < reference.Length; i++)
                {
                    Assert.True(Math.Abs(reference[i] - actual[i]) <= 1e-6 * k + 1e-5, $"[{i}] {reference[i]} vs {actual[i]} (m={m} n={n} k={k})");
                }
            }
        }
    }

    [Fact]
    public void MatMulThroughPackedWeightsEqualsThePlainForwardAtEveryRowCount()
    {
        var random = new Random(5);
        const int n = 70, k = 50;
        float[] w = TestData.Uniform(random, n * k), bias = TestData.Uniform(random, n);
        var packed = Gemm.Pack(w, n, k);
        if (packed is null)
        {
            Assert.False(System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated, "packing refused on a machine with a vector unit");
            return;
        }

        Assert.Equal(n, packed.Rows);
        Assert.Equal(k, packed.Columns);
        foreach (int m in new[] { 1, 2, 4, 5, 12, 13, 40 })
        {
            float[] x = TestData.Uniform(random, m * k), expected = new float[m * n], actual = new float[m * n];
            MatMul.Forward(x, w, bias, m, n, k, expected);
            MatMul.Forward(x, packed, bias, m, actual);
            Assert.Equal(expected, actual);
        }
    }

    [Fact]
    public void PackRefusesAWeightShorterThanItsShape() =>
        Assert.Throws<ArgumentException>(() => Gemm.Pack(new float[10], 3, 4));
}
