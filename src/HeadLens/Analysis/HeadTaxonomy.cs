using HeadLens.Model;
using HeadLens.Tokenization;

namespace HeadLens.Analysis;

/// <summary>
/// Names every head of a model (scores in <see cref="HeadScores"/>, kinds in <see cref="HeadKinds"/>) from two
/// probes and the weights:
///   - a random block of tokens repeated twice: induction and duplicate-token heads show themselves there (the
///     second copy can be predicted only by looking back), and nothing in a random block favours any other head;
///   - a text (given, or the built-in sample when the model has a tokenizer): positional, sink and delimiter
///     behaviour on real language. Without a text, the repeated block serves for every score;
///   - the weights: the copying score of each head's OV circuit (reported, not a kind).
/// </summary>
public static class HeadTaxonomy
{
    public const string SampleText = "In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep.";

    /// <summary>The longest repeated block the probe uses (two copies of 64 tokens stay cheap on any model).</summary>
    public const int MaxPeriod = 64;

    public static IReadOnlyList<HeadSummary> Analyse(Transformer model, ITokenizer? tokenizer, int[]? textIds = null, int seed = 0)
    {
        var config = model.Config;
        var repeated = RepeatedIds(config, tokenizer, seed);
        var repeatPatterns = AttentionRecorder.Record(model, repeated);
        textIds ??= tokenizer is null ? null : Truncate(WithBos(tokenizer, tokenizer.Encode(SampleText)), config.ContextLength);
        var positionalIds = textIds ?? repeated;
        var positionalPatterns = textIds is null ? repeatPatterns : AttentionRecorder.Record(model, textIds);
        bool[] delimiters = tokenizer is null ? [] : [.. positionalIds.Select(id => IsDelimiter(tokenizer.TokenText(id)))];
        var copying = Circuits.CopyingScores(model);
        var result = new List<HeadSummary>();
        int t = positionalIds.Length, r = repeated.Length;
        for (int l = 0; l < config.Layers; l++)
        {
            for (int h = 0; h < config.Heads; h++)
            {
                var pattern = positionalPatterns[l].AsSpan(h * t * t, t * t);
                var repeatPattern = repeatPatterns[l].AsSpan(h * r * r, r * r);
                var scores = HeadScores.ForHead(pattern, t, [], delimiters);
                scores[HeadKinds.DuplicateTokenScore] = HeadScores.DuplicateToken(repeatPattern, r, repeated);
                scores[HeadKinds.InductionScore] = HeadScores.Induction(repeatPattern, r, repeated);
                scores[HeadKinds.CopyingScore] = copying[l, h];
                result.Add(new HeadSummary(l, h, HeadKinds.Classify(scores), scores, HeadScores.MeanDistance(pattern, t)));
            }
        }

        return result;
    }

    /// <summary>
    /// [BOS] + a random block of distinct tokens + the same block again (block length min(64, (context − 1)/2)).
    /// Tokens are distinct within the block so that every repeat in the sequence is the planted one.
    /// </summary>
    public static int[] RepeatedIds(ModelConfig config, ITokenizer? tokenizer, int seed, int maxPeriod = MaxPeriod)
    {
        int prefix = tokenizer?.BosId is null ? 0 : 1;
        int period = Math.Max(2, Math.Min(maxPeriod, (config.ContextLength - prefix) / 2));
        var reserved = new HashSet<int>();
        if (tokenizer?.BosId is { } bos)
        {
            reserved.Add(bos);
        }

        if (tokenizer?.EosId is { } eos)
        {
            reserved.Add(eos);
        }

        var random = new Random(seed);
        var block = new List<int>();
        bool distinct = config.VocabSize >= period + reserved.Count;
        while (block.Count < period)
        {
            int id = random.Next(config.VocabSize);
            if (!reserved.Contains(id) && (!distinct || !block.Contains(id)))
            {
                block.Add(id);
            }
        }

        return prefix == 1 ? [tokenizer!.BosId!.Value, .. block, .. block] : [.. block, .. block];
    }

    /// <summary>Punctuation, whitespace, newlines and other separator tokens (as the tokenizer prints them).</summary>
    public static bool IsDelimiter(string token)
    {
        string text = token.Replace("␣", " ", StringComparison.Ordinal).Replace("Ġ", " ", StringComparison.Ordinal)
            .Replace("\\n", "\n", StringComparison.Ordinal);
        return text.Length > 0 && text.All(c => char.IsPunctuation(c) || char.IsSeparator(c) || char.IsSymbol(c) || char.IsWhiteSpace(c));
    }

    private static int[] WithBos(ITokenizer tokenizer, int[] ids) => tokenizer.BosId is { } bos ? [bos, .. ids] : ids;

    private static int[] Truncate(int[] ids, int length) => ids.Length <= length ? ids : ids[..length];
}
