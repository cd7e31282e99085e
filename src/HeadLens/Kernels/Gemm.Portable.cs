using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace HeadLens.Kernels;

// C[M,N] (+)= op(A)[M,K] · op(B)[K,N] on machines with Vector128 only (Arm's NEON; x86 without AVX), where the
// Vector512 and Vector256 kernels do not run. Products with M and N both at least PackedMinimum are packed
// (Gemm.Portable.Panels.cs); smaller ones (a few rows against a layer's weights, attention's tiles) are not: op(A) is
// made row-major first if it is transposed (M·K floats, small next to the M·N·K multiply-adds), then by op(B)'s layout:
//   op(B) = Bᵀ (B [N, K], rows along K: a layer's y = x·Wᵀ): tiles of 2 rows of A × 4 rows of B, each of the 8
//     entries a dot product over K in its own Vector128 accumulator, summed across lanes at the end;
//   op(B) = B (rows along N): tiles of 4 rows × 8 columns of C in 8 accumulators, a[i, p] broadcast against B's row p,
//     K in blocks of DepthBlock so that the block of B stays in L2 while every row tile passes over it.
// Multiply-adds are fused where the hardware fuses (MultiplyAddEstimate: Vector128.FusedMultiplyAdd would be a scalar
// loop on x86 without FMA). Edges (rows, columns, depth not a whole tile) are done a vector or a value at a time.
// Threads take ranges of B's rows (first form) or of C's rows (second).
public static partial class Gemm
{
    private const int DepthBlock = 256;

    private static bool RunsVector128 => !Vector512.IsHardwareAccelerated && !Vector256.IsHardwareAccelerated && Vector128.IsHardwareAccelerated;

    // op(A) made row-major, per thread, reused: the attention backward calls this with small products many times.
    [ThreadStatic]
    private static float[]? rowMajorA;

    private static unsafe void MultiplyVector128(
        bool transposeA, bool transposeB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        Span<float> c, int ldc, bool accumulate, int threads)
    {
        int threadCount = (int)Math.Clamp(Math.Min(threads > 0 ? threads : ComputeThreads.Count, (long)m * n * k / WorkPerThread), 1, 64);
        if (m >= PackedMinimum && n >= PackedMinimum)
        {
            fixed (float* ap = a, bp = b, cp = c)
            {
                MultiplyPanels128(transposeA, transposeB, m, n, k, ap, lda, bp, ldb, cp, ldc, accumulate, threadCount);
            }

            return;
        }

        if (transposeA)
        {
            // op(A)[i, p] = A[p, i]: laid out [M, K] once.
            if (rowMajorA is null || rowMajorA.Length < m * k)
            {
                rowMajorA = new float[m * k];
            }

            for (int p = 0; p < k; p++)
            {
                for (int i = 0; i < m; i++)
                {
                    rowMajorA[(i * k) + p] = a[(p * lda) + i];
                }
            }

            a = rowMajorA;
            lda = k;
        }

        fixed (float* ap = a, bp = b, cp = c)
        {
            if (threadCount == 1)
            {
                if (transposeB)
                {
                    DotTiles(ap, lda, bp, ldb, cp, ldc, m, k, 0, n, accumulate);
                }
                else
                {
                    AxpyTiles(ap, lda, bp, ldb, cp, ldc, n, k, 0, m, accumulate);
                }

                return;
            }

            MultiplyVector128OnThreads(transposeB, m, n, k, ap, lda, bp, ldb, cp, ldc, accumulate, threadCount);
        }
    }

    private static unsafe void MultiplyVector128OnThreads(
        bool transposeB, int m, int n, int k, float* a, int lda, float* b, int ldb, float* c, int ldc, bool accumulate, int threadCount)
    {
        nint aa = (nint)a, ba = (nint)b, ca = (nint)c;
        if (transposeB)
        {
            int tiles = (n + 3) / 4, perPart = (tiles + threadCount - 1) / threadCount;
            ComputeThreads.Run((tiles + perPart - 1) / perPart, threadCount, part =>
                DotTiles((float*)aa, lda, (float*)ba, ldb, (float*)ca, ldc, m, k, part * perPart * 4, Math.Min(n, (part + 1) * perPart * 4), accumulate));
        }
        else
        {
            int tiles = (m + 3) / 4, perPart = (tiles + threadCount - 1) / threadCount;
            ComputeThreads.Run((tiles + perPart - 1) / perPart, threadCount, part =>
                AxpyTiles((float*)aa, lda, (float*)ba, ldb, (float*)ca, ldc, n, k, part * perPart * 4, Math.Min(m, (part + 1) * perPart * 4), accumulate));
        }
    }

