using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace HeadLens.Kernels.Quantized;

// Y[M, N] = X̂[M, K] · Wᵀ for W in Q4_K, Q5_K or Q6_K and X̂ the 8-bit activations (Q8Activations, blocks of 256): the
// blocked form of IntegerDot, for prompts (M ≥ FromVectors) with `--activations q8`.
//   Y[m, n] = Σ_b dx[m, b] · (d[n, b] · Σ_g s[n, b, g] · Σ_{i∈g} u[n, i] · q[m, i]  −  e[n, b] · Σ_p c[n, b, p] · Σ_{i∈p} q[m, i])
// b: super-blocks of 256 values; g: the weights' scale groups (Q4_K, Q5_K: 8 sub-blocks of 32, Q6_K: 16 runs of 16);
// u: the weights' unsigned values (Q4_K 0..15, Q5_K 0..31, Q6_K 0..63); q: the activations (−127..127); p: pairs of the
// activations' runs of 16. The correction is the K-quant mins (c = min of sub-block p, e = dmin) or Q6_K's −32 (c = 32 ·
// scale of the run, taken off in integers before the one conversion, as IntegerDot.Reference does).
// Why: IntegerDot reads each row once per token, so a prompt went through the fp32 panel product instead
// (QuantizedMatVecQ8.MultiplyDequantized), bound by 16 multiply-adds per FMA. Here one vpmaddubsw multiplies 64 byte
// pairs: the weights of 32 rows are decoded per super-block into a panel of bytes (four consecutive values of a
// row per 32-bit lane, 32 rows per step of 4 values), and a register tile of 4 tokens × 32 rows broadcasts four of a
// token's activations at a time against it. The 16-bit pair sums stay below 2¹⁵ over a chunk of steps (Q4_K 8 steps:
// 8 · 2 · 15 · 127 = 30,480; Q5_K 4 steps: 4 · 2 · 31 · 127 = 31,496; Q6_K 2 steps: 2 · 2 · 63 · 127 = 32,004), then vpmaddwd multiplies them by the group's
// scale into 32-bit sums; the float factors apply once per super-block.
// Bits: the integer sums are IntegerDot.Reference's, and the float steps per super-block and their order over the
// super-blocks are its too (no fused multiply-add), so every output equals IntegerDot.Reference's bit for bit.
// Work split: panels of 32 rows shared between the threads; each builds a super-block's panel (11.5 KB, L1) and runs
// every tile of tokens over it, adding into its own [M, 32] tile of results.
// With AVX2 only (IntegerMatMul.Avx2.cs): the same panel built eight rows at a time, and the tile run over each
// eighth of its rows.
internal static unsafe partial class IntegerMatMul
{
    /// <summary>
    /// From this many vectors on, the blocked product; below, one IntegerDot per row and vector. 1.1B Q4_K_M prompt,
    /// Zen 4 (AVX-512): 2 tokens 60 against 99 ms (the row dots faster), 4 tokens 112 against 99–107, 8 tokens 133–164
    /// against 104–122. With AVX2 the row dots hold out longer: eight layers' Q4_K matrices (Emerald Rapids with AVX-512
    /// off), 6 vectors 39–40 against 44–45 ms, 7 vectors 45–46 against 45, 8 vectors 52–57 against 44; Q6_K 6 vectors
    /// 50–55 against 57–59, 7 vectors 58 against 57, 8 vectors 66 against 58.
    /// </summary>
    public static int FromVectors => IntegerDot.Is512 ? 4 : 7;

    /// <summary>Rows of W per panel (two 16-lane vectors).</summary>
    public const int Width = 32;

    /// <summary>Tokens per register tile.</summary>
    public const int TileTokens = 4;

    // A panel, per super-block of 32 rows (lane j = row j):
    //   values       [64 steps][32 lanes] × 4 bytes: step s holds values 4s … 4s + 3 of each row, unsigned;
    //   scales       [16 groups][32 lanes] × two equal 16-bit halves: the group's scale (Q4_K uses the first 8);
    //   corrections  [8 pairs][32 lanes] × two 16-bit halves, against the activations' run sums 2p and 2p + 1:
    //                Q4_K (min_p, min_p), Q6_K (32·scale_2p, 32·scale_2p+1);
    //   d, e         [32 lanes] floats: Q4_K d and dmin, Q6_K d twice.
    private const int Steps = 64;
    private const int ValuesBytes = Steps * Width * 4;
    private const int ScalesOffset = ValuesBytes;
    private const int CorrectionsOffset = ScalesOffset + (16 * Width * 4);
    private const int DOffset = CorrectionsOffset + (8 * Width * 4);
    private const int EOffset = DOffset + (Width * 4);
    private const int PanelBytes = EOffset + (Width * 4);

