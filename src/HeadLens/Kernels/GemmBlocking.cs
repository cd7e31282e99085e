namespace HeadLens.Kernels;

/// <summary>
/// The cache blocking of the fast matrix product (Gemm.Fast.cs): how deep a block of the sum is (KC,
/// <see cref="Depth"/>), how many rows of op(A) are packed at a time (MC, <see cref="Rows"/>) and how many columns
/// of op(B) (NC, <see cref="Columns"/>).
/// </summary>
/// <remarks>
/// Chosen from the cache sizes the machine reports (<see cref="CacheSizes.Detect"/>) and, for the depth, from how
/// its vector unit issues 512-bit FMAs (<see cref="WideFmaAtHalfRate"/>), not from a timed sweep: the
/// machines this runs on are shared and noisy (a sweep under another process's load picks noise, and one run once
/// and cached per CPU model would keep that noise for good), a sweep costs seconds at start-up or a file written
/// somewhere, and the sizes follow from where each operand has to live (BLIS's analytical model, Low et al. 2016):
/// <list type="bullet">
/// <item>KC: one packed B panel (KC × NR) stays in L1 while the kernel runs down the MC rows of the A block, beside
/// the A panel streaming through (KC × MR) and one way of the cache left for C: KC·(MR + NR)·4 B ≤ L1·(W − 1)/W.
/// 48 KiB, 12-way, 12×32 tile: KC = 256. Measured on that machine (Xeon, Ice Lake), 2048³ on one core: KC = 256
/// ran ~20% faster than the KC = 768 that was tuned on another machine with B panels in L2.</item>
/// <item>KC where a 512-bit FMA issues once per cycle, as two 256-bit halves (AMD Zen 4,
/// <see cref="WideFmaAtHalfRate"/>): the 12×32 kernel then reads its 176 bytes of A and B per 24 cycles, which L2
/// delivers, so the B panel need not stay in L1, and a deeper block is cheaper: each depth block costs a load and a
/// store of every C tile, and each A block (MC rows) a trip of the B block from L3 into L2. With the A block in half
/// of L2 (MC·KC·4 B = L2/2) the two costs balance at MC = KC = √(L2/8 B): 1 MiB gives KC = 352, MC = 372 (the L1 rule
/// gives 160 and 816). Measured on Zen 4 (EPYC, 2 threads, alternated, medians of 9): 2048³ 7% faster; of 12
/// GPT-2 training shapes with 768 rows or more (all three transpositions), 8 faster by up to 5%, 4 slower by at most
/// 2%. Products with fewer rows than one A block take the L1 rule (<see cref="For(int)"/>); a product's depth is
/// then split into equal blocks of up to 768 from 128 rows up (<see cref="ForProduct"/>).</item>
/// <item>MC: the packed A block (MC × KC) stays in L2 for the whole sweep over NC columns: half of L2, the rest for
/// the B panels passing through and C.</item>
/// <item>NC: the packed B block (KC × NC) in a quarter of the shared L3 (the threads share one, or two alternating,
/// when they split the rows, Gemm.Threads.cs; each packs its own when they split the columns; other cores and tenants
/// use the rest), capped at 4096 columns, beyond which fewer re-packs of A save nothing measurable.</item>
/// </list>
/// </remarks>
public sealed record GemmBlocking(int Depth, int Rows, int Columns)
{
    // When the machine reports nothing usable: caches that nearly every x86 and Arm core of the last decade meets
    // or exceeds, so the blocks still fit where the real caches are larger (costing a little speed, not a lot).
    internal static readonly CacheSizes FallbackCaches = new(32 << 10, 8, 512 << 10, 4 << 20);

    private const int MinDepth = 64, MaxDepth = 1024, MaxRows = 4096, MaxColumns = 4096;

    /// <summary>The caches this machine reports (null: none that make sense, so the fallback is used).</summary>
    public static CacheSizes? DetectedCaches { get; } = CacheSizes.Detect();

    /// <summary>
    /// Whether this machine runs the 512-bit register tile with its 512-bit FMAs issued once per cycle, as two 256-bit
    /// halves: AMD family 19h (Zen 4; Zen 3, the same family, has no AVX-512). Zen 5 (family 1Ah) issues two per cycle
    /// on its desktop and server parts; so do Intel's server cores, which <see cref="Choose"/>'s L1 rule was measured on.
    /// </summary>
    public static bool WideFmaAtHalfRate { get; } = Gemm.TileColumns == 32 && CpuModel.AmdFamily19h;

