using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using HeadLens.Kernels;

namespace HeadLens.Attention;

// The fused path of scaled dot-product attention (FlashAttention-2 loop order, Dao 2023):
//   forward:  for each (head, tile of Br queries): for each visible tile of Bc keys:
//               S = scale·Q_tile·K_tileᵀ + bias (masked → −∞);  m' = max(m, rowmax S);  P = exp(S − m')
//               l = l·exp(m − m') + rowsum P;  acc = acc·exp(m − m') + P·V_tile;  m = m'
//             out = acc / l;  logSumExp = m + log l
//   backward: D_i = dO_i·O_i;  P = exp(S − logSumExp) (recomputed, never stored);  dP = dO·Vᵀ;  dS = P∘(dP − D)
//             pass 1, per (kv head, key tile), owning its rows of dK and dV: dV += Pᵀ·dO, dK += scale·dSᵀ·Q
//             pass 2, per (head, query tile), owning its rows of dQ:    dQ += scale·dS·K
// Two passes recompute S and dP twice but need no atomics: every thread owns the gradient rows it writes.
// Working memory per thread: a few Br×Bc and Br×D tiles (~40 KB), plus on the panel path one head's keys and
// values re-laid in 64-key blocks (T·2D floats: 2 MB at T = 4096) — never T×T.
// Tile products go through Gemm (single-threaded inside; the parallelism is over heads × tiles), except where the
// AttentionPanels run (accelerated vectors of 16, 8 or 4 lanes) and values are 64 or 32 wide: there the forward runs
// on the panels over keys blocked once per head: with 64-wide heads four query rows at a time (AttendRows: S, the softmax update and P·V) where each query sees one range
// of keys, otherwise (32-wide values as MiniLM's, other key widths, padding, ALiBi) a tile at a time (S, the softmax
// update, then MultiplyAdd or MultiplyAdd32 for P·V). The backward runs on the panels, one pass per kv head, with
// 64-wide heads only.
// Tiles of keys that no query of the tile can see (above the causal diagonal, outside a window) are skipped, so
// causal attention costs half of full attention and windowed attention O(T·W).
public static partial class ScaledDotProductAttention
{
    // Br = 48 query rows (a multiple of the 4-row register tile), Bc = 64 keys (the panels' width):
    // S and P (48×64 floats = 12 KB) stay in L1 beside a 64×64 K or V block.
    internal const int QueryTile = 48;
    internal const int KeyTile = 64;

    // Floats of one query head's rows of 64 copied contiguous by the backward, padded to whole 64-row tiles.
    private static long ContiguousRowsLength(int queryLength) => (long)(queryLength + KeyTile - 1) / KeyTile * KeyTile * AttentionPanels.Width;

    // With fewer than 4 heads (× sequences) per thread and at most this many bytes of blocked keys and values for
    // the whole call, the forward blocks them all first and then splits heads × query tiles over the threads, so
    // that a few long heads do not leave a thread idle. Otherwise one work item per head blocks its own keys
    // (per-thread scratch stays O(T·D)): with 4+ equal heads per thread the split balances, and at T = 256 on one
    // thread the shared blocks (all heads, 1.5 MB, past L2) cost ~40% more CPU than head by head (perf, 12 × 64).
    private const long SharedBlockingBytes = 4L << 20;

    // From this many keys a causal head is split into two work items (each blocks the keys its queries see, so the
    // first part re-blocks ~70% of them: ~1% of the head's time at T = 2048, more below).
    private const int SplitLength = 2048;

    [ThreadStatic]
    private static float[]? scratch;

    [ThreadStatic]
    private static float[]? transposedKeys;

    // The blocked keys and values of a short call, shared by the threads of that call; kept between calls.
    private static float[]? sharedBlocks;

    // The panel backward's dK and dV rows of its parts past the first (BackwardParts); kept between calls.
    private static float[]? partGradBlocks;

    /// <summary>
    /// Bytes of scratch one worker thread uses (the fused path's working memory) for self-attention over keyLength
    /// positions: the tiles, and one kv head's keys and values in blocks of 64 (the forward), or (backward) three
    /// block sets plus, on the 64-wide panel path, its query heads' Q, dO and dQ rows copied contiguous — O(T·D) per
    /// thread, never O(T²). Both use the same per-thread buffers, so a thread that runs both keeps the larger.
    /// </summary>
    public static long WorkingBytesPerThread(AttentionOptions options, int keyLength, bool backward = false)
    {
        long paddedKeys = (keyLength + KeyTile - 1) / KeyTile * KeyTile;
        bool panels = options.HeadDimQK == AttentionPanels.Width && options.HeadDimV == AttentionPanels.Width;
        long blocks = backward
            ? (3L * paddedKeys * Math.Max(options.HeadDimQK, options.HeadDimV)) + (panels ? 3L * options.GroupSize * ContiguousRowsLength(keyLength) : 0)
            : BlockedLength(options, keyLength);
        return (ScratchLength(options) + blocks) * sizeof(float);
    }

    /// <summary>
    /// Bytes the forward uses beside its per-thread scratch: a short call with fewer than 4 heads (× sequences) per
    /// compute thread blocks every kv head's keys and values once, in one buffer the threads share (at most 4 MiB);
    /// other calls use none.
    /// </summary>
    public static long SharedWorkingBytes(AttentionOptions options, int batch, int keyLength)
    {
        long bytes = (long)batch * options.KvHeads * BlockedLength(options, keyLength) * sizeof(float);
        return bytes <= SharedBlockingBytes && batch * options.Heads < 4 * ComputeThreads.Count ? bytes : 0;
    }

    /// <summary>
    /// Bytes the backward uses beside its per-thread scratch: with fewer than 12 kv heads on the 64-wide panels, the
    /// dK and dV rows of each (sequence, kv head)'s query parts past the first (BackwardParts); O(T), kept for the
    /// next call.
    /// </summary>
    public static long BackwardSharedBytes(AttentionOptions options, int batch, int queryLength, int keyLength)
    {
        bool panels = AttentionPanels.Available && options.HeadDimQK == AttentionPanels.Width && options.HeadDimV == AttentionPanels.Width;
        int parts = BackwardParts(options, batch, queryLength, keyLength);
        return panels && parts > 1 ? (parts - 1L) * batch * keyLength * options.KvHeads * (options.HeadDimQK + options.HeadDimV) * sizeof(float) : 0;
    }

    // Floats of one kv head's keys (transposed, [Dqk, 64] per block) and values ([64, Dv] per block), padded to 64 keys.
    private static long BlockedLength(AttentionOptions options, int keyLength) =>
        (long)(keyLength + KeyTile - 1) / KeyTile * KeyTile * (options.HeadDimQK + options.HeadDimV);

    public static void Forward(
        AttentionOptions options, int queryLength, int keyLength, int queryOffset,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> output, Span<float> logSumExp) =>
        Forward(options, 1, queryLength, keyLength, queryOffset, q, k, v, output, logSumExp);

    /// <summary>
    /// A batch of independent sequences in one call (one fork–join for all of them): q [B, Tq, H, Dqk],
    /// k [B, Tk, G, Dqk], v [B, Tk, G, Dv], output [B, Tq, H, Dv], logSumExp [B, H, Tq].
    /// </summary>
    public static unsafe void Forward(
        AttentionOptions options, int batch, int queryLength, int keyLength, int queryOffset,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> output, Span<float> logSumExp)
    {
        options.Validate(queryLength, keyLength, queryOffset);
        if (batch < 1)
        {
            throw new ArgumentException($"attention: batch ({batch}) must be positive");
        }

        CheckSizes(options, batch, queryLength, keyLength, q, k, v, output, logSumExp);
        if (queryLength <= FewQueries)
        {
            fixed (float* qp = q, kp = k, vp = v, op = output, lp = logSumExp)
            {
                ForwardFewQueries(options, batch, queryLength, keyLength, queryOffset, qp, kp, vp, op, lp);
            }

            return;
        }

        ForwardTiled(options, batch, queryLength, keyLength, queryOffset, q, k, v, output, logSumExp);
    }

