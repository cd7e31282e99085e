using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace HeadLens.Kernels;

// Matrix–vector product, the whole of a linear layer when one token is decoded:
//   y[n] = Σ_k W[n, k] · x[k]        (y += instead of = when accumulate is set)
// N = output features, K = input features; W is row-major [N, K] as nn.Linear stores it, x is [K], y is [N].
// Decoding streams every weight once per token and does 2 flops per 4-byte weight, so this is bound by memory
// bandwidth, not by the FMA units: the fast path reads W strictly in order (one row after another, four
// accumulator chains per row, x held in L1), and splits the rows between the cores because one core alone cannot
// draw the whole memory bandwidth.
// Half the bytes is twice the speed: ForwardBf16 reads W stored as bfloat16 (the top 16 bits of an fp32: same
// range, 8 significant bits, relative rounding error ≤ 2⁻⁸) and widens each weight to fp32 in registers (a shift),
// accumulating in fp32. ToBf16 rounds fp32 weights to bf16 once (round to nearest, ties to even).
// Implementations: Reference / ReferenceBf16 (scalar loops, the contract) and Forward / ForwardBf16 (Vector512 when
// accelerated, else Vector256, else scalar; rows split between threads for large W).
public static class Gemv
{
    // Below this many weights (256 KB of fp32) one thread is faster than handing work to another.
    private const long ParallelThreshold = 1 << 16;

    public static void Reference(ReadOnlySpan<float> weight, ReadOnlySpan<float> x, int n, int k, Span<float> y, bool accumulate = false)
    {
        CheckSizes(weight.Length, x, n, k, y);
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
        CheckSizes(weight.Length, x, n, k, y);
        fixed (float* w = weight, xp = x, yp = y)
        {
            nint wa = (nint)w, xa = (nint)xp, ya = (nint)yp;
            SplitRows(n, k, threads, (first, end) =>
            {
                for (int row = first; row < end; row++)
                {
                    float sum = Dot((float*)wa + (long)row * k, (float*)xa, k, PrefetchWeights);
                    ((float*)ya)[row] = accumulate ? ((float*)ya)[row] + sum : sum;
                }
            });
        }
    }

    public static void ReferenceBf16(ReadOnlySpan<ushort> weight, ReadOnlySpan<float> x, int n, int k, Span<float> y, bool accumulate = false)
    {
        CheckSizes(weight.Length, x, n, k, y);
        for (int row = 0; row < n; row++)
        {
            float sum = 0f;
            for (int i = 0; i < k; i++)
            {
                sum += FromBf16(weight[row * k + i]) * x[i];
            }

            y[row] = accumulate ? y[row] + sum : sum;
        }
    }

    /// <summary>As <see cref="Forward"/>, with W in bfloat16 (see <see cref="ToBf16"/>); accumulates in fp32.</summary>
    public static unsafe void ForwardBf16(ReadOnlySpan<ushort> weight, ReadOnlySpan<float> x, int n, int k, Span<float> y, bool accumulate = false, int threads = 0)
    {
        CheckSizes(weight.Length, x, n, k, y);
        fixed (ushort* w = weight)
        fixed (float* xp = x, yp = y)
        {
            nint wa = (nint)w, xa = (nint)xp, ya = (nint)yp;
            SplitRows(n, k, threads, (first, end) =>
            {
                for (int row = first; row < end; row++)
                {
                    float sum = DotBf16((ushort*)wa + (long)row * k, (float*)xa, k);
                    ((float*)ya)[row] = accumulate ? ((float*)ya)[row] + sum : sum;
                }
            });
        }
    }

