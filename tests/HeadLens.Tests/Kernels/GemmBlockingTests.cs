using HeadLens.Kernels;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Kernels;

/// <summary>
/// The fast product under every cache blocking the chooser can produce (and the smallest, and sizes that are not
/// multiples of the tile) against the float64 oracle, per transposition, on 1 and 2 threads, through both the
/// per-call packing and the weights packed once; and the chooser itself: cache sizes in, blocks that fit out.
/// The tolerance is GemmTests's: k·ε of Σ|a·b| per entry; between blockings the bits are the same (each sum goes on
/// across depth blocks in order).
/// </summary>
public sealed class GemmBlockingTests
{
    private static readonly int TileRows = Gemm.TileRows, TileColumns = Gemm.TileColumns;

    // Each blocking once: on the machine whose caches one of them describes (this machine's is Zen4Blocking on Zen 4),
    // the same case twice would share its test ID, and xUnit skips the second with a warning.
    public static TheoryData<int, int, int> Blockings()
    {
        var data = new TheoryData<int, int, int>();
        GemmBlocking[] blockings =
        [
            new(16, TileRows, TileColumns),      // every loop takes many trips: smallest blocks
            new(40, 30, 50),                     // rows and columns not whole tiles (rounded up inside)
            new(64, 2 * TileRows, 3 * TileColumns),
            new(768, 48, 2048),                  // the constants before blocks came from the caches
            GemmBlocking.ForThisMachine,
            GemmBlocking.Choose(null, TileRows, TileColumns),
            Zen4Blocking,                        // the depth sized by L2, on any machine
            GemmBlocking.ForFewRows,
        ];
        foreach (var blocking in blockings.Distinct())
        {
            data.Add(blocking.Depth, blocking.Rows, blocking.Columns);
        }

        return data;
    }

    // AMD EPYC (Zen 4): L1d 32 KiB 8-way, L2 1 MiB, L3 32 MiB, 512-bit FMAs at half rate (B panels read from L2).
    private static readonly CacheSizes Zen4Caches = new(32 << 10, 8, 1 << 20, 32 << 20);

    private static GemmBlocking Zen4Blocking => GemmBlocking.Choose(Zen4Caches, TileRows, TileColumns, panelsFromLevel2: true);

    // Odd sizes across the blocks above: edge tiles, the short-rows kernel (M ≡ 4 mod 12), depth past several blocks.
    private static readonly (int M, int N, int K)[] Sizes = [(13, 97, 131), (37, 70, 300), (100, 33, 17), (256, 70, 31), (61, 129, 65)];

    // The sizes above and one with more rows than the blocking's A block and a depth past one block, so that
    // threads take both splits (Gemm.Threads.cs: shared B blocks for many rows, own columns for few) under every
    // blocking.
    private static IEnumerable<(int M, int N, int K)> SizesFor(GemmBlocking blocking) =>
        Sizes.Append((RoundUp(blocking.Rows, TileRows) + 13, 45, blocking.Depth + 7));