    [ThreadStatic]
    private static byte[]? panelScratch;

    [ThreadStatic]
    private static float[]? tileScratch;

    /// <summary>Whether this machine has the blocked product for <paramref name="type"/> (AVX-512BW or AVX2; Q4_K, Q5_K, Q6_K).</summary>
    public static bool Supports(GgmlType type) => (IntegerDot.Is512 || IntegerDot.Is256) && type is GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K;

    // Steps of four values whose 16-bit pair sums stay below 2¹⁵ (the file header).
    private static int ChunkSteps(GgmlType type) => type switch
    {
        GgmlType.Q4_K => 8,
        GgmlType.Q5_K => 4,
        _ => 2,
    };

    /// <summary>
    /// Y[M, N] = X̂ · Wᵀ (overwritten) for the M vectors quantized in <paramref name="activations"/>
    /// (blocks of 256), W [<paramref name="n"/>, K] at <paramref name="weights"/>.
    /// </summary>
    public static void Multiply(GgmlType type, byte* weights, int n, Q8Activations activations, float* y) =>
        Multiply(type, weights, n, activations, y, IntegerDot.Is512);

    /// <summary>As the public form, with the 16-lane kernels (<paramref name="wide"/>, AVX-512BW) or the 8-lane ones (AVX2).</summary>
    internal static void Multiply(GgmlType type, byte* weights, int n, Q8Activations activations, float* y, bool wide)
    {
        if (!Supports(type) || activations.BlockValues != 256 || (wide && !IntegerDot.Is512))
        {
            throw new ArgumentException($"{type}: no blocked integer product on this machine for activations in blocks of {activations.BlockValues}");
        }

        int m = activations.Vectors, k = activations.Columns;
        int rowBytes = (int)GgmlTypes.RowBytes(type, k);
        int panels = (n + Width - 1) / Width;
        fixed (sbyte* q = activations.Values)
        fixed (float* scales = activations.Scales)
        fixed (short* sums = activations.Sums)
        {
            nint qa = (nint)q, sa = (nint)scales, ra = (nint)sums, wa = (nint)weights, ya = (nint)y;
            void Panels(int first, int end)
            {
                var panelBuffer = panelScratch ??= GC.AllocateUninitializedArray<byte>(PanelBytes + 64, pinned: true);
                var tile = tileScratch;
                if (tile is null || tile.Length < m * Width)
                {
                    tileScratch = tile = GC.AllocateUninitializedArray<float>(Math.Max(m, 64) * Width, pinned: true);
                }

                fixed (byte* unaligned = panelBuffer)
                fixed (float* results = tile)
                {
                    byte* panel = (byte*)(((nint)unaligned + 63) & ~(nint)63);
                    for (int p = first; p < end; p++)
                    {
                        int lines = Math.Min(Width, n - (p * Width));
                        byte* rows = (byte*)wa + ((long)p * Width * rowBytes);
                        long nextBytes = p + 1 < panels ? (long)Math.Min(Width, n - ((p + 1) * Width)) * rowBytes : 0;
                        MultiplyPanel(type, rows, rowBytes, lines, k, m, (sbyte*)qa, (float*)sa, (short*)ra, rows + ((long)Width * rowBytes), nextBytes, panel, results, wide);
                        for (int t = 0; t < m; t++)
                        {
                            new ReadOnlySpan<float>(results + (t * Width), lines).CopyTo(new Span<float>((float*)ya + ((long)t * n) + (p * Width), lines));
                        }
                    }
                }
            }

            const int chunk = 2;
            ComputeThreads.Run((panels + chunk - 1) / chunk, part => Panels(part * chunk, Math.Min(panels, (part + 1) * chunk)));
        }
    }

