using HeadLens.Attention;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Attention;

public class ScaledDotProductAttentionTests
{
    public static TheoryData<string> Cases() => new(CaseOptions.Keys);

    // Named configurations: every mask, GQA/MQA, d_qk ≠ d_v, cross-attention shapes, T not a multiple of a tile.
    private static readonly Dictionary<string, (AttentionOptions Options, int Tq, int Tk, int Offset)> CaseOptions = new()
    {
        ["causal"] = (new AttentionOptions(4, 4, 16, 16), 100, 100, 0),
        ["bidirectional"] = (new AttentionOptions(3, 3, 8, 8) { Mask = MaskKind.Bidirectional }, 37, 37, 0),
        ["padding"] = (new AttentionOptions(2, 2, 8, 8) { KeyPadding = Padding(70, 9) }, 70, 70, 0),
        ["window"] = (new AttentionOptions(2, 2, 8, 8) { Window = 17 }, 150, 150, 0),
        ["window-sinks"] = (new AttentionOptions(2, 2, 8, 8) { Window = 20, Sinks = 4 }, 160, 160, 0),
        ["gqa"] = (new AttentionOptions(6, 2, 16, 16), 65, 65, 0),
        ["mqa"] = (new AttentionOptions(4, 1, 8, 8), 49, 49, 0),
        ["dqk-ne-dv"] = (new AttentionOptions(2, 2, 12, 20), 51, 51, 0),
        ["cross"] = (new AttentionOptions(2, 2, 8, 8) { Mask = MaskKind.Bidirectional }, 29, 83, 0),
        ["offset-decode"] = (new AttentionOptions(4, 2, 8, 8), 3, 90, 87),
        // One query against a cache (a decode step): short ones run on the calling thread, long ones over the pool.
        ["decode-step-inline"] = (new AttentionOptions(12, 12, 64, 64), 1, 97, 96),
        ["decode-step-pool"] = (new AttentionOptions(32, 4, 64, 64), 1, 600, 599),
        ["alibi"] = (new AttentionOptions(2, 2, 8, 8) { AlibiSlopes = [0.5f, 0.125f] }, 70, 70, 0),
        ["strided"] = (new AttentionOptions(2, 2, 8, 8) { Sparse = SparsePattern.Strided, SparseStride = 8 }, 80, 80, 0),
        ["fixed"] = (new AttentionOptions(2, 2, 8, 8) { Sparse = SparsePattern.Fixed, SparseStride = 16, SparseSummary = 2 }, 80, 80, 0),
        // Head size 64 with T ≥ 64 takes the AVX-512 panel path (blocked keys and values) where AVX-512 exists.
        ["panel-causal"] = (new AttentionOptions(2, 2, 64, 64), 150, 150, 0),
        ["panel-gqa-window-sinks"] = (new AttentionOptions(4, 2, 64, 64) { Window = 70, Sinks = 3 }, 200, 200, 0),
        ["panel-cross"] = (new AttentionOptions(2, 2, 32, 64) { Mask = MaskKind.Bidirectional }, 70, 131, 0),
        ["bidirectional-window"] = (new AttentionOptions(2, 2, 8, 8) { Mask = MaskKind.Bidirectional, Window = 10 }, 90, 90, 0),
        // Masks whose visible keys are one range per query (hidden columns filled per row, not checked per key).
        ["panel-window"] = (new AttentionOptions(2, 2, 64, 64) { Window = 70 }, 200, 200, 0),
        ["panel-bidirectional-window"] = (new AttentionOptions(2, 2, 64, 64) { Mask = MaskKind.Bidirectional, Window = 50 }, 150, 150, 0),
        ["panel-offset"] = (new AttentionOptions(2, 2, 64, 64), 70, 190, 120),
        // The base-2 panel path and its one-pass backward: odd lengths (a partial last query and key tile), no mask,
        // ALiBi (its bias scaled into base 2), padding (the per-element mask), grouped heads, short calls (shared blocks).
        ["panel-odd"] = (new AttentionOptions(3, 3, 64, 64), 131, 131, 0),
        ["panel-bidirectional"] = (new AttentionOptions(2, 2, 64, 64) { Mask = MaskKind.Bidirectional }, 97, 97, 0),
        ["panel-alibi"] = (new AttentionOptions(2, 2, 64, 64) { AlibiSlopes = [0.5f, 0.0625f] }, 100, 100, 0),
        ["panel-padding"] = (new AttentionOptions(2, 2, 64, 64) { KeyPadding = Padding(90, 11) }, 90, 90, 0),
        ["panel-gqa"] = (new AttentionOptions(4, 2, 64, 64), 64, 64, 0),
        // Three query heads per kv head with a partial last tile: the backward copies each head's Q, dO and dQ rows.
        ["panel-gqa-odd"] = (new AttentionOptions(6, 2, 64, 64), 131, 131, 0),
        ["panel-short-backward"] = (new AttentionOptions(2, 2, 64, 64), 9, 9, 0),
        // Values 32 wide (MiniLM's heads) from T ≥ 64 on the panels too (MultiplyAdd32, the softmax rescaling 32-wide
        // rows): every mask kind, grouped heads, a query offset, keys wider and narrower than the values.
        ["panel32-causal"] = (new AttentionOptions(2, 2, 32, 32), 150, 150, 0),
        ["panel32-bidirectional-padding"] = (new AttentionOptions(3, 3, 32, 32) { Mask = MaskKind.Bidirectional, KeyPadding = Padding(97, 13) }, 97, 97, 0),
        ["panel32-gqa-window-sinks"] = (new AttentionOptions(4, 2, 32, 32) { Window = 70, Sinks = 3 }, 200, 200, 0),
        ["panel32-alibi"] = (new AttentionOptions(2, 2, 32, 32) { AlibiSlopes = [0.5f, 0.0625f] }, 129, 129, 0),
        ["panel32-offset"] = (new AttentionOptions(2, 2, 32, 32), 70, 190, 120),
        ["panel32-wide-keys"] = (new AttentionOptions(2, 2, 64, 32) { Mask = MaskKind.Bidirectional }, 65, 131, 0),
        ["panel32-narrow-keys"] = (new AttentionOptions(2, 2, 12, 32), 90, 90, 0),
        ["panel32-long-causal"] = (new AttentionOptions(4, 4, 32, 32), 2085, 2085, 0),
        // Long enough (≥ 2048 keys) and with enough heads (> 4 MiB of blocked keys) for one work item per head, split
        // in two (each blocking only the keys its queries see).
        ["panel-long-causal"] = (new AttentionOptions(4, 4, 64, 64), 2085, 2085, 0),
        // The panel backward's parts (BackwardParts: at least 12 work items): one kv head in 8 parts (causal: of equal
        // work), three kv heads in 4 (bidirectional: of equal length), 12 kv heads in one; a single pair with one query
        // tile takes the tiled passes.
        ["panel-mqa-parts"] = (new AttentionOptions(4, 1, 64, 64), 500, 500, 0),
        ["panel-gqa3-bidirectional-parts"] = (new AttentionOptions(6, 3, 64, 64) { Mask = MaskKind.Bidirectional }, 230, 230, 0),
        ["panel-one-part"] = (new AttentionOptions(12, 12, 64, 64), 100, 100, 0),
        ["panel-single-pair"] = (new AttentionOptions(1, 1, 64, 64), 40, 40, 0),
    };