    [Theory]
    [MemberData(nameof(Blockings))]
    public void FastProductMatchesOracleUnderBlocking(int depth, int rows, int columns)
    {
        var blocking = new GemmBlocking(depth, rows, columns);
        var random = new Random(depth * 31 + rows * 7 + columns);
        foreach (var (m, n, k) in SizesFor(blocking))
        {
            foreach (bool transposeA in new[] { false, true })
            {
                foreach (bool transposeB in new[] { false, true })
                {
                    foreach (int threads in new[] { 1, 2 })
                    {
                        Check(random, blocking, transposeA, transposeB, m, n, k, threads, accumulate: threads == 2);
                    }
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Blockings))]
    public void PackedWeightsEqualPerCallPackingUnderBlocking(int depth, int rows, int columns)
    {
        var blocking = new GemmBlocking(depth, rows, columns);
        var random = new Random(depth + rows + columns);
        foreach (var (m, n, k) in Sizes)
        {
            float[] x = TestData.Uniform(random, m * k), w = TestData.Uniform(random, n * k);
            var packed = Gemm.Pack(w, n, k);
            if (packed is null)
            {
                return; // no vector unit: there is no packed path to compare
            }

            foreach (int threads in new[] { 1, 2 })
            {
                float[] start = TestData.Uniform(random, m * n);
                float[] expected = (float[])start.Clone(), actual = (float[])start.Clone();
                Gemm.MultiplyWith(blocking, false, true, m, n, k, x, k, w, k, expected, n, accumulate: true, threads);
                Gemm.MultiplyPackedWith(blocking, m, x, k, packed, actual, n, accumulate: true, threads);
                // Same blocking, same kernel, same order of sums: the same bits.
                Assert.Equal(expected, actual);
            }
        }
    }

    // Each tile's accumulators start from C where the product adds (Gemm.Fast.cs), so a sum split into depth blocks
    // goes on in order from where the last block stored it: any depth blocking gives every entry the same bits (edge
    // tiles, the short-rows kernel, the 24-row walk, both thread splits, every transposition, overwriting and
    // accumulating), and so do weights packed once under another depth (GemmBlocking.ForWeightPanels) and per call.
    [Fact]
    public void TheDepthBlockingDoesNotChangeTheBits()
    {
        var random = new Random(23);
        int[] depths = [16, 40, 64, 100, 160, 352, 1024];
        foreach (var (m, n, k) in Sizes.Append((2 * TileRows * 3, 3 * TileColumns, 700)).Append((1000, 45, 300)))
        {
            float[] x = TestData.Uniform(random, m * k), w = TestData.Uniform(random, n * k), start = TestData.Uniform(random, m * n);
            foreach (bool transposeA in new[] { false, true })
            {
                foreach (bool transposeB in new[] { false, true })
                {
                    foreach (int threads in new[] { 1, 2 })
                    {
                        bool accumulate = (threads == 2) ^ transposeA;
                        float[]? first = null;
                        foreach (int depth in depths)
                        {
                            float[] c = (float[])start.Clone();
                            var blocking = new GemmBlocking(depth, GemmBlocking.ForThisMachine.Rows, GemmBlocking.ForThisMachine.Columns);
                            Gemm.MultiplyWith(blocking, transposeA, transposeB, m, n, k, x, transposeA ? m : k, w, transposeB ? k : n, c, n, accumulate, threads);
                            first ??= c;
                            Assert.True(first.AsSpan().SequenceEqual(c), $"{m}×{n}×{k} tA={transposeA} tB={transposeB} threads={threads}: depth {depth} changed the bits of depth {depths[0]}");
                        }
                    }
                }
            }

            var packed = Gemm.Pack(w, n, k);
            if (packed is not null)
            {
                float[] perCall = (float[])start.Clone(), once = (float[])start.Clone();
                Gemm.MultiplyWith(new GemmBlocking(64, 48, 256), false, true, m, n, k, x, k, w, k, perCall, n, accumulate: true, threads: 2);
                Gemm.MultiplyPacked(m, x, k, packed, once, n, accumulate: true);
                Assert.True(perCall.AsSpan().SequenceEqual(once), $"{m}×{n}×{k}: packed once under {GemmBlocking.ForWeightPanels(m, k)}, per call under depth 64");
            }
        }
    }

    // Weights packed once or decoded as used, and per-call products of at least DeepBlockRows rows: on half-rate
    // machines the depth in the fewest equal blocks of at most 768, in multiples of 16 (a K of 384 one block, 1536 two
    // of 768, 769 two of 400), and NC no wider than keeps the B block in a quarter of L3; per-call products with fewer
    // rows, and every product elsewhere, For's blocking.
    [Fact]
    public void HalfRateMachinesSplitTheDepthIntoEqualBlocks()
    {
        foreach (int rows in new[] { 1, 16, GemmBlocking.DeepBlockRows - 1, GemmBlocking.DeepBlockRows, GemmBlocking.ForThisMachine.Rows, 4096 })
        {
            foreach (var (depth, expected) in new[] { (384, 384), (768, 768), (769, 400), (1536, 768), (3072, 768), (2048, 688), (1024, 512), (40, 48) })
            {
                var weightPanels = GemmBlocking.ForWeightPanels(rows, depth);
                var perCall = GemmBlocking.ForProduct(rows, depth);
                if (GemmBlocking.WideFmaAtHalfRate)
                {
                    // The B block (depth × NC) stays within the quarter of L3 that the blocking's own depth had.
                    var caches = GemmBlocking.DetectedCaches is { Level1: > 0, Level2: > 0 } detected ? detected : GemmBlocking.FallbackCaches;
                    long level3 = caches.Level3 > 0 ? caches.Level3 : 4 * caches.Level2;
                    Assert.Equal(GemmBlocking.For(rows) with { Depth = expected, Columns = weightPanels.Columns }, weightPanels);
                    Assert.True(weightPanels.Columns <= GemmBlocking.For(rows).Columns && weightPanels.Columns % TileColumns == 0, $"{weightPanels}");
                    Assert.True(weightPanels.Columns == TileColumns || (long)weightPanels.Depth * weightPanels.Columns * sizeof(float) <= level3 / 4, $"{depth}: {weightPanels}");
                    Assert.True(
                        weightPanels.Depth <= GemmBlocking.DeepestHalfRateBlock
                        && (depth + weightPanels.Depth - 1) / weightPanels.Depth == (depth + GemmBlocking.DeepestHalfRateBlock - 1) / GemmBlocking.DeepestHalfRateBlock,
                        $"{depth}: {weightPanels}");
                    Assert.Equal(rows >= GemmBlocking.DeepBlockRows ? weightPanels : GemmBlocking.For(rows), perCall);
                }
                else
                {
                    Assert.Equal(GemmBlocking.For(rows), weightPanels);
                    Assert.Equal(GemmBlocking.For(rows), perCall);
                }
            }
        }
    }

    // The micro-kernels run the depth four steps at a time, then one step at a time for the rest: every remainder
    // (0–3), depths below one unrolled trip, and depths that end before every row of the next C tile was prefetched,
    // through the full kernel and the short 4-row one (M = a tile + 4), on edge columns too, accumulating into C.
    [Fact]
    public void EveryDepthRemainderOfTheUnrolledKernelsMatchesOracle()
    {
        var random = new Random(17);
        foreach (int depth in new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 47, 63, 64, 65, 66, 67 })
        {
            var blocking = new GemmBlocking(depth, TileRows, TileColumns);
            foreach (bool transposeA in new[] { false, true })
            {
                Check(random, blocking, transposeA, false, TileRows + 4, (2 * TileColumns) + 5, (2 * depth) + (depth / 2) + 1, threads: 1, accumulate: true);
            }
        }
    }