    /// <summary>fp32 → bfloat16, round to nearest with ties to even; NaN stays NaN, ±∞ stays ±∞.</summary>
    public static void ToBf16(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        if (destination.Length < source.Length)
        {
            throw new ArgumentException($"bf16: destination of {destination.Length} for {source.Length} values");
        }

        for (int i = 0; i < source.Length; i++)
        {
            uint bits = BitConverter.SingleToUInt32Bits(source[i]);
            destination[i] = float.IsNaN(source[i])
                ? (ushort)((bits >> 16) | 0x40) // quiet NaN, sign kept
                : (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
        }
    }

    public static float FromBf16(ushort value) => BitConverter.UInt32BitsToSingle((uint)value << 16);

    // Runs rows [0, n) as chunks: on the calling thread when W is small, else spread over the threads in several
    // chunks per thread, handed out dynamically (on a shared machine a core that gets interrupted takes fewer).
    private static void SplitRows(int n, int k, int threads, Action<int, int> rows)
    {
        threads = threads <= 0 ? ComputeThreads.Count : threads;
        if (threads == 1 || (long)n * k < ParallelThreshold)
        {
            rows(0, n);
            return;
        }

        int chunks = Math.Min(n, threads * 8);
        int rowsPerChunk = (n + chunks - 1) / chunks;
        chunks = (n + rowsPerChunk - 1) / rowsPerChunk;
        ComputeThreads.Run(chunks, threads, chunk => rows(chunk * rowsPerChunk, Math.Min(n, (chunk + 1) * rowsPerChunk)));
    }

    private static void CheckSizes(int weightLength, ReadOnlySpan<float> x, int n, int k, Span<float> y)
    {
        if (n < 0 || k < 0 || weightLength < (long)n * k || x.Length < k || y.Length < n)
        {
            throw new ArgumentException($"gemv: buffers too small for [{n}, {k}]·[{k}]");
        }
    }

    // Whether the dots (16- and 8-lane) ask for the weight rows 4 KiB ahead (BlockDecoder.PrefetchAhead) before the
    // hardware prefetchers would. Not on AMD family 19h (Zen 4): there the same-process A/B over GPT-2's weights (12
    // layers and the vocabulary head, cold, 2 threads) streamed fp32 at 32–35 GB/s with the prefetches and 41–42
    // without, bf16 at 22–24 against 25–27. Elsewhere they stay: on the Ice Lake Xeon they paid (BENCHMARKS.md: the
    // third and ninth sessions there, the eleventh on Zen 4), and at 8 lanes on an Emerald Rapids Xeon with AVX-512 off
    // bf16 streamed at 23–24 GB/s with them against 15 without, fp32 at 26–27 against 22 (the thirty-second session).
    // The F16 rows of GGUF files (HalfDot) follow the same switch, as do the F16 and BF16 rows' 8-lane loop
    // (QuantizedMatVec.DotHalves: 1.5× faster with them there, the same session); the quantized types' dots, which do
    // more arithmetic per byte, keep their prefetches everywhere (on Zen 4 Q4_K_M decoded 30% slower without them).
    // Settable for the tests, which check that both ways give the same bits.
    internal static bool PrefetchWeights { get; set; } = !CpuModel.AmdFamily19h;

    // One row's dot product with four independent accumulators (four FMA chains in flight, as the FMA latency
    // needs). Rows are read one after another, so W streams strictly sequentially: interleaving several short rows
    // (k = 768 is 3 KB) defeats the hardware prefetchers and was measured 3-5x slower. `prefetch`: ask for the memory
    // PrefetchAhead past the row (the next rows of a streamed W); not for a row in a buffer that is already in L1,
    // where those lines are someone else's (a decoded K-quant row: 22–36% slower with them, AVX-512 off).
    internal static unsafe float Dot(float* row, float* x, int k, bool prefetch)
    {
        int i = 0;
        float sum = 0f;
        if (Vector512.IsHardwareAccelerated && k >= Vector512<float>.Count)
        {
            const int width = 16;
            var a0 = Vector512<float>.Zero;
            var a1 = Vector512<float>.Zero;
            var a2 = Vector512<float>.Zero;
            var a3 = Vector512<float>.Zero;
            byte* ahead = (byte*)row + Quantized.BlockDecoder.PrefetchAhead;
            for (; i <= k - 4 * width; i += 4 * width)
            {
                if (prefetch)
                {
                    Sse.Prefetch0(ahead + (4 * i));
                    Sse.Prefetch0(ahead + (4 * i) + 64);
                    Sse.Prefetch0(ahead + (4 * i) + 128);
                    Sse.Prefetch0(ahead + (4 * i) + 192);
                }

                a0 = Vector512.FusedMultiplyAdd(Vector512.Load(row + i), Vector512.Load(x + i), a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Load(row + i + width), Vector512.Load(x + i + width), a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Load(row + i + 2 * width), Vector512.Load(x + i + 2 * width), a2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.Load(row + i + 3 * width), Vector512.Load(x + i + 3 * width), a3);
            }

            for (; i <= k - width; i += width)
            {
                a0 = Vector512.FusedMultiplyAdd(Vector512.Load(row + i), Vector512.Load(x + i), a0);
            }

            sum = Vector512.Sum((a0 + a1) + (a2 + a3));
        }
        else if (Vector256.IsHardwareAccelerated && k >= Vector256<float>.Count)
        {
            const int width = 8;
            var a0 = Vector256<float>.Zero;
            var a1 = Vector256<float>.Zero;
            var a2 = Vector256<float>.Zero;
            var a3 = Vector256<float>.Zero;
            byte* ahead = (byte*)row + Quantized.BlockDecoder.PrefetchAhead;
            for (; i <= k - 4 * width; i += 4 * width)
            {
                if (prefetch)
                {
                    Sse.Prefetch0(ahead + (4 * i));
                    Sse.Prefetch0(ahead + (4 * i) + 64);
                }

                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(row + i), Vector256.Load(x + i), a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.Load(row + i + width), Vector256.Load(x + i + width), a1);
                a2 = Vector256.FusedMultiplyAdd(Vector256.Load(row + i + 2 * width), Vector256.Load(x + i + 2 * width), a2);
                a3 = Vector256.FusedMultiplyAdd(Vector256.Load(row + i + 3 * width), Vector256.Load(x + i + 3 * width), a3);
            }

            for (; i <= k - width; i += width)
            {
                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(row + i), Vector256.Load(x + i), a0);
            }

            sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        else if (Vector128.IsHardwareAccelerated && k >= Vector128<float>.Count)
        {
            // Arm's NEON, x86 without AVX: fused where the hardware fuses (MultiplyAddEstimate; Vector128's
            // FusedMultiplyAdd would be a scalar loop on x86 without FMA).
            const int width = 4;
            var a0 = Vector128<float>.Zero;
            var a1 = Vector128<float>.Zero;
            var a2 = Vector128<float>.Zero;
            var a3 = Vector128<float>.Zero;
            for (; i <= k - 4 * width; i += 4 * width)
            {
                a0 = Vector128.MultiplyAddEstimate(Vector128.Load(row + i), Vector128.Load(x + i), a0);
                a1 = Vector128.MultiplyAddEstimate(Vector128.Load(row + i + width), Vector128.Load(x + i + width), a1);
                a2 = Vector128.MultiplyAddEstimate(Vector128.Load(row + i + 2 * width), Vector128.Load(x + i + 2 * width), a2);
                a3 = Vector128.MultiplyAddEstimate(Vector128.Load(row + i + 3 * width), Vector128.Load(x + i + 3 * width), a3);
            }

            for (; i <= k - width; i += width)
            {
                a0 = Vector128.MultiplyAddEstimate(Vector128.Load(row + i), Vector128.Load(x + i), a0);
            }

            sum = Vector128.Sum((a0 + a1) + (a2 + a3));
        }

        for (; i < k; i++)
        {
            sum += row[i] * x[i];
        }

        return sum;
    }

