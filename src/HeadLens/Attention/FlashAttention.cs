using System.Numerics.Tensors;
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
// Working memory per thread: a few Br×Bc and Br×D tiles (~40 KB), plus on the AVX-512 path one head's keys and
// values re-laid in 64-key blocks (T·2D floats: 2 MB at T = 4096) — never T×T.
// Tile products go through Gemm (single-threaded inside; the parallelism is over heads × tiles).
// Tiles of keys that no query of the tile can see (above the causal diagonal, outside a window) are skipped, so
// causal attention costs half of full attention and windowed attention O(T·W).
public static partial class ScaledDotProductAttention
{
    // Br = 48 query rows (a multiple of the 12-row register tile), Bc = 64 keys (a multiple of the 32-column tile):
    // S and P (48×64 floats = 12 KB) stay in L1 beside a 64×64 K or V tile.
    internal const int QueryTile = 48;
    internal const int KeyTile = 64;

    [ThreadStatic]
    private static float[]? scratch;

    [ThreadStatic]
    private static float[]? transposedKeys;

    /// <summary>
    /// Bytes of scratch one worker thread uses (the fused path's working memory): the tiles, and one head's keys
    /// and values in blocks of 64 — O(T·D) per thread, never O(T²).
    /// </summary>
    public static long WorkingBytesPerThread(AttentionOptions options, int keyLength) =>
        ((long)ScratchLength(options)
            + (long)(keyLength + KeyTile - 1) / KeyTile * KeyTile * (options.HeadDimQK + options.HeadDimV)) * sizeof(float);

    public static unsafe void Forward(
        AttentionOptions options, int queryLength, int keyLength, int queryOffset,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> output, Span<float> logSumExp)
    {
        options.Validate(queryLength, keyLength, queryOffset);
        CheckSizes(options, queryLength, keyLength, q, k, v, output, logSumExp);
        int queryTiles = (queryLength + QueryTile - 1) / QueryTile;
        fixed (float* qp = q, kp = k, vp = v, op = output, lp = logSumExp)
        {
            var job = new FusedJob(options, queryLength, keyLength, queryOffset, qp, kp, vp, op, lp);
            if (AttentionPanels.Available && options.HeadDimV == AttentionPanels.Width && queryLength >= KeyTile)
            {
                // One work item per head: its keys are transposed once to [D, T] and every query tile reuses them.
                Run(options.Heads, job.ForwardHead);
            }
            else
            {
                Run(options.Heads * queryTiles, item => job.ForwardTile(item / queryTiles, item % queryTiles, null, null));
            }
        }
    }

    public static unsafe void Backward(
        AttentionOptions options, int queryLength, int keyLength, int queryOffset,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> output, ReadOnlySpan<float> outputGrad, ReadOnlySpan<float> logSumExp,
        Span<float> qGrad, Span<float> kGrad, Span<float> vGrad)
    {
        options.Validate(queryLength, keyLength, queryOffset);
        CheckSizes(options, queryLength, keyLength, q, k, v, output, logSumExp);
        int heads = options.Heads, dv = options.HeadDimV;
        Need("outputGrad", outputGrad.Length, (long)queryLength * heads * dv);
        Need("qGrad", qGrad.Length, (long)queryLength * heads * options.HeadDimQK);
        Need("kGrad", kGrad.Length, (long)keyLength * options.KvHeads * options.HeadDimQK);
        Need("vGrad", vGrad.Length, (long)keyLength * options.KvHeads * dv);
        qGrad[..(queryLength * heads * options.HeadDimQK)].Clear();
        kGrad[..(keyLength * options.KvHeads * options.HeadDimQK)].Clear();
        vGrad[..(keyLength * options.KvHeads * dv)].Clear();

        // D[h, i] = dO_i·O_i: the row term of the softmax backward, Σ_j P_ij·dP_ij, computed from the output.
        var rowTerm = new float[heads * queryLength];
        for (int i = 0; i < queryLength; i++)
        {
            for (int h = 0; h < heads; h++)
            {
                int at = (i * heads + h) * dv;
                rowTerm[h * queryLength + i] = TensorPrimitives.Dot(outputGrad.Slice(at, dv), output.Slice(at, dv));
            }
        }

        int queryTiles = (queryLength + QueryTile - 1) / QueryTile;
        int keyTiles = (keyLength + KeyTile - 1) / KeyTile;
        fixed (float* qp = q, kp = k, vp = v, op = output, lp = logSumExp, dop = outputGrad, dp = rowTerm)
        fixed (float* dqp = qGrad, dkp = kGrad, dvp = vGrad)
        {
            var job = new FusedJob(options, queryLength, keyLength, queryOffset, qp, kp, vp, op, lp)
            {
                OutputGrad = dop,
                RowTerm = dp,
                QueryGrad = dqp,
                KeyGrad = dkp,
                ValueGrad = dvp,
            };
            Run(options.KvHeads * keyTiles, item => job.KeyValueGradTile(item / keyTiles, item % keyTiles));
            Run(heads * queryTiles, item => job.QueryGradTile(item / queryTiles, item % queryTiles));
        }
    }