    // Two threads or more share each packed B block and split the rows when there are more rows than one A block
    // (Gemm.Threads.cs), else split the columns: neither may change a bit of the result, which every thread count
    // must give alike (the product's sums run over the depth in the same order for every entry).
    [Theory]
    [MemberData(nameof(Blockings))]
    public void ThreadCountDoesNotChangeTheBits(int depth, int rows, int columns)
    {
        var blocking = new GemmBlocking(depth, rows, columns);
        var random = new Random(depth * 5 + rows + columns * 3);
        foreach (var (m, n, k) in SizesFor(blocking))
        {
            foreach (bool transposeA in new[] { false, true })
            {
                foreach (bool transposeB in new[] { false, true })
                {
                    (int aRows, int aCols) = transposeA ? (k, m) : (m, k);
                    (int bRows, int bCols) = transposeB ? (n, k) : (k, n);
                    float[] a = TestData.Uniform(random, aRows * aCols), b = TestData.Uniform(random, bRows * bCols);
                    float[] start = TestData.Uniform(random, m * n), one = (float[])start.Clone();
                    Gemm.MultiplyWith(blocking, transposeA, transposeB, m, n, k, a, aCols, b, bCols, one, n, accumulate: true, threads: 1);
                    foreach (int threads in new[] { 2, 3 })
                    {
                        foreach (bool inTurn in new[] { false, true })
                        {
                            float[] several = (float[])start.Clone();
                            Gemm.MultiplyWith(
                                blocking, transposeA, transposeB, m, n, k, a, aCols, b, bCols, several, n, accumulate: true, threads, inTurn);
                            Assert.True(
                                one.AsSpan().SequenceEqual(several),
                                $"{blocking} m={m} n={n} k={k} tA={transposeA} tB={transposeB}: {threads} threads{(inTurn ? " in turn" : "")} differ from 1");
                        }
                    }
                }
            }
        }
    }

