namespace HeadLens.Analysis;

/// <summary>What a probe sequence tells the scores beyond the pattern itself.</summary>
/// <param name="Ids">The tokens the pattern was computed on.</param>
/// <param name="IsDelimiter">Per position: punctuation, newline or another separator token.</param>
/// <param name="RepeatPeriod">When the sequence is a random block repeated (after an optional prefix), its length; else 0.</param>
/// <param name="RepeatStart">Position where the first copy of the block starts.</param>
public sealed record Probe(int[] Ids, bool[]? IsDelimiter = null, int RepeatPeriod = 0, int RepeatStart = 0);

/// <summary>
/// What one head does, read from its pattern P [T, T] (rows are queries; causal) on a probe:
///   previous_token  = mean_{i≥1} P[i, i−1]
///   duplicate_token = mean over i with an earlier copy of token i of Σ_{j&lt;i, id_j = id_i} P[i, j]
///   induction       = mean over i in the second copy of a repeated random block of P[i, i − period + 1]
///                     (prefix matching, Olsson et al. 2022: attend to the token after this token's last occurrence)
///   sink            = mean_{i≥1} P[i, 0]                              (the first token as a resting place)
///   delimiter       = mean_{i≥1} Σ_{j: delimiter} P[i, j]             (punctuation and separators)
///   local           = 1 − mean_{i≥1} (Σ_j P[i, j]·(i − j)) / i        (1: looks at itself; 0: at the first token)
///   broad           = mean_{i≥1} H(P[i, :]) / log(i + 1)             (normalised entropy, after Clark et al. 2019)
/// A head's kind is the score furthest above its threshold (below), else "mixed".
/// </summary>
public sealed record HeadSummary(int Layer, int Head, string Kind, IReadOnlyDictionary<string, double> Scores, double MeanDistance)
{
    /// <summary>(score, kind, threshold): the rules that name a head, in the contract's kinds.</summary>
    public static readonly (string Score, string Kind, double Threshold)[] Rules =
    [
        ("previous_token", "previous-token", 0.5),
        ("duplicate_token", "duplicate-token", 0.4),
        ("induction", "induction", 0.4),
        ("sink", "sink", 0.5),
        ("delimiter", "delimiter", 0.5),
        ("broad", "broad", 0.8),
        ("local", "local", 0.8),
    ];

    public static IReadOnlyList<HeadSummary> Summarise(float[][] patterns, int heads, int tokens, Probe? probe = null)
    {
        var result = new List<HeadSummary>();
        for (int l = 0; l < patterns.Length; l++)
        {
            for (int h = 0; h < heads; h++)
            {
                var scores = Score(patterns[l].AsSpan(h * tokens * tokens, tokens * tokens), tokens, probe, out double distance);
                result.Add(new HeadSummary(l, h, Classify(scores), scores, distance));
            }
        }

        return result;
    }

    /// <summary>The kind whose score is furthest above its threshold, else "mixed". Missing scores are skipped.</summary>
    public static string Classify(IReadOnlyDictionary<string, double> scores)
    {
        string kind = "mixed";
        double best = double.NegativeInfinity;
        foreach (var (score, name, threshold) in Rules)
        {
            if (scores.TryGetValue(score, out double value) && value >= threshold && value - threshold > best)
            {
                best = value - threshold;
                kind = name;
            }
        }

        return kind;
    }

    public static Dictionary<string, double> Score(ReadOnlySpan<float> pattern, int t, Probe? probe, out double meanDistance)
    {
        double previous = 0, sink = 0, locality = 0, entropy = 0, distance = 0, delimiter = 0;
        int rows = Math.Max(1, t - 1);
        for (int i = 1; i < t; i++)
        {
            var row = pattern.Slice(i * t, t);
            previous += row[i - 1];
            sink += row[0];
            double rowDistance = 0, rowEntropy = 0;
            for (int j = 0; j <= i; j++)
            {
                rowDistance += (double)row[j] * (i - j);
                if (row[j] > 0)
                {
                    rowEntropy -= row[j] * Math.Log(row[j]);
                }

                if (probe?.IsDelimiter is { } delimiters && delimiters[j])
                {
                    delimiter += row[j];
                }
            }

            distance += rowDistance;
            locality += 1 - (rowDistance / i);
            entropy += rowEntropy / Math.Log(i + 1);
        }

        meanDistance = distance / rows;
        var scores = new Dictionary<string, double>
        {
            ["previous_token"] = previous / rows,
            ["sink"] = sink / rows,
            ["local"] = locality / rows,
            ["broad"] = entropy / rows,
        };
        if (probe is null)
        {
            return scores;
        }

        if (probe.IsDelimiter is not null)
        {
            scores["delimiter"] = delimiter / rows;
        }

        double duplicate = 0;
        int duplicates = 0;
        for (int i = 1; i < t; i++)
        {
            double mass = 0;
            bool any = false;
            for (int j = 0; j < i; j++)
            {
                if (probe.Ids[j] == probe.Ids[i])
                {
                    mass += pattern[i * t + j];
                    any = true;
                }
            }

            if (any)
            {
                duplicate += mass;
                duplicates++;
            }
        }

        if (duplicates > 0)
        {
            scores["duplicate_token"] = duplicate / duplicates;
        }

        if (probe.RepeatPeriod > 1)
        {
            double induction = 0;
            int count = 0;
            int p = probe.RepeatPeriod;
            for (int i = probe.RepeatStart + p; i < Math.Min(t, probe.RepeatStart + 2 * p); i++)
            {
                // Token i repeats token i − p; its earlier successor sits at i − p + 1.
                induction += pattern[i * t + (i - p + 1)];
                count++;
            }

            scores["induction"] = count == 0 ? 0 : induction / count;
        }

        return scores;
    }
}