    // DotBf16: Dot's sums in Dot's order (the same accumulators, strides and tails at each width), each 16 bf16 weights
    // widened to fp32 on the way (zero-extend, shift left 16): on weights that are bf16 values already, it gives Dot's
    // bits, whichever width the machine runs.
    private static unsafe float DotBf16(ushort* row, float* x, int k)
    {
        int i = 0;
        float sum = 0f;
        if (Vector512.IsHardwareAccelerated && k >= Vector512<float>.Count)
        {
            const int width = 16;
            var a0 = Vector512<float>.Zero;
            var a1 = Vector512<float>.Zero;
            var a2 = Vector512<float>.Zero;
            var a3 = Vector512<float>.Zero;
            // Dot's prefetches, as far ahead in bytes: 64 weights are two lines here.
            byte* ahead = (byte*)row + Quantized.BlockDecoder.PrefetchAhead;
            bool prefetch = PrefetchWeights;
            for (; i <= k - 4 * width; i += 4 * width)
            {
                if (prefetch)
                {
                    Sse.Prefetch0(ahead + (2 * i));
                    Sse.Prefetch0(ahead + (2 * i) + 64);
                }

                var first = Vector512.Load(row + i);
                var second = Vector512.Load(row + i + 2 * width);
                a0 = Vector512.FusedMultiplyAdd(Widen(Vector512.WidenLower(first)), Vector512.Load(x + i), a0);
                a1 = Vector512.FusedMultiplyAdd(Widen(Vector512.WidenUpper(first)), Vector512.Load(x + i + width), a1);
                a2 = Vector512.FusedMultiplyAdd(Widen(Vector512.WidenLower(second)), Vector512.Load(x + i + 2 * width), a2);
                a3 = Vector512.FusedMultiplyAdd(Widen(Vector512.WidenUpper(second)), Vector512.Load(x + i + 3 * width), a3);
            }

            for (; i <= k - width; i += width)
            {
                var sixteen = Vector512.WidenLower(Vector256.Load(row + i).ToVector512Unsafe());
                a0 = Vector512.FusedMultiplyAdd(Widen(sixteen), Vector512.Load(x + i), a0);
            }

            sum = Vector512.Sum((a0 + a1) + (a2 + a3));
        }
        else if (Vector256.IsHardwareAccelerated && k >= Vector256<float>.Count)
        {
            const int width = 8;
            var a0 = Vector256<float>.Zero;
            var a1 = Vector256<float>.Zero;
            var a2 = Vector256<float>.Zero;
            var a3 = Vector256<float>.Zero;
            byte* ahead = (byte*)row + Quantized.BlockDecoder.PrefetchAhead;
            bool prefetch = PrefetchWeights;
            for (; i <= k - 4 * width; i += 4 * width)
            {
                if (prefetch)
                {
                    Sse.Prefetch0(ahead + (2 * i));
                }

                var first = Vector256.Load(row + i);
                var second = Vector256.Load(row + i + 2 * width);
                a0 = Vector256.FusedMultiplyAdd(Widen(Vector256.WidenLower(first)), Vector256.Load(x + i), a0);
                a1 = Vector256.FusedMultiplyAdd(Widen(Vector256.WidenUpper(first)), Vector256.Load(x + i + width), a1);
                a2 = Vector256.FusedMultiplyAdd(Widen(Vector256.WidenLower(second)), Vector256.Load(x + i + 2 * width), a2);
                a3 = Vector256.FusedMultiplyAdd(Widen(Vector256.WidenUpper(second)), Vector256.Load(x + i + 3 * width), a3);
            }

            for (; i <= k - width; i += width)
            {
                var eight = Vector256.WidenLower(Vector128.Load(row + i).ToVector256Unsafe());
                a0 = Vector256.FusedMultiplyAdd(Widen(eight), Vector256.Load(x + i), a0);
            }

            sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        else if (Vector128.IsHardwareAccelerated && k >= Vector128<float>.Count)
        {
            const int width = 4;
            var a0 = Vector128<float>.Zero;
            var a1 = Vector128<float>.Zero;
            var a2 = Vector128<float>.Zero;
            var a3 = Vector128<float>.Zero;
            for (; i <= k - 4 * width; i += 4 * width)
            {
                var (first, second) = Vector128.Widen(Vector128.Load(row + i));
                var (third, fourth) = Vector128.Widen(Vector128.Load(row + i + 2 * width));
                a0 = Vector128.MultiplyAddEstimate(Widen(first), Vector128.Load(x + i), a0);
                a1 = Vector128.MultiplyAddEstimate(Widen(second), Vector128.Load(x + i + width), a1);
                a2 = Vector128.MultiplyAddEstimate(Widen(third), Vector128.Load(x + i + 2 * width), a2);
                a3 = Vector128.MultiplyAddEstimate(Widen(fourth), Vector128.Load(x + i + 3 * width), a3);
            }

            for (; i <= k - width; i += width)
            {
                var four = Vector128.WidenLower(Vector128.CreateScalarUnsafe(*(ulong*)(row + i)).AsUInt16());
                a0 = Vector128.MultiplyAddEstimate(Widen(four), Vector128.Load(x + i), a0);
            }

            sum = Vector128.Sum((a0 + a1) + (a2 + a3));
        }

        for (; i < k; i++)
        {
            sum += FromBf16(row[i]) * x[i];
        }

        return sum;
    }

    private static Vector512<float> Widen(Vector512<uint> bits) => Vector512.ShiftLeft(bits, 16).AsSingle();

    private static Vector256<float> Widen(Vector256<uint> bits) => Vector256.ShiftLeft(bits, 16).AsSingle();

    private static Vector128<float> Widen(Vector128<uint> bits) => Vector128.ShiftLeft(bits, 16).AsSingle();
}