    // C[i, j] (+)= Σ_p a[i, p]·b[j, p] for every row i and the rows j of B in [firstColumn, endColumn).
    private static unsafe void DotTiles(float* a, int lda, float* b, int ldb, float* c, int ldc, int m, int k, int firstColumn, int endColumn, bool accumulate)
    {
        int j = firstColumn;
        for (; j + 4 <= endColumn; j += 4)
        {
            int i = 0;
            for (; i + 2 <= m; i += 2)
            {
                DotTile2x4(a + ((long)i * lda), lda, b + ((long)j * ldb), ldb, c + ((long)i * ldc) + j, ldc, k, accumulate);
            }

            for (; i < m; i++)
            {
                for (int column = j; column < j + 4; column++)
                {
                    Store(c + ((long)i * ldc) + column, Dot128(a + ((long)i * lda), b + ((long)column * ldb), k), accumulate);
                }
            }
        }

        for (; j < endColumn; j++)
        {
            for (int i = 0; i < m; i++)
            {
                Store(c + ((long)i * ldc) + j, Dot128(a + ((long)i * lda), b + ((long)j * ldb), k), accumulate);
            }
        }
    }

    private static unsafe void DotTile2x4(float* a, int lda, float* b, int ldb, float* c, int ldc, int k, bool accumulate)
    {
        float* a1 = a + lda, b1 = b + ldb, b2 = b + (2 * ldb), b3 = b + (3 * ldb);
        Vector128<float> s00 = default, s01 = default, s02 = default, s03 = default;
        Vector128<float> s10 = default, s11 = default, s12 = default, s13 = default;
        int p = 0;
        for (; p + 4 <= k; p += 4)
        {
            var x0 = Vector128.Load(a + p);
            var x1 = Vector128.Load(a1 + p);
            var w = Vector128.Load(b + p);
            s00 = Vector128.MultiplyAddEstimate(x0, w, s00);
            s10 = Vector128.MultiplyAddEstimate(x1, w, s10);
            w = Vector128.Load(b1 + p);
            s01 = Vector128.MultiplyAddEstimate(x0, w, s01);
            s11 = Vector128.MultiplyAddEstimate(x1, w, s11);
            w = Vector128.Load(b2 + p);
            s02 = Vector128.MultiplyAddEstimate(x0, w, s02);
            s12 = Vector128.MultiplyAddEstimate(x1, w, s12);
            w = Vector128.Load(b3 + p);
            s03 = Vector128.MultiplyAddEstimate(x0, w, s03);
            s13 = Vector128.MultiplyAddEstimate(x1, w, s13);
        }

        float* row0 = c, row1 = c + ldc;
        Store(row0, Vector128.Sum(s00) + Tail(a, b, p, k), accumulate);
        Store(row0 + 1, Vector128.Sum(s01) + Tail(a, b1, p, k), accumulate);
        Store(row0 + 2, Vector128.Sum(s02) + Tail(a, b2, p, k), accumulate);
        Store(row0 + 3, Vector128.Sum(s03) + Tail(a, b3, p, k), accumulate);
        Store(row1, Vector128.Sum(s10) + Tail(a1, b, p, k), accumulate);
        Store(row1 + 1, Vector128.Sum(s11) + Tail(a1, b1, p, k), accumulate);
        Store(row1 + 2, Vector128.Sum(s12) + Tail(a1, b2, p, k), accumulate);
        Store(row1 + 3, Vector128.Sum(s13) + Tail(a1, b3, p, k), accumulate);
    }

    private static unsafe float Dot128(float* x, float* y, int k)
    {
        var sum = Vector128<float>.Zero;
        int p = 0;
        for (; p + 4 <= k; p += 4)
        {
            sum = Vector128.MultiplyAddEstimate(Vector128.Load(x + p), Vector128.Load(y + p), sum);
        }

        return Vector128.Sum(sum) + Tail(x, y, p, k);
    }

