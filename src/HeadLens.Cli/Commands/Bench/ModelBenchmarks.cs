using HeadLens.Inference;
using HeadLens.Kernels;
using HeadLens.Model;
using HeadLens.Training;

namespace HeadLens.Cli.Commands.Bench;

/// <summary>
/// `headlens bench train`: one full training step (forward, backward, AdamW) of a randomly initialised preset
/// (default gpt2, 124M) at batch 4 × context 64 and 256 — the shapes of ../shared/peers/baselines.py --sections gpt
/// (`--gpt-ctx 64,256`). `--context 64` (or a comma list) chooses the lengths.
/// </summary>
internal sealed class TrainBenchmark : IBenchmark
{
    public string Name => "train";

    public string Summary => "One full training step (forward, backward, AdamW) of a randomly initialised preset.";

    public IReadOnlyList<CliOption> Options { get; } =
    [
        SharedOptions.Preset with { Default = "gpt2" },
        CliOption.Valued("batch", "B", "sequences per step", "4"),
        CliOption.Valued("context", "T,T", "tokens per sequence: one length or a comma list", "64,256"),
    ];

    public IReadOnlyList<BenchResult> Run(CommandArgs args, TextWriter progress)
    {
        string preset = args.Get("preset") ?? "gpt2";
        int batch = args.GetInt("batch", 4, 1, 1024);
        int[] contexts = (args.Get("context") ?? "64,256").Split(',').Select(text =>
            int.TryParse(text, out int t) && t is > 0 and <= 1 << 16 ? t : throw new UsageException($"bench train: --context expects lengths from 1 to 65536, got '{text}'")).ToArray();
        var config = ModelPresets.Get(preset);
        long before = GC.GetTotalMemory(forceFullCollection: true);
        var model = Transformer.Create(config, seed: 1);
        var optimizer = new AdamWOptimizer(model, new AdamWSettings(3e-4f, WeightDecay: 0.1f));
        var results = new List<BenchResult>();
        foreach (int context in contexts)
        {
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
            results.Add(new BenchResult(
                new Dictionary<string, object> { ["preset"] = preset, ["batch"] = batch, ["context"] = context },
                new Dictionary<string, double> { ["median_ms"] = ms, ["tokens_per_s"] = batch * context / (ms / 1000), ["peak_bytes"] = peak }));
        }

        return results;
    }
}

/// <summary>
/// `headlens bench generate`: greedy decoding of a randomly initialised preset (default gpt2) with the KV cache,
/// batch 1, a 16-token prompt and 64 new tokens — the shape of baselines.py's generate_kvcache. With `--dtype bf16`
/// the same model decodes in fp32 and then from bfloat16 weights, in the same run, for the ratio.
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
        SharedOptions.Dtype with { Description = "bf16: decode in fp32, then from bfloat16 weight copies, in one run (for the ratio)" },
    ];

    public IReadOnlyList<BenchResult> Run(CommandArgs args, TextWriter progress)
    {
        string preset = args.Get("preset") ?? "gpt2";
        int promptLength = args.GetInt("prompt", 16, 1, 1 << 16), newTokens = args.GetInt("new-tokens", 64, 1, 1 << 16);
        string dtype = args.Get("dtype") ?? "fp32";
        if (dtype is not ("fp32" or "bf16"))
        {
            throw new UsageException($"bench generate: --dtype must be fp32 or bf16, not '{dtype}'");
        }

        var config = ModelPresets.Get(preset);
        long before = GC.GetTotalMemory(forceFullCollection: true);
        var model = Transformer.Create(config, seed: 1);
        var random = new Random(3);
        int[] prompt = Enumerable.Range(0, promptLength).Select(_ => random.Next(config.VocabSize)).ToArray();
        var greedy = new Sampler(new SamplingSettings { Temperature = 0f });
        var results = new List<BenchResult>();
        double fp32TokensPerSecond = 0;
        foreach (string pass in dtype == "bf16" ? new[] { "fp32", "bf16" } : ["fp32"])
        {
            if (pass == "bf16")
            {
                model.UseBf16ForDecoding();
            }

            int produced = 0;
            void Generate() => produced = Generator.Generate(model, prompt, newTokens, greedy).Count();
            Generate();
            double ms = Timing.MedianMilliseconds(Generate, warmup: 0, iterations: 3, maxSeconds: 60);
            long peak = GC.GetTotalMemory(forceFullCollection: false) - before;
            double tokensPerSecond = produced / (ms / 1000);

            // The prompt's pass and the first token (sampled from its logits) alone, to tell the decode steps' rate
            // apart from the prompt's: with a long prompt the whole run's rate is mostly the prompt's.
            void Prompt() => _ = Generator.Generate(model, prompt, 1, greedy).Count();
            double promptMs = Timing.MedianMilliseconds(Prompt, warmup: 0, iterations: 3, maxSeconds: 60);
            double decodeTokensPerSecond = (produced - 1) / (Math.Max(ms - promptMs, 1e-3) / 1000);
            string ratio = pass == "bf16" ? $" — {tokensPerSecond / fp32TokensPerSecond:F2}× fp32" : "";
            progress.WriteLine($"generate {preset} ({pass}) prompt {promptLength} + {produced} new tokens: {tokensPerSecond:F1} tokens/s " +
                $"(the prompt {promptMs:F0} ms, then {decodeTokensPerSecond:F1} tokens/s), {peak / 1e6:F0} MB{ratio}");
            fp32TokensPerSecond = pass == "fp32" ? tokensPerSecond : fp32TokensPerSecond;
            var resultConfig = new Dictionary<string, object> { ["preset"] = preset, ["prompt"] = promptLength, ["new_tokens"] = newTokens };
            if (dtype == "bf16")
            {
                resultConfig["dtype"] = pass;
            }

            results.Add(new BenchResult(resultConfig,
                new Dictionary<string, double>
                {
                    ["tokens_per_s"] = tokensPerSecond,
                    ["median_ms"] = ms,
                    ["peak_bytes"] = peak,
                    ["prompt_ms"] = promptMs,
                    ["decode_tokens_per_s"] = decodeTokensPerSecond,
                }));
        }

        return results;
    }
}
