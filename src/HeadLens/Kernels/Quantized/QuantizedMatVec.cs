using System.Buffers;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace HeadLens.Kernels.Quantized;

// y = W·x with W [R, K] stored row-major in a ggml type (R = rows, K = columns, a multiple of the block).
//   y[r] = Σ_k W[r, k] · x[k]
// Decoding streams every weight once per token, so the aim is to decode faster than memory delivers the bytes
// (~15 GB/s on two cores here). Each row is decoded by BlockDecoder into an fp32 buffer that stays in L1 (the same
// values as Dequantize.Reference, bit for bit), then multiplied with each vector by Gemv.Dot (four FMA chains); F16 and
// BF16 rows, and (up to FusedVectors vectors) Q4_0, Q8_0, Q4_K, Q5_K and Q6_K rows, are multiplied straight from the registers instead
// (BlockDecoder.Dot512, or Dot256 with AVX2 only: without the store and reload; Q4_0 and Q8_0 each block's sum times
// its d, the K-quants with each block's min or offset term taken out of the sum and applied once per super-block from
// sums of x prepared once per product and vector; several vectors each in turn, the row staying in L1);
// F16 matrices (AVX-512 or AVX2) with x rearranged once per product (HalfDot: three integer operations per 16 halves
// instead of ten with AVX-512). So the fast path differs from the reference in the order of the sums and, for the K-quant row
// dots, in the rounding of the factored block terms, never in the weights.
// Implementations: Reference (dequantize each row with Dequantize.Reference, then a sequential dot), Forward
// (BlockDecoder's AVX-512 or AVX2 decoding, else the reference decoding; rows split between the threads). Forward
// takes one vector or a few (X [M, K] → Y [M, R]); QuantizedMatMul uses it for short inputs.
public static class QuantizedMatVec
{
    /// <summary>The contract: dequantize each row (scalar), then a sequential dot product with x.</summary>
    public static void Reference(GgmlType type, ReadOnlySpan<byte> weights, int rows, int columns, ReadOnlySpan<float> x, Span<float> y)
    {
        CheckShapes(type, weights, rows, columns, x, y);
        int rowBytes = (int)GgmlTypes.RowBytes(type, columns);
        var row = new float[columns];
        for (int r = 0; r < rows; r++)
        {
            Dequantize.Reference(type, weights.Slice(r * rowBytes, rowBytes), row);
            float sum = 0;
            for (int k = 0; k < columns; k++)
            {
                sum += row[k] * x[k];
            }

            y[r] = sum;
        }
    }

    /// <summary>y = W·x, decoding the blocks of W row by row into L1; rows split between the threads.</summary>
    public static void Forward(GgmlType type, ReadOnlySpan<byte> weights, int rows, int columns, ReadOnlySpan<float> x, Span<float> y) =>
        Forward(type, weights, rows, columns, x, 1, y);

    /// <summary>
    /// Y[M, R] = X[M, K] · Wᵀ for a few vectors (decoding, or a short prompt): each row of W stays in L1 while it is
    /// multiplied with every vector (from the registers where a row dot exists, else decoded once into a small fp32
    /// buffer: <see cref="BlockDecoder"/>, the reference's values exactly), so W streams from memory once for all M vectors. Rows of W are split between
    /// the threads (<see cref="ComputeThreads"/>) in chunks handed out dynamically.
    /// </summary>
    public static void Forward(GgmlType type, ReadOnlySpan<byte> weights, int rows, int columns, ReadOnlySpan<float> x, int vectors, Span<float> y) =>
        Forward(type, weights, rows, columns, x, vectors, y, null);

    /// <summary>
    /// As <see cref="Forward(GgmlType, ReadOnlySpan{byte}, int, int, ReadOnlySpan{float}, int, Span{float})"/>; an
    /// F16 matrix with <paramref name="exceptions"/> (its <see cref="QuantizedMatrix.HalfExceptions"/>) multiplies
    /// through <see cref="HalfDot"/>.
    /// </summary>
    internal static unsafe void Forward(GgmlType type, ReadOnlySpan<byte> weights, int rows, int columns, ReadOnlySpan<float> x, int vectors, Span<float> y, HalfExceptions? exceptions)
    {
        if (vectors < 1 || x.Length < (long)vectors * columns || y.Length < (long)vectors * rows)
        {
            throw new ArgumentException($"{type} matrix-vector product: {vectors} vectors of {columns} need x {(long)vectors * columns} and y {(long)vectors * rows}, got {x.Length} and {y.Length}");
        }

        CheckShapes(type, weights, rows, columns, x, y);
        fixed (byte* wp = weights)
        fixed (float* yp = y)
        {
            Forward(type, columns, x, vectors, [new Part(wp, rows, yp, exceptions)]);
        }
    }

