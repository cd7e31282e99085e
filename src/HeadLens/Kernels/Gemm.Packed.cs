using System.Runtime.Intrinsics;

namespace HeadLens.Kernels;

// Weights packed once for inference. The fast product packs op(B) into column panels on every call because in
// training the weights change every step; in inference they never change, and for the few rows of a short text
// that packing (a transpose of the whole weight matrix) costs more than the product itself. Packing it once keeps
// the per-call cost to the rows of x.
//   y[M,N] = x[M,K] · W[N,K]ᵀ    with W packed as op(B) = Wᵀ
// Layout: panel q holds columns q·NR .. q·NR+NR−1 of op(B) (rows of W) over the whole depth K: row p of the panel is
// NR consecutive floats, W[q·NR + j, p] (zero past N). Any depth block pc of the product is then the contiguous
// slab starting at row pc of each panel, so the blocking of Gemm.Fast needs no change.
public static partial class Gemm
{
    // Below this many multiply-adds per thread a packed product stays on fewer threads: an eighth of the fast
    // product's WorkPerThread, because here nothing is packed per call and a second thread costs only the hand-off.
    // MiniLM's 384 × 384 products of a 16-token text (2.4M multiply-adds) ran on one thread under WorkPerThread; split,
    // a pass of the encoder took 3.12 instead of 3.81 ms at T = 16 and 2.70 instead of 3.38 ms at T = 8 (Zen 4, 2
    // threads, the two thresholds alternated in one process; 1M to 128K gave the same).
    private const long PackedWorkPerThread = 1L << 18;

    /// <summary>
    /// W [N, K] packed into the register tile's panels, for <see cref="MultiplyPacked"/>; null where the fast
    /// product does not run (no vector unit), so callers keep the unpacked path.
    /// </summary>
    public static unsafe PackedWeights? Pack(ReadOnlyMemory<float> weight, int n, int k)
    {
        if (n <= 0 || k <= 0 || weight.Length < (long)n * k)
        {
            throw new ArgumentException($"gemm: cannot pack a weight of {weight.Length} floats as [{n}, {k}]");
        }

        if (!Vector512.IsHardwareAccelerated && !Vector256.IsHardwareAccelerated)
        {
            return null;
        }

        int nr = TileShape.Current.Columns;
        int panels = (n + nr - 1) / nr;
        var packed = GC.AllocateUninitializedArray<float>(checked((panels * k * nr) + AlignmentFloats), pinned: true);
        fixed (float* source = weight.Span)
        fixed (float* buffer = packed)
        {
            float* target = Aligned(buffer);
            for (int q = 0; q < panels; q++)
            {
                TransposeInto(source + ((long)q * nr * k), k, Math.Min(nr, n - (q * nr)), k, target + ((long)q * k * nr), nr);
            }
        }

        return new PackedWeights(weight, packed, n, k);
    }

    /// <summary>Whether the fast product runs here (a vector unit), so that W can come from an <see cref="IPanelSource"/>.</summary>
    internal static bool TakesPanels => Vector512.IsHardwareAccelerated || Vector256.IsHardwareAccelerated;

    /// <summary>
    /// C[M,N] (+)= A[M,K] · Wᵀ with W's panels written by <paramref name="source"/> where the fast product packs B: each
    /// depth block of each panel right before its use (few rows) or into the block the threads share (many rows), so W
    /// is never laid out whole in fp32. Only where <see cref="TakesPanels"/>; the blocking's depth must suit the source.
    /// </summary>
    internal static unsafe void MultiplyFromPanels(
        GemmBlocking blocking, int m, ReadOnlySpan<float> a, int lda, IPanelSource source, int n, int k, Span<float> c, int ldc, bool accumulate,
        int threads = 0)
    {
        if (!TakesPanels || m < 1 || n < 1 || k < 1 || lda < k || ldc < n
            || a.Length < ((long)(m - 1) * lda) + k || c.Length < ((long)(m - 1) * ldc) + n)
        {
            throw new ArgumentException($"gemm: [{m}, {k}] (lda {lda}, {a.Length} floats) · [{n}, {k}]ᵀ from panels into ldc {ldc}, {c.Length} floats");
        }

        long work = (long)m * n * k;
        int threadCount = threads > 0 ? threads : ComputeThreads.Count;
        threadCount = (int)Math.Clamp(Math.Min(threadCount, work / WorkPerThread), 1, 64);
        fixed (float* aPointer = a)
        fixed (float* cPointer = c)
        {
            // No B: every panel comes from the source.
            var job = new Job(false, true, m, n, k, aPointer, lda, null, k, cPointer, ldc, accumulate) { Source = source, Blocking = blocking };
            job.Start(threadCount);
        }
    }

