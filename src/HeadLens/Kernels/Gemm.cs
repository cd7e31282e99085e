namespace HeadLens.Kernels;

// General matrix product, the workhorse of every projection:
//   C[M,N] = op(A)[M,K] · op(B)[K,N]        (accumulate: C += …)
// op(X) is X or Xᵀ. Row-major; lda/ldb/ldc are row strides in floats.
// Implementations: Reference (plain triple loop, the contract) and Multiply (the fast path).
public static partial class Gemm
{
    /// <summary>
    /// C = op(A)·op(B), or C += op(A)·op(B) when <paramref name="accumulate"/> is set; on up to
    /// <paramref name="threads"/> threads (0 = <see cref="ComputeThreads.Count"/>).
    /// </summary>
    public static void Multiply(
        bool transposeA, bool transposeB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        Span<float> c, int ldc, bool accumulate, int threads = 0)
    {
        CheckArguments(transposeA, transposeB, m, n, k, a, lda, b, ldb, c, ldc);
        MultiplyFast(transposeA, transposeB, m, n, k, a, lda, b, ldb, c, ldc, accumulate, threads, GemmBlocking.ForProduct(m, k));
    }

    /// <summary>
    /// As <see cref="Multiply"/>, with the given cache blocking instead of this machine's (tests, sweeps); with
    /// <paramref name="partsInTurn"/>, the threads' parts run one after another on the calling thread, as they may
    /// when no other thread is free (tests: the parts must not wait on each other).
    /// </summary>
    internal static void MultiplyWith(
        GemmBlocking blocking, bool transposeA, bool transposeB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        Span<float> c, int ldc, bool accumulate, int threads, bool partsInTurn = false)
    {
        CheckArguments(transposeA, transposeB, m, n, k, a, lda, b, ldb, c, ldc);
        MultiplyFast(transposeA, transposeB, m, n, k, a, lda, b, ldb, c, ldc, accumulate, threads, blocking, partsInTurn);
    }

    /// <summary>The contract: a plain triple loop, summing in index order in float.</summary>
    public static void Reference(
        bool transposeA, bool transposeB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        Span<float> c, int ldc, bool accumulate)
    {
        CheckArguments(transposeA, transposeB, m, n, k, a, lda, b, ldb, c, ldc);
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                float sum = 0f;
                for (int p = 0; p < k; p++)
                {
                    float aip = transposeA ? a[p * lda + i] : a[i * lda + p];
                    float bpj = transposeB ? b[j * ldb + p] : b[p * ldb + j];
                    sum += aip * bpj;
                }

                c[i * ldc + j] = accumulate ? c[i * ldc + j] + sum : sum;
            }
        }
    }

    private static void CheckArguments(
        bool transposeA, bool transposeB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc)
    {
        if (m < 0 || n < 0 || k < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(m), $"negative size in gemm m={m} n={n} k={k}");
        }

        if (m == 0 || n == 0)
        {
            return;
        }

        // Rows and columns of A and B as stored.
        (int aRows, int aCols) = transposeA ? (k, m) : (m, k);
        (int bRows, int bCols) = transposeB ? (n, k) : (k, n);
        CheckMatrix("A", a, aRows, aCols, lda);
        CheckMatrix("B", b, bRows, bCols, ldb);
        if (ldc < n || (long)(m - 1) * ldc + n > c.Length)
        {
            throw new ArgumentException($"gemm: C is too small for [{m}, {n}] with stride {ldc}");
        }
    }

    private static void CheckMatrix(string name, ReadOnlySpan<float> data, int rows, int cols, int stride)
    {
        if (rows == 0 || cols == 0)
        {
            return;
        }

        if (stride < cols || (long)(rows - 1) * stride + cols > data.Length)
        {
            throw new ArgumentException($"gemm: {name} is too small for [{rows}, {cols}] with stride {stride}");
        }
    }
}
