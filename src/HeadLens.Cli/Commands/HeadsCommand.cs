using System.Text.Json;
using HeadLens.Analysis;

namespace HeadLens.Cli.Commands;

internal sealed class HeadsCommand : ICommand
{
    public string Name => "heads";

    public string Usage => "heads    --model MODEL [--text TEXT] [--json] [--from WORD --to WORD]";

    public int Run(CommandArgs args)
    {
        var (model, tokenizer, _) = ModelInput.LoadModel(args);
        bool json = args.Flag("json");
        int[]? ids = args.Has("text") || args.Has("ids") ? ModelInput.ReadIds(args, model, tokenizer) : null;
        int seed = args.GetInt("seed", 0);
        string? from = args.Get("from"), to = args.Get("to");
        args.RejectUnknown();
        if ((from is null) != (to is null))
        {
            throw new UsageException("heads: --from and --to go together");
        }

        if (from is not null)
        {
            if (ids is null || tokenizer is null)
            {
                throw new UsageException("heads: --from/--to need --text and a model with a tokenizer");
            }

            return RankPair(model, tokenizer, ids, from, to!, json);
        }

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

    // Ranks every head by how much the last token of the first occurrence of `from` attends to the tokens of the
    // last occurrence of `to` before it ("it" → "animal": coreference; a verb → its subject; a noun → its article).
    private static int RankPair(Model.Transformer model, Tokenization.ITokenizer tokenizer, int[] ids, string from, string to, bool json)
    {
        var spans = TokenSpans(tokenizer, ids);
        string text = string.Concat(spans.Select(span => span.Text));
        int fromAt = FindWord(text, from, 0, text.Length, $"--from '{from}'");
        int toAt = FindWordBefore(text, to, fromAt, $"--to '{to}'");
        int query = spans.FindLastIndex(span => span.Start < fromAt + from.Length);
        var keys = Enumerable.Range(0, spans.Count).Where(i => spans[i].Start < toAt + to.Length && spans[i].Start + spans[i].Text.Length > toAt).ToArray();
        var patterns = AttentionRecorder.Record(model, ids);
        int t = ids.Length, heads = model.Config.Heads;
        var ranked = new List<(int Layer, int Head, double Attention)>();
        for (int l = 0; l < patterns.Length; l++)
        {
            for (int h = 0; h < heads; h++)
            {
                ranked.Add((l, h, keys.Sum(k => (double)patterns[l][(h * t + query) * t + k])));
            }
        }

        ranked.Sort((a, b) => b.Attention.CompareTo(a.Attention));
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["from"] = from,
                ["to"] = to,
                ["query_position"] = query,
                ["key_positions"] = keys,
                ["heads"] = ranked.Select(r => new Dictionary<string, object> { ["layer"] = r.Layer, ["head"] = r.Head, ["attention"] = Math.Round(r.Attention, 4) }),
            }));
            return 0;
        }

        Console.WriteLine($"attention from '{from}' (token {query}) to '{to}' (tokens {string.Join(", ", keys)}), strongest heads first:");
        foreach (var (layer, head, attention) in ranked.Take(10))
        {
            Console.WriteLine($"  layer {layer,2} head {head,2}: {attention:F3}");
        }

        return 0;
    }

    private static List<(int Start, string Text)> TokenSpans(Tokenization.ITokenizer tokenizer, int[] ids)
    {
        var spans = new List<(int, string)>();
        int position = 0;
        string previous = "";
        for (int i = 0; i < ids.Length; i++)
        {
            // Decode prefixes so multi-byte characters split across byte tokens land on the token that completes them.
            string decoded = tokenizer.Decode(ids.AsSpan(0, i + 1));
            string piece = decoded.Length >= previous.Length && decoded.StartsWith(previous.TrimEnd('\uFFFD'), StringComparison.Ordinal)
                ? decoded[previous.TrimEnd('\uFFFD').Length..] : tokenizer.TokenText(ids[i]);
            spans.Add((position, piece));
            position += piece.Length;
            previous = decoded;
        }

        return spans;
    }

    private static int FindWord(string text, string word, int start, int end, string what)
    {
        int at = WordAt(text, word, start, end);
        return at >= 0 ? at : throw new HeadLensException($"{what} is not a word of the text");
    }

    // The last whole-word occurrence of `word` that ends before `before`.
    private static int FindWordBefore(string text, string word, int before, string what)
    {
        int found = -1;
        for (int at = WordAt(text, word, 0, before); at >= 0; at = WordAt(text, word, at + 1, before))
        {
            found = at;
        }

        return found >= 0 ? found : throw new HeadLensException($"{what} does not occur before the --from word");
    }

    // The first whole-word occurrence of `word` in [start, end), or −1.
    private static int WordAt(string text, string word, int start, int end)
    {
        for (int at = text.IndexOf(word, start, StringComparison.Ordinal); at >= 0 && at + word.Length <= end; at = text.IndexOf(word, at + 1, StringComparison.Ordinal))
        {
            bool left = at == 0 || !char.IsLetterOrDigit(text[at - 1]);
            bool right = at + word.Length == text.Length || !char.IsLetterOrDigit(text[at + word.Length]);
            if (left && right)
            {
                return at;
            }
        }

        return -1;
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
