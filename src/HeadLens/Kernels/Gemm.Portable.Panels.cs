using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace HeadLens.Kernels;

// The Vector128 product for operands large enough to pack (both M and N at least PackedMinimum), in the loop order of
// the AVX kernels (Goto and van de Geijn): for each block of PanelColumns columns, for each PanelDepth-deep slice of K,
// op(B)'s slice is packed into strips [depth, 8] and, per block of PanelRows rows, op(A)'s into strips of 6 rows with
// every value already broadcast to a whole vector ([depth, 6, 4]); then every 8-column strip of B (8 KB, kept in L1)
// meets every 6-row strip of A (24 KB, from L2) in Kernel6x8, whose 12 accumulators hold a 6×8 tile of C over the whole
// depth (a 4×8 tile ran 2048³ at 27 GFLOP/s a thread against 29 for this one, 1.12× → 1.16× OpenBLAS's SSE kernels
// interleaved: its two loads of B served 8 products, not 12, and its two-step loop trip cost a register move per
// product of the second step). The broadcast is paid once per packed value instead of once per use: x86 without AVX has no broadcast load,
// and its two instructions per value (a load and a shuffle, on a port the products use) held 2048³ at 0.93× OpenBLAS's
// SSE kernels against 1.04–1.12× with the loads alone (same-process interleaved runs); on Arm a broadcast load and a
// plain one cost the same, so there only the strip's size changes. Packing reads either layout of A and of B, so no operand
// is transposed beforehand, and both strips are read contiguously whatever the strides (the unpacked tiles fetched a
// row of B every ldb floats: half of OpenBLAS's SSE speed at 2048³). Strips past the edge are zero-padded (nothing is read past
// the operands), and edge tiles go through a 6×8 scratch tile whose padded rows and columns are dropped.
// Threads take ranges of C's columns (or of its rows, where there are more row strips than column strips), each
// packing its own operands, so nothing is shared or waited for inside the product.
public static partial class Gemm
{
    // Both M and N at least this: below it the unpacked tiles win (packing B costs as much as ~20 rows of products).
    private const int PackedMinimum = 64;

    private const int PanelDepth = 256;
    private const int PanelRows = 120; // a whole number of strips
    private const int PanelColumns = 1024;

    // Rows of C per kernel call: 12 accumulators, two vectors of B, a value of A and a product fill x86's 16 registers.
    private const int StripRows = 6;

    [ThreadStatic]
    private static float[]? panelA128;

    [ThreadStatic]
    private static float[]? panelB128;

    private static unsafe void MultiplyPanels128(
        bool transposeA, bool transposeB, int m, int n, int k, float* a, int lda, float* b, int ldb, float* c, int ldc, bool accumulate, int threadCount)
    {
        int rowStrips = (m + StripRows - 1) / StripRows, columnStrips = (n + 7) / 8;
        if (threadCount == 1)
        {
            MultiplyPanels128Part(transposeA, transposeB, 0, m, 0, n, k, a, lda, b, ldb, c, ldc, accumulate);
            return;
        }

        nint aa = (nint)a, ba = (nint)b, ca = (nint)c;
        if (columnStrips >= rowStrips)
        {
            int perPart = (columnStrips + threadCount - 1) / threadCount;
            ComputeThreads.Run((columnStrips + perPart - 1) / perPart, threadCount, part =>
                MultiplyPanels128Part(transposeA, transposeB, 0, m, part * perPart * 8, Math.Min(n, (part + 1) * perPart * 8), k,
                    (float*)aa, lda, (float*)ba, ldb, (float*)ca, ldc, accumulate));
        }
        else
        {
            int perPart = (rowStrips + threadCount - 1) / threadCount;
            ComputeThreads.Run((rowStrips + perPart - 1) / perPart, threadCount, part =>
                MultiplyPanels128Part(transposeA, transposeB, part * perPart * StripRows, Math.Min(m, (part + 1) * perPart * StripRows), 0, n, k,
                    (float*)aa, lda, (float*)ba, ldb, (float*)ca, ldc, accumulate));
        }
    }

