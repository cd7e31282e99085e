namespace HeadLens.Analysis;

/// <summary>
/// A first reading of what one head does, from its pattern P [T, T] on a text (rows are queries, causal):
///   previous_token = mean_i P[i, i−1]                    (i ≥ 1)
///   sink           = mean_i P[i, 0]                      (i ≥ 1: the first token as a resting place)
///   local          = 1 − mean_i (Σ_j P[i, j]·(i − j)) / i  (1 when it looks at itself, 0 when at the first token)
///   broad          = mean_i H(P[i, :]) / log(i + 1)      (normalised entropy: 1 = uniform over what it can see)
/// The kind is the strongest score above its threshold — previous-token 0.5, sink 0.5, broad 0.8, local 0.8 —
/// else "mixed". These are the simple pattern scores; induction and copying need probes beyond one text.
/// </summary>
public sealed record HeadSummary(int Layer, int Head, string Kind, IReadOnlyDictionary<string, double> Scores, double MeanDistance)
{
    private static readonly (string Score, string Kind, double Threshold)[] Rules =
    [
        ("previous_token", "previous-token", 0.5),
        ("sink", "sink", 0.5),
        ("broad", "broad", 0.8),
        ("local", "local", 0.8),
    ];

    public static IReadOnlyList<HeadSummary> Summarise(float[][] patterns, int heads, int tokens)
    {
        var result = new List<HeadSummary>();
        for (int l = 0; l < patterns.Length; l++)
        {
            for (int h = 0; h < heads; h++)
            {
                result.Add(Of(l, h, patterns[l].AsSpan(h * tokens * tokens, tokens * tokens), tokens));
            }
        }

        return result;
    }

    public static HeadSummary Of(int layer, int head, ReadOnlySpan<float> pattern, int t)
    {
        double previous = 0, sink = 0, locality = 0, entropy = 0, distance = 0;
        int rows = Math.Max(1, t - 1);
        for (int i = 1; i < t; i++)
        {
            var row = pattern.Slice(i * t, t);
            previous += row[i - 1];
            sink += row[0];
            double rowDistance = 0, rowEntropy = 0;
            for (int j = 0; j <= i; j++)
            {
                rowDistance += row[j] * (i - j);
                if (row[j] > 0)
                {
                    rowEntropy -= row[j] * Math.Log(row[j]);
                }
            }

            distance += rowDistance;
            locality += 1 - (rowDistance / i);
            entropy += rowEntropy / Math.Log(i + 1);
        }

        var scores = new Dictionary<string, double>
        {
            ["previous_token"] = previous / rows,
            ["sink"] = sink / rows,
            ["local"] = locality / rows,
            ["broad"] = entropy / rows,
        };
        string kind = "mixed";
        double best = 0;
        foreach (var (score, name, threshold) in Rules)
        {
            double margin = scores[score] - threshold;
            if (scores[score] >= threshold && margin >= best)
            {
                best = margin;
                kind = name;
            }
        }

        return new HeadSummary(layer, head, kind, scores, distance / rows);
    }
}
