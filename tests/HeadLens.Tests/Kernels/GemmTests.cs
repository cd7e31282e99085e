using HeadLens.Kernels;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Kernels;

// Tolerance: an fp32 dot product of length k summed in any order is within about k·ε·Σ|a_ip·b_pj| of the exact
// value (ε = 2⁻²⁴ ≈ 6e-8). Errors are measured against that scale, Σ|a·b| per entry (not |c|, which can cancel
// to near zero). For k ≤ 300 the bound is ≤ 1.8e-5 in the worst case and ~√k·ε ≈ 1e-6 typically, so 1e-5 holds
// with a wide margin at the test sizes; for the larger k used below we allow k·ε.
public class GemmTests
{
    public static TheoryData<int, int, int> OddSizes()
    {
        var sizes = new TheoryData<int, int, int>();
        int[] edges = [1, 2, 3, 5, 7, 11, 12, 13, 16, 17, 31, 32, 33, 47, 61, 64, 97, 127, 128, 131, 211, 257, 300];
        var random = new Random(3);
        for (int i = 0; i < 40; i++)
        {
            sizes.Add(edges[random.Next(edges.Length)], edges[random.Next(edges.Length)], edges[random.Next(edges.Length)]);
        }

        sizes.Add(1, 1, 1);
        sizes.Add(300, 300, 300);
        sizes.Add(13, 97, 769); // k past one depth block
        return sizes;
    }

    [Theory]
    [MemberData(nameof(OddSizes))]
    public void FastMatchesFloat64OracleForEveryTransposeAndThreadCount(int m, int n, int k)
    {
        var random = new Random(m * 1000003 + n * 1009 + k);
        foreach (bool transposeA in new[] { false, true })
        {
            foreach (bool transposeB in new[] { false, true })
            {
                foreach (int threads in new[] { 1, 2 })
                {
                    CheckAgainstOracle(random, transposeA, transposeB, m, n, k, threads, accumulate: false, padding: 0);
                }
            }
        }
    }

    [Theory]
    [InlineData(37, 41, 53, 3)]
    [InlineData(100, 70, 260, 17)]
    public void FastRespectsStridesAndAccumulates(int m, int n, int k, int padding)
    {
        var random = new Random(11);
        foreach (bool transposeA in new[] { false, true })
        {
            foreach (bool transposeB in new[] { false, true })
            {
                foreach (int threads in new[] { 1, 2 })
                {
                    CheckAgainstOracle(random, transposeA, transposeB, m, n, k, threads, accumulate: true, padding);
                }
            }
        }
    }

    // M ≡ 4 (mod 12) ends in the 4-row short kernel (256 tokens = 21·12 + 4); N a multiple of 32 or not.
    [Theory]
    [InlineData(4, 32, 9)]
    [InlineData(16, 64, 33)]
    [InlineData(64, 33, 70)]
    [InlineData(100, 96, 5)]
    [InlineData(256, 70, 31)]
    public void ShortLastRowsMatchOracle(int m, int n, int k)
    {
        var random = new Random(m + n + k);
        foreach (bool transposeA in new[] { false, true })
        {
            foreach (bool transposeB in new[] { false, true })
            {
                foreach (int threads in new[] { 1, 2 })
                {
                    CheckAgainstOracle(random, transposeA, transposeB, m, n, k, threads, accumulate: threads == 2, padding: 1);
                }
            }
        }
    }

    // Crosses every cache block: N past the 2048-column block, K past two 768-deep blocks, M past 48-row blocks.
    [Fact]
    public void ProductSpanningSeveralBlocksMatchesOracle()
    {
        var random = new Random(23);
        CheckAgainstOracle(random, false, false, 13, 2100, 40, threads: 2, accumulate: true, padding: 5);
        CheckAgainstOracle(random, true, true, 50, 40, 1600, threads: 1, accumulate: false, padding: 0);
        CheckAgainstOracle(random, false, true, 101, 67, 800, threads: 2, accumulate: false, padding: 2);
        // The Vector128 panels' blocks (1024 columns, 120 rows in strips of 6, 256 deep), on one thread and split by columns or rows.
        CheckAgainstOracle(random, true, false, 131, 1030, 300, threads: 1, accumulate: true, padding: 3);
        CheckAgainstOracle(random, false, true, 131, 1030, 300, threads: 2, accumulate: false, padding: 0);
        CheckAgainstOracle(random, true, true, 1030, 70, 257, threads: 2, accumulate: true, padding: 1);
    }

