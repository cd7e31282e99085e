using System.Runtime.CompilerServices;

namespace HeadLens.Kernels;

// Threads sharing one packed B block, after BLIS (its ic loop split among the cores of one L3) and OpenBLAS
// (level3_thread: every thread packs part of B, all read all of it):
//   for each block (jc, pc) in order:
//     every thread packs some of the block's B panels (KC × NC, shared, in L3), then waits until all are packed;
//     each thread takes row units of C in turn: packs its A block (MC × KC, its own, in its L2) and runs the
//     kernel over the whole shared B block.
// Why not each thread its own columns (the split for few rows): every thread would pack the whole of A for its
// columns, so A is packed once per thread, and with more rows than one A block holds, its own B block must be packed
// ahead anyway. Here A is packed once in all, B once in all, and each thread's share is whole rows, so two threads
// never write the same cache line of C except where their rows meet.
// Two B blocks alternate, so a thread that finished its rows of block s may pack block s + 1 while the other still
// computes on block s; before packing over block s − 1 it waits until every row unit of s − 1 is done.
// Every step is taken by whichever thread claims it (an atomic counter), and a thread only ever waits for a step
// that another thread has claimed and is running, and that itself waits for nothing later: so the product finishes
// on any number of threads that actually run, even one that takes every part in turn (ComputeThreads' fallback).
// A row unit of block s waits for the same unit of block s − 1, so C's sums run over the depth in order: the result
// has the same bits on any thread count.
public static partial class Gemm
{
    // Two B blocks, kept between products (the training step multiplies ~100 times per step); one product at a time
    // takes them, a concurrent one allocates its own.
    private static float[]? sharedBlocks;

    private sealed unsafe partial class Job
    {
        // Per block s: [s·Stride + PackNext] packing slices claimed, + PackDone slices packed, + UnitNext row units
        // claimed, + UnitDone row units done; Stride ints apart, so two counters never share a cache line.
        private const int PackNext = 0, PackDone = 1, UnitNext = 2, UnitDone = 3, Stride = 16;

        private void RunShared(int threads)
        {
            var shape = TileShape.Current;
            int mr = shape.Rows, nr = shape.Columns;
            int depthBlock = Blocking.Depth, rowBlock = RoundUp(Blocking.Rows, mr), columnBlock = RoundUp(Blocking.Columns, nr);
            int depthBlocks = (k + depthBlock - 1) / depthBlock, columnBlocks = (n + columnBlock - 1) / columnBlock;
            int blocks = depthBlocks * columnBlocks;

            // Row units: as many per thread as each needs for A blocks of at most MC rows, all of one size (whole tiles).
            int perThread = (int)((m + ((long)threads * rowBlock) - 1) / ((long)threads * rowBlock));
            int unitRows = RoundUp((m + (threads * perThread) - 1) / (threads * perThread), mr);
            int units = (m + unitRows - 1) / unitRows;

            long blockFloats = (long)depthBlock * RoundUp(Math.Min(n, columnBlock), nr);
            float[]? panels = null;
            if (PackedB == null)
            {
                panels = Interlocked.Exchange(ref sharedBlocks, null);
                if (panels is null || panels.Length < (2 * blockFloats) + AlignmentFloats)
                {
                    panels = GC.AllocateUninitializedArray<float>(checked((int)(2 * blockFloats) + AlignmentFloats), pinned: true);
                }
            }

            var counters = new int[blocks * Stride];
            var unitBlocks = new int[units * Stride];
            try
            {
                RunParts(threads, _ => Share(
                    shape, threads, depthBlock, columnBlock, depthBlocks, blocks, unitRows, units, panels, blockFloats, counters, unitBlocks));
            }
            finally
            {
                // Keep the larger of two buffers when products ran side by side.
                var kept = Volatile.Read(ref sharedBlocks);
                if (panels is not null && (kept is null || kept.Length < panels.Length))
                {
                    Interlocked.CompareExchange(ref sharedBlocks, panels, kept);
                }
            }
        }

        // One thread's part: every block in order, taking whichever packing slices and row units are left. The B block is
        // cut into a few slices per thread, so that a thread that arrives late still finds a share to pack.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Share(
            TileShape shape, int threads, int depthBlock, int columnBlock, int depthBlocks, int blocks, int unitRows, int units,
            float[]? panels, long blockFloats, int[] counters, int[] unitBlocks)
        {
            int mr = shape.Rows, nr = shape.Columns;
            int aCapacity = (depthBlock * unitRows) + AlignmentFloats;
            if (packedA is null || packedA.Length < aCapacity)
            {
                packedA = GC.AllocateUninitializedArray<float>(aCapacity, pinned: true);
            }

            float* tile = stackalloc float[mr * nr];
            fixed (float* aBuffer = packedA)
            fixed (float* bBuffer = panels)
            {
                // Both arrays are pinned, so every thread computes the same aligned start from its own `fixed`.
                float* aPack = Aligned(aBuffer), bBase = bBuffer == null ? null : Aligned(bBuffer);
                for (int s = 0; s < blocks; s++)
                {
                    int jc = s / depthBlocks * columnBlock, nc = Math.Min(columnBlock, n - jc);
                    int pc = s % depthBlocks * depthBlock, kc = Math.Min(depthBlock, k - pc);
                    ref int counter = ref counters[s * Stride];
                    float* bPack = bBase == null ? null : bBase + (s % 2 * blockFloats);
                    if (bPack != null)
                    {
                        if (s >= 2)
                        {
                            WaitFor(ref counters[((s - 2) * Stride) + UnitDone], units);
                        }

                        int blockPanels = (nc + nr - 1) / nr, slices = Math.Min(blockPanels, 4 * threads);
                        int slice;
                        while ((slice = Interlocked.Increment(ref Unsafe.Add(ref counter, PackNext)) - 1) < slices)
                        {
                            int first = blockPanels * slice / slices * nr, end = Math.Min(nc, blockPanels * (slice + 1) / slices * nr);
                            PackB(pc, kc, jc, first, end, nr, bPack);
                            Interlocked.Increment(ref Unsafe.Add(ref counter, PackDone));
                        }

                        WaitFor(ref Unsafe.Add(ref counter, PackDone), slices);
                    }

                    float* bPanels = PanelsOf(bPack, jc, pc, kc);
                    bool add = accumulate || pc > 0;
                    int unit;
                    while ((unit = Interlocked.Increment(ref Unsafe.Add(ref counter, UnitNext)) - 1) < units)
                    {
                        // The same rows of the previous block first: C's sums stay in depth order.
                        ref int done = ref unitBlocks[unit * Stride];
                        WaitFor(ref done, s);
                        int ic = unit * unitRows, mc = Math.Min(unitRows, m - ic);
                        PackA(ic, mc, pc, kc, mr, aPack);
                        Block(shape, ic, mc, jc, nc, pc, kc, add, aPack, null, bPanels, tile);
                        Volatile.Write(ref done, s + 1);
                        Interlocked.Increment(ref Unsafe.Add(ref counter, UnitDone));
                    }
                }
            }
        }

        // Spins until `counter` reaches `value`: the steps waited for are short (one packing slice, one row unit) and
        // already running on another thread, so parking would cost more than it saves; SpinWait yields the core now
        // and then, which lets a descheduled partner run on a loaded machine.
        private static void WaitFor(ref int counter, int value)
        {
            var spin = default(SpinWait);
            while (Volatile.Read(ref counter) < value)
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }
        }
    }
}