    // op(B) = B is packed row by row: each row of a block is dealt out to its panels (Gemm.Fast.cs, PackRowsOfB). B's
    // rows here are longer than the product's columns and end in NaN, so a panel that took a float past its block's
    // or the matrix's last column would turn its entries into NaN; the padded rows, the partial last panel, column
    // blocks, depth blocks, both thread splits and the threads' packing slices are crossed under every blocking, and
    // every thread count must give the one-thread bits.
    [Theory]
    [MemberData(nameof(Blockings))]
    public void PackingBRowByRowMatchesOracleAndKeepsTheBits(int depth, int rows, int columns)
    {
        var blocking = new GemmBlocking(depth, rows, columns);
        var random = new Random(depth * 11 + rows * 3 + columns);
        // A few rows and more than one group of panels packed together (Gemm.Fast.cs, PanelsPackedTogether: B packed as
        // used, a group at a time, the last group partial). With the small blockings, also a product past a column block
        // and two depth blocks on the shared-block split (at the machine's blocking the float64 oracle would take seconds).
        var sizes = SizesFor(blocking).Append(((2 * TileRows) + 5, (9 * TileColumns) + 19, blocking.Depth + 9));
        if (blocking.Columns <= 256)
        {
            sizes = sizes.Append((RoundUp(blocking.Rows, TileRows) + 5, RoundUp(blocking.Columns, TileColumns) + 37, (2 * blocking.Depth) + 3));
        }

        foreach (var (m, n, k) in sizes)
        {
            foreach (bool transposeA in new[] { false, true })
            {
                (int aRows, int aCols) = transposeA ? (k, m) : (m, k);
                int ldb = n + 7;
                float[] a = TestData.Uniform(random, aRows * aCols), b = TestData.Uniform(random, k * ldb);
                for (int p = 0; p < k; p++)
                {
                    b.AsSpan((p * ldb) + n, ldb - n).Fill(float.NaN);
                }

                var (product, scale) = Float64.GemmWithScale(transposeA, false, m, n, k, a, aCols, b, ldb);
                double bound = Math.Max(1e-5, k * Math.Pow(2, -24));
                float[] one = new float[m * n];
                Gemm.MultiplyWith(blocking, transposeA, false, m, n, k, a, aCols, b, ldb, one, n, accumulate: false, threads: 1);
                double error = Float64.MaxScaledError(one, n, product, scale, m, n);
                Assert.True(error <= bound, $"{blocking} m={m} n={n} k={k} tA={transposeA}: {error:E2} > {bound:E2}");
                foreach (int threads in new[] { 2, 3 })
                {
                    float[] several = TestData.Uniform(random, m * n);
                    Gemm.MultiplyWith(blocking, transposeA, false, m, n, k, a, aCols, b, ldb, several, n, accumulate: false, threads);
                    Assert.True(one.AsSpan().SequenceEqual(several), $"{blocking} m={m} n={n} k={k} tA={transposeA}: {threads} threads differ from 1");
                }
            }
        }
    }

