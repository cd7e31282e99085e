using System.Text.Json;
using HeadLens.Analysis;

namespace HeadLens.Cli.Commands;

internal sealed class HeadsCommand : ICommand
{
    public string Name => "heads";

    public string Usage => "heads    --model MODEL [--text TEXT] [--json]";

    public int Run(CommandArgs args)
    {
        var (model, tokenizer, _) = ModelInput.LoadModel(args);
        bool json = args.Flag("json");
        int[]? ids = args.Has("text") || args.Has("ids") ? ModelInput.ReadIds(args, model, tokenizer) : null;
        int seed = args.GetInt("seed", 0);
        args.RejectUnknown();
        var summaries = HeadTaxonomy.Analyse(model, tokenizer, ids, seed);
        if (json)
        {
            var heads = summaries.Select(s => new Dictionary<string, object>
            {
                ["layer"] = s.Layer,
                ["head"] = s.Head,
                ["kind"] = s.Kind,
                ["scores"] = s.Scores.ToDictionary(pair => pair.Key, pair => Math.Round(pair.Value, 4)),
            });
            Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object> { ["heads"] = heads }));
            return 0;
        }

        Print(summaries);
        return 0;
    }

    internal static void Print(IReadOnlyList<HeadSummary> summaries)
    {
        string Score(HeadSummary s, string key) => s.Scores.TryGetValue(key, out double value) ? value.ToString("F2", System.Globalization.CultureInfo.InvariantCulture) : "-";
        Console.WriteLine("layer head  kind             prev  dup  induct  sink  delim  local  broad  distance");
        foreach (var s in summaries)
        {
            Console.WriteLine($"{s.Layer,5} {s.Head,4}  {s.Kind,-15} {Score(s, "previous_token"),5} {Score(s, "duplicate_token"),4} {Score(s, "induction"),7} {Score(s, "sink"),5} {Score(s, "delimiter"),6} {Score(s, "local"),6} {Score(s, "broad"),6} {s.MeanDistance,9:F1}");
        }

        Console.WriteLine();
        foreach (var group in summaries.GroupBy(s => s.Layer))
        {
            Console.WriteLine($"layer {group.Key}: mean attention distance {group.Average(s => s.MeanDistance):F1} tokens, entropy {group.Average(s => s.Scores["broad"]):F2}; kinds: " +
                string.Join(", ", group.GroupBy(s => s.Kind).Select(kind => $"{kind.Count()} {kind.Key}")));
        }
    }
}