    // The tiled forward for any query length (Forward takes it above FewQueries queries; tests and A/B
    // measurements call it directly for fewer). Arguments already checked.
    internal static unsafe void ForwardTiled(
        AttentionOptions options, int batch, int queryLength, int keyLength, int queryOffset,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> output, Span<float> logSumExp)
    {
        int heads = options.Heads, kvHeads = options.KvHeads;
        int queryTiles = (queryLength + QueryTile - 1) / QueryTile;
        fixed (float* qp = q, kp = k, vp = v, op = output, lp = logSumExp)
        {
            var jobs = Jobs(options, batch, queryLength, keyLength, queryOffset, qp, kp, vp, op, lp);
            if (!(AttentionPanels.Available && options.HeadDimV is AttentionPanels.Width or AttentionPanels.HalfWidth && queryLength >= KeyTile))
            {
                int perSequence = heads * queryTiles;
                long work = (long)batch * heads * queryLength * keyLength * (options.HeadDimQK + options.HeadDimV);
                Run(batch * perSequence, item => jobs[item / perSequence].ForwardTile(item % perSequence / queryTiles, item % queryTiles, null, null), work);
                return;
            }

            long shared = SharedWorkingBytes(options, batch, keyLength) / sizeof(float);
            if (shared == 0)
            {
                // One work item per (sequence, head) or per part of one: its keys are blocked once and every query
                // tile of the item reuses them.
                int parts = PartsPerHead(options, batch * heads, keyLength, queryTiles);
                Run(batch * heads * parts, item => jobs[item / (heads * parts)].ForwardHead(item / parts % heads, item % parts, parts));
                return;
            }

            var blocks = Interlocked.Exchange(ref sharedBlocks, null);
            var aligned = Aligned(ref blocks, shared);
            fixed (float* bp = aligned)
            {
                float* basePointer = bp;
                long perHead = BlockedLength(options, keyLength);
                Run(batch * kvHeads, item => jobs[item / kvHeads].BlockKeysAndValues(item % kvHeads, basePointer + (item * perHead)));
                // Head by head (its blocks stay in L2 across its tiles), each from its last query tile (the longest
                // under a causal mask) to its first, so that the last parts the counter hands out are short ones.
                Run(batch * heads * queryTiles, item =>
                {
                    int tile = queryTiles - 1 - (item % queryTiles), b = item / queryTiles / heads, h = item / queryTiles % heads;
                    float* kt = basePointer + (((long)b * kvHeads) + (h / options.GroupSize)) * perHead;
                    jobs[b].ForwardTile(h, tile, kt, kt + (perHead / (options.HeadDimQK + options.HeadDimV) * options.HeadDimQK));
                });
            }

            Interlocked.Exchange(ref sharedBlocks, blocks);
        }
    }

    // Work items per (sequence, head) on the per-head path, each of equal work (FusedJob.PartStart):
    //   - long causal heads in at least two, so that the threads finish within half a head of each other (on a busy
    //     machine a thread that lost its core for a while otherwise left the other one idle for up to a whole head at
    //     the end: ~20 ms at T = 4096);
    //   - more where the items would not spread evenly over the threads. 12 heads on 16 threads as 24 halves run in two
    //     rounds, the second on half the threads: a quarter of the threads' time idle (measured on a 16-vCPU Xeon: the
    //     forward at T = 4096 ran 4.2× faster on 16 threads than on 2, where the matrix product ran 7.2× faster). As
    //     48 quarters they run three to a thread.
    // Each part blocks the keys it sees again (O(T·D) per part against the part's O(T²·D / parts) products), hence the
    // cap. The output's bits do not depend on the split: every query tile is computed alike in any part.
    private static int PartsPerHead(AttentionOptions options, int sequenceHeads, int keyLength, int queryTiles)
    {
        const int MaxParts = 8;
        const double EvenEnough = 0.9;
        int least = options.Mask == MaskKind.Causal && options.Window == 0 && keyLength >= SplitLength ? 2 : 1;
        int threads = ComputeThreads.Count, best = least;
        double bestBalance = 0;
        for (int parts = least; parts <= Math.Max(least, Math.Min(MaxParts, queryTiles)); parts++)
        {
            // The share of the threads' time in use when `items` equal items run in rounds of `threads`.
            long items = (long)sequenceHeads * parts;
            double balance = items / (double)(threads * ((items + threads - 1) / threads));
            if (balance > bestBalance)
            {
                (best, bestBalance) = (parts, balance);
            }

            if (balance >= EvenEnough)
            {
                break;
            }
        }

        return best;
    }

    // Whether a call's Q, K, V and output (their gradients too, in the backward, are the same size again) outgrow the
    // caches their strided rows come from quickly (FetchAheadAboveBytes), so that asking for them ahead
    // (FusedJob.FetchRowsAhead) pays for its requests.
    internal static bool OperandsOutgrowCache(AttentionOptions options, int batch, int queryLength, int keyLength)
    {
        long rowFloats = options.HeadDimQK + options.HeadDimV;
        long bytes = (long)batch * sizeof(float) * rowFloats * (((long)queryLength * options.Heads) + ((long)keyLength * options.KvHeads));
        return bytes > FetchAheadAboveBytes;
    }

    // The size OperandsOutgrowCache compares with. Settable for the tests, which check that asking for the rows ahead
    // does not change the bits; unset, this machine's:
    // - Intel: the second-level caches of the threads in use. Its server parts reach L3 over a mesh (~100 cycles), and
    //   rows H·D·4 bytes apart are not followed by the prefetchers, so rows fetched from there stall. Measured on an
    //   Emerald Rapids Xeon (2 threads, 2 MiB L2 each, 260 MiB L3; same-process A/B, forward): T = 768 and 1024
    //   2.5–3.5% faster asking ahead (1 and 2 threads), B = 8 at T = 256 and B = 4 at T = 512 3–13%, T = 512 (6 MB)
    //   −2% to +8%, and T = 256 (3 MB, in the L2s) 1.5–2% slower.
    // - Elsewhere the last-level cache: on Zen 4 (L3 ~50 cycles away) the forward at T = 4096 (50 MB against its 32 MB
    //   L3) ran 1–2% faster asking ahead (one thread, alternated builds; blocking the keys and values went from 3.4% of
    //   the samples to 1.8%), where at T = 1024 and 2048, in L3, the requests alone cost 1–2%.
    internal static long FetchAheadAboveBytes
    {
        get => fetchAheadAboveBytes ?? (CpuModel.Intel ? Caches.Level2 * ComputeThreads.Count : Caches.Level3);
        set => fetchAheadAboveBytes = value;
    }

    private static long? fetchAheadAboveBytes;

    private static CacheSizes Caches => GemmBlocking.DetectedCaches is { Level2: > 0, Level3: > 0 } caches ? caches : GemmBlocking.FallbackCaches;

    private static unsafe FusedJob[] Jobs(
        AttentionOptions options, int batch, int queryLength, int keyLength, int queryOffset,
        float* q, float* k, float* v, float* output, float* logSumExp)
    {
        long qRow = (long)queryLength * options.Heads, kRow = (long)keyLength * options.KvHeads;
        bool fetchRowsAhead = OperandsOutgrowCache(options, batch, queryLength, keyLength);
        var jobs = new FusedJob[batch];
        for (int b = 0; b < batch; b++)
        {
            jobs[b] = new FusedJob(options, queryLength, keyLength, queryOffset,
                q + (b * qRow * options.HeadDimQK), k + (b * kRow * options.HeadDimQK), v + (b * kRow * options.HeadDimV),
                output + (b * qRow * options.HeadDimV), logSumExp + (b * qRow))
            { FetchRowsAhead = fetchRowsAhead };
        }

        return jobs;
    }