    /// <summary>
    /// One matrix of a product over several matrices that multiply the same x (a layer's Q, K and V; gate and up):
    /// its rows (<see cref="Rows"/> of them, in the product's type), its output Y [M, Rows], and, for F16, its
    /// <see cref="QuantizedMatrix.HalfExceptions"/>. Both pointers stay valid (pinned) for the product.
    /// </summary>
    internal readonly unsafe struct Part(byte* weights, int rows, float* y, HalfExceptions? exceptions)
    {
        public byte* Weights { get; } = weights;

        public int Rows { get; } = rows;

        public float* Y { get; } = y;

        public HalfExceptions? Exceptions { get; } = exceptions;
    }

    /// <summary>
    /// Y_p [M, R_p] = X [M, K] · W_pᵀ for every part p, all of one type and width K: the parts' rows are numbered one
    /// after another and split between the threads as one product, so several matrices cost one hand-off and one
    /// end-of-product wait instead of one each. Every row is computed exactly as a single-matrix product computes it.
    /// </summary>
    internal static unsafe void Forward(GgmlType type, int columns, ReadOnlySpan<float> x, int vectors, ReadOnlySpan<Part> parts)
    {
        if (vectors < 1 || columns <= 0 || columns % GgmlTypes.BlockValues(type) != 0 || x.Length < (long)vectors * columns)
        {
            throw new ArgumentException($"{type} product over {parts.Length} matrices: {vectors} vectors of {columns} need x {(long)vectors * columns}, got {x.Length}");
        }

        int rowBytes = (int)GgmlTypes.RowBytes(type, columns);
        var list = parts.ToArray();
        var firstRows = new int[list.Length + 1];
        for (int p = 0; p < list.Length; p++)
        {
            firstRows[p + 1] = firstRows[p] + list[p].Rows;
        }

        int rows = firstRows[^1];
        bool halves = type is GgmlType.F16 or GgmlType.BF16 && BlockDecoder.IsSupported;
        bool fused = vectors <= FusedVectors && (BlockDecoder.HasDot512(type) || BlockDecoder.HasDot256(type));
        // F16 matrices with their exception lists (AVX-512): x rearranged once for every row (HalfDot), 64-byte aligned,
        // on the stack when small.
        bool split = type == GgmlType.F16 && columns >= 32 && Array.TrueForAll(list, part => part.Exceptions is not null) && HalfDot.Accepts(x[..(vectors * columns)]);
        int preparedLength = split ? (vectors * columns) + 16 : 0;
        Span<float> preparedStore = preparedLength <= StackFloats ? stackalloc float[preparedLength] : new float[preparedLength];
        // The sums of x that the factored K-quant row dots take (BlockDecoder.PrepareSums): one float per 16 values, and
        // for Q4_K x again, rearranged.
        int sumsLength = fused ? BlockDecoder.SumsLength(type, columns) : 0;
        float[]? rentedSums = vectors * sumsLength > StackFloats ? ArrayPool<float>.Shared.Rent(vectors * sumsLength) : null;
        Span<float> sumStore = rentedSums ?? stackalloc float[vectors * sumsLength];
        try
        {
            fixed (float* xp = x, pp = preparedStore, sp = sumStore)
            {
                nint xa = (nint)xp, prepared = ((nint)pp + 63) & ~(nint)63, sa = (nint)sp;
                for (int v = 0; sumsLength > 0 && v < vectors; v++)
                {
                    BlockDecoder.PrepareSums(type, xp + ((long)v * columns), columns, sp + ((long)v * sumsLength));
                }

                for (int v = 0; split && v < vectors; v++)
                {
                    HalfDot.Prepare(xp + ((long)v * columns), columns, (float*)prepared + ((long)v * columns));
                }

                // Rows [first, end) of the parts numbered one after another: each part's share, in order.
                void Rows(int first, int end)
                {
                    for (int p = 0; p < list.Length && first < end; p++)
                    {
                        if (first < firstRows[p + 1])
                        {
                            int stop = Math.Min(end, firstRows[p + 1]);
                            PartRows(list[p], first - firstRows[p], stop - firstRows[p]);
                            first = stop;
                        }
                    }
                }

                void PartRows(Part part, int first, int end)
                {
                    nint wa = (nint)part.Weights, ya = (nint)part.Y;
                    int partRows = part.Rows;
                    var buffer = type == GgmlType.F32 || halves || fused ? null : ArrayPool<float>.Shared.Rent(columns);
                    try
                    {
                        fixed (float* decoded = buffer)
                        {
                            for (int r = first; r < end; r++)
                            {
                                byte* row = (byte*)wa + ((long)r * rowBytes);
                                if (split)
                                {
                                    for (int v = 0; v < vectors; v++)
                                    {
                                        long at = (long)v * columns;
                                        ((float*)ya)[((long)v * partRows) + r] = HalfDot.Dot((short*)row, (float*)prepared + at, (float*)xa + at, columns, part.Exceptions!, r);
                                    }

                                    continue;
                                }

                                if (halves)
                                {
                                    for (int v = 0; v < vectors; v++)
                                    {
                                        ((float*)ya)[((long)v * partRows) + r] = DotHalves(type == GgmlType.F16, row, (float*)xa + ((long)v * columns), columns);
                                    }

                                    continue;
                                }

                                if (fused)
                                {
                                    // Each vector in turn against the row, which stays in L1 after the first.
                                    bool pair = BlockDecoder.Is512 && type == GgmlType.Q4_K && r + 1 < end;
                                    for (int v = 0; v < vectors; v++)
                                    {
                                        float* xv = (float*)xa + ((long)v * columns), sv = (float*)sa + ((long)v * sumsLength), yv = (float*)ya + ((long)v * partRows);
                                        if (pair)
                                        {
                                            BlockDecoder.DotQ4KPair(row, row + rowBytes, columns, sv, yv + r);
                                        }
                                        else
                                        {
                                            yv[r] = BlockDecoder.Is512 ? BlockDecoder.Dot512(type, row, columns, xv, sv) : BlockDecoder.Dot256(type, row, columns, xv, sv);
                                        }
                                    }

                                    r += pair ? 1 : 0; // two rows at a time
                                    continue;
                                }

                                float* values = type == GgmlType.F32 ? (float*)row : decoded;
                                if (type != GgmlType.F32)
                                {
                                    DecodeRow(type, row, rowBytes, columns, decoded);
                                }

                                for (int v = 0; v < vectors; v++)
                                {
                                    ((float*)ya)[((long)v * partRows) + r] = Gemv.Dot(values, (float*)xa + ((long)v * columns), columns, prefetch: type == GgmlType.F32 && Gemv.PrefetchWeights);
                                }
                            }
                        }
                    }
                    finally
                    {
                        if (buffer is not null)
                        {
                            ArrayPool<float>.Shared.Return(buffer);
                        }
                    }
                }

                int chunk = RowChunk(rows, (long)rowBytes * rows * vectors);
                if (chunk == 0)
                {
                    Rows(0, rows);
                    return;
                }

                ComputeThreads.Run((rows + chunk - 1) / chunk, part => Rows(part * chunk, Math.Min(rows, (part + 1) * chunk)));
            }
        }
        finally
        {
            if (rentedSums is not null)
            {
                ArrayPool<float>.Shared.Return(rentedSums);
            }
        }
    }

