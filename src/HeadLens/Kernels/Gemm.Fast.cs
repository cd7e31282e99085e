using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace HeadLens.Kernels;

// The fast path of C[M,N] (+)= op(A)[M,K] · op(B)[K,N], after BLIS/GotoBLAS:
//   for each column block jc (NC wide), for each depth block pc (KC deep):
//     pack op(B)[pc.., jc..] into NR-wide panels (row p of a panel = NR consecutive floats);
//     for each row block ic (MC tall): pack op(A)[ic.., pc..] into MR-tall panels (column p = MR floats);
//       for each NR panel, for each MR panel: the micro-kernel accumulates an MR×NR tile of C in registers.
// With AVX-512 an A block of 24 rows or more is walked the other way round (Block → BlockAcross): for each group of 8 B
// panels (in L2), for each pair of A panels (in L1), 24×16 tiles along C's rows, the same packing and the same bits.
// KC, MC and NC come from the caches the machine reports (GemmBlocking: why, the sizes each level must hold, where
// the depth is sized by L2 instead, and where each product splits its depth into equal blocks: Zen 4, 128 rows or more):
// the B panel being used stays in L1 (there, streams from L2) while the kernel runs down the A block, which stays in L2.
// Packed panels start on a cache line, and each kernel call asks for the cache lines of the next C tile while it
// runs (PrefetchRow). The packing asks for its source ahead too (rows of B ldb apart, the next rows of a transpose,
// and, where B panels are packed as used, the next panel's source while the kernel runs on this one): strided and
// short streams that the hardware prefetchers do not follow far enough.
// Register tiles: 12×32 with Vector512 (24 accumulators + 2 B vectors + 1 broadcast of 32 zmm registers; a 4×32
// kernel for a last 4 rows; 24×16 for pairs of 12-row panels, 24 accumulators + 1 B vector), 6×16 with Vector256
// (12 accumulators of 16 ymm). Each accumulator starts from C's value where the product adds (every depth block after
// the first, or accumulate) and sums over p in order, so a sum split into depth blocks goes on where the last block
// stored it: an element's bits are those of one chain over the whole depth, whatever the depth blocking (which differs
// between machines, and between weights packed once and per call: GemmBlocking.ForWeightPanels). With Vector128 only,
// unpacked tiles (Gemm.Portable.cs); without hardware intrinsics a plain loop (ikj order) runs. Packing transposes 4×4
// blocks inside vector lanes (AVX-512 or AVX), else element by element.
// Threads (ComputeThreads, a persistent pool): with more rows than one A block (MC), they share each packed B block
// and split the rows (Gemm.Threads.cs); with fewer, each takes its own range of columns and packs its own panels.
// C's rows are a page apart for most products, so a C tile touches a page per row: a training step's activations
// and gradients live on 2 MiB pages where Linux grants them (Tensors/HugePages.cs): 9% fewer kernel samples.
public static partial class Gemm
{
    /// <summary>
    /// The cache blocking of products with many rows: chosen once from the caches this machine reports (those with
    /// fewer rows than one A block take <see cref="GemmBlocking.For(int)"/>'s, which differs only on Zen 4, where each
    /// product of 128 rows or more also splits its depth into equal blocks: <see cref="GemmBlocking.ForProduct"/>).
    /// </summary>
    public static GemmBlocking Blocking => GemmBlocking.ForThisMachine;

    /// <summary>Rows of the register tile of the widest vector unit present (12 with AVX-512, 6 with AVX).</summary>
    internal static int TileRows => TileShape.Current.Rows;

    /// <summary>Columns of the register tile (32 with AVX-512, 16 with AVX).</summary>
    internal static int TileColumns => TileShape.Current.Columns;

    // Below this many multiply-adds, packing and threading cost more than they save.
    private const long SmallProduct = 16 * 16 * 16;

    // Rows of an untransposed B that PackB asks for ahead of the one it copies (short runs only; see PackRowsOfB).
    private const int PackAhead = 8;

    // B panels packed together where each is packed right before its use and op(B) = B (Block): 8 panels are a run
    // of 8 · NR floats (1 KiB with AVX-512) of each row, and 8 · KC · NR floats (256 KiB at KC = 256) in L2 beside
    // the A block. Measured on the vocabulary head's dx product at B·T = 256 (one core's half, W read cold):
    // see BENCHMARKS.md, "B packed row by row". BlockAcross (AVX-512, 24 rows or more) packs and walks its B panels in
    // groups of this many for both transpositions: a group is the stretch of C's rows its 24×16 tiles run along.
    private const int PanelsPackedTogether = 8;

    // The deepest block BlockAcross takes: its pair of A panels (24 rows) must stay in L1, where it is read at every
    // tile. 469 on a 48 KiB 12-way L1, above the 256 the blocking picks there; on Zen 4 the L2-sized depth (352, with a
    // 32 KiB L1: limit 298) keeps the walk down the A block, under which the measurements there were made.
    private static readonly int AcrossDepthLimit = GemmBlocking.DeepestInLevel1(GemmBlocking.DetectedCaches, 24);

    // Below this many multiply-adds per thread, a second thread does not pay for its start-up.
    private const long WorkPerThread = 1L << 21;

    [ThreadStatic]
    private static float[]? packedA;

    [ThreadStatic]
    private static float[]? packedB;

