using System.Buffers;
using System.Runtime.Intrinsics.X86;

namespace HeadLens.Kernels.Quantized;

// The linear layer's forward with W stored in a ggml type (quantized blocks, F16, BF16 or F32):
//   Y[M, N] = X[M, K] · W[N, K]ᵀ
// M = input rows (tokens), N = output features (rows of W), K = input features (a multiple of the block).
// Implementations:
//   Reference: dequantize all of W (Dequantize.Reference), then Gemm.Reference: the contract.
//   Forward, M ≤ FewVectorsFor(type) (decoding, tiny prompts): QuantizedMatVec over the M vectors — each row of W is decoded
//     in registers while it sits in L1, so the bytes stream from memory once; rows split between the threads.
//   Forward, larger M (prompts, analysis runs): the fast Gemm with W as its B, decoded where Gemm packs B
//     (DecodedPanels): each panel's 32 rows over one depth block decoded right before the kernel reads it, straight
//     into the panel (Q4_0, Q4_K, Q5_K, Q6_K, Q8_0, F16 and BF16 with AVX-512, the first five with AVX2: BlockDecoder.PanelOfRows) or into an L1-sized scratch (BlockDecoder,
//     vectorised) and transposed into the panel. M·2 flops per decoded value make the
//     decoding a small share once M reaches a few dozen tokens. The depth block is rounded to whole ggml blocks (256
//     values for the K-quants). Before, W was decoded ~2 MB of rows at a time, then Gemm transposed those rows into its
//     panels, reading them back from L3 in 32 strided streams: that transpose was 14% of a 64-token prompt of a 1.1B
//     Q4_K_M model and the decoding 7% (Zen 4).
//     Without a vector unit: the same decoding a panel of rows at a time, through Gemm.Multiply.
public static class QuantizedMatMul
{
    /// <summary>Up to this many input rows, the matrix-vector kernel; beyond, dequantized panels and Gemm.</summary>
    public const int FewVectors = 8;

    /// <summary>
    /// <see cref="FewVectors"/> for W in <paramref name="type"/> where its rows go straight into the product's panels
    /// (<see cref="BlockDecoder.PanelOfRows"/>): with AVX-512 Q4_K 6, Q6_K and Q8_0 5, Q4_0 and Q5_K 3; with AVX2 Q4_K
    /// and Q8_0 4, Q4_0, Q5_K and Q6_K 3; else 8. Eight layers' matrices of a 1.1B model (Emerald Rapids, 2 threads), the row dots for
    /// each vector against the panels, AVX-512: Q4_K 6 vectors 57 against 59–69 ms, 8 vectors 75–79 against 63; Q6_K 5
    /// vectors 65–73 against 71–82, 7 vectors 84–91 against 71–79; Q8_0 5 vectors 71–74 against 74–90, 6 vectors 92
    /// against 74; Q4_0 3 vectors 40–42 against 59–62, 6 vectors 104 against 62–82 (four vectors are the panels' best
    /// case below 12: their kernel's four-row form). AVX2: Q4_K 4 vectors 58 against 63, 5 vectors 72 against 64; Q6_K 3
    /// vectors 73 against 73, 4 vectors 95 against 73; Q8_0 4 vectors 64 against 71, 5 vectors 84 against 72; Q4_0 3
    /// vectors 52 against 68, 4 vectors 68 against 69. Q5_K: 3 vectors 70–72 against 91–93, 4 vectors 79–89 against 67–68
    /// (AVX-512); 3 vectors 78–84 against 108–112, 4 vectors 96–102 against 102–109 (AVX2). F16 and BF16 rows go straight into the panels too (AVX-512),
    /// but their matrix-vector kernel stays faster up to 8 tokens (GPT-2 124M F16: 4 tokens 18–20 against 34–40 ms, 8
    /// tokens 29–30 against 33–34).
    /// </summary>
    public static int FewVectorsFor(GgmlType type) => !BlockDecoder.HasPanelOfRows(type) ? FewVectors : (type, BlockDecoder.Is512) switch
    {
        (GgmlType.Q4_K, true) => 6,
        (GgmlType.Q6_K or GgmlType.Q8_0, true) => 5,
        (GgmlType.Q4_0 or GgmlType.Q5_K, true) => 3,
        (GgmlType.Q4_K or GgmlType.Q8_0, false) => 4,
        (GgmlType.Q4_0 or GgmlType.Q5_K or GgmlType.Q6_K, false) => 3,
        _ => FewVectors,
    };

    private const long PanelBytes = 2 << 20;

    /// <summary>The contract: W dequantized whole with the reference decoding, then the plain triple loop.</summary>
    public static void Reference(GgmlType type, ReadOnlySpan<byte> weights, int n, int k, ReadOnlySpan<float> x, int m, Span<float> y)
    {
        CheckShapes(type, weights, n, k, x, m, y);
        var dense = new float[(long)n * k];
        Dequantize.Reference(type, weights[..(int)(n * GgmlTypes.RowBytes(type, k))], dense);
        Gemm.Reference(false, true, m, n, k, x, k, dense, k, y, n, accumulate: false);
    }