    public static void Backward(
        AttentionOptions options, int queryLength, int keyLength, int queryOffset,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> output, ReadOnlySpan<float> outputGrad, ReadOnlySpan<float> logSumExp,
        Span<float> qGrad, Span<float> kGrad, Span<float> vGrad) =>
        Backward(options, 1, queryLength, keyLength, queryOffset, q, k, v, output, outputGrad, logSumExp, qGrad, kGrad, vGrad);

    /// <summary>The batched form of the backward, in the layouts of the batched <see cref="Forward(AttentionOptions, int, int, int, int, ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, Span{float}, Span{float})"/>.</summary>
    public static unsafe void Backward(
        AttentionOptions options, int batch, int queryLength, int keyLength, int queryOffset,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> output, ReadOnlySpan<float> outputGrad, ReadOnlySpan<float> logSumExp,
        Span<float> qGrad, Span<float> kGrad, Span<float> vGrad)
    {
        options.Validate(queryLength, keyLength, queryOffset);
        if (batch < 1)
        {
            throw new ArgumentException($"attention: batch ({batch}) must be positive");
        }

        CheckSizes(options, batch, queryLength, keyLength, q, k, v, output, logSumExp);
        int heads = options.Heads, kvHeads = options.KvHeads, dqk = options.HeadDimQK, dv = options.HeadDimV;
        Need("outputGrad", outputGrad.Length, (long)batch * queryLength * heads * dv);
        Need("qGrad", qGrad.Length, (long)batch * queryLength * heads * dqk);
        Need("kGrad", kGrad.Length, (long)batch * keyLength * kvHeads * dqk);
        Need("vGrad", vGrad.Length, (long)batch * keyLength * kvHeads * dv);
        qGrad[..(batch * queryLength * heads * dqk)].Clear();
        var rowTerm = new float[batch * heads * queryLength]; // D [B, H, Tq], filled by the work items
        int queryTiles = (queryLength + QueryTile - 1) / QueryTile;
        int keyTiles = (keyLength + KeyTile - 1) / KeyTile;
        fixed (float* qp = q, kp = k, vp = v, op = output, lp = logSumExp, dop = outputGrad, dp = rowTerm)
        fixed (float* dqp = qGrad, dkp = kGrad, dvp = vGrad)
        {
            var jobs = Jobs(options, batch, queryLength, keyLength, queryOffset, qp, kp, vp, op, lp);
            long qRow = (long)queryLength * heads, kRow = (long)keyLength * kvHeads;
            for (int b = 0; b < batch; b++)
            {
                jobs[b].OutputGrad = dop + (b * qRow * dv);
                jobs[b].RowTerm = dp + (b * qRow);
                jobs[b].QueryGrad = dqp + (b * qRow * dqk);
                jobs[b].KeyGrad = dkp + (b * kRow * dqk);
                jobs[b].ValueGrad = dvp + (b * kRow * dv);
            }

            int parts = BackwardParts(options, batch, queryLength, keyLength);
            if (AttentionPanels.Available && dqk == AttentionPanels.Width && dv == AttentionPanels.Width
                && batch * kvHeads * parts >= 2)
            {
                // One pass per (sequence, kv head, part of its query tiles): the item owns its query heads' dQ rows of
                // those tiles, so S, P and dP are computed once per tile and nothing needs atomics. Part 0 writes the
                // kv head's dK and dV rows; the other parts write theirs to their own buffers, added after in order
                // of parts. A single item would leave every thread but one idle, so it takes the tiled passes below.
                // Neither choice looks at the thread count: the paths and splits sum in different orders, and the
                // bits must not depend on --threads.
                long keySize = (long)batch * keyLength * kvHeads * dqk, valueSize = (long)batch * keyLength * kvHeads * dv;
                // Every part writes every row of its pair's buffer, so the buffer is reused between calls as it is.
                long partLength = (parts - 1) * (keySize + valueSize);
                float[]? partGrads = parts > 1 ? Interlocked.Exchange(ref partGradBlocks, null) : null;
                if (parts > 1 && (partGrads is null || partGrads.LongLength < partLength))
                {
                    partGrads = GC.AllocateUninitializedArray<float>((int)partLength);
                }

                fixed (float* gp = partGrads)
                {
                    float* partBase = gp;
                    Run(batch * kvHeads * parts, item =>
                    {
                        int part = item % parts, pair = item / parts, b = pair / kvHeads;
                        float* keyGrad = part == 0 ? jobs[b].KeyGrad : partBase + ((part - 1) * (keySize + valueSize)) + (b * kRow * dqk);
                        float* valueGrad = part == 0 ? jobs[b].ValueGrad : partBase + ((part - 1) * (keySize + valueSize)) + keySize + (b * kRow * dv);
                        jobs[b].BackwardKvHead(pair % kvHeads, part, parts, keyGrad, valueGrad);
                    });

                    if (parts > 1)
                    {
                        AddParts(partBase, parts - 1, keySize + valueSize, dkp, keySize, dvp);
                        Interlocked.Exchange(ref partGradBlocks, partGrads);
                    }
                }

                return;
            }

            kGrad[..(batch * keyLength * kvHeads * dqk)].Clear();
            vGrad[..(batch * keyLength * kvHeads * dv)].Clear();
            Run(batch * heads, item => jobs[item / heads].FillRowTerm(item % heads));
            Run(batch * kvHeads * keyTiles, item => jobs[item / (kvHeads * keyTiles)].KeyValueGradTile(item / keyTiles % kvHeads, item % keyTiles));
            Run(batch * heads * queryTiles, item => jobs[item / (heads * queryTiles)].QueryGradTile(item / queryTiles % heads, item % queryTiles));
        }
    }

    // Below this many multiply-adds a call stays on the calling thread: a decode step's attention (one query over a
    // few hundred cached keys, every head: ~1–10 µs of work) cost less than waking the pool and waiting for the
    // other thread's share, and it runs once per layer between two matrix products.
    private const long InlineWork = 1L << 20;

    private static void Run(int items, Action<int> body, long work = long.MaxValue)
    {
        if (items == 1 || work < InlineWork)
        {
            for (int item = 0; item < items; item++)
            {
                body(item);
            }

            return;
        }

        // On the compute pool's threads (ComputeThreads.Count of them): each keeps its own scratch for the whole
        // process, so extra threads would only add memory, and a thread-pool thread's scratch would be allocated anew.
        ComputeThreads.Run(items, body);
    }

    // Parts per (sequence, kv head) of the panel backward: as many as give each sequence at least 12 work items, a
    // 12-head model's count, which the benchmarks measured spread well over 2 threads. With one kv head (multi-query
    // models) a single item otherwise left one of 2 threads idle through the whole backward (2.2× the time at
    // T = 2048), and 3 kv heads ran as 3 items on 2 threads (1.3×). At most 8 parts, each at least one query tile:
    // every part adds a copy of its pair's dK and dV rows and re-blocks its keys and values. Not from the batch: a
    // batched call keeps the bits of one call per sequence (unless those copies would not fit in one array).
    internal static int BackwardParts(int kvHeads, int queryTiles) =>
        Math.Clamp((12 + kvHeads - 1) / kvHeads, 1, Math.Min(8, queryTiles));

    // BackwardParts for a call, with as many fewer as keep the parts' dK and dV rows within one array.
    private static int BackwardParts(AttentionOptions options, int batch, int queryLength, int keyLength)
    {
        long perPart = (long)batch * keyLength * options.KvHeads * (options.HeadDimQK + options.HeadDimV);
        int parts = BackwardParts(options.KvHeads, (queryLength + QueryTile - 1) / QueryTile);
        return (int)Math.Min(parts, 1 + (Array.MaxLength / perPart));
    }