    // Asking for strided rows ahead of their use (on where a call's Q, K, V and output outgrow the last-level cache)
    // must not change the bits: the forward and backward of causal heads split in two parts with a partial last query
    // tile, and of a batched bidirectional call, with the requests forced on and off.
    [Theory]
    [InlineData(1, 2085, true)]
    [InlineData(2, 1100, false)]
    public void FetchingRowsAheadDoesNotChangeTheBits(int batch, int t, bool causal)
    {
        const int heads = 4;
        var options = new AttentionOptions(heads, heads, 64, 64) { Mask = causal ? MaskKind.Causal : MaskKind.Bidirectional };
        Assert.True(ScaledDotProductAttention.SharedWorkingBytes(options, batch, t) == 0 || !AttentionPanels.Available, "the shape must take the per-head path");
        var random = new Random(t);
        int size = batch * t * heads * 64;
        float[] q = TestData.Uniform(random, size), k = TestData.Uniform(random, size), v = TestData.Uniform(random, size);
        float[] dO = TestData.Uniform(random, size);
        float[] Run(long fetchAheadAbove)
        {
            long machineDefault = ScaledDotProductAttention.FetchAheadAboveBytes;
            try
            {
                ScaledDotProductAttention.FetchAheadAboveBytes = fetchAheadAbove;
                Assert.Equal(fetchAheadAbove == 0, ScaledDotProductAttention.OperandsOutgrowCache(options, batch, t, t));
                float[] output = new float[size], logSumExp = new float[batch * heads * t];
                float[] dq = new float[size], dk = new float[size], dv = new float[size];
                ScaledDotProductAttention.Forward(options, batch, t, t, 0, q, k, v, output, logSumExp);
                ScaledDotProductAttention.Backward(options, batch, t, t, 0, q, k, v, output, dO, logSumExp, dq, dk, dv);
                return [.. output, .. logSumExp, .. dq, .. dk, .. dv];
            }
            finally
            {
                ScaledDotProductAttention.FetchAheadAboveBytes = machineDefault;
            }
        }

        Assert.True(Run(0).AsSpan().SequenceEqual(Run(long.MaxValue)), "the results differ with the rows asked for ahead");
    }