    private static void Run(int items, Action<int> body)
    {
        if (items == 1)
        {
            body(0);
            return;
        }

        // On the compute pool's threads (ComputeThreads.Count of them): each keeps its own scratch for the whole
        // process, so extra threads would only add memory, and a thread-pool thread's scratch would be allocated anew.
        ComputeThreads.Run(items, body);
    }

    private static int ScratchLength(AttentionOptions options) =>
        2 * QueryTile * KeyTile + QueryTile * Math.Max(options.HeadDimV, options.HeadDimQK) + 2 * QueryTile;

    private static float[] Scratch(AttentionOptions options)
    {
        int length = ScratchLength(options);
        if (scratch is null || scratch.Length < length)
        {
            scratch = GC.AllocateUninitializedArray<float>(length, pinned: true);
        }

        return scratch;
    }

    /// <summary>One fused call's inputs as raw pointers, so that worker threads can share them.</summary>
    private sealed unsafe class FusedJob(
        AttentionOptions options, int queryLength, int keyLength, int queryOffset,
        float* q, float* k, float* v, float* output, float* logSumExp)
    {
        private readonly int heads = options.Heads;
        private readonly int kvHeads = options.KvHeads;
        private readonly int dqk = options.HeadDimQK;
        private readonly int dv = options.HeadDimV;
        private readonly float scale = options.EffectiveScale;

        public float* OutputGrad { get; init; }

        public float* RowTerm { get; init; }

        public float* QueryGrad { get; init; }

        public float* KeyGrad { get; init; }

        public float* ValueGrad { get; init; }

        public void ForwardHead(int h)
        {
            int g = h / options.GroupSize;
            int keyTiles = (keyLength + KeyTile - 1) / KeyTile;
            // The head's keys, scaled and transposed tile by tile: block t holds scale·Kᵀ [Dqk, 64] of keys
            // 64t..64t+63 (zero past the end), and its values copied to contiguous [64, Dv] blocks. Contiguous 16 KB
            // blocks keep a tile's reads inside 4 pages; read in place, the 64 rows of a tile sit T·4 or H·D·4 bytes
            // apart, which thrashed the TLB and (at T = 4096) mapped every row to the same L1 sets.
            int blockKeys = dqk * KeyTile, blockValues = KeyTile * dv;
            if (transposedKeys is null || transposedKeys.Length < keyTiles * (blockKeys + blockValues))
            {
                transposedKeys = GC.AllocateUninitializedArray<float>(keyTiles * (blockKeys + blockValues), pinned: true);
            }

            fixed (float* kt = transposedKeys)
            {
                float* vb = kt + (long)keyTiles * blockKeys;
                new Span<float>(kt, keyTiles * (blockKeys + blockValues)).Clear();
                for (int tile = 0; tile < keyTiles; tile++)
                {
                    // Keys 64t.. as rows of Dqk (H·Dqk apart) → the block's columns; the scale is folded into them once.
                    int j0 = tile * KeyTile, keys = Math.Min(KeyTile, keyLength - j0);
                    float* block = kt + (long)tile * blockKeys;
                    Gemm.TransposeInto(k + ((long)j0 * kvHeads + g) * dqk, kvHeads * dqk, keys, dqk, block, KeyTile);
                    var scaled = new Span<float>(block, blockKeys);
                    TensorPrimitives.Multiply(scaled, scale, scaled);
                }

                for (int j = 0; j < keyLength; j++)
                {
                    new ReadOnlySpan<float>(v + ((long)j * kvHeads + g) * dv, dv).CopyTo(new Span<float>(vb + (long)j * dv, dv));
                }

                for (int tile = 0; tile * QueryTile < queryLength; tile++)
                {
                    ForwardTile(h, tile, kt, vb);
                }
            }
        }

        // One query tile of one head. With the blocked keys and values of ForwardHead (kt, vb) the tile products run
        // on the AVX-512 panels; without them (kt = null) through Gemm.
        public void ForwardTile(int h, int tile, float* kt, float* vb)
        {
            int g = h / options.GroupSize;
            int i0 = tile * QueryTile, rows = Math.Min(QueryTile, queryLength - i0);
            var buffer = Scratch(options);
            var s = buffer.AsSpan(0, QueryTile * KeyTile);                                   // [Br, Bc]
            var acc = buffer.AsSpan(2 * QueryTile * KeyTile, rows * dv);                     // [Br, Dv]
            var max = buffer.AsSpan(2 * QueryTile * KeyTile + QueryTile * Math.Max(dv, dqk), QueryTile);
            var sum = buffer.AsSpan(2 * QueryTile * KeyTile + QueryTile * Math.Max(dv, dqk) + QueryTile, QueryTile);
            acc.Clear();
            max.Fill(float.NegativeInfinity);
            sum.Clear();
            foreach (var (first, end) in KeyRanges(i0, rows).All)
            {
                for (int j0 = first; j0 < end; j0 += KeyTile)
                {
                    int cols = Math.Min(KeyTile, end - j0);
                    Scores(h, g, i0, rows, j0, cols, s, kt == null ? null : kt + (long)(j0 / KeyTile) * dqk * KeyTile);
                    if (kt != null)
                    {
                        fixed (float* sp = s, ap = acc, mp = max, lp = sum)
                        {
                            AttentionPanels.OnlineSoftmaxRows(rows, sp, KeyTile, ap, dv, mp, lp);
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

                            TensorPrimitives.Subtract(row, newMax, row);
                            TensorPrimitives.Exp(row, row);
                            float correction = MathF.Exp(max[i] - newMax);
                            sum[i] = sum[i] * correction + TensorPrimitives.Sum(row);
                            if (correction != 1f)
                            {
                                TensorPrimitives.Multiply(acc.Slice(i * dv, dv), correction, acc.Slice(i * dv, dv));
                            }

                            max[i] = newMax;
                        }
                    }

                    // acc [rows, Dv] += P [rows, cols] · V_tile [cols, Dv]
                    float* vTile = v + ((long)j0 * kvHeads + g) * dv;
                    if (kt != null)
                    {
                        fixed (float* pp = s, ap = acc)
                        {
                            AttentionPanels.MultiplyAdd(rows, cols, pp, KeyTile, vb + (long)j0 * dv, dv, ap, dv, add: true);
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

            for (int i = 0; i < rows; i++)
            {
                var o = new Span<float>(output + ((long)(i0 + i) * heads + h) * dv, dv);
                if (sum[i] == 0f)
                {
                    o.Clear();
                    logSumExp[h * queryLength + i0 + i] = float.NegativeInfinity;
                    continue;
                }

                TensorPrimitives.Multiply(acc.Slice(i * dv, dv), 1f / sum[i], o);
                logSumExp[h * queryLength + i0 + i] = max[i] + MathF.Log(sum[i]);
            }
        }

        public void KeyValueGradTile(int g, int keyTile)
        {
            int j0 = keyTile * KeyTile, cols = Math.Min(KeyTile, keyLength - j0);
            var buffer = Scratch(options);
            var p = buffer.AsSpan(0, QueryTile * KeyTile);
            var ds = buffer.AsSpan(QueryTile * KeyTile, QueryTile * KeyTile);
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

        public void QueryGradTile(int h, int tile)
        {
            int g = h / options.GroupSize;
            int i0 = tile * QueryTile, rows = Math.Min(QueryTile, queryLength - i0);
            var buffer = Scratch(options);
            var p = buffer.AsSpan(0, QueryTile * KeyTile);
            var ds = buffer.AsSpan(QueryTile * KeyTile, QueryTile * KeyTile);
            var dqTile = new Span<float>(QueryGrad + ((long)i0 * heads + h) * dqk, ((rows - 1) * heads * dqk) + dqk);
            foreach (var (first, end) in KeyRanges(i0, rows).All)
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
        // With keyBlock (scale·Kᵀ of this key tile, [Dqk, 64]) the product runs on the AVX-512 panel.
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
            }

            int firstQuery = queryOffset + i0, lastQuery = firstQuery + rows - 1, lastKey = j0 + cols - 1;
            bool fullyVisible = !options.NeedsElementMask
                && (options.Mask == MaskKind.Bidirectional || lastKey <= firstQuery)
                && (options.Window == 0 || (Math.Max(lastQuery - j0, lastKey - firstQuery) < options.Window));
            // Without padding, sparsity, ALiBi or sinks beside a window, a query's visible keys are one range of positions.
            bool contiguous = !options.NeedsElementMask && options.AlibiSlopes is null && (options.Window == 0 || options.Sinks == 0);
            for (int i = 0; i < rows; i++)
            {
                var row = s.Slice(i * KeyTile, cols);
                if (keyBlock == null)
                {
                    TensorPrimitives.Multiply(row, scale, row);
                }
                else if (cols < KeyTile)
                {
                    // The panel computed a whole tile against zero-padded keys: hide the columns past the end.
                    s.Slice(i * KeyTile + cols, KeyTile - cols).Fill(float.NegativeInfinity);
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
                    row[..first].Fill(float.NegativeInfinity);
                    row[end..].Fill(float.NegativeInfinity);
                    continue;
                }

                for (int j = 0; j < cols; j++)
                {
                    row[j] = options.IsVisible(queryPosition, j0 + j)
                        ? row[j] + options.Bias(h, queryPosition, j0 + j)
                        : float.NegativeInfinity;
                }
            }
        }

        // Columns [first, end) of the key tile j0 .. j0+cols−1 that the query at queryPosition sees, when what it sees is
        // one range of positions: causal keys up to the query, within the window on either side (IsVisible's rules).
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
        private KeySpans KeyRanges(int i0, int rows)
        {
            int firstQuery = queryOffset + i0;
            var (first, end) = options.KeyRange(firstQuery, firstQuery + rows, keyLength);
            first = first / KeyTile * KeyTile;
            int sinkEnd = options.Window > 0 && options.Sinks > 0 ? Math.Min(Math.Min(options.Sinks, first), keyLength) : 0;
            return new KeySpans(sinkEnd, first, Math.Max(first, end));
        }

        private bool Overlaps(int i0, int rows, int j0, int cols)
        {
            foreach (var (first, end) in KeyRanges(i0, rows).All)
            {
                if (j0 < end && first < j0 + cols)
                {
                    return true;
                }
            }

            return false;
        }
    }

    private readonly record struct KeySpans(int SinkEnd, int First, int End)
    {
        public (int First, int End)[] All => SinkEnd > 0 ? [(0, SinkEnd), (First, End)] : [(First, End)];
    }
}