    // In the last block a thread with no row unit left takes chunks of B panels from a unit another thread packed
    // (Gemm.Threads.cs, FinishLastBlock): whether that happens depends on timing, so the product runs many times on
    // 2 and 3 threads, with many small units and panels in its last block; every run must give the one-thread bits.
    [Fact]
    public void ThreadsHelpingWithTheLastBlockKeepTheBits()
    {
        var blocking = new GemmBlocking(24, TileRows, 40 * TileColumns);
        int m = 9 * TileRows + 5, n = 37 * TileColumns + 3, k = 61;
        var random = new Random(5);
        float[] a = TestData.Uniform(random, m * k), b = TestData.Uniform(random, k * n);
        float[] one = new float[m * n];
        Gemm.MultiplyWith(blocking, false, false, m, n, k, a, k, b, n, one, n, accumulate: false, threads: 1);
        for (int run = 0; run < 60; run++)
        {
            int threads = 2 + (run % 2);
            float[] several = TestData.Uniform(random, m * n);
            Gemm.MultiplyWith(blocking, false, false, m, n, k, a, k, b, n, several, n, accumulate: false, threads);
            Assert.True(one.AsSpan().SequenceEqual(several), $"run {run} on {threads} threads differs from 1 thread");
        }
    }

    // Products whose threads share B blocks, started from inside another parallel loop (the pool is taken, so they
    // fall back to Parallel.For) and several at once (they take turns with the kept B blocks): each must finish and
    // give the one-thread bits.
    [Fact]
    public void SharedBlockProductsRunInsideParallelLoopsAndSideBySide()
    {
        var blocking = new GemmBlocking(32, TileRows, 2 * TileColumns);
        int m = 5 * TileRows + 7, n = 3 * TileColumns + 5, k = 100;
        var random = new Random(11);
        float[] a = TestData.Uniform(random, m * k), b = TestData.Uniform(random, k * n);
        float[] one = new float[m * n];
        Gemm.MultiplyWith(blocking, false, false, m, n, k, a, k, b, n, one, n, accumulate: false, threads: 1);
        var results = new float[16][];
        for (int part = 0; part < results.Length; part++)
        {
            results[part] = new float[m * n];
        }

        ComputeThreads.Run(8, 2, part =>
            Gemm.MultiplyWith(blocking, false, false, m, n, k, a, k, b, n, results[part], n, accumulate: false, threads: 2));
        Parallel.For(8, 16, part =>
            Gemm.MultiplyWith(blocking, false, false, m, n, k, a, k, b, n, results[part], n, accumulate: false, threads: 2));
        Assert.All(results, result => Assert.True(one.AsSpan().SequenceEqual(result)));
    }

    // One thread cuts its rows into blocks of one size (768 rows under MC = 636: two of 384, not 636 + 132), packing B
    // whole per block; with one block it packs each B panel as it is used, asking for the next panel's source rows
    // ahead. The row blocking must not change a bit (each entry's sums run over the depth in the same order), so
    // rows that leave a short remainder under the small blocks give the bits of one block over all rows, for every
    // transposition, with B read through a stride wider than its rows, and both match the oracle.
    [Fact]
    public void RowBlocksOfOneSizeKeepTheBits()
    {
        int m = (7 * TileRows) + 5, n = (3 * TileColumns) + 9, k = 70, padding = 11;
        var blocks = new GemmBlocking(32, 3 * TileRows, 2 * TileColumns);
        var whole = new GemmBlocking(32, RoundUp(m, TileRows), 2 * TileColumns);
        var random = new Random(23);
        foreach (bool transposeA in new[] { false, true })
        {
            foreach (bool transposeB in new[] { false, true })
            {
                (int aRows, int aCols) = transposeA ? (k, m) : (m, k);
                (int bRows, int bCols) = transposeB ? (n, k) : (k, n);
                int ldb = bCols + padding;
                float[] a = TestData.Uniform(random, aRows * aCols), b = TestData.Uniform(random, bRows * ldb);
                float[] start = TestData.Uniform(random, m * n), inBlocks = (float[])start.Clone(), inOne = (float[])start.Clone();
                Gemm.MultiplyWith(blocks, transposeA, transposeB, m, n, k, a, aCols, b, ldb, inBlocks, n, accumulate: true, threads: 1);
                Gemm.MultiplyWith(whole, transposeA, transposeB, m, n, k, a, aCols, b, ldb, inOne, n, accumulate: true, threads: 1);
                Assert.True(inBlocks.AsSpan().SequenceEqual(inOne), $"tA={transposeA} tB={transposeB}: row blocks change the bits");
                Check(random, blocks, transposeA, transposeB, m, n, k, threads: 1, accumulate: true);
                Check(random, whole, transposeA, transposeB, m, n, k, threads: 1, accumulate: true);
            }
        }
    }

