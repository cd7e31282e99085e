using System.Collections.Concurrent;
using HeadLens.Attention;
using HeadLens.Kernels;
using HeadLens.Kernels.Quantized;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Kernels;

// The tests that change ComputeThreads.Count live in this class (xUnit never runs two tests of one class at once) and
// restore it. Other classes may run kernels meanwhile: that only changes how many threads they use, not their results
// (KernelsGiveTheSameResultsOnOneThreadAndOnSeveral). The class runs alone, though: a kernel of another class holding
// the pool sends these calls to the Parallel.For fallback, which on a starved pool may run every part on the calling
// thread, and then the tests about the pool's own workers measure the fallback instead (seen once in the scalar run).
[Collection(RunsAlone.Name)]
public class ComputeThreadsTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 2)]
    [InlineData(7, 2)]
    [InlineData(64, 8)]
    public void EveryPartRunsExactlyOnce(int parts, int threads)
    {
        for (int repeat = 0; repeat < 50; repeat++)
        {
            var counts = new int[parts];
            ComputeThreads.Run(parts, threads, part => Interlocked.Increment(ref counts[part]));
            Assert.All(counts, count => Assert.Equal(1, count));
        }
    }

    // Parts that sleep leave the caller nothing to steal: the second part must run on a pool worker. A few tries,
    // since a loaded machine may be slow to schedule the worker once.
    [Fact]
    public void WorkersTakePartsBesideTheCaller()
    {
        if (Environment.ProcessorCount < 2)
        {
            return;
        }

        int caller = Environment.CurrentManagedThreadId;
        bool helped = false;
        for (int attempt = 0; attempt < 5 && !helped; attempt++)
        {
            var threadIds = new int[2];
            ComputeThreads.Run(2, 2, part =>
            {
                threadIds[part] = Environment.CurrentManagedThreadId;
                Thread.Sleep(50);
            });
            helped = threadIds.Any(id => id != caller);
        }

        Assert.True(helped);
    }

    [Fact]
    public void FailureReachesTheCaller()
    {
        var error = Assert.Throws<InvalidOperationException>(() =>
            ComputeThreads.Run(4, 2, part => throw new InvalidOperationException($"part {part}")));
        Assert.StartsWith("part ", error.Message, StringComparison.Ordinal);
        // The pool still works afterwards.
        int sum = 0;
        ComputeThreads.Run(4, 2, part => Interlocked.Add(ref sum, part + 1));
        Assert.Equal(10, sum);
    }

    // While the pool is busy (here: an outer call holds it), a call falls back to Parallel.For; its failure must still
    // reach the caller as itself, not wrapped in an AggregateException.
    [Fact]
    public void FailureOfACallBesideTheBusyPoolReachesTheCallerUnwrapped()
    {
        var caught = new ConcurrentBag<Exception>();
        ComputeThreads.Run(2, 2, outer =>
        {
            try
            {
                ComputeThreads.Run(4, 2, part => throw new InvalidOperationException($"part {part}"));
            }
            catch (Exception error)
            {
                caught.Add(error);
            }
        });
        Assert.Equal(2, caught.Count);
        Assert.All(caught, error => Assert.IsType<InvalidOperationException>(error));
    }

    [Fact]
    public void NestedCallsDoNotDeadlock()
    {
        int total = 0;
        ComputeThreads.Run(2, 2, outer => ComputeThreads.Run(3, 2, inner => Interlocked.Increment(ref total)));
        Assert.Equal(6, total);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void TheConfiguredCountIsReportedAndBoundsEveryDefaultRun(int count)
    {
        WithCount(count, () =>
        {
            Assert.Equal(count, ComputeThreads.Count);
            // The bound is on how many parts run at once. (Distinct thread ids over many runs can exceed it: when the
            // pool is busy with another test, a run falls back to Parallel.For, which may use other pool threads.)
            int active = 0, most = 0;
            for (int repeat = 0; repeat < 20; repeat++)
            {
                ComputeThreads.Run(32, part =>
                {
                    int now = Interlocked.Increment(ref active);
                    int seen;
                    while (now > (seen = Volatile.Read(ref most)) && Interlocked.CompareExchange(ref most, now, seen) != seen)
                    {
                    }

                    Thread.SpinWait(1000);
                    Interlocked.Decrement(ref active);
                });
            }

            Assert.InRange(most, 1, count);
        });
    }

    // A count above the cores is honoured as well (the pool grows): three sleeping parts on three threads. A few
    // tries, since a loaded machine may be slow to wake a worker once.
    [Fact]
    public void ACountAboveTheCoresStartsMoreWorkers()
    {
        WithCount(Environment.ProcessorCount + 1, () =>
        {
            int parts = Environment.ProcessorCount + 1, most = 0;
            for (int attempt = 0; attempt < 5 && most < parts; attempt++)
            {
                var threadIds = new int[parts];
                ComputeThreads.Run(parts, part =>
                {
                    threadIds[part] = Environment.CurrentManagedThreadId;
                    Thread.Sleep(50);
                });
                most = Math.Max(most, threadIds.Distinct().Count());
            }

            Assert.Equal(parts, most);
        });
    }

    [Theory]
    [InlineData(null, null)]
    [InlineData("", null)]
    [InlineData(" ", null)]
    [InlineData("1", 1)]
    [InlineData(" 4 ", 4)]
    [InlineData("1024", 1024)]
    public void TheEnvironmentValueParses(string? text, int? expected) => Assert.Equal(expected, ComputeThreads.Parse(text));

    [Theory]
    [InlineData("abc")]
    [InlineData("0")]
    [InlineData("-2")]
    [InlineData("1.5")]
    [InlineData("1025")]
    [InlineData("99999999999")]
    public void ABadEnvironmentValueIsOneClearError(string text)
    {
        var error = Assert.Throws<HeadLensException>(() => ComputeThreads.Parse(text));
        Assert.Contains(ComputeThreads.EnvironmentVariable, error.Message);
        Assert.Contains($"'{text}'", error.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(ComputeThreads.MaxCount + 1)]
    public void ABadCountIsRefused(int count) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => ComputeThreads.Count = count);

    // Every kernel that splits work between threads, on one thread, on two and on three (more than this machine's cores):
    // each part computes whole outputs in a fixed order, so the results are bitwise the same; that each path matches
    // its reference is tested in the kernels' own classes.
    [Fact]
    public void KernelsGiveTheSameResultsOnOneThreadAndOnSeveral()
    {
        var one = WithCount(1, RunEveryKernel);
        foreach (int count in new[] { 2, 3 })
        {
            var several = WithCount(count, RunEveryKernel);
            Assert.Equal(one.Count, several.Count);
            foreach (var (name, values) in one)
            {
                Assert.True(values.AsSpan().SequenceEqual(several[name]), $"{name} differs between 1 and {count} threads");
            }
        }
    }

    // The fused forward's per-head path splits a head into parts of equal work, as many as the thread count asks for
    // (PartsPerHead in FlashAttention.cs): these shapes (more than 4 MiB of blocked keys, few heads) take 1 to 4 parts across the counts
    // below, under a causal mask (parts split near T·√(p / parts)) and without one (even splits). The output must
    // have the same bits whichever split ran.
    [Fact]
    public void TheFusedForwardGivesTheSameBitsWhateverItsSplitOfAHead()
    {
        var random = new Random(19);
        foreach (var (mask, batch, t) in new[] { (MaskKind.Causal, 2, 2100), (MaskKind.Bidirectional, 4, 1100) })
        {
            var options = new AttentionOptions(2, 2, 64, 64) { Mask = mask };
            Assert.True(ScaledDotProductAttention.SharedWorkingBytes(options, batch, t) == 0 || !AttentionPanels.Available, "the shape must take the per-head path");
            float[] q = TestData.Uniform(random, batch * t * 2 * 64), k = TestData.Uniform(random, batch * t * 2 * 64), v = TestData.Uniform(random, batch * t * 2 * 64);
            float[] Forward()
            {
                float[] output = new float[q.Length], logSumExp = new float[batch * 2 * t];
                ScaledDotProductAttention.Forward(options, batch, t, t, 0, q, k, v, output, logSumExp);
                return [.. output, .. logSumExp];
            }

            var one = WithCount(1, Forward);
            foreach (int count in new[] { 2, 3, 16 })
            {
                Assert.True(one.AsSpan().SequenceEqual(WithCount(count, Forward)), $"{mask}: the forward differs between 1 and {count} threads");
            }
        }
    }

    private static Dictionary<string, float[]> RunEveryKernel()
    {
        var random = new Random(17);
        var results = new Dictionary<string, float[]>();

        // Gemm (threads: 0 = Count), large enough for several threads.
        int m = 97, n = 300, k = 211;
        float[] a = TestData.Uniform(random, m * k), b = TestData.Uniform(random, k * n), c = new float[m * n];
        Gemm.Multiply(false, false, m, n, k, a, k, b, n, c, n, accumulate: false);
        results["gemm"] = c;

        // Gemm with more rows than one A block: the threads share B blocks and split the rows.
        int mTall = Gemm.Blocking.Rows + 61, nTall = 70, kTall = Gemm.Blocking.Depth + 44;
        float[] aTall = TestData.Uniform(random, mTall * kTall), bTall = TestData.Uniform(random, kTall * nTall);
        float[] cTall = new float[mTall * nTall];
        Gemm.Multiply(false, false, mTall, nTall, kTall, aTall, kTall, bTall, nTall, cTall, nTall, accumulate: false);
        results["gemm-shared-blocks"] = cTall;

        // MatMul's input gradient with a long depth (two depth halves side by side on two threads).
        int rowsLong = 16, depthLong = 16411, columnsLong = 64;
        float[] dyLong = TestData.Uniform(random, rowsLong * depthLong), wLong = TestData.Uniform(random, depthLong * columnsLong);
        float[] dxLong = new float[rowsLong * columnsLong];
        MatMul.Backward(dyLong, new float[rowsLong * columnsLong], wLong, rowsLong, depthLong, columnsLong, dxLong, [], []);
        results["matmul-long-depth"] = dxLong;

        // MatMul's few-rows path and Gemv, both past their parallel thresholds.
        int rows = 3, outputs = 1031, inputs = 769;
        float[] x = TestData.Uniform(random, rows * inputs), w = TestData.Uniform(random, outputs * inputs);
        float[] y = new float[rows * outputs], g = new float[outputs];
        MatMul.Forward(x, w, [], rows, outputs, inputs, y);
        Gemv.Forward(w, x.AsSpan(0, inputs), outputs, inputs, g);
        results["matmul-few-rows"] = y;
        results["gemv"] = g;

        // A product over several matrices sharing x (a decode step's Q, K and V), F32 and Q8_0, past the threshold.
        foreach (var type in new[] { GgmlType.F32, GgmlType.Q8_0 })
        {
            int[] partRows = [300, 11, 700];
            float[] xParts = TestData.Uniform(random, 2 * 256);
            byte[][] partWeights = [.. partRows.Select(r => QuantizedMatVecTests.RandomBlocks(type, r, 256, random))];
            float[][] partOutputs = [.. partRows.Select(r => new float[2 * r])];
            MultiplyParts(type, 256, xParts, 2, partWeights, partRows, partOutputs);
            results[$"quantized-parts-{type}"] = [.. partOutputs.SelectMany(output => output)];
        }

        // One vector: the row dots that multiply in registers (Q4_K two rows at a time, so which rows pair up moves
        // with the chunk ends), odd row counts.
        foreach (var type in new[] { GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q8_0 })
        {
            int[] partRows = [301, 11, 701];
            float[] xOne = TestData.Uniform(random, 256);
            byte[][] partWeights = [.. partRows.Select(r => QuantizedMatVecTests.RandomBlocks(type, r, 256, random))];
            float[][] partOutputs = [.. partRows.Select(r => new float[r])];
            MultiplyParts(type, 256, xOne, 1, partWeights, partRows, partOutputs);
            results[$"quantized-one-vector-{type}"] = [.. partOutputs.SelectMany(output => output)];
        }

        // Cross-entropy with gradients: rows × vocab past its threshold.
        int tokens = 64, vocab = 5003;
        float[] logits = TestData.Uniform(random, tokens * vocab, 5), losses = new float[tokens], logitsGrad = new float[tokens * vocab];
        int[] targets = Enumerable.Range(0, tokens).Select(i => (i * 37) % vocab).ToArray();
        float loss = CrossEntropy.ForwardBackward(logits, targets, tokens, vocab, losses, logitsGrad);
        results["cross-entropy"] = [loss, .. losses, .. logitsGrad];

        // AdamW over several chunks.
        int parameters = 300_001;
        float[] p = TestData.Uniform(random, parameters), grad = TestData.Uniform(random, parameters);
        float[] first = new float[parameters], second = new float[parameters];
        AdamW.Step(p, grad, first, second, new AdamWSettings(1e-3f), 1);
        results["adamw"] = [.. p, .. first, .. second];

        // GELU over several pieces.
        float[] input = TestData.Uniform(random, 100_003, 4), output = new float[input.Length], inputGrad = new float[input.Length];
        Gelu.Forward(input, output);
        Gelu.Backward(input, output, inputGrad);
        results["gelu"] = [.. output, .. inputGrad];

        // Fused attention, forward and backward: many (head, tile) items.
        results["attention"] = Attention(random, new AttentionOptions(4, 2, 16, 8), 150);

        // Fused attention with 64-wide heads (the panel kernels) and one kv head in one sequence: fewer (sequence, kv
        // head) pairs than threads, which once sent two threads down another backward than one thread took. The panel
        // backward splits the pair's query tiles into parts (BackwardParts), whose dK and dV add up in order of parts.
        results["attention-one-kv-head"] = Attention(random, new AttentionOptions(4, 1, 64, 64), 130);

        // Three kv heads, causal, 13 query tiles: four parts per pair, of equal work (shorter parts for later queries).
        results["attention-three-kv-heads"] = Attention(random, new AttentionOptions(6, 3, 64, 64), 600);

        // A decode step (one query) against 1100 cached keys in two sequences: nine parts of the keys per sequence,
        // each over every head, merged in order of parts.
        results["attention-decode-step"] = DecodeStep(random, new AttentionOptions(12, 4, 64, 64), batch: 2, keys: 1100);
        return results;
    }

    // One query per sequence at the end of a cache of `keys` positions: the output and log-sum-exp.
    private static float[] DecodeStep(Random random, AttentionOptions options, int batch, int keys)
    {
        float[] q = TestData.Uniform(random, batch * options.Heads * options.HeadDimQK);
        float[] k = TestData.Uniform(random, batch * keys * options.KvHeads * options.HeadDimQK);
        float[] v = TestData.Uniform(random, batch * keys * options.KvHeads * options.HeadDimV);
        float[] output = new float[batch * options.Heads * options.HeadDimV], logSumExp = new float[batch * options.Heads];
        ScaledDotProductAttention.Forward(options, batch, 1, keys, keys - 1, q, k, v, output, logSumExp);
        return [.. output, .. logSumExp];
    }

    // Self-attention over t positions of random inputs, forward then backward: the output, log-sum-exp and gradients.
    private static float[] Attention(Random random, AttentionOptions options, int t)
    {
        int queryWidth = options.Heads * options.HeadDimQK, keyWidth = options.KvHeads * options.HeadDimQK;
        int valueWidth = options.KvHeads * options.HeadDimV, outputWidth = options.Heads * options.HeadDimV;
        float[] q = TestData.Uniform(random, t * queryWidth), k = TestData.Uniform(random, t * keyWidth), v = TestData.Uniform(random, t * valueWidth);
        float[] output = new float[t * outputWidth], logSumExp = new float[options.Heads * t], outputGrad = TestData.Uniform(random, t * outputWidth);
        float[] qGrad = new float[q.Length], kGrad = new float[k.Length], vGrad = new float[v.Length];
        ScaledDotProductAttention.Forward(options, t, t, 0, q, k, v, output, logSumExp);
        ScaledDotProductAttention.Backward(options, t, t, 0, q, k, v, output, outputGrad, logSumExp, qGrad, kGrad, vGrad);
        return [.. output, .. logSumExp, .. qGrad, .. kGrad, .. vGrad];
    }

    private static unsafe void MultiplyParts(GgmlType type, int columns, float[] x, int vectors, byte[][] weights, int[] rows, float[][] outputs)
    {
        fixed (byte* w0 = weights[0], w1 = weights[1], w2 = weights[2])
        fixed (float* y0 = outputs[0], y1 = outputs[1], y2 = outputs[2])
        {
            QuantizedMatVec.Forward(type, columns, x, vectors, [new(w0, rows[0], y0, null), new(w1, rows[1], y1, null), new(w2, rows[2], y2, null)]);
        }
    }

    private static void WithCount(int count, Action body) => WithCount(count, () =>
    {
        body();
        return 0;
    });

    private static T WithCount<T>(int count, Func<T> body)
    {
        int saved = ComputeThreads.Count;
        try
        {
            ComputeThreads.Count = count;
            return body();
        }
        finally
        {
            ComputeThreads.Count = saved;
        }
    }
}
