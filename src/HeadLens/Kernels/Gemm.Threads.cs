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
// In the last block a unit's B panels are handed out in chunks, so a thread with no unit left helps finish the
// others' instead of waiting for them at the end (FinishLastBlock).
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

        // Per row unit u, at [u·Stride + …]: the blocks it has done (0, the slot above's use), and in the last block the
        // chunks of its B panels claimed and done.
        private const int ChunkNext = 1, ChunkDone = 2;

        // Chunks a unit's B panels are cut into in the last block: small enough that the last chunk to finish is a
        // sliver of a unit (2048³: 4 of 64 panels, ~0.2 ms), large enough that a helper's extra pass over the owner's
        // A block stays a small part of each chunk.
        private const int ChunksPerUnit = 16;

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
            var unitPacks = new nint[units];
            try
            {
                RunParts(threads, _ => Share(
                    shape, threads, depthBlock, columnBlock, depthBlocks, blocks, unitRows, units, panels, blockFloats, counters, unitBlocks, unitPacks));
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
            float[]? panels, long blockFloats, int[] counters, int[] unitBlocks, nint[] unitPacks)
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
                    if (s == blocks - 1)
                    {
                        FinishLastBlock(shape, s, jc, nc, pc, kc, add, unitRows, units, ref counter, unitBlocks, unitPacks, aPack, bPanels, tile);
                        break;
                    }

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

        // The last block: a thread that finds no row unit left to claim would otherwise idle until the others finish
        // theirs (up to a whole unit: ~4 ms of an ~85 ms 2048³ product measured, both threads then waiting at the
        // join). So here a unit's B panels are handed out in chunks: its owner packs its A block, publishes where, and
        // takes chunks; a thread with no unit left takes chunks of any unit whose A block is published, reading that
        // A block from the owner's buffer (the owner does not reuse it before the product ends: the product returns
        // only when every thread has). Each tile is still one kernel call over the same panels, so the bits do not
        // depend on who computes it.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void FinishLastBlock(
            TileShape shape, int block, int jc, int nc, int pc, int kc, bool add, int unitRows, int units, ref int counter,
            int[] unitBlocks, nint[] unitPacks, float* aPack, float* bPanels, float* tile)
        {
            int mr = shape.Rows, nr = shape.Columns;
            int panels = (nc + nr - 1) / nr, chunks = Math.Min(panels, ChunksPerUnit), stride = PanelStride(kc);
            int unit, owned = -1;
            while ((unit = Interlocked.Increment(ref Unsafe.Add(ref counter, UnitNext)) - 1) < units)
            {
                // Helpers start only once every unit is claimed, so an earlier unit of this thread was finished by it
                // alone before its buffer is packed again here.
                owned = unit;
                ref int done = ref unitBlocks[unit * Stride];
                WaitFor(ref done, block);
                int ic = unit * unitRows, mc = Math.Min(unitRows, m - ic);
                PackA(ic, mc, pc, kc, mr, aPack);
                Volatile.Write(ref unitPacks[unit], (nint)aPack);
                TakeChunks(shape, unit, ic, mc, jc, nc, pc, kc, add, aPack, bPanels, tile, panels, chunks, stride, unitBlocks);
            }

            // Every unit is claimed: help with the chunks left of any unit whose A block is packed.
            bool left = true;
            var spin = default(SpinWait);
            while (left)
            {
                left = false;
                for (unit = 0; unit < units; unit++)
                {
                    if (Volatile.Read(ref unitBlocks[(unit * Stride) + ChunkNext]) >= chunks)
                    {
                        continue;
                    }

                    float* published = (float*)Volatile.Read(ref unitPacks[unit]);
                    if (published == null)
                    {
                        left = true;
                        continue;
                    }

                    int ic = unit * unitRows, mc = Math.Min(unitRows, m - ic);
                    TakeChunks(shape, unit, ic, mc, jc, nc, pc, kc, add, published, bPanels, tile, panels, chunks, stride, unitBlocks);
                }

                if (left)
                {
                    spin.SpinOnce(sleep1Threshold: -1);
                }
            }

            // Helpers may still read this thread's A block: it stays untouched until they are done (a thread that left
            // its part could be handed another product's part at once, by Parallel.For, and pack over it).
            if (owned >= 0)
            {
                WaitFor(ref unitBlocks[(owned * Stride) + ChunkDone], chunks);
            }
        }

        // Claims chunks of one unit's B panels until none is left, and runs the kernel down the unit's A block under each.
        private void TakeChunks(
            TileShape shape, int unit, int ic, int mc, int jc, int nc, int pc, int kc, bool add, float* aPack, float* bPanels,
            float* tile, int panels, int chunks, int stride, int[] unitBlocks)
        {
            int nr = shape.Columns, chunk;
            while ((chunk = Interlocked.Increment(ref unitBlocks[(unit * Stride) + ChunkNext]) - 1) < chunks)
            {
                int first = panels * chunk / chunks, end = panels * (chunk + 1) / chunks;
                int columns = Math.Min(nc, end * nr) - (first * nr);
                Block(shape, ic, mc, jc + (first * nr), columns, pc, kc, add, aPack, null, bPanels + ((long)first * stride * nr), tile);
                Interlocked.Increment(ref unitBlocks[(unit * Stride) + ChunkDone]);
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