    [Fact]
    public void IceLakeServerCachesGiveBlocksThatFit()
    {
        // Xeon (Ice Lake): L1d 48 KiB 12-way, L2 1.25 MiB, L3 48 MiB; the 12×32 AVX-512 tile.
        var caches = new CacheSizes(48 << 10, 12, 1280 << 10, 48 << 20);
        Assert.Equal(new GemmBlocking(256, 636, 4096), GemmBlocking.Choose(caches, 12, 32));
        AssertFits(caches, 12, 32, GemmBlocking.Choose(caches, 12, 32));
    }

    [Fact]
    public void HalfRateWideFmaSizesTheDepthByLevel2()
    {
        // MC·KC·4 B = L2/2 with MC = KC: √(1 MiB / 8) = 362, rounded down to 352; MC then 372 (whole 12-row tiles).
        var zen4 = GemmBlocking.Choose(Zen4Caches, 12, 32, panelsFromLevel2: true);
        Assert.Equal(new GemmBlocking(352, 372, 4096), zen4);
        Assert.Equal(new GemmBlocking(160, 816, 4096), GemmBlocking.Choose(Zen4Caches, 12, 32)); // the L1 rule
        Assert.True((long)zen4.Rows * zen4.Depth * sizeof(float) <= Zen4Caches.Level2 / 2, $"{zen4}");
        foreach (long level2 in new long[] { 256 << 10, 512 << 10, 1 << 20, 2 << 20, 4 << 20, 64L << 20 })
        {
            var blocking = GemmBlocking.Choose(Zen4Caches with { Level2 = level2 }, 12, 32, panelsFromLevel2: true);
            Assert.True(blocking.Depth is >= 64 and <= 1024 && blocking.Depth % 16 == 0, $"{blocking}");
            Assert.True(blocking.Rows == 12 || (long)blocking.Rows * blocking.Depth * sizeof(float) <= level2 / 2, $"{blocking}");
        }
    }

    // The 24-row walk (Gemm.Fast.cs, BlockAcross) keeps its pair of A panels in L1: on Intel's 48 KiB L1 the depth
    // the blocking picks fits; Zen 4's L2-sized depth does not (so the walk down the A block stays there), while its L1
    // depth for few rows does.
    [Fact]
    public void TheDepthsOfTheTwentyFourRowWalkKeepItsAPanelsInL1()
    {
        var iceLake = new CacheSizes(48 << 10, 12, 1280 << 10, 48 << 20);
        Assert.Equal(469, GemmBlocking.DeepestInLevel1(iceLake, 24));
        Assert.True(GemmBlocking.Choose(iceLake, 12, 32).Depth <= GemmBlocking.DeepestInLevel1(iceLake, 24));
        Assert.Equal(298, GemmBlocking.DeepestInLevel1(Zen4Caches, 24));
        Assert.True(GemmBlocking.Choose(Zen4Caches, 12, 32, panelsFromLevel2: true).Depth > GemmBlocking.DeepestInLevel1(Zen4Caches, 24));
        Assert.True(GemmBlocking.Choose(Zen4Caches, 12, 32).Depth <= GemmBlocking.DeepestInLevel1(Zen4Caches, 24));
        Assert.Equal(GemmBlocking.DeepestInLevel1(GemmBlocking.FallbackCaches, 24), GemmBlocking.DeepestInLevel1(null, 24));
    }