    // Up to this many vectors each row's dot is taken from the registers once per vector (the row stays in L1), rather
    // than decoded once into a buffer and multiplied from there: eight layers' matrices of a 1.1B model (Emerald Rapids,
    // 2 threads), fused against decoded once: Q4_K 2 vectors 20 against 47 ms, 8 vectors 76 against 140 (AVX-512), 32
    // against 47 and 127 against 145 (AVX2); Q8_0 8 vectors 121 against 149 (AVX-512). Only Q6_K with AVX2 loses at 8
    // (192 against 172–179 ms; 95 against 98–99 at 4).
    private const int FusedVectors = 8;

    // HalfDot's rearranged x, and the K-quants' sums (with Q4_K's rearranged x), live on the caller's stack up to this
    // many floats (64 KiB: a 16384-column row), else on the heap.
    private const int StackFloats = 16384;

    // Below this many weight bytes (times vectors) one thread is faster than waking another.
    private const long ParallelBytes = 1 << 16;

    /// <summary>
    /// How a product of <paramref name="rows"/> rows reading <paramref name="bytes"/> of weights is split between the
    /// compute threads: 0 keeps it on the calling thread (small products: handing out work costs microseconds), else
    /// the rows per chunk, about eight chunks per thread so that an interrupted core simply takes fewer.
    /// </summary>
    internal static int RowChunk(int rows, long bytes)
    {
        int threads = ComputeThreads.Count;
        return threads == 1 || bytes < ParallelBytes ? 0 : Math.Max(1, (rows + (threads * 8) - 1) / (threads * 8));
    }