    // The working memory `bench attention` reports: the forward's grows by one head's blocked keys and values per
    // key (Dqk + Dv floats), so 2 threads stay under issue 3's 64 MB at T = 16384 with 12 × 64 heads; the backward's
    // three block sets and copied rows need more, and are counted only for the backward.
    [Fact]
    public void WorkingMemoryIsLinearInTheLengthAndTheForwardNeedsLessThanTheBackward()
    {
        var options = new AttentionOptions(12, 12, 64, 64);
        long forward = ScaledDotProductAttention.WorkingBytesPerThread(options, 4096);
        Assert.Equal(4096L * (64 + 64) * sizeof(float), ScaledDotProductAttention.WorkingBytesPerThread(options, 8192) - forward);
        Assert.True(ScaledDotProductAttention.WorkingBytesPerThread(options, 4096, backward: true) > forward);
        Assert.True(2 * ScaledDotProductAttention.WorkingBytesPerThread(options, 16384) < 64L << 20);

        // Beside the threads' scratch, the backward's query parts past the first keep their dK and dV rows: none with
        // 12 kv heads, 7 copies of one kv head's (8 parts) with one, on the panels.
        Assert.Equal(0, ScaledDotProductAttention.BackwardSharedBytes(options, 4, 4096, 4096));
        long multiQuery = ScaledDotProductAttention.BackwardSharedBytes(options with { KvHeads = 1 }, 2, 4096, 4096);
        Assert.Equal(AttentionPanels.Available ? 7L * 2 * 4096 * (64 + 64) * sizeof(float) : 0, multiQuery);
    }

    // The panel backward's work items: at least 12 per sequence where its query tiles allow, from the kv heads and
    // length alone (not the thread count, so the bits do not depend on --threads; not the batch, so a batched call
    // equals one call per sequence), at most 8 parts per (sequence, kv head).
    [Theory]
    [InlineData(1, 11, 8)]
    [InlineData(1, 5, 5)]
    [InlineData(3, 13, 4)]
    [InlineData(4, 40, 3)]
    [InlineData(12, 40, 1)]
    [InlineData(48, 40, 1)]
    [InlineData(1, 1, 1)]
    public void TheBackwardSplitsFewKvHeadsIntoParts(int kvHeads, int queryTiles, int parts) =>
        Assert.Equal(parts, ScaledDotProductAttention.BackwardParts(kvHeads, queryTiles));