    [Fact]
    public void ProductsWithFewerRowsThanOneABlockTakeTheL1Depth()
    {
        var many = GemmBlocking.ForThisMachine;
        Assert.Equal(many, GemmBlocking.For(many.Rows));
        Assert.Equal(many, GemmBlocking.For(4 * many.Rows));
        Assert.Equal(GemmBlocking.ForFewRows, GemmBlocking.For(many.Rows - 1));
        Assert.Equal(GemmBlocking.ForFewRows, GemmBlocking.For(16));
        Assert.Equal(GemmBlocking.Choose(GemmBlocking.DetectedCaches, TileRows, TileColumns), GemmBlocking.ForFewRows);
        if (!GemmBlocking.WideFmaAtHalfRate)
        {
            Assert.Equal(many, GemmBlocking.ForFewRows); // one blocking for every product off Zen 4
        }
    }

    [Fact]
    public void OnlyAmdFamily19hIsRecognisedAsIt()
    {
        // CPUID leaf 0: the vendor string in EBX, EDX, ECX; leaf 1 EAX: stepping, model, family, extended model and family.
        var amd = (0x10, 0x68747541, 0x444d4163, 0x69746e65);   // "AuthenticAMD"
        var intel = (0x1B, 0x756e6547, 0x6c65746e, 0x49656e69); // "GenuineIntel"
        Assert.True(CpuModel.IsAmdFamily19h(amd, 0x00A10F11));   // EPYC 9004 (Zen 4): family 0xF + 0xA = 19h
        Assert.True(CpuModel.IsAmdFamily19h(amd, 0x00A60F12));   // Ryzen 7000 (Zen 4)
        Assert.True(CpuModel.IsAmdFamily19h(amd, 0x00A00F11));   // EPYC 7003 (Zen 3): the same family, without AVX-512
        Assert.False(CpuModel.IsAmdFamily19h(amd, 0x00B00F21));  // Zen 5: family 1Ah
        Assert.False(CpuModel.IsAmdFamily19h(amd, 0x00830F10));  // Zen 2: family 17h
        Assert.False(CpuModel.IsAmdFamily19h(intel, 0x000606A6)); // Xeon (Ice Lake): family 6
        Assert.False(CpuModel.IsAmdFamily19h(intel, 0x00A10F11)); // family 19h's signature under another vendor
    }

    [Fact]
    public void OnlyGenuineIntelIsRecognisedAsIntel()
    {
        Assert.True(CpuModel.IsIntel((0x1B, 0x756e6547, 0x6c65746e, 0x49656e69)));   // "GenuineIntel"
        Assert.False(CpuModel.IsIntel((0x10, 0x68747541, 0x444d4163, 0x69746e65)));  // "AuthenticAMD"
        Assert.False(CpuModel.IsIntel((0x1B, 0x756e6547, 0x49656e69, 0x6c65746e)));  // its words in the wrong registers
    }

    [Fact]
    public void SmallerCachesGiveSmallerBlocks()
    {
        // A 32 KiB 8-way L1, 1 MiB L2 (Skylake server) against the Ice Lake sizes: shallower and shorter blocks.
        var small = GemmBlocking.Choose(new CacheSizes(32 << 10, 8, 1 << 20, 16 << 20), 12, 32);
        var large = GemmBlocking.Choose(new CacheSizes(48 << 10, 12, 2 << 20, 64 << 20), 12, 32);
        Assert.True(small.Depth < large.Depth, $"{small} vs {large}");
        Assert.True(small.Rows < large.Rows, $"{small} vs {large}");
        // The 6×16 AVX tile takes a deeper block from the same L1: its panels are narrower.
        Assert.True(GemmBlocking.Choose(new CacheSizes(32 << 10, 8, 1 << 20, 16 << 20), 6, 16).Depth > small.Depth);
    }

    [Fact]
    public void EveryPlausibleCacheGivesBlocksThatFit()
    {
        foreach (long level1 in new long[] { 16 << 10, 32 << 10, 48 << 10, 64 << 10, 128 << 10 })
        {
            foreach (int ways in new[] { 0, 4, 8, 12, 16 })
            {
                foreach (long level2 in new long[] { 256 << 10, 512 << 10, 1 << 20, 1280 << 10, 2 << 20, 4 << 20 })
                {
                    foreach (long level3 in new long[] { 0, 4 << 20, 32 << 20, 256 << 20 })
                    {
                        var caches = new CacheSizes(level1, ways, level2, level3);
                        foreach (var (mr, nr) in new[] { (12, 32), (6, 16) })
                        {
                            AssertFits(caches, mr, nr, GemmBlocking.Choose(caches, mr, nr));
                        }
                    }
                }
            }
        }
    }

