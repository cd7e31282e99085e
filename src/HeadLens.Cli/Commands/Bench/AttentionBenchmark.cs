using HeadLens.Attention;
using HeadLens.Tensors;

namespace HeadLens.Cli.Commands.Bench;

/// <summary>
/// `headlens bench attention`: causal self-attention, 12 heads × 64, T = 256, 1024, 4096, 16384, for the reference
/// (materialising; only up to T = 1024 at batch 1, where its scalar loops finish in seconds), the fused kernel and
/// its backward, a sliding window of 256, and linear attention (forward and backward). `--T 4096` limits the lengths;
/// `--batch 1,8` adds batched calls (fused forward and backward only: one call for the whole batch, as a training step
/// makes it); `--kv-heads 1` (or 2, 3, 4, 6) shares each kv head between query heads, as multi-query and grouped-query models do
/// (fused forward and backward only). `--decode` times decode steps instead: one query at the end of T cached keys
/// in each of 12 layers' own caches, as a model's step reads them (a long cache then comes from memory, not from
/// the cache of the previous call), per token.
/// </summary>
internal sealed class AttentionBenchmark : IBenchmark
{
    private const int Heads = 12;
    private const int HeadDim = 64;
    private const int Window = 256;

    public string Name => "attention";

    public string Summary => "Causal self-attention, 12 heads × 64, for the reference, fused and linear (forward and backward) and sliding-window kernels at T = 256 to 16384.";

    public IReadOnlyList<CliOption> Options { get; } =
    [
        CliOption.Valued("T", "N,N", "only these sequence lengths", "256,1024,4096,16384"),
        CliOption.Valued("batch", "N,N", "batch sizes (above 1: the fused forward and backward only)", "1"),
        CliOption.Valued("kv-heads", "N", "key/value heads shared by the 12 query heads (below 12: the fused forward and backward only)", "12"),
        CliOption.Flag("decode", "decode steps instead: one query against T cached keys in each of 12 layers, per token"),
    ];

    // The layers of a decode step in the --decode variant: GPT-2 124M's count.
    private const int DecodeLayers = 12;

