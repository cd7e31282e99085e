using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using HeadLens.Analysis;

namespace HeadLens.Cli.Commands;

/// <summary>
/// Activation patching (<see cref="ActivationPatching"/>): a clean and a corrupted text, and for each head (or each
/// position of each layer's stream, attention output or MLP output) how much of the clean answer comes back when that one activation is copied from the
/// clean run into the corrupted one.
/// </summary>
internal sealed class PatchCommand : ICommand
{
    // A metric gap below this (nats or logits) is one the model hardly makes: its percentages are said to be noisy.
    private const double SmallGap = 0.1;

    // A long text's position rows whose patches all move the metric by less than this fraction are left out of the table.
    private const double QuietRow = 0.005;

    public string Name => "patch";

    public CommandSpec Spec { get; } = new(
        "Activation patching: run a clean and a corrupted text of the same length, then the corrupted one again with one "
        + "head's output (or, at one position, the stream entering a layer, or a layer's attention or MLP output) copied from the clean run, and show how much "
        + "of the clean answer each patch brings back (0% = the corrupted run, 100% = the clean one).",
        [
            SharedOptions.Model,
            SharedOptions.Tokenizer,
            CliOption.Valued("clean", "TEXT", "the text whose answer is to be explained") with { Group = "clean", Required = true },
            CliOption.Valued("clean-ids", "1,2,3", "the clean text as token ids") with { Group = "clean", Required = true },
            CliOption.Valued("corrupted", "TEXT", "the same text with the part the answer depends on changed (as many tokens)") with { Group = "corrupted", Required = true },
            CliOption.Valued("corrupted-ids", "1,2,3", "the corrupted text as token ids") with { Group = "corrupted", Required = true },
            CliOption.Valued("answer", "TOKEN", "the token the clean text should be followed by (its first token; a token id for a model without a tokenizer)", "the clean run's top next token")
                with { Group = "answer" },
            CliOption.Valued("answer-id", "ID", "the answer as a token id") with { Group = "answer" },
            CliOption.Valued("wrong", "TOKEN", "the token the corrupted text calls for: the metric is logit(answer) − logit(wrong); without it, log p(answer)", "the corrupted run's top next token, when no answer is given either")
                with { Group = "wrong" },
            CliOption.Valued("wrong-id", "ID", "the wrong answer as a token id") with { Group = "wrong" },
            CliOption.Valued("over", "heads|stream|attention|mlp", "patch each head's output (pattern · V) at every position; or, one position at a time, "
                + "the stream entering each layer (hook_resid_pre), each layer's attention output (hook_attn_out) or its MLP output (hook_mlp_out)", "heads")
                with { Choices = [.. SiteNames.Keys] },
            CliOption.Valued("layer", "L", "patch only this layer", "every layer"),
            CliOption.Valued("top", "N", "how many patches the ranking lists", "10"),
            CliOption.Valued("seed", "S", "random seed of the probe sequences that name each head's kind", "0"),
            SharedOptions.Json,
        ],
        "headlens patch --clean \"the word is kqzj; the word is kq\" --corrupted \"the word is kqvj; the word is kq\"");

