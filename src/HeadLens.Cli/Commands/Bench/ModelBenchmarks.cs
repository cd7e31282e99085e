using HeadLens.Inference;
using HeadLens.Kernels;
using HeadLens.Model;
using HeadLens.Training;

namespace HeadLens.Cli.Commands.Bench;

/// <summary>
/// `headlens bench train`: one full training step (forward, backward, AdamW) of a randomly initialised preset
/// (default gpt2, 124M) at batch 4 × context 64 — the shape of ../shared/peers/baselines.py --sections gpt.
/// </summary>
internal sealed class TrainBenchmark : IBenchmark
{
    public string Name => "train";

    public string Summary => "One full training step (forward, backward, AdamW) of a randomly initialised preset.";

    public IReadOnlyList<CliOption> Options { get; } =
    [
        SharedOptions.Preset with { Default = "gpt2" },
        CliOption.Valued("batch", "B", "sequences per step", "4"),
        CliOption.Valued("context", "T", "tokens per sequence", "64"),
    ];

    public IReadOnlyList<BenchResult> Run(CommandArgs args, TextWriter progress)
    {
        string preset = args.Get("preset") ?? "gpt2";
        int batch = args.GetInt("batch", 4, 1, 1024), context = args.GetInt("context", 64, 1, 1 << 16);
        var config = ModelPresets.Get(preset);
        long before = GC.GetTotalMemory(forceFullCollection: true);
        var model = Transformer.Create(config, seed: 1);
        var optimizer = new AdamWOptimizer(model, new AdamWSettings(3e-4f, WeightDecay: 0.1f));
        var random = new Random(2);
        int[] ids = Enumerable.Range(0, batch * context).Select(_ => random.Next(config.VocabSize)).ToArray();
        int[] targets = Enumerable.Range(0, batch * context).Select(_ => random.Next(config.VocabSize)).ToArray();
        void Step()
        {
            model.ZeroGradients();
            model.Forward(ids, targets, batch, context);
            model.Backward();
            optimizer.Step(3e-4f);
        }

        double ms = Timing.MedianMilliseconds(Step, warmup: 2, iterations: 7, maxSeconds: 40);
        long peak = GC.GetTotalMemory(forceFullCollection: false) - before;
        // Where a step goes (medians of the parts, measured separately after the whole-step timing).
        double forward = Timing.MedianMilliseconds(() => model.Forward(ids, targets, batch, context), 0, 3);
        double backward = Timing.MedianMilliseconds(() => { model.ZeroGradients(); model.Backward(); }, 0, 3);
        double update = Timing.MedianMilliseconds(() => optimizer.Step(3e-4f), 0, 3);
        progress.WriteLine($"  forward {forward:F0} ms, zero + backward {backward:F0} ms, AdamW {update:F0} ms");
        progress.WriteLine($"train {preset} batch {batch} context {context}: {ms:F0} ms/step, {batch * context / (ms / 1000):F0} tokens/s, {peak / 1e6:F0} MB");
        return [new BenchResult(
            new Dictionary<string, object> { ["preset"] = preset, ["batch"] = batch, ["context"] = context },
            new Dictionary<string, double> { ["median_ms"] = ms, ["tokens_per_s"] = batch * context / (ms / 1000), ["peak_bytes"] = peak })];
    }
}

/// <summary>
/// `headlens bench generate`: greedy decoding of a randomly initialised preset (default gpt2) with the KV cache,
/// batch 1, a 16-token prompt and 64 new tokens — the shape of baselines.py's generate_kvcache.
/// </summary>
internal sealed class GenerateBenchmark : IBenchmark
{
    public string Name => "generate";

    public string Summary => "Greedy decoding of a randomly initialised preset with the KV cache: a prompt, then new tokens one at a time.";

    public IReadOnlyList<CliOption> Options { get; } =
    [
        SharedOptions.Preset with { Default = "gpt2" },
        CliOption.Valued("prompt", "N", "prompt tokens", "16"),
        CliOption.Valued("new-tokens", "N", "tokens to generate", "64"),
    ];

    public IReadOnlyList<BenchResult> Run(CommandArgs args, TextWriter progress)
    {
        string preset = args.Get("preset") ?? "gpt2";
        int promptLength = args.GetInt("prompt", 16, 1, 1 << 16), newTokens = args.GetInt("new-tokens", 64, 1, 1 << 16);
        var config = ModelPresets.Get(preset);
        long before = GC.GetTotalMemory(forceFullCollection: true);
        var model = Transformer.Create(config, seed: 1);
        var random = new Random(3);
        int[] prompt = Enumerable.Range(0, promptLength).Select(_ => random.Next(config.VocabSize)).ToArray();
        var greedy = new Sampler(new SamplingSettings { Temperature = 0f });
        int produced = 0;
        void Generate() => produced = Generator.Generate(model, prompt, newTokens, greedy).Count();
        Generate();
        double ms = Timing.MedianMilliseconds(Generate, warmup: 0, iterations: 3, maxSeconds: 60);
        long peak = GC.GetTotalMemory(forceFullCollection: false) - before;
        double tokensPerSecond = produced / (ms / 1000);
        progress.WriteLine($"generate {preset} prompt {promptLength} + {produced} new tokens: {tokensPerSecond:F1} tokens/s, {peak / 1e6:F0} MB");
        return [new BenchResult(
            new Dictionary<string, object> { ["preset"] = preset, ["prompt"] = promptLength, ["new_tokens"] = newTokens },
            new Dictionary<string, double> { ["tokens_per_s"] = tokensPerSecond, ["median_ms"] = ms, ["peak_bytes"] = peak })];
    }
}