    // Fused vs reference: both fp32. Each output is a convex combination of v rows (|v| ≤ 1), so errors are
    // measured relative to 1 (floor 1): the online rescaling and tiled sums differ from the reference by a few
    // ulps per term, ≤ 1e-6 in practice; 1e-5 is the bound.
    [Theory]
    [MemberData(nameof(Cases))]
    public void FusedForwardEqualsReference(string name)
    {
        var (options, tq, tk, offset) = CaseOptions[name];
        var (q, k, v) = Inputs(options, tq, tk, seed: name.Length);
        float[] expected = new float[tq * options.Heads * options.HeadDimV], expectedLse = new float[options.Heads * tq];
        float[] actual = new float[expected.Length], actualLse = new float[expectedLse.Length];
        ScaledDotProductAttention.ForwardReference(options, tq, tk, offset, q, k, v, expected, expectedLse);
        ScaledDotProductAttention.Forward(options, tq, tk, offset, q, k, v, actual, actualLse);
        Assert.True(Float64.MaxRelativeError(actual, FiniteDifference.ToDouble(expected)) <= 1e-5, name);
        for (int i = 0; i < expectedLse.Length; i++)
        {
            if (float.IsNegativeInfinity(expectedLse[i]))
            {
                Assert.True(float.IsNegativeInfinity(actualLse[i]));
            }
            else
            {
                Assert.Equal(expectedLse[i], actualLse[i], 1e-4f);
            }
        }
    }

    // Gradients: both fp32; dQ, dK, dV are sums of up to T terms of size ~1, so 1e-4 relative to the largest.
    [Theory]
    [MemberData(nameof(Cases))]
    public void FusedBackwardEqualsReference(string name)
    {
        var (options, tq, tk, offset) = CaseOptions[name];
        var (q, k, v) = Inputs(options, tq, tk, seed: name.Length + 1);
        var random = new Random(name.Length);
        float[] dO = TestData.Uniform(random, tq * options.Heads * options.HeadDimV);
        float[] output = new float[dO.Length], lse = new float[options.Heads * tq];
        ScaledDotProductAttention.Forward(options, tq, tk, offset, q, k, v, output, lse);
        float[] dq1 = new float[q.Length], dk1 = new float[k.Length], dv1 = new float[v.Length];
        float[] dq2 = new float[q.Length], dk2 = new float[k.Length], dv2 = new float[v.Length];
        ScaledDotProductAttention.BackwardReference(options, tq, tk, offset, q, k, v, output, dO, lse, dq1, dk1, dv1);
        ScaledDotProductAttention.Backward(options, tq, tk, offset, q, k, v, output, dO, lse, dq2, dk2, dv2);
        AssertNear(dq1, dq2, name + " dq");
        AssertNear(dk1, dk2, name + " dk");
        AssertNear(dv1, dv2, name + " dv");
    }

