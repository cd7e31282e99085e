namespace HeadLens.Cli.Commands.Bench;

/// <summary>One `headlens bench NAME` suite. Discovered by reflection: adding a suite is adding a file here.</summary>
internal interface IBenchmark
{
    /// <summary>The word after `headlens bench`: matmul, attention, train, generate, gemv, load, encoder.</summary>
    string Name { get; }

    /// <summary>What it measures, for `headlens help bench NAME`.</summary>
    string Summary { get; }

    /// <summary>The options it reads besides --json and --threads (declared, so they parse, show in help and complete).</summary>
    IReadOnlyList<CliOption> Options { get; }

    /// <summary>Runs every configuration, reporting progress lines to <paramref name="progress"/> (stderr).</summary>
    IReadOnlyList<BenchResult> Run(CommandArgs args, TextWriter progress);
}

/// <summary>
/// One configuration's measurement. In JSON the figures sit beside "config":
/// {"config":{"m":2048,...}, "median_ms":12.3, "gflops":410.2}.
/// </summary>
internal sealed record BenchResult(IReadOnlyDictionary<string, object> Config, IReadOnlyDictionary<string, double> Figures);