    public IReadOnlyList<BenchResult> Run(CommandArgs args, TextWriter progress)
    {
        int[] lengths = Numbers(args.Get("T"), "--T") ?? [256, 1024, 4096, 16384];
        int[] batches = Numbers(args.Get("batch"), "--batch") ?? [1];
        string? kvText = args.Get("kv-heads");
        int kvHeads = kvText is null ? Heads : int.TryParse(kvText, out int parsed) ? parsed : 0;
        if (kvHeads < 1 || Heads % kvHeads != 0)
        {
            throw new UsageException($"bench: --kv-heads expects a divisor of {Heads} (1, 2, 3, 4, 6 or 12), got '{kvText}'");
        }

        if (args.Flag("decode"))
        {
            return Decode(lengths, batches, kvHeads, progress);
        }

        var results = new List<BenchResult>();
        foreach (int batch in batches)
        {
            foreach (int t in lengths)
            {
                var random = new Random(1);
                int n = batch * t * Heads * HeadDim, kvN = batch * t * kvHeads * HeadDim;
                // From an arena, as a model's activations are: each buffer starts on a 64-byte boundary, as PyTorch's
                // tensors do (a plain array's data starts 8-byte aligned; T = 256 measured ~7% faster aligned).
                var arena = new Arena($"attention B={batch} T={t}");
                foreach (var (name, length) in new[] { ("q", n), ("k", kvN), ("v", kvN), ("outputGrad", n), ("output", n), ("logSumExp", batch * Heads * t), ("qGrad", n), ("kGrad", kvN), ("vGrad", kvN) })
                {
                    arena.Reserve(name, length);
                }

                arena.Allocate();
                Memory<float> q = Fill(random, arena.Get("q").Memory), k = Fill(random, arena.Get("k").Memory), v = Fill(random, arena.Get("v").Memory);
                Memory<float> outputGrad = Fill(random, arena.Get("outputGrad").Memory), output = arena.Get("output").Memory, logSumExp = arena.Get("logSumExp").Memory;
                Memory<float> qGrad = arena.Get("qGrad").Memory, kGrad = arena.Get("kGrad").Memory, vGrad = arena.Get("vGrad").Memory;
                var causal = new AttentionOptions(Heads, kvHeads, HeadDim, HeadDim);
                string[] variants = batch == 1 && kvHeads == Heads ? ["reference", "fused", "backward", "window", "linear", "linear-backward"] : ["fused", "backward"];
                foreach (string variant in variants)
                {
                    if (variant == "reference" && t > 1024)
                    {
                        continue;
                    }

                    Action call = variant switch
                    {
                        "reference" => () => ScaledDotProductAttention.ForwardReference(causal, t, t, 0, q.Span, k.Span, v.Span, output.Span, logSumExp.Span),
                        "fused" => () => ScaledDotProductAttention.Forward(causal, batch, t, t, 0, q.Span, k.Span, v.Span, output.Span, logSumExp.Span),
                        "backward" => () => ScaledDotProductAttention.Backward(causal, batch, t, t, 0, q.Span, k.Span, v.Span, output.Span, outputGrad.Span, logSumExp.Span, qGrad.Span, kGrad.Span, vGrad.Span),
                        "window" => () => ScaledDotProductAttention.Forward(causal with { Window = Window }, t, t, 0, q.Span, k.Span, v.Span, output.Span, logSumExp.Span),
                        "linear" => () => LinearAttention.Forward(Heads, HeadDim, HeadDim, t, q.Span, k.Span, v.Span, output.Span),
                        _ => () => LinearAttention.Backward(Heads, HeadDim, HeadDim, t, q.Span, k.Span, v.Span, outputGrad.Span, qGrad.Span, kGrad.Span, vGrad.Span),
                    };
                    if (variant == "backward")
                    {
                        ScaledDotProductAttention.Forward(causal, batch, t, t, 0, q.Span, k.Span, v.Span, output.Span, logSumExp.Span); // its inputs
                    }

                    call(); // warm-up: JIT, thread pool, per-thread scratch
                    long allocated = Timing.AllocatedBytes(call);
                    long scratch = variant is "fused" or "window" or "backward"
                        ? (ScaledDotProductAttention.WorkingBytesPerThread(causal, t, backward: variant == "backward") * HeadLens.Kernels.ComputeThreads.Count)
                            + (variant == "fused" ? ScaledDotProductAttention.SharedWorkingBytes(causal, batch, t) : 0)
                            + (variant == "backward" ? ScaledDotProductAttention.BackwardSharedBytes(causal, batch, t, t) : 0)
                        : variant is "linear" or "linear-backward"
                            ? LinearAttention.WorkingBytesPerThread(HeadDim, HeadDim, t, backward: variant == "linear-backward") * Math.Min(Heads, HeadLens.Kernels.ComputeThreads.Count)
                            : 0;
                    double work = (double)batch * t * t;
                    // As many samples as the attention check takes of PyTorch's SDPA (9 at T = 4096, 30 at T = 1024, 200
                    // at T = 256), so that both medians span about as long a stretch of a host whose speed changes for
                    // seconds at a time.
                    // The reference (the textbook path: 1.3–1.5 s a call at T = 1024) is there for scale, and no peer is
                    // set against it: a few seconds of samples, where the full count took half of a default run's ~65 s.
                    int iterations = work >= 16384.0 * 16384 ? 3 : work >= 4096.0 * 4096 ? 9 : work >= 1024.0 * 1024 ? 30 : 200;
                    double ms = Timing.MedianMilliseconds(call, warmup: 0, iterations, maxSeconds: variant == "reference" ? 4 : 30);
                    double flops = batch * Flops(variant, t);
                    progress.WriteLine($"attention {variant,-9} B={batch} T={t,5}{(kvHeads == Heads ? "" : $" kv={kvHeads}")}: {ms,9:F2} ms, {flops / (ms * 1e6),6:F0} GFLOP/s, working memory {(allocated + scratch) / 1e6:F1} MB");
                    results.Add(new BenchResult(
                        new Dictionary<string, object> { ["variant"] = variant, ["T"] = t, ["heads"] = Heads, ["kv_heads"] = kvHeads, ["head_dim"] = HeadDim, ["batch"] = batch },
                        new Dictionary<string, double> { ["median_ms"] = ms, ["gflops"] = flops / (ms * 1e6), ["peak_bytes"] = allocated + scratch }));
                }
            }
        }

        return results;
    }