    // The reference backward against float64 central differences of Σ out·r on tiny shapes: 1e-4 relative.
    [Theory]
    [InlineData("causal")]
    [InlineData("gqa")]
    [InlineData("window-sinks")]
    [InlineData("alibi")]
    [InlineData("dqk-ne-dv")]
    [InlineData("cross")]
    public void ReferenceBackwardMatchesFiniteDifferences(string name)
    {
        var (big, _, _, _) = CaseOptions[name];
        var options = big with { };
        int tq = name == "cross" ? 5 : 7, tk = name == "cross" ? 9 : 7;
        if (options.Window > 0)
        {
            options = options with { Window = 3, Sinks = Math.Min(options.Sinks, 1) };
        }

        var (q, k, v) = Inputs(options, tq, tk, seed: 3);
        var random = new Random(4);
        double[] r = FiniteDifference.ToDouble(TestData.Uniform(random, tq * options.Heads * options.HeadDimV));
        double[] qd = FiniteDifference.ToDouble(q), kd = FiniteDifference.ToDouble(k), vd = FiniteDifference.ToDouble(v);
        double Loss(double[] qv, double[] kv, double[] vv) =>
            FiniteDifference.Project(Float64Attention.Forward(options, tq, tk, 0, qv, kv, vv), r);
        float[] output = new float[r.Length], lse = new float[options.Heads * tq];
        ScaledDotProductAttention.ForwardReference(options, tq, tk, 0, q, k, v, output, lse);
        float[] dq = new float[q.Length], dk = new float[k.Length], dv = new float[v.Length];
        ScaledDotProductAttention.BackwardReference(options, tq, tk, 0, q, k, v, output, FiniteDifference.ToFloat(r), lse, dq, dk, dv);
        FiniteDifference.AssertClose(dq, FiniteDifference.Gradient(p => Loss(p, kd, vd), qd), 1e-4, name + " dq");
        FiniteDifference.AssertClose(dk, FiniteDifference.Gradient(p => Loss(qd, p, vd), kd), 1e-4, name + " dk");
        FiniteDifference.AssertClose(dv, FiniteDifference.Gradient(p => Loss(qd, kd, p), vd), 1e-4, name + " dv");
        float[] fdq = new float[q.Length], fdk = new float[k.Length], fdv = new float[v.Length];
        ScaledDotProductAttention.Backward(options, tq, tk, 0, q, k, v, output, FiniteDifference.ToFloat(r), lse, fdq, fdk, fdv);
        FiniteDifference.AssertClose(fdq, FiniteDifference.Gradient(p => Loss(p, kd, vd), qd), 1e-4, name + " fused dq");
    }

    [Fact]
    public void ReferenceMatchesFloat64Oracle()
    {
        foreach (var (name, (options, tq, tk, offset)) in CaseOptions)
        {
            var (q, k, v) = Inputs(options, tq, tk, seed: 9);
            float[] output = new float[tq * options.Heads * options.HeadDimV], lse = new float[options.Heads * tq];
            ScaledDotProductAttention.ForwardReference(options, tq, tk, offset, q, k, v, output, lse);
            double[] expected = Float64Attention.Forward(options, tq, tk, offset,
                FiniteDifference.ToDouble(q), FiniteDifference.ToDouble(k), FiniteDifference.ToDouble(v));
            Assert.True(Float64.MaxRelativeError(output, expected) <= 1e-5, name);
        }
    }

    // The panel backward (head size 64: base-2 scores, one pass per kv head) against float64 central differences.
    [Theory]
    [InlineData(MaskKind.Causal, 0)]
    [InlineData(MaskKind.Bidirectional, 0)]
    [InlineData(MaskKind.Causal, 3)]
    public void PanelBackwardMatchesFiniteDifferences(MaskKind mask, int window)
    {
        var options = new AttentionOptions(2, 1, 64, 64) { Mask = mask, Window = window };
        const int t = 6;
        var (q, k, v) = Inputs(options, t, t, seed: 11);
        var random = new Random(12);
        double[] r = FiniteDifference.ToDouble(TestData.Uniform(random, t * options.Heads * options.HeadDimV));
        double[] qd = FiniteDifference.ToDouble(q), kd = FiniteDifference.ToDouble(k), vd = FiniteDifference.ToDouble(v);
        double Loss(double[] qv, double[] kv, double[] vv) =>
            FiniteDifference.Project(Float64Attention.Forward(options, t, t, 0, qv, kv, vv), r);
        float[] output = new float[r.Length], lse = new float[options.Heads * t];
        ScaledDotProductAttention.Forward(options, t, t, 0, q, k, v, output, lse);
        float[] dq = new float[q.Length], dk = new float[k.Length], dv = new float[v.Length];
        ScaledDotProductAttention.Backward(options, 1, t, t, 0, q, k, v, output, FiniteDifference.ToFloat(r), lse, dq, dk, dv);
        FiniteDifference.AssertClose(dq, FiniteDifference.Gradient(p => Loss(p, kd, vd), qd), 1e-4, "dq");
        FiniteDifference.AssertClose(dk, FiniteDifference.Gradient(p => Loss(qd, p, vd), kd), 1e-4, "dk");
        FiniteDifference.AssertClose(dv, FiniteDifference.Gradient(p => Loss(qd, kd, p), vd), 1e-4, "dv");
    }

