using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using HeadLens.Analysis;

namespace HeadLens.Cli.Commands;

/// <summary>
/// Composition scores (<see cref="Circuits.Compositions"/>): from the weights alone, how much of what each head
/// writes each later head can read with its queries, keys or values — the pairs ranked per input, each head named by
/// its kind, against what independent random matrices score.
/// </summary>
internal sealed class CircuitsCommand : ICommand
{
    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    public string Name => "circuits";

    public CommandSpec Spec { get; } = new(
        "Composition scores from the weights alone (Elhage et al. 2021): for every head and every head of a later layer, how much "
        + "of what the earlier one writes the later one can read with its queries (Q), keys (K: how induction heads find the "
        + "token after a match) or values (V), on a scale where 1 is all of it; the strongest pairs per input, against what "
        + "independent random matrices score. No text is needed; --receiver or --sender keeps the pairs of one head.",
        [
            SharedOptions.Model,
            SharedOptions.Tokenizer,
            CliOption.Valued("input", "query|key|value", "rank only the compositions into this input", "all three")
                with { Choices = ["query", "key", "value"] },
            CliOption.Valued("receiver", "L.H", "only the pairs into this head (from every head of the layers before it)"),
            CliOption.Valued("sender", "L.H", "only the pairs out of this head (into every head of the layers after it)"),
            CliOption.Valued("top", "N", "how many pairs each ranking lists", "10"),
            CliOption.Valued("seed", "S", "random seed of the probe sequences that name each head's kind", "0"),
            SharedOptions.Json,
        ],
        "headlens circuits --input key --top 5");

    public int Run(CommandArgs args)
    {
        var clock = Stopwatch.StartNew();
        var (model, tokenizer, path) = ModelInput.LoadModel(args);
        var config = model.Config;
        bool json = args.Flag("json");
        HeadInput? input = args.Get("input") is { } inputName ? Enum.GetValues<HeadInput>().Single(i => PatchCommand.InputName(i) == inputName) : null;
        var receiver = args.Get("receiver") is { } receiverText ? PatchCommand.ParseHead(receiverText, "receiver", config, Name) : ((int Layer, int Head)?)null;
        var sender = args.Get("sender") is { } senderText ? PatchCommand.ParseHead(senderText, "sender", config, Name) : ((int Layer, int Head)?)null;
        int top = args.GetInt("top", 10, 1, 1_000_000);
        int seed = args.GetInt("seed", 0);
        args.RejectUnknown();
        if (receiver is not null && sender is not null)
        {
            throw new UsageException("circuits: give --receiver (the head pairs go into) or --sender (the head they come from), not both");
        }

        if (config.Layers < 2)
        {
            throw new HeadLensException($"circuits: {path} has one layer; composition needs a head in a later layer to read what another wrote");
        }

        if (receiver is { Layer: 0 } first)
        {
            throw new UsageException($"circuits: --receiver {first.Layer}.{first.Head} is in the first layer: no earlier head writes into it");
        }

        if (sender is { } last && last.Layer == config.Layers - 1)
        {
            throw new UsageException($"circuits: --sender {last.Layer}.{last.Head} is in the last layer: no later head reads what it writes");
        }

        List<Composition> scores;
        if (receiver is { } into)
        {
            scores = Circuits.CompositionsInto(model, into.Layer, into.Head);
        }
        else if (sender is { } from)
        {
            scores = Circuits.CompositionsFrom(model, from.Layer, from.Head);
        }
        else
        {
            var progress = new SweepProgress(2 * config.Layers - 1, "composed", "steps (each layer's heads whitened, then every pair into each layer)");
            scores = Circuits.Compositions(model, progress.Report);
        }

        var kinds = HeadTaxonomy.Analyse(model, tokenizer, null, seed).ToDictionary(s => (s.Layer, s.Head), s => s.Kind);
        double random = Circuits.RandomBaseline(config);
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(Document(path, config, scores, kinds, random)));
            return 0;
        }

        Print(path, config, scores, kinds, random, input, receiver, sender, top);
        Console.WriteLine($"({scores.Count} pairs × 3 inputs in {clock.Elapsed.TotalSeconds.ToString("F1", Invariant)} s, the heads' kinds included)");
        return 0;
    }

    private static Dictionary<string, object> Document(string path, Model.ModelConfig config, List<Composition> scores,
        Dictionary<(int, int), string> kinds, double random) => new()
        {
            ["model"] = path,
            ["layers"] = config.Layers,
            ["heads"] = config.Heads,
            ["channels"] = config.Channels,
            ["random_baseline"] = Math.Round(random, 6),
            ["kinds"] = kinds.OrderBy(k => k.Key).ToDictionary(k => $"{k.Key.Item1}.{k.Key.Item2}", k => k.Value),
            ["compositions"] = scores.Select(s => new Dictionary<string, object>
            {
                ["sender"] = new[] { s.SourceLayer, s.SourceHead },
                ["receiver"] = new[] { s.Layer, s.Head },
                ["query"] = Math.Round(s.Query, 6),
                ["key"] = Math.Round(s.Key, 6),
                ["value"] = Math.Round(s.Value, 6),
            }).ToList(),
        };

    private static void Print(string path, Model.ModelConfig config, List<Composition> scores, Dictionary<(int, int), string> kinds,
        double random, HeadInput? only, (int Layer, int Head)? receiver, (int Layer, int Head)? sender, int top)
    {
        string Head(int layer, int head) => $"{layer}.{head} {kinds[(layer, head)]}";
        string which = receiver is { } r ? $" into head {Head(r.Layer, r.Head)}" : sender is { } s ? $" out of head {Head(s.Layer, s.Head)}" : "";
        Console.WriteLine($"Composition{which} in {path} ({config.Layers} layers × {config.Heads} heads, {config.Channels} channels), from the weights alone:");
        Console.WriteLine("how much of what an earlier head writes a later head can read with its queries (Q), keys (K) or values (V)");
        Console.WriteLine($"(Elhage et al. 2021; 1 = all of it, independent random matrices score about {random.ToString("F3", Invariant)}).");
        if (config.QkNorm)
        {
            Console.WriteLine("This model normalises each head's queries and keys: Q and K scores read its projections without that norm.");
        }

        foreach (var input in only is { } one ? [one] : (HeadInput[])[HeadInput.Key, HeadInput.Query, HeadInput.Value])
        {
            Console.WriteLine();
            Console.WriteLine(input switch
            {
                HeadInput.Key => "K-composition: the later head's keys read the earlier head's output (where it looks moves: an induction head reads a previous-token head)",
                HeadInput.Query => "Q-composition: the later head's queries read the earlier head's output (what it looks for moves)",
                _ => "V-composition: the later head's values read the earlier head's output (what it moves was written by the first: a virtual head)",
            });
            var ranked = scores.OrderByDescending(p => p.Of(input)).Take(top).ToList();
            int width = Math.Max(8, ranked.Max(p => Math.Max(Head(p.SourceLayer, p.SourceHead).Length, Head(p.Layer, p.Head).Length)));
            Console.WriteLine($"  {"sender".PadRight(width)}     {"receiver".PadRight(width)}  {"score",6}  × random");
            foreach (var pair in ranked)
            {
                double score = pair.Of(input);
                Console.WriteLine($"  {Head(pair.SourceLayer, pair.SourceHead).PadRight(width)}  →  {Head(pair.Layer, pair.Head).PadRight(width)}  "
                    + $"{score.ToString("F3", Invariant),6}  {(score / random).ToString("F1", Invariant),6}×");
            }
        }

        Console.WriteLine();
    }
}