    private static unsafe float Tail(float* x, float* y, int from, int k)
    {
        float sum = 0;
        for (int p = from; p < k; p++)
        {
            sum += x[p] * y[p];
        }

        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store(float* c, float value, bool accumulate) => *c = accumulate ? *c + value : value;

    // C[i, j] (+)= Σ_p a[i, p]·b[p, j] for the rows i in [firstRow, endRow) and every column j, K in depth blocks.
    private static unsafe void AxpyTiles(float* a, int lda, float* b, int ldb, float* c, int ldc, int n, int k, int firstRow, int endRow, bool accumulate)
    {
        for (int depth = 0; depth < k; depth += DepthBlock)
        {
            int block = Math.Min(DepthBlock, k - depth);
            bool add = accumulate || depth > 0;
            float* ab = a + depth, bb = b + ((long)depth * ldb);
            int i = firstRow;
            for (; i + 4 <= endRow; i += 4)
            {
                int j = 0;
                for (; j + 8 <= n; j += 8)
                {
                    AxpyTile4x8(ab + ((long)i * lda), lda, bb + j, ldb, c + ((long)i * ldc) + j, ldc, block, add);
                }

                for (int row = i; row < i + 4; row++)
                {
                    AxpyRow(ab + ((long)row * lda), bb, ldb, c + ((long)row * ldc), j, n, block, add);
                }
            }

            for (; i < endRow; i++)
            {
                AxpyRow(ab + ((long)i * lda), bb, ldb, c + ((long)i * ldc), 0, n, block, add);
            }
        }
    }

    private static unsafe void AxpyTile4x8(float* a, int lda, float* b, int ldb, float* c, int ldc, int depth, bool add)
    {
        float* c1 = c + ldc, c2 = c + (2 * ldc), c3 = c + (3 * ldc);
        var zero = Vector128<float>.Zero;
        var s00 = add ? Vector128.Load(c) : zero;
        var s01 = add ? Vector128.Load(c + 4) : zero;
        var s10 = add ? Vector128.Load(c1) : zero;
        var s11 = add ? Vector128.Load(c1 + 4) : zero;
        var s20 = add ? Vector128.Load(c2) : zero;
        var s21 = add ? Vector128.Load(c2 + 4) : zero;
        var s30 = add ? Vector128.Load(c3) : zero;
        var s31 = add ? Vector128.Load(c3 + 4) : zero;
        float* a1 = a + lda, a2 = a + (2 * lda), a3 = a + (3 * lda);
        for (int p = 0; p < depth; p++)
        {
            float* row = b + ((long)p * ldb);
            var w0 = Vector128.Load(row);
            var w1 = Vector128.Load(row + 4);
            var x = Vector128.Create(a[p]);
            s00 = Vector128.MultiplyAddEstimate(x, w0, s00);
            s01 = Vector128.MultiplyAddEstimate(x, w1, s01);
            x = Vector128.Create(a1[p]);
            s10 = Vector128.MultiplyAddEstimate(x, w0, s10);
            s11 = Vector128.MultiplyAddEstimate(x, w1, s11);
            x = Vector128.Create(a2[p]);
            s20 = Vector128.MultiplyAddEstimate(x, w0, s20);
            s21 = Vector128.MultiplyAddEstimate(x, w1, s21);
            x = Vector128.Create(a3[p]);
            s30 = Vector128.MultiplyAddEstimate(x, w0, s30);
            s31 = Vector128.MultiplyAddEstimate(x, w1, s31);
        }

        s00.Store(c);
        s01.Store(c + 4);
        s10.Store(c1);
        s11.Store(c1 + 4);
        s20.Store(c2);
        s21.Store(c2 + 4);
        s30.Store(c3);
        s31.Store(c3 + 4);
    }

    // Columns [from, n) of one row of C over one depth block: four columns per vector, then one at a time.
    private static unsafe void AxpyRow(float* a, float* b, int ldb, float* c, int from, int n, int depth, bool add)
    {
        int j = from;
        for (; j + 4 <= n; j += 4)
        {
            var sum = add ? Vector128.Load(c + j) : Vector128<float>.Zero;
            for (int p = 0; p < depth; p++)
            {
                sum = Vector128.MultiplyAddEstimate(Vector128.Create(a[p]), Vector128.Load(b + ((long)p * ldb) + j), sum);
            }

            sum.Store(c + j);
        }

        for (; j < n; j++)
        {
            float sum = add ? c[j] : 0;
            for (int p = 0; p < depth; p++)
            {
                sum += a[p] * b[((long)p * ldb) + j];
            }

            c[j] = sum;
        }
    }
}
