using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using HeadLens.Analysis;

namespace HeadLens.Cli.Commands;

/// <summary>
/// Names every head (scores and kinds: docs/head-scores.md), summarises each layer, and with --from/--to ranks the
/// heads by how much one word attends to another.
/// </summary>
internal sealed class HeadsCommand : ICommand
{
    /// <summary>The sentence --from/--to read when no --text is given (the coreference example of the literature).</summary>
    public const string PairText = "The animal didn't cross the street because it was too tired";

    public string Name => "heads";

    public CommandSpec Spec { get; } = new(
        "Name what every head does (previous-token, induction, sink, ...; docs/head-scores.md) with its scores and a "
        + "summary per layer; with --from/--to, rank the heads by how much one word attends to another.",
        [
            SharedOptions.Model,
            SharedOptions.Tokenizer,
            .. SharedOptions.Input(required: false),
            CliOption.Valued("from", "WORD[@N]", "the attending word; @N picks its N-th occurrence", "its first occurrence"),
            CliOption.Valued("to", "WORD[@N]", "the attended word; @N picks its N-th occurrence", "the nearest occurrence before --from"),
            CliOption.Valued("seed", "S", "random seed of the probe sequences", "0"),
            SharedOptions.Activations,
            SharedOptions.Json,
        ],
        "headlens heads --text \"the cat saw the dog and the cat ran\" --from cat@2 --to dog");

    public int Run(CommandArgs args)
    {
        var clock = Stopwatch.StartNew();
        var (model, tokenizer, _) = ModelInput.LoadModel(args);
        ModelInput.ApplyActivations(args, model);
        bool json = args.Flag("json");
        string? from = args.Get("from");
        string? to = args.Get("to");
        if ((from is null) != (to is null))
        {
            throw new UsageException("heads: give both --from WORD and --to WORD");
        }

        foreach (var (option, word) in (ReadOnlySpan<(string, string?)>)[("from", from), ("to", to)])
        {
            if (word is not null && string.IsNullOrWhiteSpace(word))
            {
                throw new UsageException($"heads: --{option} needs a word of the text, not an empty one");
            }
        }

        int[]? ids = args.Has("text") || args.Has("ids") ? ModelInput.ReadIds(args, model, tokenizer) : null;
        int seed = args.GetInt("seed", 0);
        args.RejectUnknown();
        var summaries = HeadTaxonomy.Analyse(model, tokenizer, ids, seed);
        var layers = HeadQuestions.Layers(summaries);

        List<PairAttention>? pairs = null;
        int[] pairKeys = [];
        int pairQuery = -1;
        string pairDescription = "";
        if (from is not null)
        {
            if (tokenizer is null)
            {
                throw new HeadLensException("--from/--to need the model's tokenizer (this model has none)");
            }

            var pairIds = ids ?? ModelInputIds(tokenizer, PairText, model.Config.ContextLength);
            var (fromWord, fromOccurrence) = WordReference("from", from);
            var (toWord, toOccurrence) = WordReference("to", to!);
            var fromTokens = HeadQuestions.WordPositions(tokenizer, pairIds, fromWord, occurrence: fromOccurrence);
            int[] toTokens;
            try
            {
                toTokens = HeadQuestions.WordPositions(tokenizer, pairIds, toWord, before: fromTokens[^1], toOccurrence);
            }
            catch (HeadLensException error) when (fromOccurrence is null)
            {
                throw new HeadLensException($"{error.Message} (--from {fromWord} is its first occurrence; --from {fromWord}@2 picks the second)");
            }

            var patterns = AttentionRecorder.Record(model, pairIds);
            pairs = HeadQuestions.RankPair(patterns, model.Config.Heads, pairIds.Length, fromTokens[^1], toTokens);
            (pairQuery, pairKeys) = (fromTokens[^1], toTokens);
            pairDescription = $"attention from '{from}' (token {fromTokens[^1]}) to '{to}' (tokens {string.Join(",", toTokens)})"
                + (ids is null ? $" in \"{PairText}\"" : "");
        }

        if (json)
        {
            var document = new Dictionary<string, object>
            {
                ["heads"] = summaries.Select(s => new Dictionary<string, object>
                {
                    ["layer"] = s.Layer,
                    ["head"] = s.Head,
                    ["kind"] = s.Kind,
                    ["scores"] = s.Scores.ToDictionary(pair => pair.Key, pair => Math.Round(pair.Value, 4)),
                    ["mean_distance"] = Math.Round(s.MeanDistance, 3),
                }),
                ["layers"] = layers.Select(layer => new Dictionary<string, object>
                {
                    ["layer"] = layer.Layer,
                    ["mean_distance"] = Math.Round(layer.MeanDistance, 3),
                    ["entropy"] = Math.Round(layer.Entropy, 4),
                    ["kinds"] = layer.KindShares.Where(share => share.Value > 0).ToDictionary(share => share.Key, share => Math.Round(share.Value, 4)),
                }),
            };
            if (pairs is not null)
            {
                document["pair"] = new Dictionary<string, object>
                {
                    ["from"] = from!,
                    ["to"] = to!,
                    ["query_position"] = pairQuery,
                    ["key_positions"] = pairKeys,
                    ["heads"] = pairs.Select(pair => new Dictionary<string, object> { ["layer"] = pair.Layer, ["head"] = pair.Head, ["attention"] = Math.Round(pair.Weight, 4) }),
                };
            }

            Console.WriteLine(JsonSerializer.Serialize(document));
            return 0;
        }

        Print(summaries);
        if (pairs is not null)
        {
            Console.WriteLine();
            Console.WriteLine($"Heads ranked by {pairDescription}:");
            foreach (var pair in pairs.Take(10))
            {
                var kind = summaries.First(s => s.Layer == pair.Layer && s.Head == pair.Head).Kind;
                Console.WriteLine($"  layer {pair.Layer,2} head {pair.Head,2}  {pair.Weight,6:F3}  ({kind})");
            }
        }

        Console.WriteLine();
        Console.WriteLine($"({clock.Elapsed.TotalSeconds:F1} s)");
        return 0;
    }