    /// <summary>Y[M, N] = X[M, K]·Wᵀ (overwritten), W [N, K] in <paramref name="type"/>.</summary>
    public static void Forward(GgmlType type, ReadOnlySpan<byte> weights, int n, int k, ReadOnlySpan<float> x, int m, Span<float> y) =>
        Forward(type, weights, n, k, x, m, y, null);

    /// <summary>Y = X·Wᵀ with W a <see cref="QuantizedMatrix"/>: as the span form, with what the matrix keeps for its products.</summary>
    public static void Forward(QuantizedMatrix w, ReadOnlySpan<float> x, int m, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(w);
        Forward(w.Type, w.Bytes, w.Rows, w.Columns, x, m, y, m <= FewVectorsFor(w.Type) ? w.HalfExceptions : null);
    }

    private static void Forward(GgmlType type, ReadOnlySpan<byte> weights, int n, int k, ReadOnlySpan<float> x, int m, Span<float> y, HalfExceptions? exceptions)
    {
        CheckShapes(type, weights, n, k, x, m, y);
        if (m <= FewVectorsFor(type))
        {
            QuantizedMatVec.Forward(type, weights, n, k, x, m, y, exceptions);
            return;
        }

        if (Gemm.TakesPanels)
        {
            MultiplyDecodingPanels(type, weights, n, k, x, m, y, GemmBlocking.ForWeightPanels(m, k));
            return;
        }

        int rowBytes = (int)GgmlTypes.RowBytes(type, k);
        int panelRows = (int)Math.Clamp(PanelBytes / (4L * k) / 16 * 16, 16, Math.Max(16, n));
        var rented = ArrayPool<float>.Shared.Rent(panelRows * k);
        try
        {
            for (int start = 0; start < n; start += panelRows)
            {
                int count = Math.Min(panelRows, n - start);
                var panel = rented.AsSpan(0, count * k);
                DequantizeRows(type, weights.Slice(start * rowBytes, count * rowBytes), count, k, panel);
                Gemm.Multiply(false, true, m, count, k, x, k, panel, k, y[start..], n, accumulate: false);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// The blocking <see cref="MultiplyDecodingPanels"/> runs with: <paramref name="blocking"/> with its depth rounded to
    /// whole blocks of <paramref name="type"/> (the nearest multiple, at least one block), so that each depth block of a
    /// panel decodes whole blocks.
    /// </summary>
    internal static GemmBlocking WholeBlocks(GgmlType type, GemmBlocking blocking)
    {
        int block = GgmlTypes.BlockValues(type);
        int depth = Math.Max(block, (int)Math.Round(blocking.Depth / (double)block) * block);
        return depth == blocking.Depth ? blocking : blocking with { Depth = depth };
    }

    /// <summary>Y = X·Wᵀ through the fast Gemm, W decoded into its panels as it asks for them (the file header).</summary>
    internal static unsafe void MultiplyDecodingPanels(
        GgmlType type, ReadOnlySpan<byte> weights, int n, int k, ReadOnlySpan<float> x, int m, Span<float> y, GemmBlocking blocking)
    {
        CheckShapes(type, weights, n, k, x, m, y);
        fixed (byte* w = weights)
        {
            Gemm.MultiplyFromPanels(WholeBlocks(type, blocking), m, x, k, new DecodedPanels(type, w, n, k), n, k, y, n, accumulate: false);
        }
    }

    /// <summary>
    /// One panel as the product asks for it (<see cref="IPanelSource.Pack"/>): rows <paramref name="firstRow"/> … +
    /// <paramref name="rows"/> − 1 of W [<paramref name="totalRows"/>, <paramref name="columns"/>] over depths
    /// <paramref name="depthStart"/> … + <paramref name="depth"/> − 1 (whole blocks), for the tests.
    /// </summary>
    internal static unsafe void DecodePanel(
        GgmlType type, ReadOnlySpan<byte> weights, int totalRows, int columns, int firstRow, int rows, int depthStart, int depth, Span<float> panel, int width)
    {
        if (weights.Length < totalRows * GgmlTypes.RowBytes(type, columns) || panel.Length < depth * width || rows > width
            || firstRow + rows > totalRows || depthStart % GgmlTypes.BlockValues(type) != 0 || depth % GgmlTypes.BlockValues(type) != 0
            || depthStart + depth > columns)
        {
            throw new ArgumentException($"{type}: no panel of rows {firstRow}+{rows}, depths {depthStart}+{depth}, width {width} in [{totalRows}, {columns}]");
        }

        fixed (byte* w = weights)
        fixed (float* target = panel)
        {
            new DecodedPanels(type, w, totalRows, columns).Pack(firstRow, rows, depthStart, depth, target, width);
        }
    }

    // W's panels decoded from its ggml rows: Q4_0, Q4_K, Q5_K, Q6_K, Q8_0, F16 and BF16 with AVX-512 (the first five with AVX2) straight into the panel (BlockDecoder.PanelOfRows); other
    // types each row's depth range into a scratch (rows × depth floats, kept per thread), then transposed into the
    // panel. Lives only inside the `fixed` of the product's call.
    // The next panel's bytes (the same depth range of the next rows) are asked for into L2 once this one is decoded,
    // so they arrive while the kernel runs on this panel: each row's range is a few hundred bytes, a row apart, which
    // the hardware prefetchers do not follow (without it the decoding took 17% of a 64-token Q4_K_M prompt, not 7%).
    private sealed unsafe class DecodedPanels(GgmlType type, byte* weights, int totalRows, int columns) : IPanelSource
    {
        private readonly int rowBytes = (int)GgmlTypes.RowBytes(type, columns);

        [ThreadStatic]
        private static float[]? scratch;

        public void Pack(int firstRow, int rows, int depthStart, int depth, float* panel, int width)
        {
            long offset = GgmlTypes.RowBytes(type, depthStart);
            int bytes = (int)GgmlTypes.RowBytes(type, depth);
            if (BlockDecoder.HasPanelOfRows(type) && width % 16 == 0)
            {
                BlockDecoder.PanelOfRows(type, weights + ((long)firstRow * rowBytes) + offset, rowBytes, rows, depth, panel, width);
            }
            else
            {
                var buffer = scratch;
                if (buffer is null || buffer.Length < rows * depth)
                {
                    scratch = buffer = GC.AllocateUninitializedArray<float>(width * depth, pinned: true);
                }

                fixed (float* decoded = buffer)
                {
                    for (int line = 0; line < rows; line++)
                    {
                        QuantizedMatVec.DecodeRow(type, weights + ((long)(firstRow + line) * rowBytes) + offset, bytes, depth, decoded + (line * depth));
                    }

                    Gemm.TransposeInto(decoded, depth, rows, depth, panel, width);
                }
            }

            int nextEnd = Sse.IsSupported ? Math.Min(totalRows, firstRow + rows + width) : 0;
            for (int row = firstRow + rows; row < nextEnd; row++)
            {
                byte* start = weights + ((long)row * rowBytes) + offset;
                for (int line = 0; line < bytes; line += 64)
                {
                    Sse.Prefetch1(start + line);
                }
            }
        }
    }

    /// <summary>
    /// <paramref name="rows"/> rows of <paramref name="columns"/> values decoded to fp32: the same values as
    /// <see cref="Dequantize.Reference"/> (BlockDecoder's vector decoding writes exactly those values); rows
    /// split between the threads when there are many.
    /// </summary>
    public static unsafe void DequantizeRows(GgmlType type, ReadOnlySpan<byte> source, int rows, int columns, Span<float> destination)
    {
        int rowBytes = (int)GgmlTypes.RowBytes(type, columns);
        if (columns % GgmlTypes.BlockValues(type) != 0 || source.Length < (long)rows * rowBytes || destination.Length < (long)rows * columns)
        {
            throw new ArgumentException($"{type}: {rows} rows of {columns} values need {(long)rows * rowBytes} bytes and {(long)rows * columns} floats");
        }

        fixed (byte* sp = source)
        fixed (float* dp = destination)
        {
            nint sa = (nint)sp, da = (nint)dp;
            void Rows(int first, int end)
            {
                for (int r = first; r < end; r++)
                {
                    QuantizedMatVec.DecodeRow(type, (byte*)sa + ((long)r * rowBytes), rowBytes, columns, (float*)da + ((long)r * columns));
                }
            }

            const int chunk = 16;
            if ((long)rows * columns < 1 << 16)
            {
                Rows(0, rows);
                return;
            }

            ComputeThreads.Run((rows + chunk - 1) / chunk, part => Rows(part * chunk, Math.Min(rows, (part + 1) * chunk)));
        }
    }

    private static void CheckShapes(GgmlType type, ReadOnlySpan<byte> weights, int n, int k, ReadOnlySpan<float> x, int m, Span<float> y)
    {
        if (m < 1 || n < 0 || k < 1 || k % GgmlTypes.BlockValues(type) != 0 || weights.Length < n * GgmlTypes.RowBytes(type, k)
            || x.Length < (long)m * k || y.Length < (long)m * n)
        {
            throw new ArgumentException($"{type} matmul: [{m}, {k}]·[{n}, {k}]ᵀ with {weights.Length} bytes, x {x.Length}, y {y.Length}");
        }
    }
}
