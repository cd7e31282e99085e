using HeadLens.Kernels;
using HeadLens.Tensors;

namespace HeadLens.Cli.Commands.Bench;

/// <summary>
/// `headlens bench matmul`: square products and the products of a GPT-2 124M training step with 256 tokens
/// (B·T = 4·64; `--tokens 256,1024` adds B·T = 4·256), forward and both backward products, on ComputeThreads.Count
/// threads (--threads N) and on 1. `--sizes 2048` limits to squares. The operands live in an arena on 2 MiB pages,
/// as a training step's activations and gradients do. `--blocking 256x1020x4096,384x480x4096` times each product with
/// these cache blockings (KC × MC × NC) too, after this machine's own: a sweep for a machine class the chosen
/// blocking (GemmBlocking) was not measured on.
/// </summary>
internal sealed class MatmulBenchmark : IBenchmark
{
    public string Name => "matmul";

    public string Summary => "Matrix products: squares of 512, 1024 and 2048, and the products of a GPT-2 124M training step (forward and both backward), on --threads threads and on 1.";

    public IReadOnlyList<CliOption> Options { get; } =
    [
        CliOption.Valued("sizes", "N,N", "only squares of these sizes", "512,1024,2048 and the GPT-2 step"),
        CliOption.Valued("tokens", "N,N", "the GPT-2 step's products for these token counts (batch × context)", "256"),
        CliOption.Valued("blocking", "KCxMCxNC,...", "also time each product with these cache blockings (depth × rows × columns)", "this machine's only"),
    ];

