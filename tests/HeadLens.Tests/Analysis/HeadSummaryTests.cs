using HeadLens.Analysis;

namespace HeadLens.Tests.Analysis;

public class HeadSummaryTests
{
    private const int T = 12;

    // A pattern from a rule: row i puts all its weight on the key the rule picks (rows sum to 1, causal).
    private static float[] Pattern(Func<int, int> key)
    {
        var p = new float[T * T];
        for (int i = 0; i < T; i++)
        {
            p[i * T + key(i)] = 1f;
        }

        return p;
    }

    private static float[] Uniform()
    {
        var p = new float[T * T];
        for (int i = 0; i < T; i++)
        {
            for (int j = 0; j <= i; j++)
            {
                p[i * T + j] = 1f / (i + 1);
            }
        }

        return p;
    }

    // Block of 5 tokens after a BOS, repeated: 0 | 10 11 12 13 14 | 10 11 12 13 14 | 99
    private static readonly Probe Repeated = new([0, 10, 11, 12, 13, 14, 10, 11, 12, 13, 14, 99], RepeatPeriod: 5, RepeatStart: 1);

    [Fact]
    public void KnownHeadsAreNamedAndRankFirst()
    {
        var patterns = new[]
        {
            Pattern(i => Math.Max(0, i - 1)),                        // previous-token
            Pattern(_ => 0),                                         // sink
            Uniform(),                                               // broad
            Pattern(i => i >= 6 && i <= 10 ? i - 4 : 0),              // induction: the token after the earlier copy
            Pattern(i => i >= 6 && i <= 10 ? i - 5 : 0),             // duplicate-token
        };
        var flat = patterns.SelectMany(p => p).ToArray();
        var summaries = HeadSummary.Summarise([flat], patterns.Length, T, Repeated);
        Assert.Equal(["previous-token", "sink", "broad", "induction", "duplicate-token"], summaries.Select(s => s.Kind));
        Assert.Equal(0, summaries.OrderByDescending(s => s.Scores["previous_token"]).First().Head);
        Assert.Equal(1, summaries.OrderByDescending(s => s.Scores["sink"]).First().Head);
        Assert.Equal(2, summaries.OrderByDescending(s => s.Scores["broad"]).First().Head);
        Assert.Equal(3, summaries.OrderByDescending(s => s.Scores["induction"]).First().Head);
        Assert.Equal(4, summaries.OrderByDescending(s => s.Scores["duplicate_token"]).First().Head);
        Assert.Equal(1.0, summaries[3].Scores["induction"], 9);
        Assert.Equal(1.0, summaries[2].Scores["broad"], 6); // fp32 probabilities 1/(i+1): entropy exact to ~1e-7
    }

    [Fact]
    public void DelimiterHeadsAreNamed()
    {
        var delimiters = new bool[T];
        delimiters[4] = delimiters[8] = true;
        var pattern = Pattern(i => i >= 8 ? 8 : i >= 4 ? 4 : 0);
        var summary = HeadSummary.Summarise([pattern], 1, T, new Probe(Enumerable.Range(0, T).ToArray(), delimiters)).Single();
        Assert.Equal("delimiter", summary.Kind);
    }

    [Fact]
    public void ScoresAgreeWithAFloat64Reimplementation()
    {
        var random = new Random(40);
        var pattern = new float[T * T];
        for (int i = 0; i < T; i++)
        {
            double[] weights = Enumerable.Range(0, i + 1).Select(_ => random.NextDouble()).ToArray();
            double sum = weights.Sum();
            for (int j = 0; j <= i; j++)
            {
                pattern[i * T + j] = (float)(weights[j] / sum);
            }
        }

        var scores = HeadSummary.Score(pattern, T, Repeated, out double distance);
        double P(int i, int j) => pattern[i * T + j];
        var rows = Enumerable.Range(1, T - 1).ToArray();
        Assert.Equal(rows.Average(i => P(i, i - 1)), scores["previous_token"], 12);
        Assert.Equal(rows.Average(i => P(i, 0)), scores["sink"], 12);
        Assert.Equal(rows.Average(i => -Enumerable.Range(0, i + 1).Sum(j => P(i, j) * Math.Log(P(i, j))) / Math.Log(i + 1)), scores["broad"], 12);
        Assert.Equal(rows.Average(i => Enumerable.Range(0, i + 1).Sum(j => P(i, j) * (i - j))), distance, 12);
        Assert.Equal(Enumerable.Range(6, 5).Average(i => P(i, i - 4)), scores["induction"], 12);
        Assert.Equal(Enumerable.Range(6, 5).Average(i => P(i, i - 5)), scores["duplicate_token"], 12);
    }
}