    // One decode step's attention per layer: each sequence's one query against its T cached keys, DecodeLayers layers
    // with their own keys and values. Figures per token (all layers); gflops counts Q·Kᵀ and P·V.
    private static List<BenchResult> Decode(int[] lengths, int[] batches, int kvHeads, TextWriter progress)
    {
        var results = new List<BenchResult>();
        var options = new AttentionOptions(Heads, kvHeads, HeadDim, HeadDim);
        foreach (int batch in batches)
        {
            foreach (int t in lengths)
            {
                var random = new Random(1);
                long cacheFloats = (long)batch * t * kvHeads * HeadDim;
                double bytes = (double)cacheFloats * 2 * DecodeLayers * sizeof(float);
                if (bytes > 0.5 * GC.GetGCMemoryInfo().TotalAvailableMemoryBytes || cacheFloats > Array.MaxLength)
                {
                    throw new UsageException($"bench: --decode at B={batch} T={t} needs {bytes / 1e9:F1} GB of caches ({cacheFloats} floats a layer's keys): more than half of this machine's memory, or than one array holds");
                }

                float[][] keys = [.. Enumerable.Range(0, DecodeLayers).Select(_ => Random(random, (int)cacheFloats))];
                float[][] values = [.. Enumerable.Range(0, DecodeLayers).Select(_ => Random(random, (int)cacheFloats))];
                float[] q = Random(random, batch * Heads * HeadDim), output = new float[q.Length], logSumExp = new float[batch * Heads];
                void Step()
                {
                    for (int layer = 0; layer < DecodeLayers; layer++)
                    {
                        ScaledDotProductAttention.Forward(options, batch, 1, t, t - 1, q, keys[layer], values[layer], output, logSumExp);
                    }
                }

                // Past tiered compilation, as the other benchmarks' warm-ups: a decode step is short.
                double ms = Timing.MedianMilliseconds(Step, warmup: 3, iterations: 100, maxSeconds: 30, minWarmupSeconds: 2);
                long allocated = Timing.AllocatedBytes(Step);
                double flops = (double)batch * DecodeLayers * 2.0 * 2 * Heads * HeadDim * t;
                progress.WriteLine($"attention decode    B={batch} T={t,5}{(kvHeads == Heads ? "" : $" kv={kvHeads}")}: {ms,9:F3} ms per token ({DecodeLayers} layers), {bytes / (ms * 1e6),5:F1} GB/s of cache read");
                results.Add(new BenchResult(
                    new Dictionary<string, object> { ["variant"] = "decode", ["T"] = t, ["heads"] = Heads, ["kv_heads"] = kvHeads, ["head_dim"] = HeadDim, ["batch"] = batch, ["layers"] = DecodeLayers },
                    new Dictionary<string, double> { ["median_ms"] = ms, ["gflops"] = flops / (ms * 1e6), ["peak_bytes"] = allocated, ["cache_bytes"] = bytes }));
            }
        }

        return results;
    }

    private static int[]? Numbers(string? text, string option) =>
        text?.Split(',').Select(item => int.TryParse(item, out int value) && value > 0
            ? value : throw new UsageException($"bench: {option} expects positive integers, got '{item}'")).ToArray();

    // Useful work only: Q·Kᵀ and P·V over the visible (query, key) pairs, 2 FLOPs per multiply-add. The backward
    // counts its four products (dP = dO·Vᵀ, dV, dK, dQ: twice the forward), not the recomputed S, as PyTorch's
    // FLOP counter does. Linear attention's backward likewise counts twice its forward (it executes three times:
    // the forward sweep again, then three D·Dv products per token back).
    private static double Flops(string variant, int t)
    {
        double pairs = variant switch
        {
            "window" => Enumerable.Range(0, t).Sum(i => (double)Math.Min(i + 1, Window)),
            "linear" or "linear-backward" => t * (double)HeadDim, // φ(k)·vᵀ state update and φ(q)·state per token: D·Dv each
            _ => t * (t + 1) / 2.0,
        };
        return (variant is "backward" or "linear-backward" ? 2 : 1) * 2.0 * 2 * Heads * HeadDim * pairs;
    }

    private static float[] Random(Random random, int count)
    {
        var values = new float[count];
        Fill(random, values);
        return values;
    }

    private static Memory<float> Fill(Random random, Memory<float> values)
    {
        var span = values.Span;
        for (int i = 0; i < span.Length; i++)
        {
            span[i] = (float)(random.NextDouble() * 2 - 1);
        }

        return values;
    }
}