    /// <summary>The blocking for this machine's caches (or for <see cref="FallbackCaches"/>) and register tile.</summary>
    public static GemmBlocking ForThisMachine { get; } = Choose(DetectedCaches, Gemm.TileRows, Gemm.TileColumns, WideFmaAtHalfRate);

    /// <summary>
    /// The blocking for products with fewer rows than one A block of <see cref="ForThisMachine"/>: the L1 rule's, which
    /// differs from it only where <see cref="WideFmaAtHalfRate"/> sized the depth by L2.
    /// </summary>
    public static GemmBlocking ForFewRows { get; } = WideFmaAtHalfRate ? Choose(DetectedCaches, Gemm.TileRows, Gemm.TileColumns) : ForThisMachine;

    /// <summary>
    /// The blocking for a product of <paramref name="rows"/> rows of op(A). The L2-sized depth pays where the kernel runs
    /// down a whole A block under each B panel; with fewer rows each B panel serves a few A panels, the product is
    /// mostly packing and reading B, and there the L1 depth measured faster on Zen 4 (16 rows, a prompt's or a short
    /// text's: 10–20% on 2 threads, for every GPT-2 weight shape).
    /// </summary>
    public static GemmBlocking For(int rows) => rows >= ForThisMachine.Rows ? ForThisMachine : ForFewRows;

    /// <summary>
    /// The blocking for a product of <paramref name="rows"/> rows of op(A) over <paramref name="depth"/> whose B is packed
    /// per call (<see cref="Gemm.Multiply"/>): <see cref="For(int)"/>'s, except where 512-bit FMAs issue at half rate
    /// (<see cref="WideFmaAtHalfRate"/>) and the rows are at least <see cref="DeepBlockRows"/>: there the depth is split
    /// into the fewest equal blocks of at most <see cref="DeepestHalfRateBlock"/>, as <see cref="ForWeightPanels"/>
    /// does. The L2 rule's 352 split a GPT-2 product's K = 768 as 352 + 352 + 64 and K = 3072 as 8 × 352 + 256 (the
    /// L1 rule's 160, for fewer rows than one A block, as 4 × 160 + 128): every block is a pass over C (the vocabulary
    /// head's logits are 206 MB at 1,024 tokens, read and written from memory at each pass) and, with many rows, a wait
    /// for the shared B block's packing, and a short last block ran the kernel at a fraction of its rate. The A block
    /// (up to MC × 768 floats) then outgrows half of L2, which costs nothing seen: its panels are read from L2 or L3 at
    /// the rate the half-rate FMAs use them. Measured on Zen 4 (medians of 5–7 alternations, GFLOP/s): of the 15
    /// products of a GPT-2 step at 1,024 tokens on 2 threads, against 352, the ten with K = 768, 2304, 3072 or 50257
    /// ran 0.2–4.4% faster, the five weight gradients (K = 1024: two blocks of 512) −1.3% to +0.4% but the vocabulary
    /// head's (−5.1%; +0.6% and +1.3% in two other sweeps), 2048³ (three blocks of 688) +1.3%, and on one thread 11 of
    /// the 15 faster, the slowest −2.5%; of 10 at 256 tokens, against 160, all faster (+0.6% to +7.6%); at 128 and 64
    /// rows the products with B untransposed 6–9% faster, with y = x·Wᵀ's within ±4%; at 16 rows those 8–16% slower,
    /// where each B panel serves two A panels and is better read from L1. The bits do not depend on it (Gemm.Fast.cs:
    /// the sums go on across blocks).
    /// </summary>
    public static GemmBlocking ForProduct(int rows, int depth) =>
        WideFmaAtHalfRate && rows >= DeepBlockRows ? InEqualDepthBlocks(For(rows), depth) : For(rows);

    /// <summary>The fewest rows for which <see cref="ForProduct"/> takes the deep blocks on half-rate machines.</summary>
    public const int DeepBlockRows = 128;

    /// <summary>
    /// The blocking for a product of <paramref name="rows"/> rows against a weight matrix whose B panels need no packing
    /// per depth block: packed once over its whole <paramref name="depth"/> (<see cref="Gemm.MultiplyPacked"/>:
    /// inference), or decoded from a ggml file as the product asks for them (QuantizedMatMul). Where 512-bit FMAs issue
    /// at half rate (<see cref="WideFmaAtHalfRate"/>) the depth is split into the fewest equal blocks of at most
    /// <see cref="DeepestHalfRateBlock"/>, with any number of rows: a block then costs a pass over C (its tiles loaded
    /// and stored) and nothing else, and the panels of A and B are read from L2 at the rate the half-rate FMAs use them.
    /// Measured on Zen 4 (2 threads, B in cache, medians of three, GFLOP/s against For's L1 depth of 160): packed,
    /// 16 × 384 × 384 172 → 193, 128 × 1536 × 384 186 → 208, 256 × 3072 × 768 190 → 221; Q8_0 panels, 64 × 2048 × 2048
    /// 178 → 198; Q4_K's (whole super-blocks: 256 before) 64 × 2048 × 5632 187 → 203. Depths past 768 gained nothing
    /// more, and a short last block (512 + 256) mostly lost against two of 384. Elsewhere <see cref="For(int)"/>'s. The
    /// bits do not depend on it (Gemm.Fast.cs: the sums go on across blocks).
    /// </summary>
    public static GemmBlocking ForWeightPanels(int rows, int depth) =>
        WideFmaAtHalfRate ? InEqualDepthBlocks(For(rows), depth) : For(rows);