    // dK and dV (+)= each part's own rows: parts blocks of `stride` floats, each its dK (keySize floats) then its dV.
    // Chunks of elements run in parallel; every element adds the parts in order, so the sums do not depend on the split.
    private static unsafe void AddParts(float* partGrads, int parts, long stride, float* keyGrad, long keySize, float* valueGrad)
    {
        const int Chunk = 1 << 14;
        Run((int)((stride + Chunk - 1) / Chunk), chunk =>
        {
            long start = (long)chunk * Chunk;
            int length = (int)Math.Min(Chunk, stride - start);
            int inKeys = (int)Math.Clamp(keySize - start, 0, length);
            for (int part = 0; part < parts; part++)
            {
                float* from = partGrads + (part * stride) + start;
                Add(new Span<float>(keyGrad + start, inKeys), from);
                Add(new Span<float>(valueGrad + (start + inKeys - keySize), length - inKeys), from + inKeys);
            }
        }, (long)parts * stride);

        static void Add(Span<float> target, float* from) => TensorPrimitives.Add(target, new ReadOnlySpan<float>(from, target.Length), target);
    }

    // S and P, dP (or dS), the accumulator [Br, max(D)], the running max and sum; the backward's dK and dV tiles.
    private static int ScratchLength(AttentionOptions options) =>
        (3 * QueryTile * KeyTile) + (QueryTile * Math.Max(options.HeadDimV, options.HeadDimQK)) + (17 * QueryTile)
        + (KeyTile * (options.HeadDimQK + options.HeadDimV));

    private static Span<float> Scratch(AttentionOptions options) => Aligned(ref scratch, ScratchLength(options));

    private static Span<float> KeyBlocks(long length) => Aligned(ref transposedKeys, length);

    // `length` floats of a pinned array (grown when too short) from its first 64-byte boundary. A pinned array's data
    // starts 16 bytes past an 8-byte boundary, so without this every zmm load and store of the tiles and blocks
    // spans two cache lines (a split load): the forward at T = 4096 ran ~20% slower that way (same-process A/B).
    private static unsafe Span<float> Aligned(ref float[]? array, long length)
    {
        const int LineFloats = 64 / sizeof(float);
        if (array is null || array.Length < length + LineFloats)
        {
            array = GC.AllocateUninitializedArray<float>((int)length + LineFloats, pinned: true);
        }

        long address = (long)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
        int skip = (int)((64 - (address & 63)) & 63) / sizeof(float);
        return array.AsSpan(skip, (int)length);
    }