    private static unsafe void MultiplyFast(
        bool transposeA, bool transposeB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        Span<float> c, int ldc, bool accumulate, int threads, GemmBlocking blocking, bool partsInTurn = false)
    {
        if (m == 0 || n == 0)
        {
            return;
        }

        if (k == 0)
        {
            if (!accumulate)
            {
                for (int i = 0; i < m; i++)
                {
                    c.Slice(i * ldc, n).Clear();
                }
            }

            return;
        }

        bool vectorised = Vector512.IsHardwareAccelerated || Vector256.IsHardwareAccelerated;
        long work = (long)m * n * k;
        if (RunsVector128 && work >= SmallProduct)
        {
            MultiplyVector128(transposeA, transposeB, m, n, k, a, lda, b, ldb, c, ldc, accumulate, threads);
            return;
        }

        if (!vectorised || work < SmallProduct)
        {
            MultiplyPlain(transposeA, transposeB, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
            return;
        }

        int threadCount = threads > 0 ? threads : ComputeThreads.Count;
        threadCount = (int)Math.Clamp(Math.Min(threadCount, work / WorkPerThread), 1, 64);

        fixed (float* aPointer = a)
        fixed (float* bPointer = b)
        fixed (float* cPointer = c)
        {
            var job = new Job(transposeA, transposeB, m, n, k, aPointer, lda, bPointer, ldb, cPointer, ldc, accumulate) { Blocking = blocking, PartsInTurn = partsInTurn };
            job.Start(threadCount);
        }
    }

    /// <summary>One product, as raw pointers so that worker threads can share it.</summary>
    private sealed unsafe partial class Job(
        bool transposeA, bool transposeB, int m, int n, int k,
        float* a, int lda, float* b, int ldb, float* c, int ldc, bool accumulate)
    {
        /// <summary>op(B) already packed over its whole depth (Gemm.Pack), or null: pack per depth block.</summary>
        public float* PackedB { get; init; }

        /// <summary>Where op(B) = Wᵀ's panels come from instead of B (<see cref="IPanelSource"/>), or null: from B.</summary>
        public IPanelSource? Source { get; init; }

        public required GemmBlocking Blocking { get; init; }

        /// <summary>Run the threads' parts one after another on the calling thread (tests).</summary>
        public bool PartsInTurn { get; init; }

        /// <summary>Computes the whole product on <paramref name="threads"/> threads.</summary>
        public void Start(int threads)
        {
            if (threads == 1)
            {
                Run(0, 1);
                return;
            }

            // More rows than one A block holds (2048³, the weight gradients, 1024 tokens): the threads share each
            // packed B block and split the rows. Fewer (the 256 tokens of a GPT-2 step): each thread takes its own
            // columns and packs each of its B panels right before its use, which the shared block cannot do.
            if (m > RoundUp(Blocking.Rows, TileShape.Current.Rows))
            {
                RunShared(threads);
                return;
            }

            RunParts(threads, part => Run(part, threads));
        }

        private void RunParts(int threads, Action<int> body)
        {
            if (!PartsInTurn)
            {
                ComputeThreads.Run(threads, threads, body);
                return;
            }

            for (int part = 0; part < threads; part++)
            {
                body(part);
            }
        }

        /// <summary>Computes part <paramref name="part"/> of <paramref name="parts"/>: a range of columns (or rows).</summary>
        public void Run(int part, int parts)
        {
            var shape = TileShape.Current;
            // Split the longer side of C, in whole register tiles, so every part gets the same amount of work.
            if (n >= m)
            {
                (int first, int count) = Share(n, shape.Columns, part, parts);
                if (count > 0)
                {
                    Compute(shape, 0, m, first, count);
                }
            }
            else
            {
                (int first, int count) = Share(m, shape.Rows, part, parts);
                if (count > 0)
                {
                    Compute(shape, first, count, 0, n);
                }
            }
        }

        private static (int First, int Count) Share(int total, int tile, int part, int parts)
        {
            int tiles = (total + tile - 1) / tile;
            int firstTile = (int)((long)tiles * part / parts);
            int endTile = (int)((long)tiles * (part + 1) / parts);
            int first = Math.Min(total, firstTile * tile);
            int end = Math.Min(total, endTile * tile);
            return (first, end - first);
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Compute(TileShape shape, int rowStart, int rows, int columnStart, int columns)
        {
            int mr = shape.Rows, nr = shape.Columns;
            int depthBlock = Blocking.Depth, rowBlock = RoundUp(Blocking.Rows, mr), columnBlock = RoundUp(Blocking.Columns, nr);
            // Row blocks of one size: 768 rows under MC = 636 as two of 384, not 636 + 132, whose short block ran the
            // kernel over the whole B block (from L3) for 11 tiles per panel.
            int rowBlocks = (rows + rowBlock - 1) / rowBlock;
            rowBlock = RoundUp((rows + rowBlocks - 1) / rowBlocks, mr);
            int bCapacity = (depthBlock * RoundUp(Math.Min(columns, columnBlock), nr)) + AlignmentFloats;
            int aCapacity = (depthBlock * RoundUp(Math.Min(rows, rowBlock), mr)) + AlignmentFloats;
            if (packedB is null || packedB.Length < bCapacity)
            {
                packedB = GC.AllocateUninitializedArray<float>(bCapacity, pinned: true);
            }

            if (packedA is null || packedA.Length < aCapacity)
            {
                packedA = GC.AllocateUninitializedArray<float>(aCapacity, pinned: true);
            }

            float* tile = stackalloc float[mr * nr];
            fixed (float* bBuffer = packedB)
            fixed (float* aBuffer = packedA)
            {
                float* bPack = Aligned(bBuffer), aPack = Aligned(aBuffer);
                // With one row block (the products of a training step: 256 tokens), each B panel is used once per
                // depth block: pack it right before its use, so the kernel reads it from L1 instead of from L3
                // after the whole block was packed.
                bool packPanelsAsUsed = PackedB == null && rows <= rowBlock;
                for (int jc = columnStart; jc < columnStart + columns; jc += columnBlock)
                {
                    int nc = Math.Min(columnBlock, columnStart + columns - jc);
                    for (int pc = 0; pc < k; pc += depthBlock)
                    {
                        int kc = Math.Min(depthBlock, k - pc);
                        bool add = accumulate || pc > 0;
                        if (PackedB == null && !packPanelsAsUsed)
                        {
                            PackB(pc, kc, jc, 0, nc, nr, bPack);
                        }

                        for (int ic = rowStart; ic < rowStart + rows; ic += rowBlock)
                        {
                            int mc = Math.Min(rowBlock, rowStart + rows - ic);
                            PackA(ic, mc, pc, kc, mr, aPack);
                            Block(shape, ic, mc, jc, nc, pc, kc, add, aPack, packPanelsAsUsed ? bPack : null, PanelsOf(bPack, jc, pc, kc), tile);
                        }
                    }
                }
            }
        }

        // Where the kernel finds the B panels of block (jc, pc): in the block packed into `packed` (panel jr at
        // jr·kc), or in the weights packed once (Gemm.Pack) over the whole depth.
        private float* PanelsOf(float* packed, int jc, int pc, int kc) =>
            PackedB == null ? packed : PackedB + ((long)jc * k) + ((long)pc * TileShape.Current.Columns);

        // Stride between two B panels of one block: kc rows of a per-call block, the whole depth of weights packed once.
        private int PanelStride(int kc) => PackedB == null ? kc : k;

        // Rows ic..ic+mc of C (+)= the packed A block × the B panels of block (jc, pc), panel by panel; the kernel runs
        // down the A block under each B panel. With `packAsUsed`, each B panel is packed there right before its use.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Block(
            TileShape shape, int ic, int mc, int jc, int nc, int pc, int kc, bool add, float* aPack, float* packAsUsed,
            float* bPanels, float* tile)
        {
            if (shape.Rows == 12 && shape.Columns == 32 && mc >= 24 && kc <= AcrossDepthLimit)
            {
                BlockAcross(shape, ic, mc, jc, nc, pc, kc, add, aPack, packAsUsed, bPanels, tile);
                return;
            }

            int mr = shape.Rows, nr = shape.Columns, stride = PanelStride(kc);
            // B packed as used: the next panel's source is kc short pieces of rows ldb apart (untransposed), which the
            // hardware prefetchers do not follow, or nr rows of kc floats (transposed), each too short for them to get
            // ahead; so PackB waited on L3 (9% of the 256×3072×768 input gradient, against OpenBLAS's 6% for the same
            // copy). Each tile call below asks for a share of those rows, so they arrive in L2 while the kernel runs on
            // this panel.
            // With op(B) = B the panels are packed PanelsPackedTogether at a time, so the next group's source is asked
            // for a share per panel of the current group (rows [index·kc/group, (index+1)·kc/group) of it).
            int tiles = (mc + mr - 1) / mr, group = transposeB ? 1 : PanelsPackedTogether;
            for (int jr = 0; jr < nc; jr += nr)
            {
                int nValid = Math.Min(nr, nc - jr), index = jr / nr % group;
                float* bPanel = bPanels + ((long)(jr / nr) * stride * nr);
                if (packAsUsed != null)
                {
                    // Every panel (or group of panels) into the same place: the lines of the panels just used are still
                    // in L1 or L2, so the packing's stores hit there instead of fetching fresh lines for every panel.
                    // op(B) = B is packed a group at a time: a group's part of each row is several cache lines in one
                    // run, which the hardware prefetcher follows; one panel's part is two lines a row stride apart.
                    if (index == 0)
                    {
                        PackB(pc, kc, jc, jr, Math.Min(nc, jr + (group * nr)), nr, packAsUsed - ((long)jr * kc));
                    }

                    bPanel = packAsUsed + ((long)index * kc * nr);
                }

                // The next group's source: `sourceRows` pieces of `sourceWidth` floats, ldb apart, of which this panel
                // asks for rows [firstRow, lastRow).
                int nextStart = (jr - (index * nr)) + (group * nr);
                int nextValid = packAsUsed != null && Source == null && nextStart < nc ? Math.Min(group * nr, nc - nextStart) : 0;
                (int sourceRows, int sourceWidth) = transposeB ? (nextValid, kc) : (kc, nextValid);
                float* nextSource = transposeB ? b + ((long)(jc + nextStart) * ldb) + pc : b + ((long)pc * ldb) + jc + nextStart;
                int nextRow = sourceRows * index / group, lastRow = sourceRows * (index + 1) / group;
                int rowsPerTile = (lastRow - nextRow + tiles - 1) / tiles;
                for (int ir = 0; ir < mc; ir += mr)
                {
                    float* cTile = c + (long)(ic + ir) * ldc + jc + jr;
                    float* next = ir + mr < mc ? cTile + ((long)mr * ldc) : c + ((long)ic * ldc) + jc + jr + nr;
                    Tile(shape, kc, aPack + ir * kc, bPanel, cTile, ldc, Math.Min(mr, mc - ir), nValid, add, tile, next);
                    if (nextValid > 0)
                    {
                        for (int end = Math.Min(lastRow, nextRow + rowsPerTile); nextRow < end; nextRow++)
                        {
                            PrefetchRun(nextSource + ((long)nextRow * ldb), sourceWidth, intoL1: false);
                        }
                    }
                }
            }
        }

        // Block's walk with the 12×32 tile's packing (AVX-512): 24 rows × 16 columns at a time, two A panels against one
        // half of a B panel (Kernel24x16), along C's rows: for each group of B panels (PanelsPackedTogether, 256
        // columns: kc × 256 floats, 256 KiB at kc = 256, in L2), for each pair of A panels (24 KiB, in L1), across the
        // group's half panels. Running down the A block under each 32-wide B panel instead, each 12×32 tile's 12 rows
        // are a page apart from the last tile's, which the hardware prefetchers do not follow; here the next tile is
        // the next 64 bytes of the same 24 rows. The gain is the walk: with A, B and C in L1 the two kernels ran at the
        // same speed (within ±5%, timed in turn), while along the rows the product ran 3–23% faster on most GPT-2
        // shapes (measured on an Emerald Rapids Xeon: BENCHMARKS.md, "Thirty-first session"). The rows past the last whole pair, and a last partial panel,
        // take Tile as Block does. Each element is the same sum in the same order as Kernel12x32's: the same bits.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void BlockAcross(
            TileShape shape, int ic, int mc, int jc, int nc, int pc, int kc, bool add, float* aPack, float* packAsUsed, float* bPanels,
            float* tile)
        {
            const int mr = 12, nr = 32, pairRows = 2 * mr, half = nr / 2, groupColumns = PanelsPackedTogether * nr;
            int stride = PanelStride(kc), pairedRows = mc / pairRows * pairRows, pairs = mc / pairRows;
            for (int jg = 0; jg < nc; jg += groupColumns)
            {
                int groupEnd = Math.Min(nc, jg + groupColumns), wholeEnd = jg + ((groupEnd - jg) / nr * nr);
                float* groupPanels = bPanels + ((long)(jg / nr) * stride * nr);
                int groupStride = stride;
                if (packAsUsed != null)
                {
                    // The whole group into the same place each time (see Block): PackB puts panel jr at jr·kc.
                    PackB(pc, kc, jc, jg, groupEnd, nr, packAsUsed - ((long)jg * kc));
                    groupPanels = packAsUsed;
                    groupStride = kc;
                }

                // The next group's source (B packed as used: see Block), a share asked for after each pair.
                int nextStart = jg + groupColumns;
                int nextValid = packAsUsed != null && Source == null && nextStart < nc ? Math.Min(groupColumns, nc - nextStart) : 0;
                (int sourceRows, int sourceWidth) = transposeB ? (nextValid, kc) : (kc, nextValid);
                float* nextSource = transposeB ? b + ((long)(jc + nextStart) * ldb) + pc : b + ((long)pc * ldb) + jc + nextStart;
                int nextRow = 0, rowsPerPair = pairs > 0 ? (sourceRows + pairs - 1) / pairs : 0;
                for (int ir = 0; ir < pairedRows; ir += pairRows)
                {
                    float* upper = aPack + ((long)ir * kc), lower = upper + ((long)mr * kc);
                    float* cRow = c + ((long)(ic + ir) * ldc) + jc;
                    for (int jr = jg; jr < wholeEnd; jr += half)
                    {
                        float* bHalf = groupPanels + ((long)((jr - jg) / nr) * groupStride * nr) + (jr % nr);
                        float* next = jr + half < wholeEnd ? cRow + jr + half : cRow + ((long)pairRows * ldc) + jg;
                        Kernel24x16(kc, upper, lower, bHalf, cRow + jr, ldc, add, next);
                    }

                    for (int end = Math.Min(sourceRows, nextRow + rowsPerPair); nextRow < end; nextRow++)
                    {
                        PrefetchRun(nextSource + ((long)nextRow * ldb), sourceWidth, intoL1: false);
                    }
                }

                // A last partial panel beside the pairs, then the rows past them under every panel of the group.
                for (int jr = wholeEnd; jr < groupEnd; jr += nr)
                {
                    float* bPanel = groupPanels + ((long)((jr - jg) / nr) * groupStride * nr);
                    for (int ir = 0; ir < pairedRows; ir += mr)
                    {
                        float* cTile = c + ((long)(ic + ir) * ldc) + jc + jr;
                        Tile(shape, kc, aPack + ((long)ir * kc), bPanel, cTile, ldc, mr, groupEnd - jr, add, tile, cTile + ((long)mr * ldc));
                    }
                }

                for (int ir = pairedRows; ir < mc; ir += mr)
                {
                    for (int jr = jg; jr < groupEnd; jr += nr)
                    {
                        float* bPanel = groupPanels + ((long)((jr - jg) / nr) * groupStride * nr);
                        float* cTile = c + ((long)(ic + ir) * ldc) + jc + jr;
                        Tile(shape, kc, aPack + ((long)ir * kc), bPanel, cTile, ldc, Math.Min(mr, mc - ir), Math.Min(nr, groupEnd - jr), add, tile, cTile + nr);
                    }
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Tile(
            TileShape shape, int kc, float* aPanel, float* bPanel, float* cTile, int ldc, int mValid, int nValid, bool add,
            float* tile, float* next)
        {
            int mr = shape.Rows, nr = shape.Columns;
            if (mValid == mr && nValid == nr)
            {
                shape.Kernel(kc, aPanel, bPanel, cTile, ldc, add, next);
            }
            else if (mValid == shape.ShortRows && nValid == nr)
            {
                // The last rows of an M that is not a multiple of the tile (256 tokens = 21·12 + 4): a third of the
                // work of a padded 12-row tile.
                shape.ShortKernel(kc, aPanel, bPanel, cTile, ldc, add, next);
            }
            else
            {
                // Edge tile: the whole padded tile computed aside (starting from C's valid part, zeros around it, where
                // adding), then the valid part copied back.
                if (add)
                {
                    new Span<float>(tile, mr * nr).Clear();
                    CopyTile(cTile, ldc, tile, nr, mValid, nValid);
                }

                shape.Kernel(kc, aPanel, bPanel, tile, nr, add, next);
                CopyTile(tile, nr, cTile, ldc, mValid, nValid);
            }
        }

        // Packed B: panels of nr columns; inside a panel, row p holds op(B)[p, j..j+nr) (zero past column n).
        // Packs the panels of columns [first, end) of the block at jc (first a multiple of nr).
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void PackB(int pc, int kc, int jc, int first, int end, int nr, float* destination)
        {
            if (Source != null)
            {
                for (int jr = first; jr < end; jr += nr)
                {
                    Source.Pack(jc + jr, Math.Min(nr, end - jr), pc, kc, destination + jr * kc, nr);
                }

                return;
            }

            if (!transposeB)
            {
                PackRowsOfB(pc, kc, jc, first, end, nr, destination);
                return;
            }

            // op(B) = Bᵀ (the y = x·Wᵀ case): column j of a panel is row j of B, contiguous in p.
            for (int jr = first; jr < end; jr += nr)
            {
                TransposeInto(b + (long)(jc + jr) * ldb + pc, ldb, Math.Min(nr, end - jr), kc, destination + jr * kc, nr);
            }
        }

        // op(B) = B (the dx = dy·W and dW = dyᵀ·x products): row p of a panel is NR consecutive floats of row pc + p of
        // B. Each row of the block is read once, start to end, and dealt out to the panels, NR floats to each. Panel by
        // panel instead, every row was read NR floats (two cache lines) at a time, a row stride apart: with B cold (the
        // weights, read from memory at every product) the hardware prefetcher cannot follow that. Packing 12,564 rows of
        // a vocabulary head (one core's half of its dx product) ran at 2.2 GB/s that way and 6.6 GB/s this way.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void PackRowsOfB(int pc, int kc, int jc, int first, int end, int nr, float* destination)
        {
            // A short run (a group of panels packed as used) is too short for the hardware prefetcher to get ahead of
            // before the next row, ldb away: the run PackAhead rows on is asked for while this one is copied. A long
            // run (a whole block) streams by itself.
            int run = end - first;
            bool ahead = run <= PanelsPackedTogether * nr;
            for (int p = 0; p < kc; p++)
            {
                float* source = b + (long)(pc + p) * ldb + jc;
                float* target = destination + p * nr;
                if (ahead && p + PackAhead < kc)
                {
                    PrefetchRun(source + ((long)PackAhead * ldb) + first, run, intoL1: true);
                }

                for (int jr = first; jr < end; jr += nr)
                {
                    CopyRow(source + jr, target + ((long)jr * kc), Math.Min(nr, end - jr), nr);
                }
            }
        }

        // Packed A: panels of mr rows; inside a panel, column p holds op(A)[i..i+mr, p] (zero past row m).
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void PackA(int ic, int mc, int pc, int kc, int mr, float* destination)
        {
            if (transposeA)
            {
                // op(A) = Aᵀ: column p of op(A) is row p of A, contiguous in i; one pass over each row of A
                // fills column p of every panel.
                for (int p = 0; p < kc; p++)
                {
                    float* source = a + (long)(pc + p) * lda + ic;
                    for (int ir = 0; ir < mc; ir += mr)
                    {
                        CopyRow(source + ir, destination + ir * kc + p * mr, Math.Min(mr, mc - ir), mr);
                    }
                }

                return;
            }

            for (int ir = 0; ir < mc; ir += mr)
            {
                TransposeInto(a + (long)(ic + ir) * lda + pc, lda, Math.Min(mr, mc - ir), kc, destination + ir * kc, mr);
            }
        }
    }

    // target[0..width) = source[0..valid), zero-padded.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void CopyRow(float* source, float* target, int valid, int width)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; j + 16 <= valid; j += 16)
            {
                Vector512.Store(Vector512.Load(source + j), target + j);
            }
        }

        for (; j + 8 <= valid; j += 8)
        {
            Vector256.Store(Vector256.Load(source + j), target + j);
        }

        if (j + 4 <= valid)
        {
            Vector128.Store(Vector128.Load(source + j), target + j);
            j += 4;
        }

        for (; j < valid; j++)
        {
            target[j] = source[j];
        }

        for (; j < width; j++)
        {
            target[j] = 0f;
        }
    }

    // Reads `lines` rows of `length` floats (stride `stride`) and writes them as columns:
    // target[p * width + line] = source[line * stride + p], with columns past `lines` zeroed.
    // Four source rows at a time, each read from start to end (four sequential streams, which the hardware
    // prefetcher follows); a 4×4 transpose inside each 128-bit lane turns four row vectors into columns of four,
    // stored 16 bytes at a time: about a fifth of the instructions of a scalar copy.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void TransposeInto(float* source, int stride, int lines, int length, float* target, int width)
    {
        int line = 0;
        for (; line + 4 <= lines; line += 4)
        {
            float* r0 = source + (long)line * stride;
            float* r1 = r0 + stride;
            float* r2 = r1 + stride;
            float* r3 = r2 + stride;
            float* t = target + line;
            int p = 0;
            if (Avx512F.IsSupported)
            {
                // The next four rows asked for while these four are copied: each row is a stream the hardware
                // prefetchers pick up only after a few misses, and a packed row is only kc floats long.
                if (line + 8 <= lines)
                {
                    float* n0 = r3 + stride;
                    for (; p + 16 <= length; p += 16)
                    {
                        Sse.Prefetch0(n0 + p);
                        Sse.Prefetch0(n0 + stride + p);
                        Sse.Prefetch0(n0 + (2L * stride) + p);
                        Sse.Prefetch0(n0 + (3L * stride) + p);
                        Transpose4x16(r0 + p, r1 + p, r2 + p, r3 + p, t + (long)p * width, width);
                    }
                }

                for (; p + 16 <= length; p += 16)
                {
                    Transpose4x16(r0 + p, r1 + p, r2 + p, r3 + p, t + (long)p * width, width);
                }
            }

            if (Avx.IsSupported)
            {
                for (; p + 8 <= length; p += 8)
                {
                    Transpose4x8(r0 + p, r1 + p, r2 + p, r3 + p, t + (long)p * width, width);
                }
            }

            for (; p < length; p++)
            {
                float* column = t + (long)p * width;
                column[0] = r0[p];
                column[1] = r1[p];
                column[2] = r2[p];
                column[3] = r3[p];
            }
        }

        for (; line < lines; line++)
        {
            float* row = source + (long)line * stride;
            for (int p = 0; p < length; p++)
            {
                target[(long)p * width + line] = row[p];
            }
        }

        if (lines < width)
        {
            for (int p = 0; p < length; p++)
            {
                new Span<float>(target + (long)p * width + lines, width - lines).Clear();
            }
        }
    }

    // Rows r0..r3 [4, 16] -> 16 columns of 4 at t, t + width, ...: in each 128-bit lane L the unpacks leave
    // column 4L + q in u_q.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Transpose4x16(float* r0, float* r1, float* r2, float* r3, float* t, int width)
    {
        Vector512<float> x0 = Vector512.Load(r0), x1 = Vector512.Load(r1), x2 = Vector512.Load(r2), x3 = Vector512.Load(r3);
        Vector512<double> t0 = Avx512F.UnpackLow(x0, x1).AsDouble(), t1 = Avx512F.UnpackHigh(x0, x1).AsDouble();
        Vector512<double> t2 = Avx512F.UnpackLow(x2, x3).AsDouble(), t3 = Avx512F.UnpackHigh(x2, x3).AsDouble();
        StoreLanes(Avx512F.UnpackLow(t0, t2).AsSingle(), t, 4 * width);
        StoreLanes(Avx512F.UnpackHigh(t0, t2).AsSingle(), t + width, 4 * width);
        StoreLanes(Avx512F.UnpackLow(t1, t3).AsSingle(), t + 2 * width, 4 * width);
        StoreLanes(Avx512F.UnpackHigh(t1, t3).AsSingle(), t + 3 * width, 4 * width);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StoreLanes(Vector512<float> columns, float* t, int step)
    {
        Vector128.Store(columns.GetLower().GetLower(), t);
        Vector128.Store(columns.GetLower().GetUpper(), t + step);
        Vector128.Store(columns.GetUpper().GetLower(), t + 2 * step);
        Vector128.Store(columns.GetUpper().GetUpper(), t + 3 * step);
    }

    // The same for rows of 8 (AVX without AVX-512): two 128-bit lanes.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Transpose4x8(float* r0, float* r1, float* r2, float* r3, float* t, int width)
    {
        Vector256<float> x0 = Vector256.Load(r0), x1 = Vector256.Load(r1), x2 = Vector256.Load(r2), x3 = Vector256.Load(r3);
        Vector256<double> t0 = Avx.UnpackLow(x0, x1).AsDouble(), t1 = Avx.UnpackHigh(x0, x1).AsDouble();
        Vector256<double> t2 = Avx.UnpackLow(x2, x3).AsDouble(), t3 = Avx.UnpackHigh(x2, x3).AsDouble();
        Vector256<float> u0 = Avx.UnpackLow(t0, t2).AsSingle(), u1 = Avx.UnpackHigh(t0, t2).AsSingle();
        Vector256<float> u2 = Avx.UnpackLow(t1, t3).AsSingle(), u3 = Avx.UnpackHigh(t1, t3).AsSingle();
        Vector128.Store(u0.GetLower(), t);
        Vector128.Store(u1.GetLower(), t + width);
        Vector128.Store(u2.GetLower(), t + 2 * width);
        Vector128.Store(u3.GetLower(), t + 3 * width);
        Vector128.Store(u0.GetUpper(), t + 4 * width);
        Vector128.Store(u1.GetUpper(), t + 5 * width);
        Vector128.Store(u2.GetUpper(), t + 6 * width);
        Vector128.Store(u3.GetUpper(), t + 7 * width);
    }

    // rows × columns of source (stride sourceStride) into target (stride targetStride).
    private static unsafe void CopyTile(float* source, int sourceStride, float* target, int targetStride, int rows, int columns)
    {
        for (int i = 0; i < rows; i++)
        {
            new ReadOnlySpan<float>(source + ((long)i * sourceStride), columns).CopyTo(new Span<float>(target + ((long)i * targetStride), columns));
        }
    }

    // Packed panels start on a cache line: a 64-byte vector load of B that straddles two lines costs two loads, and
    // with B streaming from L2 that cost a quarter of the micro-kernel's speed (measured: 100–110 vs 136 GFLOP/s).
    private const int AlignmentFloats = 64 / sizeof(float);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe float* Aligned(float* pointer) => (float*)(((nint)pointer + 63) & ~(nint)63);

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    /// <summary>The register tile of the widest vector unit present, and its micro-kernel.</summary>
    private sealed unsafe class TileShape
    {
        public static readonly TileShape Current = Vector512.IsHardwareAccelerated
            ? new TileShape(12, 32, &Kernel12x32, 4, &Kernel4x32)
            : new TileShape(6, 16, &Kernel6x16, 0, null);

        private TileShape(
            int rows, int columns, delegate*<int, float*, float*, float*, int, bool, float*, void> kernel,
            int shortRows, delegate*<int, float*, float*, float*, int, bool, float*, void> shortKernel)
        {
            Rows = rows;
            Columns = columns;
            Kernel = kernel;
            ShortRows = shortRows;
            ShortKernel = shortKernel;
        }

        public int Rows { get; }

        public int Columns { get; }

        /// <summary>
        /// (kc, packed A panel, packed B panel, C tile, ldc, add, next C tile): C tile (+)= A panel · B panel, asking
        /// for the next tile's cache lines on the way.
        /// </summary>
        public delegate*<int, float*, float*, float*, int, bool, float*, void> Kernel { get; }

        /// <summary>Rows of the short kernel (0 = none): the first rows of a panel, for an edge of exactly that many.</summary>
        public int ShortRows { get; }

        /// <summary>As <see cref="Kernel"/>, for the first <see cref="ShortRows"/> rows of a Rows-tall A panel.</summary>
        public delegate*<int, float*, float*, float*, int, bool, float*, void> ShortKernel { get; }
    }

    // 12×32 tile: rows i of A broadcast against two 16-wide vectors of B, 24 fused multiply-adds per step of p.
    // The depth loop is unrolled four times, as OpenBLAS's kernel is. Why: a step is 24 FMAs (12 cycles on the two
    // 512-bit FMA ports) and 14 loads, and the rolled loop added ~7 integer uops a step (two pointer bumps, two
    // counters, a compare, two branches), which can be issued on the FMA ports (0 and 5) and take their cycles;
    // unrolled they are under 2 a step. Measured on the Ice Lake Xeon, one thread, thread CPU time, the library
    // before and after loaded side by side in one process and timed in turn (16 shape runs: 1024³, 2048³ and the
    // GPT-2 step's products): median +3%, from +0.5% to +9.5%, none slower. Each accumulator still sums over p in
    // order: the same bits as the rolled loop.
    // Each FMA names its broadcast itself (Vector512.Create(a[i]) in place, not one local for the row's two FMAs): the
    // JIT then folds most of them into the FMA as an embedded {1to16} memory operand, one fused uop where a
    // vbroadcastss and two FMAs were three, so a step issues ~26 uops instead of ~38. Measured on an Emerald Rapids
    // Xeon (both kernels in one process, timed in turn, k = 256): +4% to +9% in L1 and walking C as the product does,
    // and the 768×3072×256 weight gradient +3.4% (alternated builds). The same arithmetic: the same bits.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Kernel12x32(int kc, float* a, float* b, float* c, int ldc, bool add, float* next)
    {
        // One row of the next tile asked for every 16 steps (every 4 trips of the unrolled loop).
        float* ahead = next;
        int rowsAhead = 12, gap = Math.Max(1, kc / 64), countdown = gap;
        Vector512<float> c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
        Vector512<float> c60, c61, c70, c71, c80, c81, c90, c91, ca0, ca1, cb0, cb1;
        if (add)
        {
            float* row = c;
            c00 = Vector512.Load(row); c01 = Vector512.Load(row + 16); row += ldc;
            c10 = Vector512.Load(row); c11 = Vector512.Load(row + 16); row += ldc;
            c20 = Vector512.Load(row); c21 = Vector512.Load(row + 16); row += ldc;
            c30 = Vector512.Load(row); c31 = Vector512.Load(row + 16); row += ldc;
            c40 = Vector512.Load(row); c41 = Vector512.Load(row + 16); row += ldc;
            c50 = Vector512.Load(row); c51 = Vector512.Load(row + 16); row += ldc;
            c60 = Vector512.Load(row); c61 = Vector512.Load(row + 16); row += ldc;
            c70 = Vector512.Load(row); c71 = Vector512.Load(row + 16); row += ldc;
            c80 = Vector512.Load(row); c81 = Vector512.Load(row + 16); row += ldc;
            c90 = Vector512.Load(row); c91 = Vector512.Load(row + 16); row += ldc;
            ca0 = Vector512.Load(row); ca1 = Vector512.Load(row + 16); row += ldc;
            cb0 = Vector512.Load(row); cb1 = Vector512.Load(row + 16);
        }
        else
        {
            c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = Vector512<float>.Zero;
            c60 = c61 = c70 = c71 = c80 = c81 = c90 = c91 = ca0 = ca1 = cb0 = cb1 = Vector512<float>.Zero;
        }

        Vector512<float> b0, b1;
        int p = 0;
        for (; p + 4 <= kc; p += 4)
        {
            // p + 0
            b0 = Vector512.Load(b);
            b1 = Vector512.Load(b + 16);
            c00 = Vector512.FusedMultiplyAdd(Vector512.Create(a[0]), b0, c00);
            c01 = Vector512.FusedMultiplyAdd(Vector512.Create(a[0]), b1, c01);
            c10 = Vector512.FusedMultiplyAdd(Vector512.Create(a[1]), b0, c10);
            c11 = Vector512.FusedMultiplyAdd(Vector512.Create(a[1]), b1, c11);
            c20 = Vector512.FusedMultiplyAdd(Vector512.Create(a[2]), b0, c20);
            c21 = Vector512.FusedMultiplyAdd(Vector512.Create(a[2]), b1, c21);
            c30 = Vector512.FusedMultiplyAdd(Vector512.Create(a[3]), b0, c30);
            c31 = Vector512.FusedMultiplyAdd(Vector512.Create(a[3]), b1, c31);
            c40 = Vector512.FusedMultiplyAdd(Vector512.Create(a[4]), b0, c40);
            c41 = Vector512.FusedMultiplyAdd(Vector512.Create(a[4]), b1, c41);
            c50 = Vector512.FusedMultiplyAdd(Vector512.Create(a[5]), b0, c50);
            c51 = Vector512.FusedMultiplyAdd(Vector512.Create(a[5]), b1, c51);
            c60 = Vector512.FusedMultiplyAdd(Vector512.Create(a[6]), b0, c60);
            c61 = Vector512.FusedMultiplyAdd(Vector512.Create(a[6]), b1, c61);
            c70 = Vector512.FusedMultiplyAdd(Vector512.Create(a[7]), b0, c70);
            c71 = Vector512.FusedMultiplyAdd(Vector512.Create(a[7]), b1, c71);
            c80 = Vector512.FusedMultiplyAdd(Vector512.Create(a[8]), b0, c80);
            c81 = Vector512.FusedMultiplyAdd(Vector512.Create(a[8]), b1, c81);
            c90 = Vector512.FusedMultiplyAdd(Vector512.Create(a[9]), b0, c90);
            c91 = Vector512.FusedMultiplyAdd(Vector512.Create(a[9]), b1, c91);
            ca0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[10]), b0, ca0);
            ca1 = Vector512.FusedMultiplyAdd(Vector512.Create(a[10]), b1, ca1);
            cb0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[11]), b0, cb0);
            cb1 = Vector512.FusedMultiplyAdd(Vector512.Create(a[11]), b1, cb1);
            // p + 1
            b0 = Vector512.Load(b + 32);
            b1 = Vector512.Load(b + 48);
            c00 = Vector512.FusedMultiplyAdd(Vector512.Create(a[12]), b0, c00);
            c01 = Vector512.FusedMultiplyAdd(Vector512.Create(a[12]), b1, c01);
            c10 = Vector512.FusedMultiplyAdd(Vector512.Create(a[13]), b0, c10);
            c11 = Vector512.FusedMultiplyAdd(Vector512.Create(a[13]), b1, c11);
            c20 = Vector512.FusedMultiplyAdd(Vector512.Create(a[14]), b0, c20);
            c21 = Vector512.FusedMultiplyAdd(Vector512.Create(a[14]), b1, c21);
            c30 = Vector512.FusedMultiplyAdd(Vector512.Create(a[15]), b0, c30);
            c31 = Vector512.FusedMultiplyAdd(Vector512.Create(a[15]), b1, c31);
            c40 = Vector512.FusedMultiplyAdd(Vector512.Create(a[16]), b0, c40);
            c41 = Vector512.FusedMultiplyAdd(Vector512.Create(a[16]), b1, c41);
            c50 = Vector512.FusedMultiplyAdd(Vector512.Create(a[17]), b0, c50);
            c51 = Vector512.FusedMultiplyAdd(Vector512.Create(a[17]), b1, c51);
            c60 = Vector512.FusedMultiplyAdd(Vector512.Create(a[18]), b0, c60);
            c61 = Vector512.FusedMultiplyAdd(Vector512.Create(a[18]), b1, c61);
            c70 = Vector512.FusedMultiplyAdd(Vector512.Create(a[19]), b0, c70);
            c71 = Vector512.FusedMultiplyAdd(Vector512.Create(a[19]), b1, c71);
            c80 = Vector512.FusedMultiplyAdd(Vector512.Create(a[20]), b0, c80);
            c81 = Vector512.FusedMultiplyAdd(Vector512.Create(a[20]), b1, c81);
            c90 = Vector512.FusedMultiplyAdd(Vector512.Create(a[21]), b0, c90);
            c91 = Vector512.FusedMultiplyAdd(Vector512.Create(a[21]), b1, c91);
            ca0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[22]), b0, ca0);
            ca1 = Vector512.FusedMultiplyAdd(Vector512.Create(a[22]), b1, ca1);
            cb0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[23]), b0, cb0);
            cb1 = Vector512.FusedMultiplyAdd(Vector512.Create(a[23]), b1, cb1);
            // p + 2
            b0 = Vector512.Load(b + 64);
            b1 = Vector512.Load(b + 80);
            c00 = Vector512.FusedMultiplyAdd(Vector512.Create(a[24]), b0, c00);
            c01 = Vector512.FusedMultiplyAdd(Vector512.Create(a[24]), b1, c01);
            c10 = Vector512.FusedMultiplyAdd(Vector512.Create(a[25]), b0, c10);
            c11 = Vector512.FusedMultiplyAdd(Vector512.Create(a[25]), b1, c11);
            c20 = Vector512.FusedMultiplyAdd(Vector512.Create(a[26]), b0, c20);
            c21 = Vector512.FusedMultiplyAdd(Vector512.Create(a[26]), b1, c21);
            c30 = Vector512.FusedMultiplyAdd(Vector512.Create(a[27]), b0, c30);
            c31 = Vector512.FusedMultiplyAdd(Vector512.Create(a[27]), b1, c31);
            c40 = Vector512.FusedMultiplyAdd(Vector512.Create(a[28]), b0, c40);
            c41 = Vector512.FusedMultiplyAdd(Vector512.Create(a[28]), b1, c41);
            c50 = Vector512.FusedMultiplyAdd(Vector512.Create(a[29]), b0, c50);
            c51 = Vector512.FusedMultiplyAdd(Vector512.Create(a[29]), b1, c51);
            c60 = Vector512.FusedMultiplyAdd(Vector512.Create(a[30]), b0, c60);
            c61 = Vector512.FusedMultiplyAdd(Vector512.Create(a[30]), b1, c61);
            c70 = Vector512.FusedMultiplyAdd(Vector512.Create(a[31]), b0, c70);
            c71 = Vector512.FusedMultiplyAdd(Vector512.Create(a[31]), b1, c71);
            c80 = Vector512.FusedMultiplyAdd(Vector512.Create(a[32]), b0, c80);
            c81 = Vector512.FusedMultiplyAdd(Vector512.Create(a[32]), b1, c81);
            c90 = Vector512.FusedMultiplyAdd(Vector512.Create(a[33]), b0, c90);
            c91 = Vector512.FusedMultiplyAdd(Vector512.Create(a[33]), b1, c91);
            ca0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[34]), b0, ca0);
            ca1 = Vector512.FusedMultiplyAdd(Vector512.Create(a[34]), b1, ca1);
            cb0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[35]), b0, cb0);
            cb1 = Vector512.FusedMultiplyAdd(Vector512.Create(a[35]), b1, cb1);
            // p + 3
            b0 = Vector512.Load(b + 96);
            b1 = Vector512.Load(b + 112);
            c00 = Vector512.FusedMultiplyAdd(Vector512.Create(a[36]), b0, c00);
            c01 = Vector512.FusedMultiplyAdd(Vector512.Create(a[36]), b1, c01);
            c10 = Vector512.FusedMultiplyAdd(Vector512.Create(a[37]), b0, c10);
            c11 = Vector512.FusedMultiplyAdd(Vector512.Create(a[37]), b1, c11);
            c20 = Vector512.FusedMultiplyAdd(Vector512.Create(a[38]), b0, c20);
            c21 = Vector512.FusedMultiplyAdd(Vector512.Create(a[38]), b1, c21);
            c30 = Vector512.FusedMultiplyAdd(Vector512.Create(a[39]), b0, c30);
            c31 = Vector512.FusedMultiplyAdd(Vector512.Create(a[39]), b1, c31);
            c40 = Vector512.FusedMultiplyAdd(Vector512.Create(a[40]), b0, c40);
            c41 = Vector512.FusedMultiplyAdd(Vector512.Create(a[40]), b1, c41);
            c50 = Vector512.FusedMultiplyAdd(Vector512.Create(a[41]), b0, c50);
            c51 = Vector512.FusedMultiplyAdd(Vector512.Create(a[41]), b1, c51);
            c60 = Vector512.FusedMultiplyAdd(Vector512.Create(a[42]), b0, c60);
            c61 = Vector512.FusedMultiplyAdd(Vector512.Create(a[42]), b1, c61);
            c70 = Vector512.FusedMultiplyAdd(Vector512.Create(a[43]), b0, c70);
            c71 = Vector512.FusedMultiplyAdd(Vector512.Create(a[43]), b1, c71);
            c80 = Vector512.FusedMultiplyAdd(Vector512.Create(a[44]), b0, c80);
            c81 = Vector512.FusedMultiplyAdd(Vector512.Create(a[44]), b1, c81);
            c90 = Vector512.FusedMultiplyAdd(Vector512.Create(a[45]), b0, c90);
            c91 = Vector512.FusedMultiplyAdd(Vector512.Create(a[45]), b1, c91);
            ca0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[46]), b0, ca0);
            ca1 = Vector512.FusedMultiplyAdd(Vector512.Create(a[46]), b1, ca1);
            cb0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[47]), b0, cb0);
            cb1 = Vector512.FusedMultiplyAdd(Vector512.Create(a[47]), b1, cb1);
            a += 48;
            b += 128;
            if (--countdown == 0)
            {
                countdown = gap;
                if (rowsAhead-- > 0)
                {
                    PrefetchRow(ahead, 32);
                    ahead += ldc;
                }
            }
        }

        for (; p < kc; p++)
        {
            b0 = Vector512.Load(b);
            b1 = Vector512.Load(b + 16);
            c00 = Vector512.FusedMultiplyAdd(Vector512.Create(a[0]), b0, c00);
            c01 = Vector512.FusedMultiplyAdd(Vector512.Create(a[0]), b1, c01);
            c10 = Vector512.FusedMultiplyAdd(Vector512.Create(a[1]), b0, c10);
            c11 = Vector512.FusedMultiplyAdd(Vector512.Create(a[1]), b1, c11);
            c20 = Vector512.FusedMultiplyAdd(Vector512.Create(a[2]), b0, c20);
            c21 = Vector512.FusedMultiplyAdd(Vector512.Create(a[2]), b1, c21);
            c30 = Vector512.FusedMultiplyAdd(Vector512.Create(a[3]), b0, c30);
            c31 = Vector512.FusedMultiplyAdd(Vector512.Create(a[3]), b1, c31);
            c40 = Vector512.FusedMultiplyAdd(Vector512.Create(a[4]), b0, c40);
            c41 = Vector512.FusedMultiplyAdd(Vector512.Create(a[4]), b1, c41);
            c50 = Vector512.FusedMultiplyAdd(Vector512.Create(a[5]), b0, c50);
            c51 = Vector512.FusedMultiplyAdd(Vector512.Create(a[5]), b1, c51);
            c60 = Vector512.FusedMultiplyAdd(Vector512.Create(a[6]), b0, c60);
            c61 = Vector512.FusedMultiplyAdd(Vector512.Create(a[6]), b1, c61);
            c70 = Vector512.FusedMultiplyAdd(Vector512.Create(a[7]), b0, c70);
            c71 = Vector512.FusedMultiplyAdd(Vector512.Create(a[7]), b1, c71);
            c80 = Vector512.FusedMultiplyAdd(Vector512.Create(a[8]), b0, c80);
            c81 = Vector512.FusedMultiplyAdd(Vector512.Create(a[8]), b1, c81);
            c90 = Vector512.FusedMultiplyAdd(Vector512.Create(a[9]), b0, c90);
            c91 = Vector512.FusedMultiplyAdd(Vector512.Create(a[9]), b1, c91);
            ca0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[10]), b0, ca0);
            ca1 = Vector512.FusedMultiplyAdd(Vector512.Create(a[10]), b1, ca1);
            cb0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[11]), b0, cb0);
            cb1 = Vector512.FusedMultiplyAdd(Vector512.Create(a[11]), b1, cb1);
            a += 12;
            b += 32;
        }

        // A short depth ends before every row of the next tile was asked for: ask for the rest now.
        for (; rowsAhead > 0; rowsAhead--)
        {
            PrefetchRow(ahead, 32);
            ahead += ldc;
        }

        Store512(c, ldc, 0, c00, c01);
        Store512(c, ldc, 1, c10, c11);
        Store512(c, ldc, 2, c20, c21);
        Store512(c, ldc, 3, c30, c31);
        Store512(c, ldc, 4, c40, c41);
        Store512(c, ldc, 5, c50, c51);
        Store512(c, ldc, 6, c60, c61);
        Store512(c, ldc, 7, c70, c71);
        Store512(c, ldc, 8, c80, c81);
        Store512(c, ldc, 9, c90, c91);
        Store512(c, ldc, 10, ca0, ca1);
        Store512(c, ldc, 11, cb0, cb1);
    }

    // 24×16 tile for BlockAcross: rows 0..11 from the A panel `upper`, 12..23 from `lower` (both 12-row panels, column p
    // 12 floats apart), against 16 columns of a 32-wide B panel (row p 32 floats apart). One B vector a step feeds 24
    // FMAs, each with its broadcast from memory. Two steps per loop trip. One row of the next tile is asked for per trip
    // over the first 24 trips (the rest at the end for a short depth). Each accumulator sums over p in order from
    // C's value (when adding; else from zero), as in Kernel12x32: the same bits.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Kernel24x16(int kc, float* upper, float* lower, float* b, float* c, int ldc, bool add, float* next)
    {
        float* ahead = next;
        int rowsAhead = 24;
        Vector512<float> c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19, c20, c21, c22, c23;
        if (add)
        {
            float* row = c;
            c0 = Vector512.Load(row); row += ldc; c1 = Vector512.Load(row); row += ldc; c2 = Vector512.Load(row); row += ldc; c3 = Vector512.Load(row); row += ldc;
            c4 = Vector512.Load(row); row += ldc; c5 = Vector512.Load(row); row += ldc; c6 = Vector512.Load(row); row += ldc; c7 = Vector512.Load(row); row += ldc;
            c8 = Vector512.Load(row); row += ldc; c9 = Vector512.Load(row); row += ldc; c10 = Vector512.Load(row); row += ldc; c11 = Vector512.Load(row); row += ldc;
            c12 = Vector512.Load(row); row += ldc; c13 = Vector512.Load(row); row += ldc; c14 = Vector512.Load(row); row += ldc; c15 = Vector512.Load(row); row += ldc;
            c16 = Vector512.Load(row); row += ldc; c17 = Vector512.Load(row); row += ldc; c18 = Vector512.Load(row); row += ldc; c19 = Vector512.Load(row); row += ldc;
            c20 = Vector512.Load(row); row += ldc; c21 = Vector512.Load(row); row += ldc; c22 = Vector512.Load(row); row += ldc; c23 = Vector512.Load(row);
        }
        else
        {
            c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = c8 = c9 = c10 = c11 = Vector512<float>.Zero;
            c12 = c13 = c14 = c15 = c16 = c17 = c18 = c19 = c20 = c21 = c22 = c23 = Vector512<float>.Zero;
        }

        Vector512<float> x;
        int p = 0;
        for (; p + 2 <= kc; p += 2)
        {
            x = Vector512.Load(b);
            c0 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[0]), x, c0);
            c1 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[1]), x, c1);
            c2 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[2]), x, c2);
            c3 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[3]), x, c3);
            c4 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[4]), x, c4);
            c5 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[5]), x, c5);
            c6 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[6]), x, c6);
            c7 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[7]), x, c7);
            c8 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[8]), x, c8);
            c9 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[9]), x, c9);
            c10 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[10]), x, c10);
            c11 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[11]), x, c11);
            c12 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[0]), x, c12);
            c13 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[1]), x, c13);
            c14 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[2]), x, c14);
            c15 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[3]), x, c15);
            c16 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[4]), x, c16);
            c17 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[5]), x, c17);
            c18 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[6]), x, c18);
            c19 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[7]), x, c19);
            c20 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[8]), x, c20);
            c21 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[9]), x, c21);
            c22 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[10]), x, c22);
            c23 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[11]), x, c23);
            x = Vector512.Load(b + 32);
            c0 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[12]), x, c0);
            c1 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[13]), x, c1);
            c2 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[14]), x, c2);
            c3 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[15]), x, c3);
            c4 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[16]), x, c4);
            c5 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[17]), x, c5);
            c6 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[18]), x, c6);
            c7 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[19]), x, c7);
            c8 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[20]), x, c8);
            c9 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[21]), x, c9);
            c10 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[22]), x, c10);
            c11 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[23]), x, c11);
            c12 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[12]), x, c12);
            c13 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[13]), x, c13);
            c14 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[14]), x, c14);
            c15 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[15]), x, c15);
            c16 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[16]), x, c16);
            c17 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[17]), x, c17);
            c18 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[18]), x, c18);
            c19 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[19]), x, c19);
            c20 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[20]), x, c20);
            c21 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[21]), x, c21);
            c22 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[22]), x, c22);
            c23 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[23]), x, c23);
            upper += 24;
            lower += 24;
            b += 64;
            if (rowsAhead > 0)
            {
                Sse.Prefetch0(ahead);
                ahead += ldc;
                rowsAhead--;
            }
        }

        if (p < kc)
        {
            x = Vector512.Load(b);
            c0 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[0]), x, c0);
            c1 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[1]), x, c1);
            c2 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[2]), x, c2);
            c3 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[3]), x, c3);
            c4 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[4]), x, c4);
            c5 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[5]), x, c5);
            c6 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[6]), x, c6);
            c7 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[7]), x, c7);
            c8 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[8]), x, c8);
            c9 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[9]), x, c9);
            c10 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[10]), x, c10);
            c11 = Vector512.FusedMultiplyAdd(Vector512.Create(upper[11]), x, c11);
            c12 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[0]), x, c12);
            c13 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[1]), x, c13);
            c14 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[2]), x, c14);
            c15 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[3]), x, c15);
            c16 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[4]), x, c16);
            c17 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[5]), x, c17);
            c18 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[6]), x, c18);
            c19 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[7]), x, c19);
            c20 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[8]), x, c20);
            c21 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[9]), x, c21);
            c22 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[10]), x, c22);
            c23 = Vector512.FusedMultiplyAdd(Vector512.Create(lower[11]), x, c23);
        }

        for (; rowsAhead > 0; rowsAhead--)
        {
            Sse.Prefetch0(ahead);
            ahead += ldc;
        }

        Store16(c, ldc, 0, c0);
        Store16(c, ldc, 1, c1);
        Store16(c, ldc, 2, c2);
        Store16(c, ldc, 3, c3);
        Store16(c, ldc, 4, c4);
        Store16(c, ldc, 5, c5);
        Store16(c, ldc, 6, c6);
        Store16(c, ldc, 7, c7);
        Store16(c, ldc, 8, c8);
        Store16(c, ldc, 9, c9);
        Store16(c, ldc, 10, c10);
        Store16(c, ldc, 11, c11);
        Store16(c, ldc, 12, c12);
        Store16(c, ldc, 13, c13);
        Store16(c, ldc, 14, c14);
        Store16(c, ldc, 15, c15);
        Store16(c, ldc, 16, c16);
        Store16(c, ldc, 17, c17);
        Store16(c, ldc, 18, c18);
        Store16(c, ldc, 19, c19);
        Store16(c, ldc, 20, c20);
        Store16(c, ldc, 21, c21);
        Store16(c, ldc, 22, c22);
        Store16(c, ldc, 23, c23);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store16(float* c, int ldc, int row, Vector512<float> sum) => Vector512.Store(sum, c + (long)row * ldc);

    // 4×32 tile over the first four rows of a 12-row A panel (column p of the panel is 12 floats apart); unrolled, and
    // its broadcasts written in place, as the 12×32 kernel's are.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Kernel4x32(int kc, float* a, float* b, float* c, int ldc, bool add, float* next)
    {
        // One row of the next tile asked for every 16 steps (every 4 trips of the unrolled loop).
        float* ahead = next;
        int rowsAhead = 4, gap = Math.Max(1, kc / 64), countdown = gap;
        Vector512<float> c00, c01, c10, c11, c20, c21, c30, c31;
        if (add)
        {
            float* row = c;
            c00 = Vector512.Load(row); c01 = Vector512.Load(row + 16); row += ldc;
            c10 = Vector512.Load(row); c11 = Vector512.Load(row + 16); row += ldc;
            c20 = Vector512.Load(row); c21 = Vector512.Load(row + 16); row += ldc;
            c30 = Vector512.Load(row); c31 = Vector512.Load(row + 16);
        }
        else
        {
            c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = Vector512<float>.Zero;
        }

        Vector512<float> b0, b1;
        int p = 0;
        for (; p + 4 <= kc; p += 4)
        {
            // p + 0
            b0 = Vector512.Load(b);
            b1 = Vector512.Load(b + 16);
            c00 = Vector512.FusedMultiplyAdd(Vector512.Create(a[0]), b0, c00);
            c01 = Vector512.FusedMultiplyAdd(Vector512.Create(a[0]), b1, c01);
            c10 = Vector512.FusedMultiplyAdd(Vector512.Create(a[1]), b0, c10);
            c11 = Vector512.FusedMultiplyAdd(Vector512.Create(a[1]), b1, c11);
            c20 = Vector512.FusedMultiplyAdd(Vector512.Create(a[2]), b0, c20);
            c21 = Vector512.FusedMultiplyAdd(Vector512.Create(a[2]), b1, c21);
            c30 = Vector512.FusedMultiplyAdd(Vector512.Create(a[3]), b0, c30);
            c31 = Vector512.FusedMultiplyAdd(Vector512.Create(a[3]), b1, c31);
            // p + 1
            b0 = Vector512.Load(b + 32);
            b1 = Vector512.Load(b + 48);
            c00 = Vector512.FusedMultiplyAdd(Vector512.Create(a[12]), b0, c00);
            c01 = Vector512.FusedMultiplyAdd(Vector512.Create(a[12]), b1, c01);
            c10 = Vector512.FusedMultiplyAdd(Vector512.Create(a[13]), b0, c10);
            c11 = Vector512.FusedMultiplyAdd(Vector512.Create(a[13]), b1, c11);
            c20 = Vector512.FusedMultiplyAdd(Vector512.Create(a[14]), b0, c20);
            c21 = Vector512.FusedMultiplyAdd(Vector512.Create(a[14]), b1, c21);
            c30 = Vector512.FusedMultiplyAdd(Vector512.Create(a[15]), b0, c30);
            c31 = Vector512.FusedMultiplyAdd(Vector512.Create(a[15]), b1, c31);
            // p + 2
            b0 = Vector512.Load(b + 64);
            b1 = Vector512.Load(b + 80);
            c00 = Vector512.FusedMultiplyAdd(Vector512.Create(a[24]), b0, c00);
            c01 = Vector512.FusedMultiplyAdd(Vector512.Create(a[24]), b1, c01);
            c10 = Vector512.FusedMultiplyAdd(Vector512.Create(a[25]), b0, c10);
            c11 = Vector512.FusedMultiplyAdd(Vector512.Create(a[25]), b1, c11);
            c20 = Vector512.FusedMultiplyAdd(Vector512.Create(a[26]), b0, c20);
            c21 = Vector512.FusedMultiplyAdd(Vector512.Create(a[26]), b1, c21);
            c30 = Vector512.FusedMultiplyAdd(Vector512.Create(a[27]), b0, c30);
            c31 = Vector512.FusedMultiplyAdd(Vector512.Create(a[27]), b1, c31);
            // p + 3
            b0 = Vector512.Load(b + 96);
            b1 = Vector512.Load(b + 112);
            c00 = Vector512.FusedMultiplyAdd(Vector512.Create(a[36]), b0, c00);
            c01 = Vector512.FusedMultiplyAdd(Vector512.Create(a[36]), b1, c01);
            c10 = Vector512.FusedMultiplyAdd(Vector512.Create(a[37]), b0, c10);
            c11 = Vector512.FusedMultiplyAdd(Vector512.Create(a[37]), b1, c11);
            c20 = Vector512.FusedMultiplyAdd(Vector512.Create(a[38]), b0, c20);
            c21 = Vector512.FusedMultiplyAdd(Vector512.Create(a[38]), b1, c21);
            c30 = Vector512.FusedMultiplyAdd(Vector512.Create(a[39]), b0, c30);
            c31 = Vector512.FusedMultiplyAdd(Vector512.Create(a[39]), b1, c31);
            a += 48;
            b += 128;
            if (--countdown == 0)
            {
                countdown = gap;
                if (rowsAhead-- > 0)
                {
                    PrefetchRow(ahead, 32);
                    ahead += ldc;
                }
            }
        }

        for (; p < kc; p++)
        {
            b0 = Vector512.Load(b);
            b1 = Vector512.Load(b + 16);
            c00 = Vector512.FusedMultiplyAdd(Vector512.Create(a[0]), b0, c00);
            c01 = Vector512.FusedMultiplyAdd(Vector512.Create(a[0]), b1, c01);
            c10 = Vector512.FusedMultiplyAdd(Vector512.Create(a[1]), b0, c10);
            c11 = Vector512.FusedMultiplyAdd(Vector512.Create(a[1]), b1, c11);
            c20 = Vector512.FusedMultiplyAdd(Vector512.Create(a[2]), b0, c20);
            c21 = Vector512.FusedMultiplyAdd(Vector512.Create(a[2]), b1, c21);
            c30 = Vector512.FusedMultiplyAdd(Vector512.Create(a[3]), b0, c30);
            c31 = Vector512.FusedMultiplyAdd(Vector512.Create(a[3]), b1, c31);
            a += 12;
            b += 32;
        }

        // A short depth ends before every row of the next tile was asked for: ask for the rest now.
        for (; rowsAhead > 0; rowsAhead--)
        {
            PrefetchRow(ahead, 32);
            ahead += ldc;
        }

        Store512(c, ldc, 0, c00, c01);
        Store512(c, ldc, 1, c10, c11);
        Store512(c, ldc, 2, c20, c21);
        Store512(c, ldc, 3, c30, c31);
    }

    // Asks for the cache lines of one row of the C tile the next call will read and write (row[0..width)), one row per
    // step of this call's depth loop, so the tile is in cache when that call ends: C is touched once per depth block,
    // rows ldc apart (a new page per row for wide matrices), and a tile that waited on memory and the TLB at its end,
    // or prefetched all at once at its start, stalled the kernel (the weight gradients, k = 256, most of all).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void PrefetchRow(float* row, int width)
    {
        if (Sse.IsSupported)
        {
            // Every cache line of row[0..width), aligned or not: the first, each 16 floats on, and the last.
            Sse.Prefetch0(row);
            if (width > 16)
            {
                Sse.Prefetch0(row + 16);
            }

            Sse.Prefetch0(row + width - 1);
        }
    }

    // Every cache line of row[0..width), for runs of any width (PrefetchRow covers at most three lines): into L1, or
    // with intoL1 false into L2 only, for source rows packed a little later, which must not push the B panel in use
    // out of L1.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void PrefetchRun(float* row, int width, bool intoL1)
    {
        if (Sse.IsSupported)
        {
            // Each 16 floats from the first, and the last.
            for (int j = 0; j < width; j += 16)
            {
                if (intoL1)
                {
                    Sse.Prefetch0(row + j);
                }
                else
                {
                    Sse.Prefetch1(row + j);
                }
            }

            if (intoL1)
            {
                Sse.Prefetch0(row + width - 1);
            }
            else
            {
                Sse.Prefetch1(row + width - 1);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store512(float* c, int ldc, int row, Vector512<float> left, Vector512<float> right)
    {
        float* target = c + (long)row * ldc;
        Vector512.Store(left, target);
        Vector512.Store(right, target + 16);
    }

    // 6×16 tile for machines without AVX-512: 12 accumulators of the 16 ymm registers; the depth loop unrolled four
    // times as the 12×32 kernel's is, for the same reason (measured the same way on the Ice Lake Xeon with
    // DOTNET_EnableAVX512=0: +3–11% on 1024³ and four GPT-2 shapes).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Kernel6x16(int kc, float* a, float* b, float* c, int ldc, bool add, float* next)
    {
        // One row of the next tile asked for per trip of the unrolled loop, from the first.
        float* ahead = next;
        int rowsAhead = 6;
        Vector256<float> c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
        if (add)
        {
            float* row = c;
            c00 = Vector256.Load(row); c01 = Vector256.Load(row + 8); row += ldc;
            c10 = Vector256.Load(row); c11 = Vector256.Load(row + 8); row += ldc;
            c20 = Vector256.Load(row); c21 = Vector256.Load(row + 8); row += ldc;
            c30 = Vector256.Load(row); c31 = Vector256.Load(row + 8); row += ldc;
            c40 = Vector256.Load(row); c41 = Vector256.Load(row + 8); row += ldc;
            c50 = Vector256.Load(row); c51 = Vector256.Load(row + 8);
        }
        else
        {
            c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = Vector256<float>.Zero;
        }

        Vector256<float> b0, b1, ai;
        int p = 0;
        for (; p + 4 <= kc; p += 4)
        {
            // p + 0
            b0 = Vector256.Load(b);
            b1 = Vector256.Load(b + 8);
            ai = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(ai, b0, c00);
            c01 = Vector256.FusedMultiplyAdd(ai, b1, c01);
            ai = Vector256.Create(a[1]);
            c10 = Vector256.FusedMultiplyAdd(ai, b0, c10);
            c11 = Vector256.FusedMultiplyAdd(ai, b1, c11);
            ai = Vector256.Create(a[2]);
            c20 = Vector256.FusedMultiplyAdd(ai, b0, c20);
            c21 = Vector256.FusedMultiplyAdd(ai, b1, c21);
            ai = Vector256.Create(a[3]);
            c30 = Vector256.FusedMultiplyAdd(ai, b0, c30);
            c31 = Vector256.FusedMultiplyAdd(ai, b1, c31);
            ai = Vector256.Create(a[4]);
            c40 = Vector256.FusedMultiplyAdd(ai, b0, c40);
            c41 = Vector256.FusedMultiplyAdd(ai, b1, c41);
            ai = Vector256.Create(a[5]);
            c50 = Vector256.FusedMultiplyAdd(ai, b0, c50);
            c51 = Vector256.FusedMultiplyAdd(ai, b1, c51);
            // p + 1
            b0 = Vector256.Load(b + 16);
            b1 = Vector256.Load(b + 24);
            ai = Vector256.Create(a[6]);
            c00 = Vector256.FusedMultiplyAdd(ai, b0, c00);
            c01 = Vector256.FusedMultiplyAdd(ai, b1, c01);
            ai = Vector256.Create(a[7]);
            c10 = Vector256.FusedMultiplyAdd(ai, b0, c10);
            c11 = Vector256.FusedMultiplyAdd(ai, b1, c11);
            ai = Vector256.Create(a[8]);
            c20 = Vector256.FusedMultiplyAdd(ai, b0, c20);
            c21 = Vector256.FusedMultiplyAdd(ai, b1, c21);
            ai = Vector256.Create(a[9]);
            c30 = Vector256.FusedMultiplyAdd(ai, b0, c30);
            c31 = Vector256.FusedMultiplyAdd(ai, b1, c31);
            ai = Vector256.Create(a[10]);
            c40 = Vector256.FusedMultiplyAdd(ai, b0, c40);
            c41 = Vector256.FusedMultiplyAdd(ai, b1, c41);
            ai = Vector256.Create(a[11]);
            c50 = Vector256.FusedMultiplyAdd(ai, b0, c50);
            c51 = Vector256.FusedMultiplyAdd(ai, b1, c51);
            // p + 2
            b0 = Vector256.Load(b + 32);
            b1 = Vector256.Load(b + 40);
            ai = Vector256.Create(a[12]);
            c00 = Vector256.FusedMultiplyAdd(ai, b0, c00);
            c01 = Vector256.FusedMultiplyAdd(ai, b1, c01);
            ai = Vector256.Create(a[13]);
            c10 = Vector256.FusedMultiplyAdd(ai, b0, c10);
            c11 = Vector256.FusedMultiplyAdd(ai, b1, c11);
            ai = Vector256.Create(a[14]);
            c20 = Vector256.FusedMultiplyAdd(ai, b0, c20);
            c21 = Vector256.FusedMultiplyAdd(ai, b1, c21);
            ai = Vector256.Create(a[15]);
            c30 = Vector256.FusedMultiplyAdd(ai, b0, c30);
            c31 = Vector256.FusedMultiplyAdd(ai, b1, c31);
            ai = Vector256.Create(a[16]);
            c40 = Vector256.FusedMultiplyAdd(ai, b0, c40);
            c41 = Vector256.FusedMultiplyAdd(ai, b1, c41);
            ai = Vector256.Create(a[17]);
            c50 = Vector256.FusedMultiplyAdd(ai, b0, c50);
            c51 = Vector256.FusedMultiplyAdd(ai, b1, c51);
            // p + 3
            b0 = Vector256.Load(b + 48);
            b1 = Vector256.Load(b + 56);
            ai = Vector256.Create(a[18]);
            c00 = Vector256.FusedMultiplyAdd(ai, b0, c00);
            c01 = Vector256.FusedMultiplyAdd(ai, b1, c01);
            ai = Vector256.Create(a[19]);
            c10 = Vector256.FusedMultiplyAdd(ai, b0, c10);
            c11 = Vector256.FusedMultiplyAdd(ai, b1, c11);
            ai = Vector256.Create(a[20]);
            c20 = Vector256.FusedMultiplyAdd(ai, b0, c20);
            c21 = Vector256.FusedMultiplyAdd(ai, b1, c21);
            ai = Vector256.Create(a[21]);
            c30 = Vector256.FusedMultiplyAdd(ai, b0, c30);
            c31 = Vector256.FusedMultiplyAdd(ai, b1, c31);
            ai = Vector256.Create(a[22]);
            c40 = Vector256.FusedMultiplyAdd(ai, b0, c40);
            c41 = Vector256.FusedMultiplyAdd(ai, b1, c41);
            ai = Vector256.Create(a[23]);
            c50 = Vector256.FusedMultiplyAdd(ai, b0, c50);
            c51 = Vector256.FusedMultiplyAdd(ai, b1, c51);
            a += 24;
            b += 64;
            if (rowsAhead > 0)
            {
                PrefetchRow(ahead, 16);
                ahead += ldc;
                rowsAhead--;
            }
        }

        for (; p < kc; p++)
        {
            b0 = Vector256.Load(b);
            b1 = Vector256.Load(b + 8);
            ai = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(ai, b0, c00);
            c01 = Vector256.FusedMultiplyAdd(ai, b1, c01);
            ai = Vector256.Create(a[1]);
            c10 = Vector256.FusedMultiplyAdd(ai, b0, c10);
            c11 = Vector256.FusedMultiplyAdd(ai, b1, c11);
            ai = Vector256.Create(a[2]);
            c20 = Vector256.FusedMultiplyAdd(ai, b0, c20);
            c21 = Vector256.FusedMultiplyAdd(ai, b1, c21);
            ai = Vector256.Create(a[3]);
            c30 = Vector256.FusedMultiplyAdd(ai, b0, c30);
            c31 = Vector256.FusedMultiplyAdd(ai, b1, c31);
            ai = Vector256.Create(a[4]);
            c40 = Vector256.FusedMultiplyAdd(ai, b0, c40);
            c41 = Vector256.FusedMultiplyAdd(ai, b1, c41);
            ai = Vector256.Create(a[5]);
            c50 = Vector256.FusedMultiplyAdd(ai, b0, c50);
            c51 = Vector256.FusedMultiplyAdd(ai, b1, c51);
            a += 6;
            b += 16;
        }

        for (; rowsAhead > 0; rowsAhead--)
        {
            PrefetchRow(ahead, 16);
            ahead += ldc;
        }

        Store256(c, ldc, 0, c00, c01);
        Store256(c, ldc, 1, c10, c11);
        Store256(c, ldc, 2, c20, c21);
        Store256(c, ldc, 3, c30, c31);
        Store256(c, ldc, 4, c40, c41);
        Store256(c, ldc, 5, c50, c51);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store256(float* c, int ldc, int row, Vector256<float> left, Vector256<float> right)
    {
        float* target = c + (long)row * ldc;
        Vector256.Store(left, target);
        Vector256.Store(right, target + 8);
    }

    // No vector unit (or a tiny product): i-p-j order so the inner loop runs along rows of op(B) and C.
    private static void MultiplyPlain(
        bool transposeA, bool transposeB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        Span<float> c, int ldc, bool accumulate)
    {
        if (transposeB)
        {
            // Rows of B are columns of op(B): a dot product per entry reads both operands contiguously.
            Reference(transposeA, transposeB, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
            return;
        }

        for (int i = 0; i < m; i++)
        {
            var row = c.Slice(i * ldc, n);
            if (!accumulate)
            {
                row.Clear();
            }

            for (int p = 0; p < k; p++)
            {
                float aip = transposeA ? a[p * lda + i] : a[i * lda + p];
                var bRow = b.Slice(p * ldb, n);
                for (int j = 0; j < n; j++)
                {
                    row[j] += aip * bRow[j];
                }
            }
        }
    }
}
