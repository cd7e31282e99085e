namespace HeadLens.Kernels;

public static partial class Gemm
{
    // Placeholder fast path until the packed micro-kernel lands: the reference loop.
    private static void MultiplyFast(
        bool transposeA, bool transposeB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        Span<float> c, int ldc, bool accumulate, int threads)
    {
        _ = threads;
        Reference(transposeA, transposeB, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
    }
}