    /// <summary>One fused call's inputs as raw pointers, so that worker threads can share them.</summary>
    // Its methods are compiled fully optimised at first use (AggressiveOptimization): a process that calls attention
    // a few times (a benchmark's 20 calls, a training step's 12 layers, an analysis run) otherwise spends them in
    // tier-0 code, where no Vector512 operation is inlined: 2.4× the CPU per call at T = 256 for the first 20 calls.
    private sealed unsafe class FusedJob(
        AttentionOptions options, int queryLength, int keyLength, int queryOffset,
        float* q, float* k, float* v, float* output, float* logSumExp)
    {
        private readonly int heads = options.Heads;
        private readonly int kvHeads = options.KvHeads;
        private readonly int dqk = options.HeadDimQK;
        private readonly int dv = options.HeadDimV;
        private readonly float scale = options.EffectiveScale;
        private readonly int keyTiles = (keyLength + KeyTile - 1) / KeyTile;

        // The forward's panel path takes AttendRows when both head sizes are 64 and what a query sees is one range of
        // keys (no padding, sparsity, ALiBi, or sinks beside a window); otherwise the tile-at-a-time products.
        private readonly bool fusedRows = options.HeadDimQK == AttentionPanels.Width && options.HeadDimV == AttentionPanels.Width
            && !options.NeedsElementMask && options.AlibiSlopes is null && (options.Window == 0 || options.Sinks == 0);

        /// <summary>
        /// Whether rows that sit H·D·4 bytes apart (one per page, where the hardware prefetchers do not follow) are
        /// asked for ahead of their use: the key and value rows being blocked, a query tile's output rows and the next
        /// tile's query rows. Set where they come from beyond the caches that serve them quickly (<see cref="OperandsOutgrowCache"/>).
        /// </summary>
        public bool FetchRowsAhead { get; init; }

        public float* OutputGrad { get; set; }

        public float* RowTerm { get; set; }

        public float* QueryGrad { get; set; }

        public float* KeyGrad { get; set; }

        public float* ValueGrad { get; set; }

        // Query tiles of head h: all of them (parts = 1), or the part-th of `parts` runs of equal work (PartStart).
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void ForwardHead(int h, int part = 0, int parts = 1)
        {
            int queryTiles = (queryLength + QueryTile - 1) / QueryTile;
            int from = PartStart(part, parts, queryTiles), to = PartStart(part + 1, parts, queryTiles);
            if (from >= to)
            {
                return;
            }

            // Only the key tiles these queries can see (sinks lie below them, so blocking from 0 covers those).
            int end = options.KeyRange(queryOffset + (from * QueryTile), queryOffset + Math.Min(to * QueryTile, queryLength), keyLength).End;
            int blockKeys = dqk * KeyTile;
            fixed (float* kt = KeyBlocks((long)keyTiles * (blockKeys + (KeyTile * dv))))
            {
                float* vb = kt + ((long)keyTiles * blockKeys);
                BlockKeysAndValues(h / options.GroupSize, kt, (end + KeyTile - 1) / KeyTile);
                for (int tile = from; tile < to; tile++)
                {
                    ForwardTile(h, tile, kt, vb, nextInPart: tile + 1 < to);
                }
            }
        }

        // The query tile where part `part` of `parts` begins. Under a causal mask without a window, rows [0, x) cost
        // ∝ x², so part p begins near T·√(p / parts) (two parts: T/√2); otherwise every tile costs about the same.
        private int PartStart(int part, int parts, int queryTiles)
        {
            if (part >= parts)
            {
                return queryTiles;
            }

            double share = (double)part / parts;
            bool growing = options.Mask == MaskKind.Causal && options.Window == 0;
            return (int)Math.Round(queryTiles * (growing ? Math.Sqrt(share) : share));
        }

        // kv head g's keys, scaled and transposed tile by tile: block t holds scale·log₂e·Kᵀ [Dqk, 64] of keys
        // 64t..64t+63 (zero past the end), followed by its values copied to contiguous [64, Dv] blocks. Contiguous
        // 16 KB blocks keep a tile's reads inside 4 pages; read in place, the 64 rows of a tile sit T·4 or H·D·4 bytes
        // apart, which thrashed the TLB and (at T = 4096) mapped every row to the same L1 sets.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void BlockKeysAndValues(int g, float* kt) => BlockKeysAndValues(g, kt, keyTiles);

        // The same for the first `tiles` key tiles only (the values' blocks keep their places after all keyTiles).
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void BlockKeysAndValues(int g, float* kt, int tiles)
        {
            TransposeBlocks(k + ((long)g * dqk), kvHeads * dqk, dqk, scale * AttentionPanels.Log2E, kt, tiles);
            CopyRows(v + ((long)g * dv), kvHeads * dv, dv, kt + ((long)keyTiles * dqk * KeyTile), Math.Min(keyLength, tiles * KeyTile));
        }

        // Rows 0..Tk−1 of width `width` (stride ld) into blocks of [width, 64]: block t holds factor·rows 64t..64t+63
        // as columns, zero past the last row.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void TransposeBlocks(float* source, int ld, int width, float factor, float* blocks, int tiles)
        {
            int blockLength = width * KeyTile;
            for (int tile = 0; tile < tiles; tile++)
            {
                int j0 = tile * KeyTile, keys = Math.Min(KeyTile, keyLength - j0);
                float* block = blocks + ((long)tile * blockLength);
                if (width == AttentionPanels.Width && AttentionPanels.Available)
                {
                    if (FetchRowsAhead)
                    {
                        AttentionPanels.PrefetchRows(source + ((long)(j0 + KeyTile) * ld), ld, Math.Clamp(keyLength - j0 - KeyTile, 0, KeyTile));
                    }

                    AttentionPanels.TransposeBlock(source + ((long)j0 * ld), ld, keys, factor, block);
                    continue;
                }

                var span = new Span<float>(block, blockLength);
                if (keys < KeyTile)
                {
                    span.Clear();
                }

                Gemm.TransposeInto(source + ((long)j0 * ld), ld, keys, width, block, KeyTile);
                if (factor != 1f)
                {
                    TensorPrimitives.Multiply(span, factor, span);
                }
            }
        }

        // Rows 0..keys−1 of width `width` (stride ld) copied contiguous, zero rows up to a whole number of 64-key tiles.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void CopyRows(float* source, int ld, int width, float* target, int keys)
        {
            if (width == AttentionPanels.Width && AttentionPanels.Available)
            {
                for (int j0 = 0; j0 < keys; j0 += KeyTile)
                {
                    if (FetchRowsAhead)
                    {
                        AttentionPanels.PrefetchRows(source + ((long)(j0 + KeyTile) * ld), ld, Math.Clamp(keys - j0 - KeyTile, 0, KeyTile));
                    }

                    AttentionPanels.CopyBlock(source + ((long)j0 * ld), ld, Math.Min(KeyTile, keys - j0), target + ((long)j0 * width));
                }

                return;
            }

            for (int j = 0; j < keys; j++)
            {
                Buffer.MemoryCopy(source + ((long)j * ld), target + ((long)j * width), width * sizeof(float), width * sizeof(float));
            }

            new Span<float>(target + ((long)keys * width), (((keys + KeyTile - 1) / KeyTile * KeyTile) - keys) * width).Clear();
        }

        // One query tile of one head. With the blocked keys and values of ForwardHead (kt, vb) the tile products run
        // on the panels; without them (kt = null) through Gemm. nextInPart: this thread runs query
        // tile + 1 of the head next, so its query rows are worth fetching ahead.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void ForwardTile(int h, int tile, float* kt, float* vb, bool nextInPart = false)
        {
            int i0 = tile * QueryTile, rows = Math.Min(QueryTile, queryLength - i0);
            var buffer = Scratch(options);
            int tiles = 3 * QueryTile * KeyTile, accLength = QueryTile * Math.Max(dv, dqk);
            var s = buffer.Slice(0, QueryTile * KeyTile);                                   // [Br, Bc]
            var acc = buffer.Slice(tiles, (rows + 3) / 4 * 4 * dv);                         // [Br, Dv], whole blocks of 4 rows
            var max = buffer.Slice(tiles + accLength, QueryTile);
            var sum = buffer.Slice(tiles + accLength + QueryTile, QueryTile * 16); // the panel path keeps 16 lanes per row
            acc.Clear();
            HideAll(max);
            sum.Clear();
            if (kt != null && fusedRows)
            {
                fixed (float* sp = s, qp = buffer.Slice(QueryTile * KeyTile, QueryTile * dqk), ap = acc, mp = max, lp = sum)
                {
                    int nextRows = nextInPart && FetchRowsAhead ? Math.Min(QueryTile, queryLength - i0 - QueryTile) : 0;
                    AttendTile(h, i0, rows, kt, vb, qp, ap, mp, lp, sp, nextRows);
                }
            }
            else
            {
                AttendTileInSteps(h, i0, rows, kt, vb, s, acc, max, sum);
            }

            for (int i = 0; i < rows; i++)
            {
                var o = new Span<float>(output + ((long)(i0 + i) * heads + h) * dv, dv);
                float rowSum = kt != null ? AttentionPanels.SumOfLanes(sum.Slice(16 * i, 16)) : sum[i];
                if (rowSum == 0f)
                {
                    o.Clear();
                    logSumExp[h * queryLength + i0 + i] = float.NegativeInfinity;
                    continue;
                }

                if (kt != null && dv == AttentionPanels.Width)
                {
                    // Dv = 64 on the panel path: vector code inlined (a library call here ran as tier-0 code for
                    // the first calls of a process).
                    fixed (float* ap = acc.Slice(i * dv, dv), op = o)
                    {
                        AttentionPanels.ScaleRow(ap, 1f / rowSum, op);
                    }
                }
                else
                {
                    TensorPrimitives.Multiply(acc.Slice(i * dv, dv), 1f / rowSum, o);
                }

                // The panel path's max and sum are in base 2 (scores carry log₂e): ln Σ e^s = ln 2 · (m + log₂ l).
                logSumExp[h * queryLength + i0 + i] = kt != null
                    ? (max[i] + MathF.Log2(rowSum)) / AttentionPanels.Log2E
                    : max[i] + MathF.Log(rowSum);
            }
        }

        // Every key tile a query tile sees, a whole tile per step: S for all its rows (on the panels with the blocked
        // keys kt, else through Gemm), the softmax update, then acc += P·V. Any mask, any head sizes.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void AttendTileInSteps(int h, int i0, int rows, float* kt, float* vb, Span<float> s, Span<float> acc, Span<float> max, Span<float> sum)
        {
            int g = h / options.GroupSize;
            foreach (var (first, end) in KeyRanges(i0, rows))
            {
                for (int j0 = first; j0 < end; j0 += KeyTile)
                {
                    int cols = Math.Min(KeyTile, end - j0);
                    Scores(h, g, i0, rows, j0, cols, s, kt == null ? null : kt + (long)(j0 / KeyTile) * dqk * KeyTile);
                    if (kt != null)
                    {
                        fixed (float* sp = s, ap = acc, mp = max, lp = sum)
                        {
                            AttentionPanels.OnlineSoftmaxRows(rows, sp, KeyTile, ap, dv, mp, lp, dv);
                        }
                    }
                    else
                    {
                        for (int i = 0; i < rows; i++)
                        {
                            var row = s.Slice(i * KeyTile, cols);
                            float tileMax = TensorPrimitives.Max(row);
                            float newMax = Math.Max(max[i], tileMax);
                            if (float.IsNegativeInfinity(newMax))
                            {
                                row.Clear(); // nothing visible yet: contributes nothing
                                continue;
                            }

                            float rowSum;
                            if (float.IsNaN(newMax))
                            {
                                // A NaN score (the max is NaN then): x − NaN is NaN, so the row, its sum and the output
                                // stay NaN, as in PyTorch; Exp2 would give 0 and hide it.
                                TensorPrimitives.Subtract(row, newMax, row);
                                rowSum = TensorPrimitives.Sum(row);
                            }
                            else
                            {
                                fixed (float* rp = row)
                                {
                                    rowSum = AttentionPanels.ExpShiftedRow(rp, cols, newMax);
                                }
                            }

                            float correction = MathF.Exp(max[i] - newMax);
                            sum[i] = sum[i] * correction + rowSum;
                            if (correction != 1f)
                            {
                                TensorPrimitives.Multiply(acc.Slice(i * dv, dv), correction, acc.Slice(i * dv, dv));
                            }

                            max[i] = newMax;
                        }
                    }

                    // acc [rows, Dv] += P [rows, cols] · V_tile [cols, Dv]
                    float* vTile = v + ((long)j0 * kvHeads + g) * dv;
                    int diagonal = queryOffset + i0 - j0; // causal: row r sees columns ≤ diagonal + r
                    if (kt != null && options.Mask == MaskKind.Causal && diagonal + rows - 1 < cols - 1)
                    {
                        // A tile on the causal diagonal: each block of 4 rows needs only the keys its last row sees.
                        fixed (float* pp = s, ap = acc)
                        {
                            for (int r = 0; r < rows; r += 4)
                            {
                                int block = Math.Min(4, rows - r), depth = Math.Clamp(diagonal + r + block, 0, cols);
                                AddValues(block, depth, pp + (r * KeyTile), vb + (long)j0 * dv, ap + (r * dv));
                            }
                        }
                    }
                    else if (kt != null)
                    {
                        fixed (float* pp = s, ap = acc)
                        {
                            AddValues(rows, cols, pp, vb + (long)j0 * dv, ap);
                        }
                    }
                    else
                    {
                        Gemm.Multiply(false, false, rows, dv, cols, s, KeyTile,
                            new ReadOnlySpan<float>(vTile, ((cols - 1) * kvHeads * dv) + dv), kvHeads * dv,
                            acc, dv, accumulate: true, threads: 1);
                    }
                }
            }
        }

        // acc [rows, Dv] += P [rows, depth] (stride KeyTile) · values [depth, Dv] on the panels, Dv = 64 or 32.
        private void AddValues(int rows, int depth, float* p, float* values, float* acc)
        {
            if (dv == AttentionPanels.Width)
            {
                AttentionPanels.MultiplyAdd(rows, depth, p, KeyTile, values, dv, acc, dv, add: true);
            }
            else
            {
                AttentionPanels.MultiplyAdd32(rows, depth, p, KeyTile, values, dv, acc, dv, add: true);
            }
        }

        // Every key tile a query tile sees, four query rows at a time through AttentionPanels.AttendRows (S stays in
        // registers; the 64×64 key and value blocks stay in L1 across the tile's row blocks). Only for masks whose
        // visible keys are one range per query (fusedRows); qc points at room for the tile's queries, p at room for
        // four rows of P. nextRows: how many query rows the next tile this thread runs has (0: none, or not known).
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void AttendTile(int h, int i0, int rows, float* kt, float* vb, float* qc, float* acc, float* max, float* sums, float* p, int nextRows)
        {
            int* ranges = stackalloc int[8];
            var (first, end) = KeyRanges(i0, rows).Positional;
            // The tile's query rows, copied contiguous: in place they sit H·D·4 bytes apart (3 KB for 12 × 64), so the
            // 48 rows fall in a quarter of L1's sets and were evicted by the key and value blocks on every key tile
            // (~8% of the forward at T = 4096, same-process A/B).
            long queryStride = (long)heads * dqk;
            float* tileQueries = q + (i0 * queryStride) + (h * dqk);
            for (int i = 0; i < rows; i++)
            {
                AttentionPanels.CopyRow(tileQueries + (i * queryStride), qc + (i * dqk));
            }

            // The rows this tile writes at its end, and the next tile's query rows (FetchRowsAhead): asked for during
            // the last key tile, four of each per row block.
            float* outputRows = output + ((((long)i0 * heads) + h) * dv), nextQueries = tileQueries + (QueryTile * queryStride);
            const int ldq = AttentionPanels.Width;
            for (int j0 = first; j0 < end; j0 += KeyTile)
            {
                int cols = Math.Min(KeyTile, end - j0);
                float* keys = kt + ((long)j0 * dqk), values = vb + ((long)j0 * dv);
                // Prefetched while this tile runs: the next tile's blocks (this tile's again after the last one).
                bool last = j0 + KeyTile >= end;
                float* nextKeys = last ? keys : keys + (KeyTile * dqk), nextValues = last ? values : values + (KeyTile * dv);
                // What a query sees moves right with its position, so when the tile's first and last queries see all
                // 64 keys, every query between them does (most tiles): no per-row ranges then.
                bool whole = VisibleColumns(queryOffset + i0, j0, cols) == (0, KeyTile)
                    && VisibleColumns(queryOffset + i0 + rows - 1, j0, cols) == (0, KeyTile);
                for (int r = 0; r < rows; r += 4)
                {
                    int lastRow = Math.Min(r + 3, rows - 1), depth = whole ? KeyTile : 0;
                    bool partial = false;
                    for (int i = 0; i < 4 && !whole; i++)
                    {
                        var (from, to) = VisibleColumns(queryOffset + i0 + Math.Min(r + i, lastRow), j0, cols);
                        ranges[2 * i] = from;
                        ranges[(2 * i) + 1] = to;
                        partial |= from > 0 || to < KeyTile;
                        depth = Math.Max(depth, to);
                    }

                    // Rows past the tile's end (a last block of 1–3 rows) repeat its last row; their results are unused.
                    // The first four row blocks each prefetch a quarter (4 KB) of the next tile's key and value blocks.
                    bool fetch = r < 16;
                    int quarter = r / 4 * 1024;
                    if (last && FetchRowsAhead)
                    {
                        AttentionPanels.PrefetchRows(outputRows + (r * heads * dv), heads * dv, Math.Min(4, rows - r));
                        AttentionPanels.PrefetchRows(nextQueries + (r * queryStride), queryStride, Math.Clamp(nextRows - r, 0, 4));
                    }

                    AttentionPanels.AttendRows(
                        qc + (r * ldq), qc + (Math.Min(r + 1, lastRow) * ldq), qc + (Math.Min(r + 2, lastRow) * ldq), qc + (lastRow * ldq),
                        keys, values, partial ? ranges : null, depth,
                        fetch ? nextKeys + quarter : keys, fetch ? nextValues + quarter : values,
                        acc + (r * dv), max + r, sums + (16 * r), p);
                }
            }
        }

        // D[h, i] = dO_i·O_i: the row term of the softmax backward, Σ_j P_ij·dP_ij, computed from the output.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void FillRowTerm(int h) => FillRowTerm(h, 0, queryLength);

        // The same for query rows [from, to) only.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void FillRowTerm(int h, int from, int to)
        {
            // 64-wide rows inline: the library's dot took 7.5% of the backward's samples at T = 256, B = 4 (perf, one
            // thread), this whole loop 5.4% with it inline; what is left is mostly waiting for the strided rows.
            bool panel = dv == AttentionPanels.Width && AttentionPanels.Available;
            for (int i = from; i < to; i++)
            {
                long at = (((long)i * heads) + h) * dv;
                RowTerm[(h * queryLength) + i] = panel
                    ? AttentionPanels.Dot(OutputGrad + at, output + at)
                    : TensorPrimitives.Dot(new ReadOnlySpan<float>(OutputGrad + at, dv), new ReadOnlySpan<float>(output + at, dv));
            }
        }

        // The whole backward of kv head g on the panels (Dqk = Dv = 64) for the query tiles of one part of `parts`
        // (PartStart: runs of equal work), one pass over its key tiles:
        //   per key tile j, per query head h of the group, per query tile i of the part that sees it:
        //     S = Q_i·Kᵀ_j (base 2);  P = 2^(S − log₂e·lse);  dP = dO_i·Vᵀ_j;  dS = scale·P∘(dP − D_i)
        //     dV_j += Pᵀ·dO_i;  dK_j += dSᵀ·Q_i;  dQ_i += dS·K_j
        // dK_j and dV_j build up in two 64×64 tiles and are written once (overwriting) to keyGrad and valueGrad, laid
        // out as KeyGrad and ValueGrad (part 0 passes those). Each query head's Q and dO rows of the part are first
        // copied contiguous ([rows, 64]) and its dQ rows add up in a contiguous buffer written once at the end:
        // in place a head's rows sit H·D·4 bytes apart (3 KB for 12 × 64), one per page, where the hardware
        // prefetchers do not follow and the 48 rows of a tile share a quarter of L1's sets, so every query tile of
        // every key tile was fetched from L3 again (the copies made the backward 1.25× faster at T = 1024 and 1.5× at
        // 4096, same-process A/B, bit-identical).
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void BackwardKvHead(int g, int part, int parts, float* keyGrad, float* valueGrad)
        {
            int queryTiles = (queryLength + QueryTile - 1) / QueryTile;
            int first = Math.Min(PartStart(part, parts, queryTiles) * QueryTile, queryLength);
            int end = Math.Min(PartStart(part + 1, parts, queryTiles) * QueryTile, queryLength);
            int group = options.GroupSize, firstHead = g * group;
            for (int h = firstHead; h < firstHead + group; h++)
            {
                FillRowTerm(h, first, end);
            }

            int block = KeyTile * AttentionPanels.Width;
            long headRows = ContiguousRowsLength(end - first);
            var buffer = Scratch(options);
            fixed (float* kt = KeyBlocks((3L * keyTiles * block) + (3L * group * headRows)), sc = buffer)
            {
                float* kr = kt + ((long)keyTiles * block), vt = kr + ((long)keyTiles * block);
                // Per query head of the group: its Q rows, dO rows and dQ accumulator, each [rows, 64] (padded to 64 rows).
                float* headBase = vt + ((long)keyTiles * block);
                for (int h = firstHead; h < firstHead + group; h++)
                {
                    float* qh = headBase + ((h - firstHead) * 3L * headRows);
                    CopyRows(q + ((((long)first * heads) + h) * dqk), heads * dqk, dqk, qh, end - first);
                    CopyRows(OutputGrad + ((((long)first * heads) + h) * dv), heads * dv, dv, qh + headRows, end - first);
                    new Span<float>(qh + (2 * headRows), (int)headRows).Clear();
                }

                TransposeBlocks(k + ((long)g * dqk), kvHeads * dqk, dqk, scale * AttentionPanels.Log2E, kt, keyTiles);
                CopyRows(k + ((long)g * dqk), kvHeads * dqk, dqk, kr, keyLength);
                TransposeBlocks(v + ((long)g * dv), kvHeads * dv, dv, 1f, vt, keyTiles);
                float* p = sc, dp = sc + (QueryTile * KeyTile);
                float* dkAcc = sc + ScratchLength(options) - (KeyTile * (dqk + dv)), dvAcc = dkAcc + (KeyTile * dqk);
                var pSpan = new Span<float>(p, QueryTile * KeyTile);
                const int ld = AttentionPanels.Width;
                for (int tile = 0; tile < keyTiles; tile++)
                {
                    int j0 = tile * KeyTile, cols = Math.Min(KeyTile, keyLength - j0);
                    new Span<float>(dkAcc, KeyTile * (dqk + dv)).Clear();
                    for (int h = firstHead; h < firstHead + group; h++)
                    {
                        float* qh = headBase + ((h - firstHead) * 3L * headRows);
                        for (int i0 = first; i0 < end; i0 += QueryTile)
                        {
                            int rows = Math.Min(QueryTile, end - i0);
                            if (!Overlaps(i0, rows, j0, cols))
                            {
                                continue;
                            }

                            float* qi = qh + ((long)(i0 - first) * ld), dOi = qi + headRows, dQi = dOi + headRows;
                            AttentionPanels.MultiplyAdd(rows, dqk, qi, ld, kt + ((long)tile * block), KeyTile, p, KeyTile, add: false);
                            Mask(h, i0, rows, j0, cols, pSpan, base2: true);
                            AttentionPanels.MultiplyAdd(rows, dv, dOi, ld, vt + ((long)tile * block), KeyTile, dp, KeyTile, add: false);
                            AttentionPanels.ProbabilitiesAndScoreGrad(rows, p, dp, KeyTile,
                                logSumExp + (h * queryLength) + i0, RowTerm + (h * queryLength) + i0, scale);
                            AttentionPanels.MultiplyAddTransposedA(KeyTile, rows, p, KeyTile, dOi, ld, dvAcc, dv);
                            AttentionPanels.MultiplyAddTransposedA(KeyTile, rows, dp, KeyTile, qi, ld, dkAcc, dqk);
                            AttentionPanels.MultiplyAdd(rows, KeyTile, dp, KeyTile, kr + ((long)tile * block), dqk, dQi, ld, add: true);
                        }
                    }

                    for (int j = 0; j < cols; j++)
                    {
                        long row = ((long)(j0 + j) * kvHeads) + g;
                        AttentionPanels.CopyRow(dkAcc + (j * dqk), keyGrad + (row * dqk));
                        AttentionPanels.CopyRow(dvAcc + (j * dv), valueGrad + (row * dv));
                    }
                }

                // The item owns these heads' dQ rows of its part (cleared by Backward), so they are written, not added.
                for (int h = firstHead; h < firstHead + group; h++)
                {
                    float* dQh = headBase + ((h - firstHead) * 3L * headRows) + (2 * headRows);
                    for (int i = first; i < end; i++)
                    {
                        AttentionPanels.CopyRow(dQh + ((long)(i - first) * dqk), QueryGrad + ((((long)i * heads) + h) * dqk));
                    }
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void KeyValueGradTile(int g, int keyTile)
        {
            int j0 = keyTile * KeyTile, cols = Math.Min(KeyTile, keyLength - j0);
            var buffer = Scratch(options);
            var p = buffer.Slice(0, QueryTile * KeyTile);
            var ds = buffer.Slice(QueryTile * KeyTile, QueryTile * KeyTile);
            var dkTile = new Span<float>(KeyGrad + ((long)j0 * kvHeads + g) * dqk, ((cols - 1) * kvHeads * dqk) + dqk);
            var dvTile = new Span<float>(ValueGrad + ((long)j0 * kvHeads + g) * dv, ((cols - 1) * kvHeads * dv) + dv);
            for (int h = g * options.GroupSize; h < (g + 1) * options.GroupSize; h++)
            {
                for (int i0 = 0; i0 < queryLength; i0 += QueryTile)
                {
                    int rows = Math.Min(QueryTile, queryLength - i0);
                    if (!Overlaps(i0, rows, j0, cols))
                    {
                        continue;
                    }

                    ProbabilitiesAndScoreGrad(h, g, i0, rows, j0, cols, p, ds);
                    var dO = new ReadOnlySpan<float>(OutputGrad + ((long)i0 * heads + h) * dv, ((rows - 1) * heads * dv) + dv);
                    var qTile = new ReadOnlySpan<float>(q + ((long)i0 * heads + h) * dqk, ((rows - 1) * heads * dqk) + dqk);
                    // dV_tile [cols, Dv] += Pᵀ [cols, rows] · dO [rows, Dv]
                    Gemm.Multiply(true, false, cols, dv, rows, p, KeyTile, dO, heads * dv, dvTile, kvHeads * dv, true, 1);
                    // dK_tile [cols, Dqk] += dSᵀ [cols, rows] · Q [rows, Dqk]   (dS already carries the scale)
                    Gemm.Multiply(true, false, cols, dqk, rows, ds, KeyTile, qTile, heads * dqk, dkTile, kvHeads * dqk, true, 1);
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void QueryGradTile(int h, int tile)
        {
            int g = h / options.GroupSize;
            int i0 = tile * QueryTile, rows = Math.Min(QueryTile, queryLength - i0);
            var buffer = Scratch(options);
            var p = buffer.Slice(0, QueryTile * KeyTile);
            var ds = buffer.Slice(QueryTile * KeyTile, QueryTile * KeyTile);
            var dqTile = new Span<float>(QueryGrad + ((long)i0 * heads + h) * dqk, ((rows - 1) * heads * dqk) + dqk);
            foreach (var (first, end) in KeyRanges(i0, rows))
            {
                for (int j0 = first; j0 < end; j0 += KeyTile)
                {
                    int cols = Math.Min(KeyTile, end - j0);
                    ProbabilitiesAndScoreGrad(h, g, i0, rows, j0, cols, p, ds);
                    var kTile = new ReadOnlySpan<float>(k + ((long)j0 * kvHeads + g) * dqk, ((cols - 1) * kvHeads * dqk) + dqk);
                    // dQ [rows, Dqk] += dS [rows, cols] · K_tile [cols, Dqk]
                    Gemm.Multiply(false, false, rows, dqk, cols, ds, KeyTile, kTile, kvHeads * dqk, dqTile, heads * dqk, true, 1);
                }
            }
        }

        // P = exp(S − logSumExp) and dS = scale·P∘(dO·Vᵀ − D) for one tile, both [rows, cols] at stride Bc.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void ProbabilitiesAndScoreGrad(int h, int g, int i0, int rows, int j0, int cols, Span<float> p, Span<float> ds)
        {
            Scores(h, g, i0, rows, j0, cols, p);
            for (int i = 0; i < rows; i++)
            {
                var row = p.Slice(i * KeyTile, cols);
                float lse = logSumExp[h * queryLength + i0 + i];
                if (float.IsNegativeInfinity(lse))
                {
                    row.Clear();
                    continue;
                }

                TensorPrimitives.Subtract(row, lse, row);
                TensorPrimitives.Exp(row, row);
            }

            var dO = new ReadOnlySpan<float>(OutputGrad + ((long)i0 * heads + h) * dv, ((rows - 1) * heads * dv) + dv);
            var vTile = new ReadOnlySpan<float>(v + ((long)j0 * kvHeads + g) * dv, ((cols - 1) * kvHeads * dv) + dv);
            // dP [rows, cols] = dO [rows, Dv] · V_tileᵀ
            Gemm.Multiply(false, true, rows, cols, dv, dO, heads * dv, vTile, kvHeads * dv, ds, KeyTile, false, 1);
            for (int i = 0; i < rows; i++)
            {
                var dsRow = ds.Slice(i * KeyTile, cols);
                TensorPrimitives.Subtract(dsRow, RowTerm[h * queryLength + i0 + i], dsRow);
                TensorPrimitives.Multiply(dsRow, p.Slice(i * KeyTile, cols), dsRow);
                TensorPrimitives.Multiply(dsRow, scale, dsRow);
            }
        }

        // S [rows, cols] (stride Bc) = scale·Q_tile·K_tileᵀ + bias, −∞ where hidden.
        // With keyBlock (scale·log₂e·Kᵀ of this key tile, [Dqk, 64]) the product runs on the panels and S is
        // in base 2 (bias included); the columns past cols are then −∞ too.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Scores(int h, int g, int i0, int rows, int j0, int cols, Span<float> s, float* keyBlock = null)
        {
            if (keyBlock != null)
            {
                fixed (float* sp = s)
                {
                    AttentionPanels.MultiplyAdd(rows, dqk, q + ((long)i0 * heads + h) * dqk, heads * dqk, keyBlock, KeyTile, sp, KeyTile, add: false);
                }
            }
            else
            {
                var qTile = new ReadOnlySpan<float>(q + ((long)i0 * heads + h) * dqk, ((rows - 1) * heads * dqk) + dqk);
                var kTile = new ReadOnlySpan<float>(k + ((long)j0 * kvHeads + g) * dqk, ((cols - 1) * kvHeads * dqk) + dqk);
                Gemm.Multiply(false, true, rows, cols, dqk, qTile, heads * dqk, kTile, kvHeads * dqk, s, KeyTile, false, 1);
                for (int i = 0; i < rows; i++)
                {
                    var row = s.Slice(i * KeyTile, cols);
                    TensorPrimitives.Multiply(row, scale, row);
                }
            }

            Mask(h, i0, rows, j0, cols, s, keyBlock != null);
        }

        // Hides what query i0+i may not see in a tile of scores (−∞) and adds the ALiBi bias (× log₂e in base 2).
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Mask(int h, int i0, int rows, int j0, int cols, Span<float> s, bool base2)
        {
            int firstQuery = queryOffset + i0, lastQuery = firstQuery + rows - 1, lastKey = j0 + cols - 1;
            bool fullyVisible = !options.NeedsElementMask
                && (options.Mask == MaskKind.Bidirectional || lastKey <= firstQuery)
                && (options.Window == 0 || (Math.Max(lastQuery - j0, lastKey - firstQuery) < options.Window));
            // Without padding, sparsity, ALiBi or sinks beside a window, a query's visible keys are one range of positions.
            bool contiguous = !options.NeedsElementMask && options.AlibiSlopes is null && (options.Window == 0 || options.Sinks == 0);
            float unit = base2 ? AttentionPanels.Log2E : 1f;
            for (int i = 0; i < rows; i++)
            {
                var row = s.Slice(i * KeyTile, cols);
                if (base2 && cols < KeyTile)
                {
                    // The panel computed a whole tile against zero-padded keys: hide the columns past the end.
                    HideAll(s.Slice(i * KeyTile + cols, KeyTile - cols));
                }

                int queryPosition = firstQuery + i;
                if (fullyVisible && options.AlibiSlopes is null)
                {
                    continue;
                }

                if (contiguous)
                {
                    // Visible keys form one range per query: hide the columns on either side of it.
                    var (first, end) = VisibleColumns(queryPosition, j0, cols);
                    if (base2)
                    {
                        // A whole 64-wide panel row: four compares and blends instead of a store per hidden score.
                        fixed (float* rp = row)
                        {
                            AttentionPanels.HideOutside(rp, first, end);
                        }

                        continue;
                    }

                    HideAll(row[..first]);
                    HideAll(row[end..]);
                    continue;
                }

                for (int j = 0; j < cols; j++)
                {
                    row[j] = options.IsVisible(queryPosition, j0 + j)
                        ? row[j] + (unit * options.Bias(h, queryPosition, j0 + j))
                        : float.NegativeInfinity;
                }
            }
        }

        // Columns [first, end) of the key tile j0 .. j0+cols−1 that the query at queryPosition sees, when what it sees is
        // one range of positions: causal keys up to the query, within the window on either side (IsVisible's rules).
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private (int First, int End) VisibleColumns(int queryPosition, int j0, int cols)
        {
            long first = options.Window > 0 ? (long)queryPosition - options.Window + 1 - j0 : 0;
            long end = options.Mask == MaskKind.Causal ? (long)queryPosition + 1 - j0
                : options.Window > 0 ? (long)queryPosition + options.Window - j0 : cols;
            int firstColumn = (int)Math.Clamp(first, 0, cols);
            return (firstColumn, (int)Math.Clamp(end, firstColumn, cols));
        }

        // The key ranges a query tile must visit: the sinks [0, SinkEnd) and the positional range [First, End), its
        // start rounded down to a whole key tile (keys brought in by the rounding are hidden by the element mask).
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private KeySpans KeyRanges(int i0, int rows)
        {
            int firstQuery = queryOffset + i0;
            var (first, end) = options.KeyRange(firstQuery, firstQuery + rows, keyLength);
            first = first / KeyTile * KeyTile;
            int sinkEnd = options.Window > 0 && options.Sinks > 0 ? Math.Min(Math.Min(options.Sinks, first), keyLength) : 0;
            return new KeySpans(sinkEnd, first, Math.Max(first, end));
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private bool Overlaps(int i0, int rows, int j0, int cols)
        {
            foreach (var (first, end) in KeyRanges(i0, rows))
            {
                if (j0 < end && first < j0 + cols)
                {
                    return true;
                }
            }

            return false;
        }
    }

    // −∞ into every element: a plain loop, inlined into its caller, where Span.Fill is a generic method that ran as
    // tier-0 code through a process's first calls.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void HideAll(Span<float> values)
    {
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = float.NegativeInfinity;
        }
    }

    // The sinks' range (when there are sinks) and then the positional range, enumerated without an array: the
    // backward asks for them once per (key tile, query tile) pair, and an array each time was 2.8 MB of garbage per
    // head at T = 16384 (275 MB per call at B = 8).
    private readonly record struct KeySpans(int SinkEnd, int First, int End)
    {
        public (int First, int End) Positional => (First, End);

        public Enumerator GetEnumerator() => new(this);

        public struct Enumerator(KeySpans spans)
        {
            // −1 before the sinks' range, 0 on it, 1 on the positional range, 2 past the end.
            private int position = spans.SinkEnd > 0 ? -1 : 0;

            public readonly (int First, int End) Current => position == 0 ? (0, spans.SinkEnd) : (spans.First, spans.End);

            public bool MoveNext() => ++position <= 1;
        }
    }
}