    // A batched call against one call per sequence. Batch 4 × 2 heads blocks keys per head (8 heads: enough to
    // balance; at T = 1100 also over the shared-blocking budget) while each single sequence (2 heads) blocks all
    // heads first and splits query tiles: two work splits of the same tile arithmetic, so the results are identical.
    // Head size 16 takes the Gemm path.
    [Theory]
    [InlineData(64, 1100)]
    [InlineData(64, 77)]
    [InlineData(16, 150)]
    public void BatchedCallEqualsOneCallPerSequence(int headSize, int t)
    {
        const int batch = 4;
        var options = new AttentionOptions(2, 2, headSize, headSize);
        int perSequence = t * 2 * headSize;
        var random = new Random(t);
        float[] q = TestData.Uniform(random, batch * perSequence), k = TestData.Uniform(random, batch * perSequence);
        float[] v = TestData.Uniform(random, batch * perSequence), dO = TestData.Uniform(random, batch * perSequence);
        float[] output = new float[q.Length], lse = new float[batch * 2 * t];
        float[] dq = new float[q.Length], dk = new float[q.Length], dv = new float[q.Length];
        ScaledDotProductAttention.Forward(options, batch, t, t, 0, q, k, v, output, lse);
        ScaledDotProductAttention.Backward(options, batch, t, t, 0, q, k, v, output, dO, lse, dq, dk, dv);
        for (int b = 0; b < batch; b++)
        {
            var at = b * perSequence;
            float[] o1 = new float[perSequence], lse1 = new float[2 * t], dq1 = new float[perSequence], dk1 = new float[perSequence], dv1 = new float[perSequence];
            ScaledDotProductAttention.Forward(options, t, t, 0, q.AsSpan(at, perSequence), k.AsSpan(at, perSequence), v.AsSpan(at, perSequence), o1, lse1);
            ScaledDotProductAttention.Backward(options, t, t, 0, q.AsSpan(at, perSequence), k.AsSpan(at, perSequence), v.AsSpan(at, perSequence),
                o1, dO.AsSpan(at, perSequence), lse1, dq1, dk1, dv1);
            Assert.Equal(o1, output.AsSpan(at, perSequence).ToArray());
            Assert.Equal(lse1, lse.AsSpan(b * 2 * t, 2 * t).ToArray());
            Assert.Equal(dq1, dq.AsSpan(at, perSequence).ToArray());
            Assert.Equal(dk1, dk.AsSpan(at, perSequence).ToArray());
            Assert.Equal(dv1, dv.AsSpan(at, perSequence).ToArray());
        }

        if (t <= 150)
        {
            // And the first sequence against the reference.
            float[] expected = new float[perSequence], expectedLse = new float[2 * t];
            ScaledDotProductAttention.ForwardReference(options, t, t, 0, q.AsSpan(0, perSequence), k.AsSpan(0, perSequence), v.AsSpan(0, perSequence), expected, expectedLse);
            Assert.True(Float64.MaxRelativeError(output.AsSpan(0, perSequence).ToArray(), FiniteDifference.ToDouble(expected)) <= 1e-5);
        }
    }

    [Fact]
    public void PatternRowsSumToOneAndAreExactlyZeroWhereMasked()
    {
        foreach (var (name, (options, tq, tk, offset)) in CaseOptions)
        {
            var (q, k, _) = Inputs(options, tq, tk, seed: 5);
            int[] heads = Enumerable.Range(0, options.Heads).ToArray();
            var patterns = new float[heads.Length * tq * tk];
            ScaledDotProductAttention.Patterns(options, tq, tk, offset, q, k, heads, patterns);
            for (int h = 0; h < heads.Length; h++)
            {
                for (int i = 0; i < tq; i++)
                {
                    double sum = 0;
                    bool any = false;
                    for (int j = 0; j < tk; j++)
                    {
                        float p = patterns[(h * tq + i) * tk + j];
                        if (!options.IsVisible(offset + i, j))
                        {
                            Assert.Equal(0f, p);
                        }
                        else
                        {
                            any = true;
                        }

                        sum += p;
                    }

                    Assert.Equal(any ? 1.0 : 0.0, sum, 5);
                }
            }
        }
    }