    /// <summary>The deepest block <see cref="ForProduct"/> and <see cref="ForWeightPanels"/> take on half-rate machines.</summary>
    public const int DeepestHalfRateBlock = 768;

    // The depth in the fewest equal blocks of at most DeepestHalfRateBlock (multiples of 16), and NC narrowed so that
    // the deeper B block (shared by the threads when the rows are many) stays in its quarter of L3, as Choose sizes it.
    private static GemmBlocking InEqualDepthBlocks(GemmBlocking blocking, int depth)
    {
        if (depth <= 0)
        {
            return blocking;
        }

        int blocks = (depth + DeepestHalfRateBlock - 1) / DeepestHalfRateBlock, depthBlock = RoundUp((depth + blocks - 1) / blocks, 16);
        return blocking with { Depth = depthBlock, Columns = Math.Min(blocking.Columns, ColumnsFor(Usable(DetectedCaches), depthBlock, Gemm.TileColumns)) };
    }

    /// <summary>
    /// Blocks that fit <paramref name="caches"/> (null: the fallback) for a register tile of
    /// <paramref name="tileRows"/> × <paramref name="tileColumns"/> floats; with <paramref name="panelsFromLevel2"/>
    /// the B panels are read from L2 (<see cref="WideFmaAtHalfRate"/>), so the depth is sized by L2, not L1.
    /// </summary>
    public static GemmBlocking Choose(CacheSizes? caches, int tileRows, int tileColumns, bool panelsFromLevel2 = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(tileRows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(tileColumns, 1);
        caches = Usable(caches);
        const int bytes = sizeof(float);
        int ways = caches.Level1Ways > 1 ? caches.Level1Ways : 8;
        long level1 = caches.Level1 * (ways - 1) / ways;
        long deepest = panelsFromLevel2
            ? (long)Math.Sqrt(caches.Level2 / 2.0 / bytes)
            : level1 / ((tileRows + tileColumns) * bytes);
        int depth = RoundDown((int)Math.Clamp(deepest, MinDepth, MaxDepth), 16);

        int rows = (int)Math.Clamp(caches.Level2 / 2 / ((long)depth * bytes), tileRows, MaxRows);
        rows = Math.Max(tileRows, RoundDown(rows, tileRows));

        return new GemmBlocking(depth, rows, ColumnsFor(caches, depth, tileColumns));
    }

    // The caches given, or the fallback where they are missing or report no L1 or L2.
    private static CacheSizes Usable(CacheSizes? caches) => caches is { Level1: > 0, Level2: > 0 } ? caches : FallbackCaches;

    // NC: the B block (depth × NC floats) in a quarter of L3. No L3 reported: the B block is read from memory once per
    // row block either way; give it what four L2s hold.
    private static int ColumnsFor(CacheSizes caches, int depth, int tileColumns)
    {
        long level3 = caches.Level3 > 0 ? caches.Level3 : 4 * caches.Level2;
        int columns = (int)Math.Clamp(level3 / 4 / ((long)depth * sizeof(float)), tileColumns, MaxColumns);
        return Math.Max(tileColumns, RoundDown(columns, tileColumns));
    }

    /// <summary>
    /// The deepest block for which <paramref name="rows"/> rows of packed A stay in L1 (of <paramref name="caches"/>,
    /// or the fallback) beside what streams through: the L1 budget of <see cref="Choose"/>'s rule, all ways but one.
    /// </summary>
    public static int DeepestInLevel1(CacheSizes? caches, int rows)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        caches ??= FallbackCaches;
        if (caches.Level1 <= 0)
        {
            caches = FallbackCaches;
        }

        int ways = caches.Level1Ways > 1 ? caches.Level1Ways : 8;
        return (int)(caches.Level1 * (ways - 1) / ways / (rows * sizeof(float)));
    }

    private static int RoundDown(int value, int multiple) => value / multiple * multiple;

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;
}
