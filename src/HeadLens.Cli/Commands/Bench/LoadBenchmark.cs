using HeadLens.Checkpoints;
using HeadLens.Model;

namespace HeadLens.Cli.Commands.Bench;

/// <summary>
/// `headlens bench load`: writes a randomly initialised preset (default gpt2, ~500 MB) as a Hugging Face directory
/// in a temporary folder and times loading it back (validation, Conv1D transposes and c_attn split included).
/// </summary>
internal sealed class LoadBenchmark : IBenchmark
{
    public string Name => "load";

    public string Summary => "Loading a safetensors checkpoint of a preset's shape (written once to a temporary file).";

    public IReadOnlyList<CliOption> Options { get; } = [SharedOptions.Preset with { Default = "gpt2" }];

    public IReadOnlyList<BenchResult> Run(CommandArgs args, TextWriter progress)
    {
        string preset = args.Get("preset") ?? "gpt2";
        string directory = Path.Combine(Path.GetTempPath(), $"headlens-load-{Environment.ProcessId}");
        try
        {
            ModelFiles.Save(Transformer.Create(ModelPresets.Get(preset), seed: 1), null, directory);
            long bytes = new FileInfo(Path.Combine(directory, "model.safetensors")).Length;
            double ms = Timing.MedianMilliseconds(() => ModelFiles.Load(directory), warmup: 1, iterations: 3);
            progress.WriteLine($"load {preset}: {bytes / 1e6:F0} MB in {ms:F0} ms ({bytes / 1e6 / (ms / 1000):F0} MB/s)");
            return [new BenchResult(
                new Dictionary<string, object> { ["preset"] = preset, ["bytes"] = bytes },
                new Dictionary<string, double> { ["median_ms"] = ms })];
        }
        finally
        {
            if (Directory.Exists(directory))
            {
                Directory.Delete(directory, recursive: true);
            }
        }
    }
}