    [Fact]
    public void WindowAsLongAsTheSequenceEqualsCausal()
    {
        var causal = new AttentionOptions(2, 2, 8, 8);
        var windowed = causal with { Window = 64 };
        var (q, k, v) = Inputs(causal, 64, 64, seed: 6);
        float[] a = new float[64 * 16], b = new float[64 * 16], lse = new float[128];
        ScaledDotProductAttention.Forward(causal, 64, 64, 0, q, k, v, a, lse);
        ScaledDotProductAttention.Forward(windowed, 64, 64, 0, q, k, v, b, lse);
        Assert.Equal(a, b);
    }

    [Fact]
    public void GroupedQueryWithAsManyKvHeadsAsHeadsEqualsMultiHead()
    {
        // GQA with KvHeads = Heads: each query head reads its own kv head, exactly plain multi-head attention,
        // which we build head by head from single-head calls.
        var gqa = new AttentionOptions(3, 3, 8, 8);
        int t = 20;
        var (q, k, v) = Inputs(gqa, t, t, seed: 7);
        float[] together = new float[t * 3 * 8], lse = new float[3 * t];
        ScaledDotProductAttention.Forward(gqa, t, t, 0, q, k, v, together, lse);
        var single = new AttentionOptions(1, 1, 8, 8);
        for (int h = 0; h < 3; h++)
        {
            float[] qh = Head(q, t, 3, 8, h), kh = Head(k, t, 3, 8, h), vh = Head(v, t, 3, 8, h);
            float[] alone = new float[t * 8], lseAlone = new float[t];
            ScaledDotProductAttention.Forward(single, t, t, 0, qh, kh, vh, alone, lseAlone);
            Assert.Equal(alone, Head(together, t, 3, 8, h));
        }
    }

    [Fact]
    public void InvalidShapesAreRejected()
    {
        Assert.Throws<ArgumentException>(() => new AttentionOptions(4, 3, 8, 8).Validate(1, 1, 0));
        Assert.Throws<ArgumentException>(() =>
            ScaledDotProductAttention.Forward(new AttentionOptions(1, 1, 4, 4), 2, 2, 0, new float[7], new float[8], new float[8], new float[8], new float[2]));
        Assert.Throws<ArgumentException>(() =>
            ScaledDotProductAttention.Forward(new AttentionOptions(1, 1, 4, 4), 2, 2, 2, 0, new float[8], new float[16], new float[16], new float[16], new float[4]));
        Assert.Throws<ArgumentException>(() =>
            ScaledDotProductAttention.Forward(new AttentionOptions(1, 1, 4, 4), 0, 2, 2, 0, new float[8], new float[8], new float[8], new float[8], new float[2]));
    }

    internal static (float[] Q, float[] K, float[] V) Inputs(AttentionOptions options, int tq, int tk, int seed)
    {
        var random = new Random(seed);
        return (
            TestData.Uniform(random, tq * options.Heads * options.HeadDimQK),
            TestData.Uniform(random, tk * options.KvHeads * options.HeadDimQK),
            TestData.Uniform(random, tk * options.KvHeads * options.HeadDimV));
    }

    private static float[] Head(float[] x, int t, int heads, int d, int h)
    {
        var result = new float[t * d];
        for (int i = 0; i < t; i++)
        {
            Array.Copy(x, (i * heads + h) * d, result, i * d, d);
        }

        return result;
    }

    private static bool[] Padding(int length, int padded)
    {
        var mask = new bool[length];
        for (int j = length - padded; j < length; j++)
        {
            mask[j] = true;
        }

        mask[3] = true;
        return mask;
    }

    private static void AssertNear(float[] expected, float[] actual, string what)
    {
        double largest = Math.Max(expected.Max(MathF.Abs), 1e-3);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-4 * largest, $"{what}[{i}]: {expected[i]} vs {actual[i]}");
        }
    }
}
