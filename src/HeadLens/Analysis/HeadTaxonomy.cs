using HeadLens.Model;
using HeadLens.Tokenization;

namespace HeadLens.Analysis;

/// <summary>
/// Names every head of a model from two probes: a random block of tokens repeated twice (where induction and
/// duplicate-token heads show themselves: the second copy can be predicted only by looking back) and a text (where
/// positional, sink and delimiter behaviour shows on real language). Without a tokenizer, the repeated block serves
/// for every score.
/// </summary>
public static class HeadTaxonomy
{
    public const string SampleText = "In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep.";

    public static IReadOnlyList<HeadSummary> Analyse(Transformer model, ITokenizer? tokenizer, int[]? textIds = null, int seed = 0)
    {
        var config = model.Config;
        var repeated = RepeatedProbe(config, tokenizer, seed);
        var repeatPatterns = AttentionRecorder.Record(model, repeated.Ids);
        var fromRepeat = HeadSummary.Summarise(repeatPatterns, config.Heads, repeated.Ids.Length, repeated);
        textIds ??= tokenizer is null ? null : Truncate(WithBos(tokenizer, tokenizer.Encode(SampleText)), config.ContextLength);
        if (textIds is null)
        {
            return fromRepeat;
        }

        var textProbe = new Probe(textIds, tokenizer is null ? null : textIds.Select(id => IsDelimiter(tokenizer.TokenText(id))).ToArray());
        var textPatterns = AttentionRecorder.Record(model, textIds);
        var fromText = HeadSummary.Summarise(textPatterns, config.Heads, textIds.Length, textProbe);
        var result = new List<HeadSummary>();
        for (int i = 0; i < fromText.Count; i++)
        {
            // Positional scores from the text; induction and duplicate-token from the repeated block.
            var scores = new Dictionary<string, double>(fromText[i].Scores);
            foreach (string key in new[] { "induction", "duplicate_token" })
            {
                if (fromRepeat[i].Scores.TryGetValue(key, out double value))
                {
                    scores[key] = value;
                }
            }

            result.Add(fromText[i] with { Kind = HeadSummary.Classify(scores), Scores = scores });
        }

        return result;
    }

    /// <summary>[BOS] + a random block of distinct tokens + the same block again.</summary>
    public static Probe RepeatedProbe(ModelConfig config, ITokenizer? tokenizer, int seed)
    {
        int prefix = tokenizer?.BosId is null ? 0 : 1;
        int period = Math.Max(2, Math.Min(32, (config.ContextLength - prefix) / 2));
        var random = new Random(seed);
        var reserved = new HashSet<int>();
        if (tokenizer?.BosId is { } bos)
        {
            reserved.Add(bos);
        }

        if (tokenizer?.EosId is { } eos)
        {
            reserved.Add(eos);
        }

        var block = new List<int>();
        while (block.Count < period)
        {
            int id = random.Next(config.VocabSize);
            if (!reserved.Contains(id) && (!block.Contains(id) || config.VocabSize <= period + reserved.Count))
            {
                block.Add(id);
            }
        }

        var ids = new List<int>();
        if (prefix == 1)
        {
            ids.Add(tokenizer!.BosId!.Value);
        }

        ids.AddRange(block);
        ids.AddRange(block);
        return new Probe([.. ids], RepeatPeriod: period, RepeatStart: prefix);
    }

    private static bool IsDelimiter(string token)
    {
        string trimmed = token.Replace("␣", " ", StringComparison.Ordinal).Replace("\\n", "\n", StringComparison.Ordinal).Trim();
        return trimmed.Length == 0 ? token.Contains('\n', StringComparison.Ordinal) || token.Contains("\\n", StringComparison.Ordinal)
            : trimmed.All(c => char.IsPunctuation(c) || char.IsSeparator(c) || char.IsSymbol(c));
    }

    private static int[] WithBos(ITokenizer tokenizer, int[] ids) => tokenizer.BosId is { } bos ? [bos, .. ids] : ids;

    private static int[] Truncate(int[] ids, int length) => ids.Length <= length ? ids : ids[..length];
}