    // Pack buffers are per thread: products running at the same time on several threads must not disturb each other.
    [Fact]
    public void ConcurrentProductsDoNotShareBuffers()
    {
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 4 }, index =>
        {
            var random = new Random(100 + index);
            int m = 40 + index * 7, n = 50 + index * 5, k = 60 + index * 3;
            try
            {
                CheckAgainstOracle(random, index % 2 == 1, index % 3 == 1, m, n, k, threads: 1 + index % 2, accumulate: false, padding: 0);
            }
            catch (Xunit.Sdk.XunitException error)
            {
                failures.Add(error.Message);
            }
        });
        Assert.Empty(failures);
    }

    [Fact]
    public void LargeOddProductMatchesOracle()
    {
        var random = new Random(5);
        CheckAgainstOracle(random, false, true, 517, 263, 1031, threads: 2, accumulate: false, padding: 0);
    }

    [Fact]
    public void ReferenceMatchesFloat64Oracle()
    {
        var random = new Random(7);
        foreach (bool transposeA in new[] { false, true })
        {
            foreach (bool transposeB in new[] { false, true })
            {
                int m = 5, n = 7, k = 11;
                float[] a = Random(random, m * k), b = Random(random, k * n), c = new float[m * n];
                Gemm.Reference(transposeA, transposeB, m, n, k, a, transposeA ? m : k, b, transposeB ? k : n, c, n, false);
                var (expected, scale) = Float64.GemmWithScale(transposeA, transposeB, m, n, k, a, transposeA ? m : k, b, transposeB ? k : n);
                Assert.True(Float64.MaxScaledError(c, n, expected, scale, m, n) <= 1e-5);
            }
        }
    }

    [Fact]
    public void ZeroDepthClearsOrKeepsOutput()
    {
        float[] c = [1, 2, 3, 4];
        Gemm.Multiply(false, false, 2, 2, 0, [], 0, [], 2, c, 2, accumulate: true);
        Assert.Equal([1f, 2, 3, 4], c);
        Gemm.Multiply(false, false, 2, 2, 0, [], 0, [], 2, c, 2, accumulate: false);
        Assert.Equal([0f, 0, 0, 0], c);
    }

    [Fact]
    public void TooSmallBuffersAreRejected()
    {
        Assert.Throws<ArgumentException>(() =>
            Gemm.Multiply(false, false, 3, 3, 3, new float[8], 3, new float[9], 3, new float[9], 3, false));
    }

    // With AVX-512, A blocks of 24 rows or more are walked in 24×16 tiles (two 12-row A panels against half a B panel,
    // Gemm.Fast.cs, BlockAcross), fewer rows in 12×32 tiles down the block. Both sum each element over the depth in the
    // same order, so the product of 53 rows (two pairs, then a 12-row tile and 5 rows) has the bits of its 12-row and
    // 5-row slices computed on their own: across two depth blocks and two panel groups, with a partial last panel,
    // accumulating, for every transposition; with the B panels packed as used (one row block) and packed a block at a
    // time (row blocks of 24).
    [Theory]
    [InlineData(240)]
    [InlineData(24)]
    public void TwentyFourRowTilesGiveTheBitsOfTwelveRowTiles(int rowBlock)
    {
        var random = new Random(31);
        var blocking = new GemmBlocking(128, rowBlock, 4096);
        const int m = 53, n = 300, k = 300;
        foreach (bool transposeA in new[] { false, true })
        {
            foreach (bool transposeB in new[] { false, true })
            {
                int lda = transposeA ? m : k, ldb = transposeB ? k : n;
                float[] a = Random(random, m * k), b = Random(random, k * n), start = Random(random, m * n);
                float[] whole = (float[])start.Clone(), sliced = (float[])start.Clone();
                Gemm.MultiplyWith(blocking, transposeA, transposeB, m, n, k, a, lda, b, ldb, whole, n, accumulate: true, threads: 1);
                for (int first = 0; first < m; first += 12)
                {
                    int rows = Math.Min(12, m - first);
                    var aRows = transposeA ? a.AsSpan(first) : a.AsSpan(first * lda);
                    Gemm.MultiplyWith(blocking, transposeA, transposeB, rows, n, k, aRows, lda, b, ldb, sliced.AsSpan(first * n), n, accumulate: true, threads: 1);
                }

                Assert.True(whole.AsSpan().SequenceEqual(sliced), $"MC={rowBlock} tA={transposeA} tB={transposeB}: the 24-row walk changes the bits");
            }
        }
    }

    private static void CheckAgainstOracle(
        Random random, bool transposeA, bool transposeB, int m, int n, int k, int threads, bool accumulate, int padding)
    {
        (int aRows, int aCols) = transposeA ? (k, m) : (m, k);
        (int bRows, int bCols) = transposeB ? (n, k) : (k, n);
        int lda = aCols + padding, ldb = bCols + padding, ldc = n + padding;
        float[] a = Random(random, aRows * lda), b = Random(random, bRows * ldb), c = Random(random, m * ldc);
        float[] before = (float[])c.Clone();
        Gemm.Multiply(transposeA, transposeB, m, n, k, a, lda, b, ldb, c, ldc, accumulate, threads);
        var (product, scale) = Float64.GemmWithScale(transposeA, transposeB, m, n, k, a, lda, b, ldb);
        if (accumulate)
        {
            for (int i = 0; i < m; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    product[i * n + j] += before[i * ldc + j];
                    scale[i * n + j] += Math.Abs(before[i * ldc + j]);
                }
            }
        }

        double bound = Math.Max(1e-5, k * Math.Pow(2, -24));
        double error = Float64.MaxScaledError(c, ldc, product, scale, m, n);
        Assert.True(error <= bound, $"m={m} n={n} k={k} tA={transposeA} tB={transposeB} threads={threads}: error {error:E2} > {bound:E2}");
        // Padding between rows of C must be untouched.
        for (int i = 0; i < m; i++)
        {
            for (int j = n; j < ldc; j++)
            {
                Assert.Equal(before[i * ldc + j], c[i * ldc + j]);
            }
        }
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
