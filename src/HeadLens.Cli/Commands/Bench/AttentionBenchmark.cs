using HeadLens.Attention;

namespace HeadLens.Cli.Commands.Bench;

/// <summary>
/// `headlens bench attention`: causal self-attention, batch 1, 12 heads × 64, T = 256, 1024, 4096, 16384, for the
/// reference (materialising; only up to T = 1024, where its scalar loops finish in seconds), the fused kernel, a
/// sliding window of 256, and linear attention. `--T 4096` limits the lengths.
/// </summary>
internal sealed class AttentionBenchmark : IBenchmark
{
    private const int Heads = 12;
    private const int HeadDim = 64;
    private const int Window = 256;

    public string Name => "attention";

    public string Summary => "Causal self-attention, 12 heads × 64, for the reference, fused, sliding-window and linear kernels at T = 256 to 16384.";

    public IReadOnlyList<CliOption> Options { get; } = [CliOption.Valued("T", "N,N", "only these sequence lengths", "256,1024,4096,16384")];

    public IReadOnlyList<BenchResult> Run(CommandArgs args, TextWriter progress)
    {
        int[] lengths = [256, 1024, 4096, 16384];
        string? only = args.Get("T");
        if (only is not null)
        {
            lengths = only.Split(',').Select(text => int.TryParse(text, out int t) && t > 0
                ? t : throw new UsageException($"bench: --T expects positive integers, got '{text}'")).ToArray();
        }

        var results = new List<BenchResult>();
        foreach (int t in lengths)
        {
            var random = new Random(1);
            float[] q = Random(random, t * Heads * HeadDim), k = Random(random, t * Heads * HeadDim), v = Random(random, t * Heads * HeadDim);
            float[] output = new float[t * Heads * HeadDim], logSumExp = new float[Heads * t];
            var causal = new AttentionOptions(Heads, Heads, HeadDim, HeadDim);
            foreach (string variant in new[] { "reference", "fused", "window", "linear" })
            {
                if (variant == "reference" && t > 1024)
                {
                    continue;
                }

                Action call = variant switch
                {
                    "reference" => () => ScaledDotProductAttention.ForwardReference(causal, t, t, 0, q, k, v, output, logSumExp),
                    "fused" => () => ScaledDotProductAttention.Forward(causal, t, t, 0, q, k, v, output, logSumExp),
                    "window" => () => ScaledDotProductAttention.Forward(causal with { Window = Window }, t, t, 0, q, k, v, output, logSumExp),
                    _ => () => LinearAttention.Forward(Heads, HeadDim, HeadDim, t, q, k, v, output),
                };
                call(); // warm-up: JIT, thread pool, per-thread scratch
                long allocated = Timing.AllocatedBytes(call);
                long scratch = variant is "fused" or "window"
                    ? ScaledDotProductAttention.WorkingBytesPerThread(causal, t) * HeadLens.Kernels.ComputeThreads.Count
                    : 0;
                int iterations = t >= 16384 ? 3 : t >= 4096 ? 5 : 20;
                double ms = Timing.MedianMilliseconds(call, warmup: 0, iterations, maxSeconds: 30);
                double flops = Flops(variant, t);
                progress.WriteLine($"attention {variant,-9} T={t,5}: {ms,9:F2} ms, {flops / (ms * 1e6),6:F0} GFLOP/s, working memory {(allocated + scratch) / 1e6:F1} MB");
                results.Add(new BenchResult(
                    new Dictionary<string, object> { ["variant"] = variant, ["T"] = t, ["heads"] = Heads, ["head_dim"] = HeadDim },
                    new Dictionary<string, double> { ["median_ms"] = ms, ["gflops"] = flops / (ms * 1e6), ["peak_bytes"] = allocated + scratch }));
            }
        }

        return results;
    }

    // Useful work only: Q·Kᵀ and P·V over the visible (query, key) pairs, 2 FLOPs per multiply-add.
    private static double Flops(string variant, int t)
    {
        double pairs = variant switch
        {
            "window" => Enumerable.Range(0, t).Sum(i => (double)Math.Min(i + 1, Window)),
            "linear" => t * (double)HeadDim, // φ(k)·vᵀ state update and φ(q)·state per token: D·Dv each
            _ => t * (t + 1) / 2.0,
        };
        return 2.0 * 2 * Heads * HeadDim * pairs;
    }

    private static float[] Random(Random random, int count)
    {
        var values = new float[count];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = (float)(random.NextDouble() * 2 - 1);
        }

        return values;
    }
}
