using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace HeadLens.Kernels;

// Matrix–vector product, the whole of a linear layer when one token is decoded:
//   y[n] = Σ_k W[n, k] · x[k]        (y += instead of = when accumulate is set)
// N = output features, K = input features; W is row-major [N, K] as nn.Linear stores it, x is [K], y is [N].
// Decoding streams every weight once per token and does 2 flops per 4-byte weight, so this is bound by memory
// bandwidth, not by the FMA units: the fast path keeps four rows of W streaming at once (four independent
// accumulator chains over a shared x held in L1), and splits the rows between the cores because one core alone
// cannot draw the whole memory bandwidth.
// Implementations: Reference (scalar loop, the contract) and Forward (Vector512 when accelerated, else Vector256,
// else scalar; rows split between threads for large W).
public static class Gemv
{
    // Four rows per pass: four loads of W per load of x, four FMA chains to cover the FMA latency.
    private const int RowBlock = 4;

    // Below this many weights (256 KB of fp32) one thread is faster than handing work to another.
    private const long ParallelThreshold = 1 << 16;

    public static void Reference(ReadOnlySpan<float> weight, ReadOnlySpan<float> x, int n, int k, Span<float> y, bool accumulate = false)
    {
        CheckSizes(weight, x, n, k, y);
        for (int row = 0; row < n; row++)
        {
            float sum = 0f;
            for (int i = 0; i < k; i++)
            {
                sum += weight[row * k + i] * x[i];
            }

            y[row] = accumulate ? y[row] + sum : sum;
        }
    }

    /// <summary>y[N] (=, or += with <paramref name="accumulate"/>) W[N,K]·x[K]. Thread count 0 = all cores.</summary>
    public static unsafe void Forward(ReadOnlySpan<float> weight, ReadOnlySpan<float> x, int n, int k, Span<float> y, bool accumulate = false, int threads = 0)
    {
        CheckSizes(weight, x, n, k, y);
        if (n == 0)
        {
            return;
        }

        threads = threads <= 0 ? Environment.ProcessorCount : threads;
        fixed (float* w = weight, xp = x, yp = y)
        {
            if (threads == 1 || (long)n * k < ParallelThreshold)
            {
                Rows(w, xp, yp, 0, n, k, accumulate);
                return;
            }

            // Chunks of whole row blocks, several per thread and handed out dynamically: on a shared machine a
            // core that gets interrupted simply takes fewer chunks.
            nint wa = (nint)w, xa = (nint)xp, ya = (nint)yp;
            int blocks = (n + RowBlock - 1) / RowBlock;
            int chunks = Math.Min(blocks, threads * 8);
            int blocksPerChunk = (blocks + chunks - 1) / chunks;
            chunks = (blocks + blocksPerChunk - 1) / blocksPerChunk;
            Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = threads }, chunk =>
            {
                int first = chunk * blocksPerChunk * RowBlock;
                int end = Math.Min(n, first + blocksPerChunk * RowBlock);
                Rows((float*)wa, (float*)xa, (float*)ya, first, end, k, accumulate);
            });
        }
    }

    private static void CheckSizes(ReadOnlySpan<float> weight, ReadOnlySpan<float> x, int n, int k, Span<float> y)
    {
        if (n < 0 || k < 0 || weight.Length < (long)n * k || x.Length < k || y.Length < n)
        {
            throw new ArgumentException($"gemv: buffers too small for [{n}, {k}]·[{k}]");
        }
    }

    private static unsafe void Rows(float* w, float* x, float* y, int first, int end, int k, bool accumulate)
    {
        int row = first;
        for (; row + RowBlock <= end; row += RowBlock)
        {
            float* w0 = w + (long)row * k;
            var (s0, s1, s2, s3) = Dot4(w0, w0 + k, w0 + 2 * k, w0 + 3 * k, x, k);
            Store(y, row, s0, accumulate);
            Store(y, row + 1, s1, accumulate);
            Store(y, row + 2, s2, accumulate);
            Store(y, row + 3, s3, accumulate);
        }

        for (; row < end; row++)
        {
            float* wr = w + (long)row * k;
            Store(y, row, Dot4(wr, wr, wr, wr, x, k).S0, accumulate);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store(float* y, int row, float sum, bool accumulate) => y[row] = accumulate ? y[row] + sum : sum;

    // Four dot products of rows r0..r3 with x (callers pass the same row four times for a single remaining row).
    private static unsafe (float S0, float S1, float S2, float S3) Dot4(float* r0, float* r1, float* r2, float* r3, float* x, int k)
    {
        int i = 0;
        float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
        if (Vector512.IsHardwareAccelerated && k >= Vector512<float>.Count)
        {
            var a0 = Vector512<float>.Zero;
            var a1 = Vector512<float>.Zero;
            var a2 = Vector512<float>.Zero;
            var a3 = Vector512<float>.Zero;
            for (; i <= k - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var xv = Vector512.Load(x + i);
                a0 = Vector512.FusedMultiplyAdd(Vector512.Load(r0 + i), xv, a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Load(r1 + i), xv, a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Load(r2 + i), xv, a2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.Load(r3 + i), xv, a3);
            }

            (s0, s1, s2, s3) = (Vector512.Sum(a0), Vector512.Sum(a1), Vector512.Sum(a2), Vector512.Sum(a3));
        }
        else if (Vector256.IsHardwareAccelerated && k >= Vector256<float>.Count)
        {
            var a0 = Vector256<float>.Zero;
            var a1 = Vector256<float>.Zero;
            var a2 = Vector256<float>.Zero;
            var a3 = Vector256<float>.Zero;
            for (; i <= k - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var xv = Vector256.Load(x + i);
                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(r0 + i), xv, a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.Load(r1 + i), xv, a1);
                a2 = Vector256.FusedMultiplyAdd(Vector256.Load(r2 + i), xv, a2);
                a3 = Vector256.FusedMultiplyAdd(Vector256.Load(r3 + i), xv, a3);
            }

            (s0, s1, s2, s3) = (Vector256.Sum(a0), Vector256.Sum(a1), Vector256.Sum(a2), Vector256.Sum(a3));
        }

        for (; i < k; i++)
        {
            s0 += r0[i] * x[i];
            s1 += r1[i] * x[i];
            s2 += r2[i] * x[i];
            s3 += r3[i] * x[i];
        }

        return (s0, s1, s2, s3);
    }
}
