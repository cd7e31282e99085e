using HeadLens.Analysis;
using HeadLens.Model;

namespace HeadLens.Cli.Commands.Bench;

/// <summary>
/// `headlens bench circuits`: every composition score of a model (<see cref="Circuits.Compositions"/>, what
/// `headlens circuits` computes) — by default of a randomly initialised preset (gpt2: 9,504 head pairs × Q, K, V),
/// or of the model --model names. Median of three runs after one warm-up. Its peer is bench/compare-compositions.sh.
/// </summary>
internal sealed class CircuitsBenchmark : IBenchmark
{
    public string Name => "circuits";

    public string Summary => "Every head pair's Q-, K- and V-composition score of a model (headlens circuits), from its weights.";

    public IReadOnlyList<CliOption> Options { get; } =
    [
        SharedOptions.Preset with { Default = "gpt2", Description = "the shape of the random model to score" },
        CliOption.Valued("model", "MODEL", "score this model's weights instead (a directory, a file, or minilm)", "a random --preset model"),
    ];

    public IReadOnlyList<BenchResult> Run(CommandArgs args, TextWriter progress)
    {
        string preset = args.Get("preset") ?? "gpt2";
        string? path = args.Get("model");
        var model = path is null ? Transformer.Create(ModelPresets.Get(preset), seed: 1) : ModelInput.Load(path).Model;
        var config = model.Config;
        int pairs = 0;
        double ms = Timing.MedianMilliseconds(() => pairs = Circuits.Compositions(model).Count, warmup: 1, iterations: 3);
        string name = path ?? $"random {preset}";
        progress.WriteLine($"circuits {name}: {pairs} head pairs × Q, K, V in {ms:F0} ms");
        return [new BenchResult(
            new Dictionary<string, object>
            {
                ["model"] = name,
                ["layers"] = config.Layers,
                ["heads"] = config.Heads,
                ["channels"] = config.Channels,
                ["pairs"] = pairs,
            },
            new Dictionary<string, double> { ["median_ms"] = ms })];
    }
}