    /// <summary>C[M,N] (+)= A[M,K] · Wᵀ with W packed by <see cref="Pack"/>: the fast product without packing B.</summary>
    public static void MultiplyPacked(
        int m, ReadOnlySpan<float> a, int lda, PackedWeights weight, Span<float> c, int ldc, bool accumulate, int threads = 0) =>
        MultiplyPackedWith(GemmBlocking.ForWeightPanels(m, weight.Columns), m, a, lda, weight, c, ldc, accumulate, threads);

    /// <summary>As <see cref="MultiplyPacked"/>, with the given cache blocking instead of this machine's (tests).</summary>
    internal static unsafe void MultiplyPackedWith(
        GemmBlocking blocking, int m, ReadOnlySpan<float> a, int lda, PackedWeights weight, Span<float> c, int ldc, bool accumulate,
        int threads)
    {
        int n = weight.Rows, k = weight.Columns;
        var source = weight.Source.Span;
        CheckArguments(false, true, m, n, k, a, lda, source, k, c, ldc);
        long work = (long)m * n * k;
        if (m == 0 || work < SmallProduct)
        {
            MultiplyFast(false, true, m, n, k, a, lda, source, k, c, ldc, accumulate, threads, blocking);
            return;
        }

        int threadCount = threads > 0 ? threads : ComputeThreads.Count;
        threadCount = (int)Math.Clamp(Math.Min(threadCount, work / PackedWorkPerThread), 1, 64);
        fixed (float* aPointer = a)
        fixed (float* bPointer = source)
        fixed (float* cPointer = c)
        fixed (float* buffer = weight.Panels)
        {
            // The panels were written from the array's first cache line, which stays put: the array is pinned.
            float* panels = Aligned(buffer);
            var job = new Job(false, true, m, n, k, aPointer, lda, bPointer, k, cPointer, ldc, accumulate) { PackedB = panels, Blocking = blocking };
            job.Start(threadCount);
        }
    }
}

/// <summary>
/// A weight matrix W [N, K] that writes its own panels of op(B) = Wᵀ when a product asks for them (W stored in another
/// form than fp32 rows: QuantizedMatMul decodes ggml blocks straight into them), for <see cref="Gemm.MultiplyFromPanels"/>.
/// </summary>
internal unsafe interface IPanelSource
{
    /// <summary>
    /// Writes rows <paramref name="firstRow"/> … <paramref name="firstRow"/> + <paramref name="rows"/> − 1 of W over
    /// columns (depth) <paramref name="depthStart"/> … + <paramref name="depth"/> − 1 as one panel:
    /// panel[p · <paramref name="width"/> + j] = W[firstRow + j, depthStart + p], zero for j ≥ rows. The product
    /// asks only for depth ranges that start and end on multiples of its blocking's depth, or at K.
    /// </summary>
    void Pack(int firstRow, int rows, int depthStart, int depth, float* panel, int width);
}

/// <summary>A weight matrix W [N, K] (<see cref="Rows"/> × <see cref="Columns"/>) packed for <see cref="Gemm.MultiplyPacked"/>.</summary>
public sealed class PackedWeights
{
    internal PackedWeights(ReadOnlyMemory<float> source, float[] panels, int rows, int columns)
    {
        Source = source;
        Panels = panels;
        Rows = rows;
        Columns = columns;
    }

    /// <summary>The weight as given (for products too small or too short to use the panels).</summary>
    public ReadOnlyMemory<float> Source { get; }

    public int Rows { get; }

    public int Columns { get; }

    /// <summary>Bytes the panels occupy (a copy of the weight, padded to whole panels).</summary>
    public long Bytes => (long)Panels.Length * sizeof(float);

    internal float[] Panels { get; }
}