    // One panel of rows (lines ≤ 32, from `rows`): results[t, j] for all m tokens, super-block by super-block.
    // The next panel's rows (`nextBytes` contiguous bytes from `next`, 0 for none) are asked for into L2 a share per
    // super-block, so that they arrive while this panel is multiplied: a panel reads each of its 32 rows a block at a
    // time, 32 streams a row apart, which the hardware prefetchers do not follow.
    private static void MultiplyPanel(GgmlType type, byte* rows, int rowBytes, int lines, int k, int m, sbyte* q, float* scales, short* sums,
        byte* next, long nextBytes, byte* panel, float* results, bool wide)
    {
        new Span<float>(results, m * Width).Clear();
        int blocks = k / 256, blockBytes = GgmlTypes.BlockBytes(type);
        long share = ((nextBytes / blocks) + 63) & ~63L;
        bool mins = type != GgmlType.Q6_K;
        int chunkSteps = ChunkSteps(type);
        for (int b = 0; b < blocks; b++)
        {
            for (long line = b * share; line < Math.Min(nextBytes, (b + 1) * share); line += 64)
            {
                Sse.Prefetch1(next + line);
            }

            BuildPanel(type, rows + ((long)b * blockBytes), rowBytes, lines, panel, wide);
            for (int t = 0; t < m; t += TileTokens)
            {
                int tokens = Math.Min(TileTokens, m - t);
                sbyte* tileValues = q + ((long)t * k) + (256 * b);
                short* tileSums = sums + ((long)t * (k / 16)) + (16 * b);
                float* tileScales = scales + ((long)t * blocks) + b;
                if (wide)
                {
                    Kernel(panel, mins, chunkSteps, tokens, tileValues, k, tileSums, k / 16, tileScales, blocks, results + (t * Width));
                }
                else
                {
                    Kernel256(panel, mins, chunkSteps, tokens, tileValues, k, tileSums, k / 16, tileScales, blocks, results + (t * Width));
                }
            }
        }
    }

    /// <summary>
    /// The panel of one super-block of <paramref name="lines"/> rows (the layout above the constants): values, group
    /// scales, corrections, d and e per row. Lanes past the last row repeat the first row; their results are not read.
    /// </summary>
    /// <remarks>
    /// Sixteen rows at a time: their bytes loaded as rows of 32-bit words and transposed in registers (unpacks and
    /// 128-bit shuffles), so that each word, four bytes of a row, lands in its row's lane. Gathering the same words
    /// (two 8-lane gathers per 16 rows) took ~2,400 cycles per Q4_K panel on Zen 4, 2.4 times the kernel's work for
    /// four tokens.
    /// </remarks>
    [SkipLocalsInit]
    internal static void BuildPanel(GgmlType type, byte* block, int rowBytes, int lines, byte* panel, bool wide)
    {
        if (!wide)
        {
            BuildPanel256(type, block, rowBytes, lines, panel);
            return;
        }

        var columns = stackalloc Vector512<int>[16];
        var quads = stackalloc Vector512<int>[16];
        for (int half = 0; half < Width; half += 16)
        {
            byte* first = block + ((long)half * rowBytes);
            int count = Math.Min(16, lines - half);
            if (count <= 0)
            {
                first = block;
                count = 1;
            }

            if (type == GgmlType.Q4_K)
            {
                Q4KPanel(first, rowBytes, count, panel + (4 * half), columns, quads);
            }
            else if (type == GgmlType.Q5_K)
            {
                Q5KPanel(first, rowBytes, count, panel + (4 * half), columns, quads);
            }
            else
            {
                Q6KPanel(first, rowBytes, count, panel + (4 * half), columns, quads);
            }
        }
    }

    // Both 16-bit halves of each lane set to its low 16 bits.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Twice(Vector512<int> value) => (value & Vector512.Create(0xFFFF)) | Vector512.ShiftLeft(value, 16);

    // Two 16-bit values per lane: `low` and `high` (each −2¹⁵ ≤ v < 2¹⁵).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Pair(Vector512<int> low, Vector512<int> high) => (low & Vector512.Create(0xFFFF)) | Vector512.ShiftLeft(high, 16);

