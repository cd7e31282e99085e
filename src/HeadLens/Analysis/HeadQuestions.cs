using HeadLens.Tokenization;

namespace HeadLens.Analysis;

/// <summary>How much one head sends from the query token(s) of one word to the key tokens of another.</summary>
public sealed record PairAttention(int Layer, int Head, double Weight);

/// <summary>One layer at a glance: mean attention distance (tokens), mean normalised entropy, share of each kind.</summary>
public sealed record LayerSummary(int Layer, double MeanDistance, double Entropy, IReadOnlyDictionary<string, double> KindShares);

/// <summary>
/// The questions a person asks of a sentence: "which heads send `it` to `animal`?" (coreference), "which heads send
/// a verb to its subject, a noun to its article?", and "are early layers local and later ones broad?".
/// </summary>
public static class HeadQuestions
{
    /// <summary>
    /// The token positions of a word in ids (whole-word match, case-insensitive, the first occurrence,
    /// or the last one ending before token <paramref name="before"/> when given; the <paramref name="occurrence"/>-th,
    /// counting from 1, when that is given, which must then end before <paramref name="before"/>). Positions
    /// come from decoding prefixes of ids, so they work for byte, BPE and SentencePiece tokens alike.
    /// </summary>
    public static int[] WordPositions(ITokenizer tokenizer, int[] ids, string word, int? before = null, int? occurrence = null)
    {
        if (string.IsNullOrWhiteSpace(word))
        {
            throw new HeadLensException("an empty word cannot be found in the text: give a word");
        }

        // start[i] = character where token i begins in the decoded text (a BOS decodes to nothing here).
        int first = tokenizer.BosId is { } bos && ids.Length > 0 && ids[0] == bos ? 1 : 0;
        string text = tokenizer.Decode(ids.AsSpan(first));
        var start = new int[ids.Length + 1];
        for (int i = first; i <= ids.Length; i++)
        {
            start[i] = tokenizer.Decode(ids.AsSpan(first, i - first)).Length;
        }

        var matches = new List<(int Begin, int End)>();
        for (int at = text.IndexOf(word, StringComparison.OrdinalIgnoreCase); at >= 0; at = text.IndexOf(word, at + 1, StringComparison.OrdinalIgnoreCase))
        {
            bool wordStart = at == 0 || !char.IsLetterOrDigit(text[at - 1]);
            bool wordEnd = at + word.Length == text.Length || !char.IsLetterOrDigit(text[at + word.Length]);
            if (wordStart && wordEnd)
            {
                matches.Add((at, at + word.Length));
            }
        }

        int[] Tokens((int Begin, int End) span) =>
            [.. Enumerable.Range(first, ids.Length - first).Where(i => start[i] < span.End && start[i + 1] > span.Begin)];

        var candidates = matches.Select(Tokens).Where(tokens => tokens.Length > 0).ToList();
        if (occurrence is { } n)
        {
            if (n < 1 || n > candidates.Count)
            {
                throw new HeadLensException($"the word '{word}' occurs {candidates.Count} time{(candidates.Count == 1 ? "" : "s")} in the text: there is no occurrence {n}");
            }

            if (before is not null && candidates[n - 1][^1] >= before.Value)
            {
                throw new HeadLensException($"occurrence {n} of '{word}' (token {candidates[n - 1][0]}) is not before position {before} in the text");
            }

            return candidates[n - 1];
        }

        if (before is not null)
        {
            candidates = candidates.Where(tokens => tokens[^1] < before.Value).ToList();
        }

        if (candidates.Count == 0)
        {
            throw new HeadLensException(before is null
                ? $"the word '{word}' is not in the text"
                : $"the word '{word}' does not occur before position {before} in the text");
        }

        return before is null ? candidates[0] : candidates[^1];
    }

    /// <summary>
    /// Every head ranked by the attention from the last token of the source word (where the word is complete) to
    /// all tokens of the target word: Σ_{j ∈ target} P[from, j]. patterns[layer] is [H, T, T].
    /// </summary>
    public static List<PairAttention> RankPair(float[][] patterns, int heads, int tokens, int from, IReadOnlyList<int> to)
    {
        var result = new List<PairAttention>();
        for (int l = 0; l < patterns.Length; l++)
        {
            for (int h = 0; h < heads; h++)
            {
                double weight = 0;
                foreach (int j in to)
                {
                    weight += patterns[l][((h * tokens) + from) * tokens + j];
                }

                result.Add(new PairAttention(l, h, weight));
            }
        }

        return [.. result.OrderByDescending(pair => pair.Weight)];
    }

    /// <summary>Per layer: mean attention distance and normalised entropy over its heads, and the share of each kind.</summary>
    public static List<LayerSummary> Layers(IReadOnlyList<HeadSummary> heads) =>
        [.. heads.GroupBy(head => head.Layer).Select(layer => new LayerSummary(
            layer.Key,
            layer.Average(head => head.MeanDistance),
            layer.Average(head => head.Scores.TryGetValue(HeadKinds.BroadScore, out double value) ? value : 0),
            HeadKinds.All.ToDictionary(kind => kind, kind => layer.Count(head => head.Kind == kind) / (double)layer.Count())))];
}
