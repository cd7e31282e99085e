using HeadLens.Kernels;

namespace HeadLens.Cli.Commands.Bench;

/// <summary>
/// `headlens bench gemv`: one decoded token's matrix–vector products at GPT-2 124M's shapes, through MatMul.Forward's
/// few-rows path (what DecodeStep uses today), Gemv.Forward (fp32) and Gemv.ForwardBf16 (bf16 weights), in the same
/// process. Each weight matrix is
/// repeated until the set is well past the last-level cache, as the 12 layers of a real model are, so the figure is
/// memory bandwidth: GB/s of weights streamed, and weights per second (bf16 moves half the bytes per weight).
/// </summary>
internal sealed class GemvBenchmark : IBenchmark
{
    public string Name => "gemv";

    public string Summary => "One decoded token's matrix–vector products at GPT-2 124M's shapes, fp32 and bf16 weights: memory bandwidth.";

    public IReadOnlyList<CliOption> Options { get; } = [];

    public IReadOnlyList<BenchResult> Run(CommandArgs args, TextWriter progress)
    {
        int threads = ComputeThreads.Count; // --threads N / HEADLENS_THREADS, read by Program
        var results = new List<BenchResult>();
        // attention output (768 × 768), MLP up (3072 × 768), MLP down (768 × 3072), vocabulary projection (50257 × 768)
        foreach (var (n, k) in new (int N, int K)[] { (768, 768), (3072, 768), (768, 3072), (50257, 768) })
        {
            var random = new Random(n + k);
            int copies = (int)Math.Max(1, 256L * 1024 * 1024 / (4L * n * k));
            var weights = Enumerable.Range(0, copies).Select(_ => Enumerable.Range(0, n * k).Select(_ => (float)random.NextDouble() - 0.5f).ToArray()).ToArray();
            var x = Enumerable.Range(0, k).Select(_ => (float)random.NextDouble()).ToArray();
            var y = new float[n];
            double bytes = 4.0 * n * k * copies;
            double matMul = Timing.MedianMilliseconds(() =>
            {
                foreach (var w in weights)
                {
                    MatMul.Forward(x, w, [], 1, n, k, y);
                }
            }, warmup: 2, iterations: 15);
            double gemv = Timing.MedianMilliseconds(() =>
            {
                foreach (var w in weights)
                {
                    Gemv.Forward(w, x, n, k, y, threads: threads);
                }
            }, warmup: 2, iterations: 15);
            var packed = weights.Select(w =>
            {
                var bf16 = new ushort[w.Length];
                Gemv.ToBf16(w, bf16);
                return bf16;
            }).ToArray();
            double gemvBf16 = Timing.MedianMilliseconds(() =>
            {
                foreach (var w in packed)
                {
                    Gemv.ForwardBf16(w, x, n, k, y, threads: threads);
                }
            }, warmup: 2, iterations: 15);
            progress.WriteLine($"gemv [{n}, {k}] × {copies}: MatMul.Forward {bytes / matMul / 1e6:F1} GB/s, Gemv.Forward {bytes / gemv / 1e6:F1} GB/s ({matMul / gemv:F2}×), " +
                $"Gemv.ForwardBf16 {bytes / 2 / gemvBf16 / 1e6:F1} GB/s ({matMul / gemvBf16:F2}× the weights per second)");
            foreach (var (path, ms, bytesPerWeight) in new[] { ("matmul", matMul, 4), ("gemv", gemv, 4), ("gemv-bf16", gemvBf16, 2) })
            {
                results.Add(new BenchResult(
                    new Dictionary<string, object> { ["path"] = path, ["n"] = n, ["k"] = k, ["threads"] = threads },
                    new Dictionary<string, double> { ["median_ms"] = ms / copies, ["gb_per_s"] = bytes / 4 * bytesPerWeight / ms / 1e6, ["gweights_per_s"] = bytes / 4 / ms / 1e6 }));
            }
        }

        return results;
    }
}