    // 16 rows' Q4_K super-block into their lanes of the panel (`lanes`: the panel offset by the half's first lane).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q4KPanel(byte* first, int rowBytes, int count, byte* lanes, Vector512<int>* columns, Vector512<int>* quads)
    {
        KFactors(first, rowBytes, count, lanes, columns);

        // Sub-block 2g is the low nibbles of quant bytes 32g … 32g + 31, sub-block 2g + 1 their high nibbles: word j
        // of the 64-byte half h (g = 2h + j / 8) holds four values of each, steps 16g + j % 8 and 16g + 8 + j % 8.
        var low = Vector512.Create(0x0F0F0F0F);
        for (int half = 0; half < 2; half++)
        {
            RowWords.Quads(first, rowBytes, count, 16 + (64 * half), quads);
            byte* steps = lanes + (32 * half * Width * 4);
            for (int c = 0; c < 4; c++)
            {
                // Steps from the half's first: words c and 4 + c hold sub-blocks 4·half (low nibbles, steps c and 4 + c)
                // and 4·half + 1 (high, 8 later); words 8 + c and 12 + c sub-blocks 4·half + 2 and 4·half + 3.
                RowWords.Columns(quads, c, out var word0, out var word4, out var word8, out var word12);
                (word0 & low).Store((int*)(steps + (c * Width * 4)));
                (Vector512.ShiftRightLogical(word0, 4) & low).Store((int*)(steps + ((8 + c) * Width * 4)));
                (word4 & low).Store((int*)(steps + ((4 + c) * Width * 4)));
                (Vector512.ShiftRightLogical(word4, 4) & low).Store((int*)(steps + ((12 + c) * Width * 4)));
                (word8 & low).Store((int*)(steps + ((16 + c) * Width * 4)));
                (Vector512.ShiftRightLogical(word8, 4) & low).Store((int*)(steps + ((24 + c) * Width * 4)));
                (word12 & low).Store((int*)(steps + ((20 + c) * Width * 4)));
                (Vector512.ShiftRightLogical(word12, 4) & low).Store((int*)(steps + ((28 + c) * Width * 4)));
            }
        }
    }