    [Fact]
    public void MissingOrBrokenCacheInformationGivesTheFallback()
    {
        var fallback = GemmBlocking.Choose(GemmBlocking.FallbackCaches, 12, 32);
        Assert.Equal(fallback, GemmBlocking.Choose(null, 12, 32));
        Assert.Equal(fallback, GemmBlocking.Choose(new CacheSizes(0, 0, 0, 0), 12, 32));
        Assert.Equal(fallback, GemmBlocking.Choose(new CacheSizes(48 << 10, 12, -1, 0), 12, 32));
        AssertFits(GemmBlocking.FallbackCaches, 12, 32, fallback);
        Assert.Throws<ArgumentOutOfRangeException>(() => GemmBlocking.Choose(null, 0, 32));
    }

    // The sizes the chooser promises (GemmBlocking's remarks), wherever the clamps leave room for them.
    private static void AssertFits(CacheSizes caches, int mr, int nr, GemmBlocking blocking)
    {
        string what = $"{caches} tile {mr}×{nr}: {blocking}";
        Assert.True(blocking.Depth is >= 64 and <= 1024 && blocking.Depth % 16 == 0, what);
        Assert.True(blocking.Rows >= mr && blocking.Rows % mr == 0, what);
        Assert.True(blocking.Columns >= nr && blocking.Columns % nr == 0, what);
        int ways = caches.Level1Ways > 1 ? caches.Level1Ways : 8;
        long panels = (long)blocking.Depth * (mr + nr) * sizeof(float);
        Assert.True(blocking.Depth == 64 || panels <= caches.Level1 * (ways - 1) / ways, what);
        long aBlock = (long)blocking.Rows * blocking.Depth * sizeof(float);
        Assert.True(blocking.Rows == mr || aBlock <= caches.Level2 / 2, what);
        long level3 = caches.Level3 > 0 ? caches.Level3 : 4 * caches.Level2;
        long bBlock = (long)blocking.Columns * blocking.Depth * sizeof(float);
        Assert.True(blocking.Columns == nr || bBlock <= level3 / 4, what);
    }

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    private static void Check(
        Random random, GemmBlocking blocking, bool transposeA, bool transposeB, int m, int n, int k, int threads, bool accumulate)
    {
        (int aRows, int aCols) = transposeA ? (k, m) : (m, k);
        (int bRows, int bCols) = transposeB ? (n, k) : (k, n);
        int ldc = n + 3;
        float[] a = TestData.Uniform(random, aRows * aCols), b = TestData.Uniform(random, bRows * bCols);
        float[] c = TestData.Uniform(random, m * ldc), before = (float[])c.Clone();
        Gemm.MultiplyWith(blocking, transposeA, transposeB, m, n, k, a, aCols, b, bCols, c, ldc, accumulate, threads);
        var (product, scale) = Float64.GemmWithScale(transposeA, transposeB, m, n, k, a, aCols, b, bCols);
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                if (accumulate)
                {
                    product[i * n + j] += before[i * ldc + j];
                    scale[i * n + j] += Math.Abs(before[i * ldc + j]);
                }
            }

            for (int j = n; j < ldc; j++)
            {
                Assert.Equal(before[i * ldc + j], c[i * ldc + j]); // padding between rows untouched
            }
        }

        double bound = Math.Max(1e-5, k * Math.Pow(2, -24));
        double error = Float64.MaxScaledError(c, ldc, product, scale, m, n);
        Assert.True(error <= bound, $"{blocking} m={m} n={n} k={k} tA={transposeA} tB={transposeB} threads={threads}: {error:E2} > {bound:E2}");
    }
}
