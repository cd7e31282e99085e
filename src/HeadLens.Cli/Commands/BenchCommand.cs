using System.Globalization;
using System.Reflection;
using System.Text.Json;
using HeadLens.Cli.Commands.Bench;

namespace HeadLens.Cli.Commands;

internal sealed class BenchCommand : ICommand
{
    public string Name => "bench";

    public string Usage => "bench (matmul | attention | train | generate | gemv | load | encoder | gguf) [--json]";

    public int Run(CommandArgs args)
    {
        var suites = Assembly.GetExecutingAssembly().GetTypes()
            .Where(type => type.IsClass && !type.IsAbstract && typeof(IBenchmark).IsAssignableFrom(type))
            .Select(type => (IBenchmark)Activator.CreateInstance(type)!)
            .ToDictionary(suite => suite.Name, StringComparer.Ordinal);
        if (args.Positional.Count != 1 || !suites.TryGetValue(args.Positional[0], out var suite))
        {
            string given = args.Positional.Count == 0 ? "nothing" : $"'{string.Join(' ', args.Positional)}'";
            throw new UsageException($"bench: expected one of {string.Join(", ", suites.Keys.Order())}; got {given}");
        }

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

    private static void PrintTable(string name, IReadOnlyList<BenchResult> results)
    {
        Console.WriteLine($"bench {name}");
        foreach (var result in results)
        {
            string config = string.Join(" ", result.Config.Select(pair => $"{pair.Key}={pair.Value}"));
            string figures = string.Join("  ", result.Figures.Select(pair =>
                $"{pair.Key}={pair.Value.ToString("G5", CultureInfo.InvariantCulture)}"));
            Console.WriteLine($"  {config,-48} {figures}");
        }
    }
}