    // An F16 or BF16 row's dot product, widened in registers: a few instructions per 16 values (BlockDecoder.Widen16)
    // cost less than storing the values to L1 and loading them again. One loop per type and width, with no call in
    // it: a call (even a cold one) made the JIT keep the accumulators on the stack.
    private static unsafe float DotHalves(bool f16, byte* row, float* x, int columns)
    {
        var halves = (short*)row;
        byte* ahead = row + BlockDecoder.PrefetchAhead;
        int i = 0;
        float sum = 0;
        if (BlockDecoder.Is512)
        {
            var a0 = Vector512<float>.Zero;
            var a1 = Vector512<float>.Zero;
            if (f16)
            {
                for (; i <= columns - 32; i += 32)
                {
                    Sse.Prefetch0(ahead + (2 * i));
                    a0 = Vector512.FusedMultiplyAdd(BlockDecoder.Widen16(halves + i, true), Vector512.Load(x + i), a0);
                    a1 = Vector512.FusedMultiplyAdd(BlockDecoder.Widen16(halves + i + 16, true), Vector512.Load(x + i + 16), a1);
                }
            }
            else
            {
                for (; i <= columns - 32; i += 32)
                {
                    Sse.Prefetch0(ahead + (2 * i));
                    a0 = Vector512.FusedMultiplyAdd(BlockDecoder.Widen16(halves + i, false), Vector512.Load(x + i), a0);
                    a1 = Vector512.FusedMultiplyAdd(BlockDecoder.Widen16(halves + i + 16, false), Vector512.Load(x + i + 16), a1);
                }
            }

            sum = Vector512.Sum(a0 + a1);
        }
        else
        {
            var a0 = Vector256<float>.Zero;
            var a1 = Vector256<float>.Zero;
            bool prefetch = Gemv.PrefetchWeights;
            if (f16)
            {
                for (; i <= columns - 16; i += 16)
                {
                    if (prefetch)
                    {
                        Sse.Prefetch0(ahead + (2 * i));
                    }

                    a0 = Vector256.FusedMultiplyAdd(BlockDecoder.Widen8(halves + i, true), Vector256.Load(x + i), a0);
                    a1 = Vector256.FusedMultiplyAdd(BlockDecoder.Widen8(halves + i + 8, true), Vector256.Load(x + i + 8), a1);
                }
            }
            else
            {
                for (; i <= columns - 16; i += 16)
                {
                    if (prefetch)
                    {
                        Sse.Prefetch0(ahead + (2 * i));
                    }

                    a0 = Vector256.FusedMultiplyAdd(BlockDecoder.Widen8(halves + i, false), Vector256.Load(x + i), a0);
                    a1 = Vector256.FusedMultiplyAdd(BlockDecoder.Widen8(halves + i + 8, false), Vector256.Load(x + i + 8), a1);
                }
            }

            sum = Vector256.Sum(a0 + a1);
        }

        for (; i < columns; i++)
        {
            sum += (f16 ? BlockDecoder.Half(row + (2 * i)) : BitConverter.Int32BitsToSingle(halves[i] << 16)) * x[i];
        }

        return sum;
    }

    /// <summary>One row of W as fp32: vectorised where the hardware allows, else the reference decoding.</summary>
    internal static unsafe void DecodeRow(GgmlType type, byte* row, int rowBytes, int columns, float* destination)
    {
        if (type == GgmlType.F32)
        {
            new ReadOnlySpan<float>(row, columns).CopyTo(new Span<float>(destination, columns));
        }
        else if (BlockDecoder.IsSupported)
        {
            BlockDecoder.Decode(type, row, columns, destination, BlockDecoder.Is512);
        }
        else if (BlockDecoder.Has128(type))
        {
            BlockDecoder.Decode128(type, row, columns, destination);
        }
        else
        {
            Dequantize.Reference(type, new ReadOnlySpan<byte>(row, rowBytes), new Span<float>(destination, columns));
        }
    }

    private static void CheckShapes(GgmlType type, ReadOnlySpan<byte> weights, int rows, int columns, ReadOnlySpan<float> x, Span<float> y)
    {
        int per = GgmlTypes.BlockValues(type);
        if (rows < 0 || columns % per != 0 || x.Length < columns || y.Length < rows || weights.Length < rows * GgmlTypes.RowBytes(type, columns))
        {
            throw new ArgumentException($"{type} matrix-vector product: [{rows}, {columns}] with {weights.Length} bytes, x {x.Length}, y {y.Length}");
        }
    }
}