    // C[firstRow..endRow, firstColumn..endColumn] (+)= op(A)·op(B) over the whole depth, on the calling thread.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void MultiplyPanels128Part(
        bool transposeA, bool transposeB, int firstRow, int endRow, int firstColumn, int endColumn, int k,
        float* a, int lda, float* b, int ldb, float* c, int ldc, bool accumulate)
    {
        int lengthA = PanelRows * PanelDepth * 4, lengthB = PanelColumns * PanelDepth;
        panelA128 ??= GC.AllocateUninitializedArray<float>(lengthA, pinned: true);
        panelB128 ??= GC.AllocateUninitializedArray<float>(lengthB, pinned: true);
        float* tile = stackalloc float[StripRows * 8];
        fixed (float* panelA = panelA128, panelB = panelB128)
        {
            for (int j0 = firstColumn; j0 < endColumn; j0 += PanelColumns)
            {
                int columns = Math.Min(PanelColumns, endColumn - j0);
                for (int p0 = 0; p0 < k; p0 += PanelDepth)
                {
                    int depth = Math.Min(PanelDepth, k - p0);
                    bool add = accumulate || p0 > 0;
                    PackColumnStrips(transposeB, b, ldb, p0, depth, j0, columns, panelB);
                    for (int i0 = firstRow; i0 < endRow; i0 += PanelRows)
                    {
                        int rows = Math.Min(PanelRows, endRow - i0);
                        PackRowStrips(transposeA, a, lda, i0, rows, p0, depth, panelA);
                        for (int j = 0; j < columns; j += 8)
                        {
                            float* strip = panelB + ((long)j * depth);
                            int tileColumns = Math.Min(8, columns - j);
                            for (int i = 0; i < rows; i += StripRows)
                            {
                                int tileRows = Math.Min(StripRows, rows - i);
                                float* target = c + ((long)(i0 + i) * ldc) + j0 + j;
                                if (tileRows == StripRows && tileColumns == 8)
                                {
                                    Kernel6x8(depth, panelA + ((long)i * depth * 4), strip, target, ldc, add);
                                    continue;
                                }

                                Kernel6x8(depth, panelA + ((long)i * depth * 4), strip, tile, 8, add: false);
                                for (int r = 0; r < tileRows; r++)
                                {
                                    for (int column = 0; column < tileColumns; column++)
                                    {
                                        float value = tile[(r * 8) + column];
                                        float* at = target + ((long)r * ldc) + column;
                                        *at = add ? *at + value : value;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    // Rows [i0, i0 + rows) of op(A), depth [p0, p0 + depth), as strips of 6 rows: strip s holds op(A)[i0 + 6s + r, p0 + p]
    // in all four lanes of the vector at [p·24 + r·4], rows past the end zero. op(A) = A: row i at a + i·lda; op(A) = Aᵀ: A[p, i] at a + p·lda + i.
    private static unsafe void PackRowStrips(bool transposeA, float* a, int lda, int i0, int rows, int p0, int depth, float* panel)
    {
        const int StripStep = StripRows * 4;
        for (int s = 0; s < rows; s += StripRows)
        {
            float* strip = panel + ((long)s * depth * 4);
            int count = Math.Min(StripRows, rows - s);
            if (transposeA)
            {
                for (int p = 0; p < depth; p++)
                {
                    float* from = a + ((long)(p0 + p) * lda) + i0 + s;
                    for (int r = 0; r < StripRows; r++)
                    {
                        Vector128.Create(r < count ? from[r] : 0f).Store(strip + (p * StripStep) + (r * 4));
                    }
                }

                continue;
            }

            for (int r = 0; r < StripRows; r++)
            {
                float* from = a + ((long)(i0 + s + r) * lda) + p0;
                for (int p = 0; p < depth; p++)
                {
                    Vector128.Create(r < count ? from[p] : 0f).Store(strip + (p * StripStep) + (r * 4));
                }
            }
        }
    }

    // Columns [j0, j0 + columns) of op(B), depth [p0, p0 + depth), as strips of 8 columns: strip t holds
    // op(B)[p0 + p, j0 + 8t + q] at [p·8 + q], columns past the end zero. op(B) = B: B[p, j] at b + p·ldb + j;
    // op(B) = Bᵀ: B[j, p] at b + j·ldb + p.
    private static unsafe void PackColumnStrips(bool transposeB, float* b, int ldb, int p0, int depth, int j0, int columns, float* panel)
    {
        for (int t = 0; t < columns; t += 8)
        {
            float* strip = panel + ((long)t * depth);
            int count = Math.Min(8, columns - t);
            if (transposeB)
            {
                for (int q = 0; q < 8; q++)
                {
                    float* from = b + ((long)(j0 + t + q) * ldb) + p0;
                    for (int p = 0; p < depth; p++)
                    {
                        strip[(p * 8) + q] = q < count ? from[p] : 0f;
                    }
                }

                continue;
            }

            for (int p = 0; p < depth; p++)
            {
                float* from = b + ((long)(p0 + p) * ldb) + j0 + t;
                float* to = strip + (p * 8);
                if (count == 8)
                {
                    Vector128.Load(from).Store(to);
                    Vector128.Load(from + 4).Store(to + 4);
                    continue;
                }

                for (int q = 0; q < 8; q++)
                {
                    to[q] = q < count ? from[q] : 0f;
                }
            }
        }
    }

    /// <summary>
    /// C[6, 8] (+)= Σ_p a[p, 0..6)ᵀ · b[p, 0..8) over `depth` steps of a strip of A ([depth, 6, 4]: each value in all
    /// four lanes) and of B ([depth, 8]): per step two loads of B, six of A and twelve multiply-adds into the 12
    /// accumulators. One step per trip: the loop's four instructions are a tenth of the step's.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Kernel6x8(int depth, float* a, float* b, float* c, int ldc, bool add)
    {
        float* c1 = c + ldc, c2 = c1 + ldc, c3 = c2 + ldc, c4 = c3 + ldc, c5 = c4 + ldc;
        Vector128<float> x00, x01, x10, x11, x20, x21, x30, x31, x40, x41, x50, x51;
        if (add)
        {
            x00 = Vector128.Load(c); x01 = Vector128.Load(c + 4); x10 = Vector128.Load(c1); x11 = Vector128.Load(c1 + 4);
            x20 = Vector128.Load(c2); x21 = Vector128.Load(c2 + 4); x30 = Vector128.Load(c3); x31 = Vector128.Load(c3 + 4);
            x40 = Vector128.Load(c4); x41 = Vector128.Load(c4 + 4); x50 = Vector128.Load(c5); x51 = Vector128.Load(c5 + 4);
        }
        else
        {
            x00 = x01 = x10 = x11 = x20 = x21 = x30 = x31 = x40 = x41 = x50 = x51 = Vector128<float>.Zero;
        }

        for (int p = depth; p > 0; p--, a += 24, b += 8)
        {
            var b0 = Vector128.Load(b);
            var b1 = Vector128.Load(b + 4);
            var x = Vector128.Load(a + 0);
            x00 = Vector128.MultiplyAddEstimate(x, b0, x00); x01 = Vector128.MultiplyAddEstimate(x, b1, x01);
            x = Vector128.Load(a + 4);
            x10 = Vector128.MultiplyAddEstimate(x, b0, x10); x11 = Vector128.MultiplyAddEstimate(x, b1, x11);
            x = Vector128.Load(a + 8);
            x20 = Vector128.MultiplyAddEstimate(x, b0, x20); x21 = Vector128.MultiplyAddEstimate(x, b1, x21);
            x = Vector128.Load(a + 12);
            x30 = Vector128.MultiplyAddEstimate(x, b0, x30); x31 = Vector128.MultiplyAddEstimate(x, b1, x31);
            x = Vector128.Load(a + 16);
            x40 = Vector128.MultiplyAddEstimate(x, b0, x40); x41 = Vector128.MultiplyAddEstimate(x, b1, x41);
            x = Vector128.Load(a + 20);
            x50 = Vector128.MultiplyAddEstimate(x, b0, x50); x51 = Vector128.MultiplyAddEstimate(x, b1, x51);
        }

        x00.Store(c); x01.Store(c + 4); x10.Store(c1); x11.Store(c1 + 4);
        x20.Store(c2); x21.Store(c2 + 4); x30.Store(c3); x31.Store(c3 + 4);
        x40.Store(c4); x41.Store(c4 + 4); x50.Store(c5); x51.Store(c5 + 4);
    }
}