    // The K-quants' factors of 16 rows (Q4_K, Q5_K): d and dmin, each sub-block's scale and min, from the first 16 bytes.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void KFactors(byte* first, int rowBytes, int count, byte* lanes, Vector512<int>* columns)
    {
        // Words: d and dmin, then the 12 scale bytes.
        RowWords.Transpose4(first, rowBytes, count, 0, columns);
        Vector512<int> halves = columns[0], w0 = columns[1], w1 = columns[2], w2 = columns[3];
        BlockDecoder.HalfToSingle(Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(halves, 16), 16)).Store((float*)(lanes + DOffset));
        BlockDecoder.HalfToSingle(Vector512.ShiftRightArithmetic(halves, 16)).Store((float*)(lanes + EOffset));
        for (int j = 0; j < 8; j++)
        {
            BlockDecoder.Q4KScaleMin(w0, w1, w2, j, out var scale, out var min);
            Twice(scale).Store((int*)(lanes + ScalesOffset + (j * Width * 4)));
            Twice(min).Store((int*)(lanes + CorrectionsOffset + (j * Width * 4)));
        }
    }

    // 16 rows' Q5_K super-block into their lanes of the panel: Q4KPanel's steps with the quant bytes from byte 48 and
    // each value's fifth bit from qh (bytes 16-47; bit j of byte l for value l of sub-block j). A method of its own:
    // inlined with the others, the JIT left vector helpers as calls.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q5KPanel(byte* first, int rowBytes, int count, byte* lanes, Vector512<int>* columns, Vector512<int>* quads)
    {
        KFactors(first, rowBytes, count, lanes, columns);
        var fifth = columns;
        RowWords.Eights(first, rowBytes, count, 16, fifth);
        for (int half = 0; half < 2; half++)
        {
            RowWords.Quads(first, rowBytes, count, 48 + (64 * half), quads);
            byte* steps = lanes + (32 * half * Width * 4);
            for (int c = 0; c < 4; c++)
            {
                // As Q4KPanel; words c and 4 + c belong to group 2·half (sub-blocks 4·half, 4·half + 1), words 8 + c and
                // 12 + c to group 2·half + 1; word j's fifth bits are in qh word j % 8.
                RowWords.Columns(quads, c, out var word0, out var word4, out var word8, out var word12);
                int g = 2 * half;
                BlockDecoder.Q5KValues(word0, fifth[c], g, out var low, out var high);
                low.Store((int*)(steps + (c * Width * 4)));
                high.Store((int*)(steps + ((8 + c) * Width * 4)));
                BlockDecoder.Q5KValues(word4, fifth[4 + c], g, out low, out high);
                low.Store((int*)(steps + ((4 + c) * Width * 4)));
                high.Store((int*)(steps + ((12 + c) * Width * 4)));
                BlockDecoder.Q5KValues(word8, fifth[c], g + 1, out low, out high);
                low.Store((int*)(steps + ((16 + c) * Width * 4)));
                high.Store((int*)(steps + ((24 + c) * Width * 4)));
                BlockDecoder.Q5KValues(word12, fifth[4 + c], g + 1, out low, out high);
                low.Store((int*)(steps + ((20 + c) * Width * 4)));
                high.Store((int*)(steps + ((28 + c) * Width * 4)));
            }
        }
    }

    // 16 rows' Q6_K super-block into their lanes of the panel. Per 128 values (half h): ql bytes 64h … 64h + 31 hold
    // runs 0 (low nibbles) and 2 (high), bytes 64h + 32 … runs 1 and 3; qh byte 128 + 32h + l holds the two high bits
    // of value l of run r at bits 2r (IntegerDot.Q6's layout).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q6KPanel(byte* first, int rowBytes, int count, byte* lanes, Vector512<int>* columns, Vector512<int>* quads)
    {
        // d is the half at byte 208: the upper word of bytes 206-209 (a word at 208 would reach past the block).
        RowWords.Transpose4(first, rowBytes, count, 194, columns);
        var d = BlockDecoder.HalfToSingle(Vector512.ShiftRightArithmetic(columns[3], 16));
        d.Store((float*)(lanes + DOffset));
        d.Store((float*)(lanes + EOffset));
        RowWords.Transpose4(first, rowBytes, count, 192, columns);
        for (int t = 0; t < 4; t++)
        {
            var four = columns[t];
            var c0 = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(four, 24), 24);
            var c1 = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(four, 16), 24);
            var c2 = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(four, 8), 24);
            var c3 = Vector512.ShiftRightArithmetic(four, 24);
            Twice(c0).Store((int*)(lanes + ScalesOffset + (((4 * t) + 0) * Width * 4)));
            Twice(c1).Store((int*)(lanes + ScalesOffset + (((4 * t) + 1) * Width * 4)));
            Twice(c2).Store((int*)(lanes + ScalesOffset + (((4 * t) + 2) * Width * 4)));
            Twice(c3).Store((int*)(lanes + ScalesOffset + (((4 * t) + 3) * Width * 4)));
            Pair(Vector512.ShiftLeft(c0, 5), Vector512.ShiftLeft(c1, 5)).Store((int*)(lanes + CorrectionsOffset + (2 * t * Width * 4)));
            Pair(Vector512.ShiftLeft(c2, 5), Vector512.ShiftLeft(c3, 5)).Store((int*)(lanes + CorrectionsOffset + (((2 * t) + 1) * Width * 4)));
        }

        // The high bits of both halves (qh, bytes 128-191): word i of half h is word 8h + i.
        var highBits = columns;
        RowWords.Quads(first, rowBytes, count, 128, quads);
        for (int c = 0; c < 4; c++)
        {
            RowWords.Columns(quads, c, out highBits[c], out highBits[4 + c], out highBits[8 + c], out highBits[12 + c]);
        }

        for (int h = 0; h < 2; h++)
        {
            RowWords.Quads(first, rowBytes, count, 64 * h, quads);
            for (int c = 0; c < 4; c++)
            {
                // Words i and 8 + i (i = c, 4 + c) are the same four values of runs 0, 2 and 1, 3.
                RowWords.Columns(quads, c, out var word0, out var word4, out var word8, out var word12);
                Q6KValues(word0, word8, highBits[(8 * h) + c], lanes + (((32 * h) + c) * Width * 4));
                Q6KValues(word4, word12, highBits[(8 * h) + 4 + c], lanes + (((32 * h) + 4 + c) * Width * 4));
            }
        }
    }

    // Four values of each of a half's four runs of 32 (steps s, s + 8, s + 16, s + 24 from `step`): their low nibbles
    // from the words of runs 0 and 2 (`firstRuns`) and 1 and 3 (`secondRuns`), their two high bits from `high`.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q6KValues(Vector512<int> firstRuns, Vector512<int> secondRuns, Vector512<int> high, byte* step)
    {
        var low = Vector512.Create(0x0F0F0F0F);
        var two = Vector512.Create(0x30303030);
        ((firstRuns & low) | (Vector512.ShiftLeft(high, 4) & two)).Store((int*)step);
        ((secondRuns & low) | (Vector512.ShiftLeft(high, 2) & two)).Store((int*)(step + (8 * Width * 4)));
        ((Vector512.ShiftRightLogical(firstRuns, 4) & low) | (high & two)).Store((int*)(step + (16 * Width * 4)));
        ((Vector512.ShiftRightLogical(secondRuns, 4) & low) | (Vector512.ShiftRightLogical(high, 2) & two)).Store((int*)(step + (24 * Width * 4)));
    }

    /// <summary>
    /// results[t, 0..31] += the super-block's part (the file header) for <paramref name="tokens"/> ≤ 4 tokens: token t's
    /// activations at <paramref name="q"/> + t·<paramref name="qStride"/>, its run sums and its scale likewise.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Kernel(byte* panel, bool mins, int chunkSteps, int tokens, sbyte* q, int qStride, short* sums, int sumsStride, float* scales, int scalesStride, float* results)
    {
        // Missing tokens repeat the first; their results are not written.
        sbyte* q0 = q, q1 = q + (tokens > 1 ? qStride : 0), q2 = q + (tokens > 2 ? 2 * qStride : 0), q3 = q + (tokens > 3 ? 3 * qStride : 0);
        int groupSteps = mins ? 8 : 4;
        Vector512<int> i00 = default, i01 = default, i10 = default, i11 = default, i20 = default, i21 = default, i30 = default, i31 = default;
        for (int step = 0; step < Steps; step += chunkSteps)
        {
            Vector512<short> p00 = default, p01 = default, p10 = default, p11 = default, p20 = default, p21 = default, p30 = default, p31 = default;
            // Two steps per pass (every chunk is a multiple of two): half the loop's bookkeeping per multiply.
            for (int s = step; s < step + chunkSteps; s += 2)
            {
                byte* w = panel + (s * Width * 4);
                var w0 = Vector512.Load(w);
                var w1 = Vector512.Load(w + 64);
                var x = Vector512.Create(*(int*)(q0 + (4 * s))).AsSByte();
                p00 += Avx512BW.MultiplyAddAdjacent(w0, x);
                p01 += Avx512BW.MultiplyAddAdjacent(w1, x);
                x = Vector512.Create(*(int*)(q1 + (4 * s))).AsSByte();
                p10 += Avx512BW.MultiplyAddAdjacent(w0, x);
                p11 += Avx512BW.MultiplyAddAdjacent(w1, x);
                x = Vector512.Create(*(int*)(q2 + (4 * s))).AsSByte();
                p20 += Avx512BW.MultiplyAddAdjacent(w0, x);
                p21 += Avx512BW.MultiplyAddAdjacent(w1, x);
                x = Vector512.Create(*(int*)(q3 + (4 * s))).AsSByte();
                p30 += Avx512BW.MultiplyAddAdjacent(w0, x);
                p31 += Avx512BW.MultiplyAddAdjacent(w1, x);
                w0 = Vector512.Load(w + (Width * 4));
                w1 = Vector512.Load(w + (Width * 4) + 64);
                x = Vector512.Create(*(int*)(q0 + (4 * s) + 4)).AsSByte();
                p00 += Avx512BW.MultiplyAddAdjacent(w0, x);
                p01 += Avx512BW.MultiplyAddAdjacent(w1, x);
                x = Vector512.Create(*(int*)(q1 + (4 * s) + 4)).AsSByte();
                p10 += Avx512BW.MultiplyAddAdjacent(w0, x);
                p11 += Avx512BW.MultiplyAddAdjacent(w1, x);
                x = Vector512.Create(*(int*)(q2 + (4 * s) + 4)).AsSByte();
                p20 += Avx512BW.MultiplyAddAdjacent(w0, x);
                p21 += Avx512BW.MultiplyAddAdjacent(w1, x);
                x = Vector512.Create(*(int*)(q3 + (4 * s) + 4)).AsSByte();
                p30 += Avx512BW.MultiplyAddAdjacent(w0, x);
                p31 += Avx512BW.MultiplyAddAdjacent(w1, x);
            }

            byte* scale = panel + ScalesOffset + (step / groupSteps * Width * 4);
            var s0 = Vector512.Load((short*)scale);
            var s1 = Vector512.Load((short*)(scale + 64));
            i00 += Avx512BW.MultiplyAddAdjacent(p00, s0);
            i01 += Avx512BW.MultiplyAddAdjacent(p01, s1);
            i10 += Avx512BW.MultiplyAddAdjacent(p10, s0);
            i11 += Avx512BW.MultiplyAddAdjacent(p11, s1);
            i20 += Avx512BW.MultiplyAddAdjacent(p20, s0);
            i21 += Avx512BW.MultiplyAddAdjacent(p21, s1);
            i30 += Avx512BW.MultiplyAddAdjacent(p30, s0);
            i31 += Avx512BW.MultiplyAddAdjacent(p31, s1);
        }

        short* r0 = sums, r1 = sums + (tokens > 1 ? sumsStride : 0), r2 = sums + (tokens > 2 ? 2 * sumsStride : 0), r3 = sums + (tokens > 3 ? 3 * sumsStride : 0);
        Vector512<int> j00 = default, j01 = default, j10 = default, j11 = default, j20 = default, j21 = default, j30 = default, j31 = default;
        for (int pair = 0; pair < 8; pair++)
        {
            var c0 = Vector512.Load((short*)(panel + CorrectionsOffset + (pair * Width * 4)));
            var c1 = Vector512.Load((short*)(panel + CorrectionsOffset + (pair * Width * 4) + 64));
            var x = Vector512.Create(*(int*)(r0 + (2 * pair))).AsInt16();
            j00 += Avx512BW.MultiplyAddAdjacent(c0, x);
            j01 += Avx512BW.MultiplyAddAdjacent(c1, x);
            x = Vector512.Create(*(int*)(r1 + (2 * pair))).AsInt16();
            j10 += Avx512BW.MultiplyAddAdjacent(c0, x);
            j11 += Avx512BW.MultiplyAddAdjacent(c1, x);
            x = Vector512.Create(*(int*)(r2 + (2 * pair))).AsInt16();
            j20 += Avx512BW.MultiplyAddAdjacent(c0, x);
            j21 += Avx512BW.MultiplyAddAdjacent(c1, x);
            x = Vector512.Create(*(int*)(r3 + (2 * pair))).AsInt16();
            j30 += Avx512BW.MultiplyAddAdjacent(c0, x);
            j31 += Avx512BW.MultiplyAddAdjacent(c1, x);
        }

        var d0 = Vector512.Load((float*)(panel + DOffset));
        var d1 = Vector512.Load((float*)(panel + DOffset + 64));
        var e0 = Vector512.Load((float*)(panel + EOffset));
        var e1 = Vector512.Load((float*)(panel + EOffset + 64));
        Finish(mins, i00, i01, j00, j01, d0, d1, e0, e1, scales[0], results);
        if (tokens > 1)
        {
            Finish(mins, i10, i11, j10, j11, d0, d1, e0, e1, scales[scalesStride], results + Width);
        }

        if (tokens > 2)
        {
            Finish(mins, i20, i21, j20, j21, d0, d1, e0, e1, scales[2 * scalesStride], results + (2 * Width));
        }

        if (tokens > 3)
        {
            Finish(mins, i30, i31, j30, j31, d0, d1, e0, e1, scales[3 * scalesStride], results + (3 * Width));
        }
    }

    // One token's row of results += its super-block part, in IntegerDot.Reference's float steps: Q4_K
    // (dx·d)·dots − (dx·dmin)·mins, Q6_K (dx·d)·(dots − offsets).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Finish(bool mins, Vector512<int> dots0, Vector512<int> dots1, Vector512<int> corrections0, Vector512<int> corrections1,
        Vector512<float> d0, Vector512<float> d1, Vector512<float> e0, Vector512<float> e1, float scale, float* results)
    {
        var dx = Vector512.Create(scale);
        Vector512<float> part0, part1;
        if (mins)
        {
            part0 = ((dx * d0) * Vector512.ConvertToSingle(dots0)) - ((dx * e0) * Vector512.ConvertToSingle(corrections0));
            part1 = ((dx * d1) * Vector512.ConvertToSingle(dots1)) - ((dx * e1) * Vector512.ConvertToSingle(corrections1));
        }
        else
        {
            part0 = (dx * d0) * Vector512.ConvertToSingle(dots0 - corrections0);
            part1 = (dx * d1) * Vector512.ConvertToSingle(dots1 - corrections1);
        }

        (Vector512.Load(results) + part0).Store(results);
        (Vector512.Load(results + 16) + part1).Store(results + 16);
    }
}
