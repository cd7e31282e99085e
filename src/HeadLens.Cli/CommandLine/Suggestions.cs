namespace HeadLens.Cli;

/// <summary>"Did you mean": the declared name nearest to a mistyped one, by edit distance.</summary>
internal static class Suggestions
{
    /// <summary>" (did you mean 'generate'?)" when one candidate is close enough to be the intended word; else "".</summary>
    public static string DidYouMean(string word, IEnumerable<string> candidates)
    {
        string? best = Nearest(word, candidates);
        return best is null ? "" : $" (did you mean '{best}'?)";
    }

    /// <summary>" (did you mean --prompt?)" for a mistyped option name.</summary>
    public static string DidYouMeanOption(string name, IEnumerable<string> candidates)
    {
        string? best = Nearest(name, candidates);
        return best is null ? "" : $" (did you mean --{best}?)";
    }

    /// <summary>
    /// The candidate with the smallest edit distance, when that distance is small for the word's length (a third of
    /// it, at least 1: "promt" → "prompt", not "json" → "ids"), or the one candidate the word is a prefix of.
    /// </summary>
    public static string? Nearest(string word, IEnumerable<string> candidates)
    {
        var list = candidates.ToList();
        var prefixed = list.Where(c => word.Length >= 2 && c.StartsWith(word, StringComparison.OrdinalIgnoreCase)).ToList();
        if (prefixed.Count == 1)
        {
            return prefixed[0];
        }

        int limit = Math.Max(1, word.Length / 3);
        return list.Select(c => (Candidate: c, Distance: Distance(word.ToLowerInvariant(), c.ToLowerInvariant())))
            .Where(pair => pair.Distance <= limit)
            .OrderBy(pair => pair.Distance)
            .Select(pair => pair.Candidate)
            .FirstOrDefault();
    }

    /// <summary>Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours each cost 1.</summary>
    public static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++)
        {
            d[i, 0] = i;
        }

        for (int j = 0; j <= b.Length; j++)
        {
            d[0, j] = j;
        }

        for (int i = 1; i <= a.Length; i++)
        {
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                {
                    d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
                }
            }
        }

        return d[a.Length, b.Length];
    }
}
