using System.Reflection;
using System.Text.Json;
using HeadLens.Cli.Commands.Bench;

namespace HeadLens.Cli.Commands;

internal sealed class BenchCommand : ICommand
{
    public string Name => "bench";

    public CommandSpec Spec { get; } = new(
        "Measure a kernel or a whole model on this machine and print a table (or the contract's JSON with --json); "
        + "progress goes to stderr.",
        [SharedOptions.Json],
        "headlens bench matmul --sizes 1024 --json")
    {
        SubcommandNoun = "suite",
        Subcommands = [.. Suites.Values.Select(suite => new SubcommandSpec(suite.Name, suite.Summary, suite.Options, $"headlens bench {suite.Name}"))],
    };

    private static SortedDictionary<string, IBenchmark> Suites { get; } = new(Assembly.GetExecutingAssembly().GetTypes()
        .Where(type => type.IsClass && !type.IsAbstract && typeof(IBenchmark).IsAssignableFrom(type))
        .Select(type => (IBenchmark)Activator.CreateInstance(type)!)
        .ToDictionary(suite => suite.Name, StringComparer.Ordinal), StringComparer.Ordinal);

    public int Run(CommandArgs args)
    {
        var suite = Suites[args.Positional[0]]; // the parser checked the name
        bool json = args.Flag("json");
        var results = suite.Run(args, Console.Error);
        args.RejectUnknown();
        if (json)
        {
            Console.Out.WriteLine(ToJson(suite.Name, results));
        }
        else
        {
            PrintTable(suite.Name, results);
        }

        return 0;
    }

    internal static string ToJson(string name, IReadOnlyList<BenchResult> results)
    {
        var document = new Dictionary<string, object>
        {
            ["name"] = name,
            ["results"] = results.Select(result =>
            {
                var entry = new Dictionary<string, object> { ["config"] = result.Config };
                foreach (var (figure, value) in result.Figures)
                {
                    entry[figure] = Math.Round(value, 4);
                }

                return entry;
            }).ToList(),
        };
        return JsonSerializer.Serialize(document);
    }

    // The table for people: bytes in binary units, large figures with a suffix, the rest with four digits (the JSON keeps raw numbers).
    internal static string Figure(string name, double value) =>
        name.EndsWith("_bytes", StringComparison.Ordinal) ? Numbers.Bytes(value)
            : Math.Abs(value) >= 1e5 ? Numbers.Count(value)
            : Numbers.Value(value);

    private static void PrintTable(string name, IReadOnlyList<BenchResult> results)
    {
        Console.WriteLine($"bench {name}");
        foreach (var result in results)
        {
            string config = string.Join(" ", result.Config.Select(pair => $"{pair.Key}={pair.Value}"));
            string figures = string.Join("  ", result.Figures.Select(pair =>
                $"{pair.Key}={Figure(pair.Key, pair.Value)}"));
            Console.WriteLine($"  {config,-48} {figures}");
        }
    }
}