    // WORD or WORD@N (the N-th occurrence, from 1). A word that itself contains '@' is written with @N after it.
    private static (string Word, int? Occurrence) WordReference(string option, string text)
    {
        int at = text.LastIndexOf('@');
        if (at <= 0 || at == text.Length - 1 || !text[(at + 1)..].All(char.IsAsciiDigit))
        {
            return (text, null);
        }

        return int.TryParse(text[(at + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n >= 1
            ? (text[..at], n)
            : throw new UsageException($"heads: --{option} {text}: the occurrence after @ counts from 1");
    }

    private static int[] ModelInputIds(HeadLens.Tokenization.ITokenizer tokenizer, string text, int context)
    {
        int[] ids = tokenizer.EncodeForModel(text);
        return ids.Length <= context ? ids : throw new HeadLensException($"the sample sentence has {ids.Length} tokens, more than the model's context of {context}");
    }

    /// <summary>The table of heads (kind and scores) and the per-layer summary.</summary>
    internal static void Print(IReadOnlyList<HeadSummary> summaries)
    {
        static string Score(HeadSummary s, string key) =>
            s.Scores.TryGetValue(key, out double value) ? value.ToString("F2", CultureInfo.InvariantCulture) : "-";
        // Encoders add the next-token and self columns.
        bool encoder = summaries.Any(s => s.Scores.ContainsKey(HeadKinds.NextTokenScore));
        Console.WriteLine("layer head  kind             prev" + (encoder ? "  next  self" : "") + "   dup  induct  sink  delim  local  broad  copy  distance");
        foreach (var s in summaries)
        {
            string extra = encoder ? $" {Score(s, HeadKinds.NextTokenScore),5} {Score(s, HeadKinds.SelfScore),5}" : "";
            Console.WriteLine($"{s.Layer,5} {s.Head,4}  {s.Kind,-15} {Score(s, HeadKinds.PreviousTokenScore),5}{extra} {Score(s, HeadKinds.DuplicateTokenScore),5} "
                + $"{Score(s, HeadKinds.InductionScore),7} {Score(s, HeadKinds.SinkScore),5} {Score(s, HeadKinds.DelimiterScore),6} {Score(s, HeadKinds.LocalScore),6} "
                + $"{Score(s, HeadKinds.BroadScore),6} {Score(s, HeadKinds.CopyingScore),5} {s.MeanDistance,9:F1}");
        }

        if (summaries.Count > 0)
        {
            // The same line the viewer shows under its legend: which probe each score is read from.
            var probes = summaries[0].Sources.GroupBy(pair => pair.Value, pair => pair.Key)
                .Select(group => $"{group.Key}: {string.Join(", ", group)}");
            Console.WriteLine($"Scores from — {string.Join("; ", probes)}.");
        }

        Console.WriteLine();
        Console.WriteLine("Per layer (mean attention distance in tokens, mean normalised entropy, kinds):");
        foreach (var layer in HeadQuestions.Layers(summaries))
        {
            int count = summaries.Count(s => s.Layer == layer.Layer);
            string kinds = string.Join(", ", layer.KindShares.Where(share => share.Value > 0)
                .Select(share => $"{Math.Round(share.Value * count)} {share.Key}"));
            Console.WriteLine($"  layer {layer.Layer,2}: distance {layer.MeanDistance,5:F1}, entropy {layer.Entropy:F2}; {kinds}");
        }
    }
}