    public int Run(CommandArgs args)
    {
        var clock = Stopwatch.StartNew();
        var (model, tokenizer, path) = ModelInput.LoadModel(args);
        var config = model.Config;
        bool json = args.Flag("json");
        int[] clean = ModelInput.ReadIds(args, model, tokenizer, "clean", "clean-ids");
        int[] corrupted = ModelInput.ReadIds(args, model, tokenizer, "corrupted", "corrupted-ids");
        string? answerText = args.Get("answer"), wrongText = args.Get("wrong");
        int? answerId = args.Has("answer-id") ? args.GetInt("answer-id", 0, 0) : null;
        int? wrongId = args.Has("wrong-id") ? args.GetInt("wrong-id", 0, 0) : null;
        var site = SiteNames[(args.Get("over") ?? "heads").ToLowerInvariant()];
        int? layer = args.Has("layer") ? args.GetInt("layer", 0, 0, config.Layers - 1) : null;
        int top = args.GetInt("top", 10, 1, 100_000);
        int seed = args.GetInt("seed", 0);
        args.RejectUnknown();

        int? answer = answerText is null ? answerId : ModelInput.OneToken(answerText, tokenizer, "answer");
        int? wrong = wrongText is null ? wrongId : ModelInput.OneToken(wrongText, tokenizer, "wrong");
        ModelInput.PackForRepeatedInference(model);
        int patches = (layer is null ? config.Layers : 1) * (site == PatchSite.Heads ? config.Heads : clean.Length);
        var progress = new SweepProgress(patches, "patched", site == PatchSite.Heads ? "heads" : "positions");
        var result = ActivationPatching.Run(model, clean, corrupted, site, answer, wrong, layer is { } l ? [l] : null, progress.Report);
        var kinds = site == PatchSite.Heads
            ? HeadTaxonomy.Analyse(model, tokenizer, clean, seed).ToDictionary(s => (s.Layer, s.Head), s => s.Kind)
            : null;

        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(Document(result, tokenizer, kinds)));
            return 0;
        }

        Print(result, path, tokenizer, kinds, top);
        Console.WriteLine();
        Console.WriteLine($"({clock.Elapsed.TotalSeconds:F1} s)");
        return 0;
    }

    /// <summary>--over's values and the JSON's "over".</summary>
    internal static readonly Dictionary<string, PatchSite> SiteNames = new(StringComparer.Ordinal)
    {
        ["heads"] = PatchSite.Heads,
        ["stream"] = PatchSite.Stream,
        ["attention"] = PatchSite.Attention,
        ["mlp"] = PatchSite.Mlp,
    };

    /// <summary>The metric's name in the JSON.</summary>
    internal static string MetricName(PatchMetric metric) => metric switch
    {
        PatchMetric.LogitDifference => "logit_difference",
        PatchMetric.LogProbability => "log_probability",
        _ => "embedding_similarity",
    };

    private static Dictionary<string, object> Document(PatchingResult result, Tokenization.ITokenizer? tokenizer, Dictionary<(int, int), string>? kinds)
    {
        bool heads = result.Site == PatchSite.Heads;
        var document = new Dictionary<string, object>
        {
            ["clean_ids"] = result.CleanIds,
            ["corrupted_ids"] = result.CorruptedIds,
            ["over"] = SiteNames.Single(pair => pair.Value == result.Site).Key,
            ["metric"] = MetricName(result.Metric),
            ["clean"] = Math.Round(result.Clean, 6),
            ["corrupted"] = Math.Round(result.Corrupted, 6),
            ["patches"] = result.Effects.OrderByDescending(e => e.Recovered).Select(e =>
            {
                var entry = new Dictionary<string, object> { ["layer"] = e.Layer, [heads ? "head" : "position"] = e.Index };
                if (kinds is not null)
                {
                    entry["kind"] = kinds[(e.Layer, e.Index)];
                }

                entry["value"] = Math.Round(e.Value, 6);
                entry["recovered"] = Math.Round(e.Recovered, 6);
                return entry;
            }),
        };
        foreach (var (key, token) in new[] { ("answer", result.Answer), ("wrong", result.Wrong) })
        {
            if (token is { } id)
            {
                document[key] = id;
                if (tokenizer is not null)
                {
                    document[key + "_token"] = tokenizer.TokenText(id);
                }
            }
        }

        if (ModelInput.TokenTexts(tokenizer, result.CleanIds) is { } cleanTokens)
        {
            document["clean_tokens"] = cleanTokens;
            document["corrupted_tokens"] = ModelInput.TokenTexts(tokenizer, result.CorruptedIds)!;
        }

        return document;
    }

    private static void Print(PatchingResult result, string path, Tokenization.ITokenizer? tokenizer,
        Dictionary<(int, int), string>? kinds, int top)
    {
        var invariant = CultureInfo.InvariantCulture;
        string Token(int id, int width = 12) => ModelInput.Show(tokenizer?.TokenText(id), id, width);
        string Text(int[] ids) => tokenizer is null ? string.Join(',', ids)
            : ModelInput.Show(tokenizer.Decode(ids), ids[^1], width: 72);
        int[] differ = [.. Enumerable.Range(0, result.CleanIds.Length).Where(i => result.CleanIds[i] != result.CorruptedIds[i])];
        bool heads = result.Site == PatchSite.Heads;

        Console.WriteLine(heads
            ? $"Activation patching on {path}: each head's output (pattern · V, every position) copied from the clean run into the corrupted one, in turn."
            : $"Activation patching on {path}: {What(result.Site)}, at one position, copied from the clean run into the corrupted one, in turn.");
        Console.WriteLine($"  clean:     {Text(result.CleanIds)} ({result.CleanIds.Length} tokens)");
        Console.WriteLine($"  corrupted: {Text(result.CorruptedIds)}");
        Console.WriteLine($"  they differ at {(differ.Length == 1 ? "position" : "positions")} "
            + string.Join(", ", differ.Select(i => $"{i} ({Token(result.CleanIds[i])} → {Token(result.CorruptedIds[i])})")));
        string F(double value) => value.ToString("+0.000;-0.000;0.000", invariant);
        Console.WriteLine(result.Metric switch
        {
            PatchMetric.LogitDifference => $"Metric: logit({Token(result.Answer!.Value)}) − logit({Token(result.Wrong!.Value)}) after the text: {F(result.Clean)} clean, {F(result.Corrupted)} corrupted.",
            PatchMetric.LogProbability => $"Metric: log p({Token(result.Answer!.Value)}) after the text: {F(result.Clean)} clean (p {Math.Exp(result.Clean).ToString("F3", invariant)}), "
                + $"{F(result.Corrupted)} corrupted (p {Math.Exp(result.Corrupted).ToString("F3", invariant)}).",
            _ => $"Metric: cosine of the sentence embedding (mean-pooled, as `embed`) to the clean text's: 1 clean, {result.Corrupted.ToString("F4", invariant)} corrupted.",
        });
        Console.WriteLine("Each cell: how much of that gap one patch brings back (0% = as corrupted, 100% = as clean).");
        double gap = Math.Abs(result.Clean - result.Corrupted);
        if (gap < SmallGap)
        {
            Console.WriteLine($"The gap is small ({gap.ToString("G2", invariant)}): the model barely tells the two texts apart here, so these "
                + "percentages are of a difference it hardly makes; pick texts whose answers differ.");
        }
        Console.WriteLine();

        if (heads)
        {
            int perLayer = result.Effects.Max(e => e.Index) + 1;
            Console.WriteLine($"layer{string.Concat(Enumerable.Range(0, perLayer).Select(h => $"{"H" + h.ToString(invariant),8}"))}");
            foreach (var row in result.Effects.GroupBy(e => e.Layer))
            {
                var cells = Enumerable.Range(0, perLayer).Select(h => row.FirstOrDefault(e => e.Index == h) is { } e ? Percent(e.Recovered) : "");
                Console.WriteLine($"{row.Key,5}{string.Concat(cells.Select(cell => $"{cell,8}"))}");
            }
        }
        else
        {
            // A long text's rows where no patch moves the metric are left out of the table (the JSON has them all).
            var shown = result.Effects.Select(e => e.Layer).Distinct().ToList();
            bool Moves(int position) => result.Effects.Any(e => e.Index == position && Math.Abs(e.Recovered) >= QuietRow);
            int[] rows = [.. Enumerable.Range(0, result.CleanIds.Length).Where(i => result.CleanIds.Length <= 24 || Moves(i))];
            Console.WriteLine($"{"position",-8}  {"token",-27}{string.Concat(shown.Select(l => $"{"L" + l.ToString(invariant),8}"))}");
            foreach (int i in rows)
            {
                string token = result.CleanIds[i] == result.CorruptedIds[i] ? Token(result.CleanIds[i])
                    : $"{Token(result.CleanIds[i])}→{Token(result.CorruptedIds[i])}";
                var cells = shown.Select(l => Percent(result.Effects.Single(e => e.Layer == l && e.Index == i).Recovered));
                Console.WriteLine($"{i,8}  {token,-27}{string.Concat(cells.Select(cell => $"{cell,8}"))}");
            }

            if (rows.Length < result.CleanIds.Length)
            {
                Console.WriteLine($"({result.CleanIds.Length - rows.Length} positions where no patch moves the metric by {100 * QuietRow:0.#}% or more are left out.)");
            }
        }

        Console.WriteLine();
        var ranked = result.Effects.OrderByDescending(e => e.Recovered).Take(top).ToList();
        Console.WriteLine(heads ? $"The {ranked.Count} heads that bring back most:" : $"The {ranked.Count} patches that bring back most:");
        foreach (var e in ranked)
        {
            Console.WriteLine(heads
                ? $"  layer {e.Layer,2} head {e.Index,2}  {Percent(e.Recovered),8}  {kinds![(e.Layer, e.Index)],-15} {Describe(result.Metric)} {F(e.Value)}"
                : $"  layer {e.Layer,2} position {e.Index,3} {Token(result.CleanIds[e.Index]),-12} {Percent(e.Recovered),8}  {Describe(result.Metric)} {F(e.Value)}");
        }
    }

    private static string Describe(PatchMetric metric) => ActivationPatching.Describe(metric);

    private static string What(PatchSite site) => site switch
    {
        PatchSite.Stream => "the stream entering each layer",
        PatchSite.Attention => "each layer's attention output (all its heads)",
        _ => "each layer's MLP output",
    };

    private static string Percent(double fraction) => (100 * fraction).ToString("+0.0'%';-0.0'%';0.0'%'", CultureInfo.InvariantCulture);
}