    public IReadOnlyList<BenchResult> Run(CommandArgs args, TextWriter progress)
    {
        string? only = args.Get("sizes");
        if (only is not null && args.Get("tokens") is not null)
        {
            throw new UsageException("bench: --sizes times the square products only; --tokens chooses the GPT-2 step's products, which it leaves out: give one of them");
        }

        var configs = new List<(string Op, bool TransposeA, bool TransposeB, int M, int N, int K)>();
        foreach (int size in new[] { 512, 1024, 2048 })
        {
            configs.Add(("square", false, false, size, size, size));
        }

        if (only is null)
        {
            foreach (int tokens in PositiveIntegers(args.Get("tokens") ?? "256", "tokens"))
            {
                // (output features, input features) of each GPT-2 124M linear layer; the last is the vocabulary head.
                foreach (var (outputs, inputs) in new[] { (2304, 768), (768, 768), (3072, 768), (768, 3072), (50257, 768) })
                {
                    configs.Add(("forward", false, true, tokens, outputs, inputs));       // y = x·Wᵀ
                    configs.Add(("input-grad", false, false, tokens, inputs, outputs));   // dx = dy·W
                    configs.Add(("weight-grad", true, false, outputs, inputs, tokens));   // dW += dyᵀ·x
                }
            }
        }
        else
        {
            var sizes = PositiveIntegers(only, "sizes").ToHashSet();
            configs.RemoveAll(config => !sizes.Contains(config.M));
            foreach (int size in sizes.Where(size => !configs.Exists(config => config.M == size)))
            {
                configs.Add(("square", false, false, size, size, size));
            }
        }

        var blockings = Blockings(args.Get("blocking"));
        var blocking = Gemm.Blocking;
        var caches = GemmBlocking.DetectedCaches;
        progress.WriteLine($"matmul blocking KC={blocking.Depth} MC={blocking.Rows} NC={blocking.Columns}, from " + (caches is null
            ? "the fallback cache sizes (the machine reported none)"
            : $"L1d {caches.Level1 >> 10} KiB ({caches.Level1Ways}-way), L2 {caches.Level2 >> 10} KiB, L3 {caches.Level3 >> 20} MiB")
            + (GemmBlocking.WideFmaAtHalfRate
                ? $"; depth sized by L2 (512-bit FMAs issue at half rate here) and split into equal blocks of at most {GemmBlocking.DeepestHalfRateBlock} per product from {GemmBlocking.DeepBlockRows} rows, KC={GemmBlocking.ForFewRows.Depth} MC={GemmBlocking.ForFewRows.Rows} below {blocking.Rows} rows"
                : ""));
        var results = new List<BenchResult>();
        foreach (var (op, transposeA, transposeB, m, n, k) in configs)
        {
            var random = new Random(42);
            var arena = new Arena($"matmul {m}x{n}x{k}", largePages: true);
            arena.Reserve("a", m, k);
            arena.Reserve("b", k, n);
            arena.Reserve("c", m, n);
            arena.Allocate();
            Memory<float> a = Fill(random, arena.Get("a").Memory), b = Fill(random, arena.Get("b").Memory), c = arena.Get("c").Memory;
            int lda = transposeA ? m : k, ldb = transposeB ? k : n;
            foreach (int threads in new[] { ComputeThreads.Count, 1 }.Distinct())
            {
                // null: this machine's own blocking, through the public entry point.
                foreach (var given in blockings.Count == 0 ? [null] : blockings.Prepend(null))
                {
                    double flops = 2.0 * m * n * k;
                    // At least the 15 samples after 3 warm-ups that the matmul check takes of OpenBLAS (compare-
                    // matmul.sh takes up to 50 in 5 s): on a host with slow phases a median of 5 (2048³: 0.3 s) landed
                    // in one far more often than the peer's median of 15 did (an Emerald Rapids Xeon: 2048³ at
                    // 256–300 GFLOP/s here against the peer's steady 309–310 in the same minutes).
                    int iterations = (int)Math.Clamp(3e10 / flops, 15, 50);
                    bool accumulate = op == "weight-grad";
                    Action product = given is null
                        ? () => Gemm.Multiply(transposeA, transposeB, m, n, k, a.Span, lda, b.Span, ldb, c.Span, n, accumulate, threads)
                        : () => Gemm.MultiplyWith(given, transposeA, transposeB, m, n, k, a.Span, lda, b.Span, ldb, c.Span, n, accumulate, threads);
                    double ms = Timing.MedianMilliseconds(product, warmup: 3, iterations, maxSeconds: 5);
                    double gflops = flops / (ms * 1e6);
                    var config = new Dictionary<string, object> { ["m"] = m, ["n"] = n, ["k"] = k, ["threads"] = threads, ["op"] = op };
                    string label = "";
                    if (blockings.Count > 0)
                    {
                        var used = given ?? GemmBlocking.ForProduct(m, k);
                        config["blocking"] = $"{used.Depth}x{used.Rows}x{used.Columns}" + (given is null ? " (this machine's)" : "");
                        label = $" blocking {config["blocking"]}";
                    }

                    progress.WriteLine($"matmul {op,-11} m={m} n={n} k={k} threads={threads}{label}: {ms:F2} ms, {gflops:F0} GFLOP/s");
                    results.Add(new BenchResult(config, new Dictionary<string, double> { ["median_ms"] = ms, ["gflops"] = gflops }));
                }
            }
        }

        return results;
    }

    private static IEnumerable<int> PositiveIntegers(string list, string option) => list.Split(',').Select(text =>
        int.TryParse(text, out int value) && value > 0 ? value : throw new UsageException($"bench: --{option} expects positive integers, got '{text}'")).Distinct();

    // "KCxMCxNC,..." → blockings; MC and NC must be whole register tiles (Gemm.TileRows × Gemm.TileColumns).
    private static List<GemmBlocking> Blockings(string? list)
    {
        var blockings = new List<GemmBlocking>();
        foreach (string text in list?.Split(',', StringSplitOptions.RemoveEmptyEntries) ?? [])
        {
            int[] sizes = text.Split('x').Select(part => int.TryParse(part, out int value) && value > 0 ? value : 0).ToArray();
            if (sizes.Length != 3 || sizes.Contains(0) || sizes[1] % Gemm.TileRows != 0 || sizes[2] % Gemm.TileColumns != 0)
            {
                throw new UsageException(
                    $"bench: --blocking expects KCxMCxNC (positive; MC a multiple of {Gemm.TileRows} and NC of {Gemm.TileColumns}, this machine's register tile), got '{text}'");
            }

            blockings.Add(new GemmBlocking(sizes[0], sizes[1], sizes[2]));
        }

        return blockings;
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
