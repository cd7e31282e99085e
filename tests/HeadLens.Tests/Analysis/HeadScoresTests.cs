using HeadLens.Analysis;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Analysis;

public class HeadScoresTests
{
    // A random block of 11 distinct tokens after a BOS, repeated: 0 | b₀ … b₁₀ | b₀ … b₁₀  (T = 23).
    private const int Period = 11;
    private static readonly int[] Ids = RepeatedIds(Period, seed: 5);
    private static readonly int T = Ids.Length;

    // Delimiters at every fifth position (not 0, so the sink head is not also a delimiter head).
    private static readonly bool[] Delimiters = Enumerable.Range(0, T).Select(j => j > 0 && j % 5 == 0).ToArray();

    private static int[] RepeatedIds(int period, int seed)
    {
        var random = new Random(seed);
        var block = Enumerable.Range(10, 200).OrderBy(_ => random.Next()).Take(period).ToArray();
        return [0, .. block, .. block];
    }

    // Row i spreads its weight evenly over the keys the rule returns (the query itself when it returns none).
    private static float[] Pattern(Func<int, IEnumerable<int>> keys)
    {
        var p = new float[T * T];
        for (int i = 0; i < T; i++)
        {
            var chosen = keys(i).Where(j => j >= 0 && j <= i).Distinct().ToList();
            if (chosen.Count == 0)
            {
                chosen.Add(i);
            }

            foreach (int j in chosen)
            {
                p[i * T + j] = 1f / chosen.Count;
            }
        }

        return p;
    }

    private static IEnumerable<int> All(int i) => Enumerable.Range(0, i + 1);

    private static bool InSecondCopy(int i) => i > Period;

    // The planted heads, each with the kind it must get.
    private static readonly (string Kind, float[] Pattern)[] Planted =
    [
        ("previous-token", Pattern(i => [i - 1])),
        ("sink", Pattern(_ => [0])),
        ("broad", Pattern(All)),
        ("local", LocalPattern()),
        ("induction", Pattern(i => InSecondCopy(i) ? [i - Period + 1] : All(i))),
        ("duplicate-token", Pattern(i => InSecondCopy(i) ? [i - Period] : All(i))),
        ("delimiter", Pattern(i => Enumerable.Range(1, i).Where(j => Delimiters[j]))),
    ];

    // 0.6 on itself, 0.2 on each of the two keys before it.
    private static float[] LocalPattern()
    {
        var p = new float[T * T];
        for (int i = 0; i < T; i++)
        {
            p[i * T + i] = 0.6f;
            p[i * T + Math.Max(0, i - 1)] += 0.2f;
            p[i * T + Math.Max(0, i - 2)] += 0.2f;
        }

        return p;
    }

    [Fact]
    public void PlantedHeadsAreNamedAndRankFirstOnTheirScore()
    {
        var layer = Planted.SelectMany(head => head.Pattern).ToArray();
        var scores = HeadScores.ForLayer(layer, Planted.Length, T, Ids, Delimiters);
        for (int h = 0; h < Planted.Length; h++)
        {
            string kind = Planted[h].Kind;
            Assert.Equal(kind, HeadKinds.Classify(scores[h]));
            string key = HeadKinds.ScoreOf(kind)!;
            int best = Enumerable.Range(0, Planted.Length).MaxBy(other => scores[other][key]);
            Assert.True(best == h, $"{key}: head {best} ({scores[best][key]:F3}) outranks the planted {kind} head ({scores[h][key]:F3})");
        }
    }

    [Fact]
    public void PerfectHeadsScoreOne()
    {
        // Exact values that follow from the definitions: a pure previous-token head puts all of every row on i − 1.
        Assert.Equal(1.0, HeadScores.PreviousToken(Planted[0].Pattern, T), 6);
        Assert.Equal(1.0, HeadScores.Sink(Planted[1].Pattern, T), 6);
        Assert.Equal(0.0, HeadScores.Local(Planted[1].Pattern, T), 6);
        Assert.Equal(1.0, HeadScores.Broad(Planted[2].Pattern, T), 5);
        Assert.Equal(0.5, HeadScores.Local(Planted[2].Pattern, T), 5);
        Assert.Equal(1.0, HeadScores.Induction(Planted[4].Pattern, T, Ids), 6);
        Assert.Equal(1.0, HeadScores.DuplicateToken(Planted[5].Pattern, T, Ids), 6);
    }

    [Fact]
    public void NoHeadAboveAnyThresholdIsMixed()
    {
        var scores = new Dictionary<string, double> { ["previous_token"] = 0.3, ["sink"] = 0.2, ["local"] = 0.6, ["broad"] = 0.7 };
        Assert.Equal("mixed", HeadKinds.Classify(scores));
        // The contract's kinds; encoders add next-token and self (scored for bidirectional heads only).
        Assert.Equal(["induction", "duplicate-token", "previous-token", "next-token", "self", "sink", "delimiter", "local", "broad", "mixed"], HeadKinds.All);
    }

    [Fact]
    public void BidirectionalHeadsHaveNextTokenSelfAndFullRowScores()
    {
        const int t = 6;
        float[] next = new float[t * t], self = new float[t * t], uniform = new float[t * t];
        for (int i = 0; i < t; i++)
        {
            next[(i * t) + Math.Min(i + 1, t - 1)] = 1;
            self[(i * t) + i] = 1;
            for (int j = 0; j < t; j++)
            {
                uniform[(i * t) + j] = 1f / t;
            }
        }

        Assert.Equal(1.0, HeadScores.NextToken(next, t), 6);
        Assert.Equal(1.0 / t, HeadScores.Self(next, t), 6); // only the last row stays on itself
        Assert.Equal(1.0, HeadScores.Self(self, t), 6);
        Assert.Equal(1.0, HeadScores.Local(self, t, bidirectional: true), 6);
        Assert.Equal(1.0, HeadScores.Broad(uniform, t, bidirectional: true), 6);
        Assert.Equal(0.0, HeadScores.Broad(self, t, bidirectional: true), 6);
        // Mean |i − j| of a uniform row over 6 keys, averaged over rows: (2.5 + 1.833 + 1.5 + 1.5 + 1.833 + 2.5) / 6.
        Assert.Equal(35.0 / 18, HeadScores.MeanDistance(uniform, t, bidirectional: true), 5);
        var scores = HeadScores.ForHead(next, t, [], [], bidirectional: true);
        Assert.Equal("next-token", HeadKinds.Classify(scores));
        Assert.False(HeadScores.ForHead(next, t, [], []).ContainsKey("next_token"), "causal heads have no next_token score");
    }

    [Fact]
    public void StrengthNotRawScoreDecides()
    {
        // sink 0.75 is halfway from its threshold 0.5 to 1; local 0.85 only a quarter of the way from 0.8.
        var scores = new Dictionary<string, double> { ["sink"] = 0.75, ["local"] = 0.85 };
        Assert.Equal("sink", HeadKinds.Classify(scores));
    }

    [Theory]
    [InlineData(2, 1)]
    [InlineData(7, 2)]
    [InlineData(31, 3)]
    [InlineData(64, 4)]
    public void EveryScoreAgreesWithTheFloat64Oracle(int tokens, int seed)
    {
        var random = new Random(seed);
        // Random causal softmax rows, a small vocabulary (so tokens repeat) and random delimiters.
        var pattern = new float[tokens * tokens];
        var p = new double[tokens, tokens];
        for (int i = 0; i < tokens; i++)
        {
            var logits = Enumerable.Range(0, i + 1).Select(_ => 3 * random.NextDouble()).ToArray();
            double total = logits.Sum(Math.Exp);
            for (int j = 0; j <= i; j++)
            {
                pattern[i * tokens + j] = (float)(Math.Exp(logits[j]) / total);
                p[i, j] = pattern[i * tokens + j];
            }
        }

        var ids = Enumerable.Range(0, tokens).Select(_ => random.Next(5)).ToArray();
        var delimiters = Enumerable.Range(0, tokens).Select(_ => random.Next(4) == 0).ToArray();
        var scores = HeadScores.ForHead(pattern, tokens, ids, delimiters);
        scores["mean_distance"] = HeadScores.MeanDistance(pattern, tokens);
        var expected = Float64HeadScores.All(p, ids, delimiters);
        Assert.Equal(expected.Keys.Order(), scores.Keys.Order());
        foreach (var (key, value) in expected)
        {
            // Both sum the same float inputs in float64, in different orders: agreement to ~1e-15 relative;
            // 1e-12 leaves room for the up to 4096-term sums, and is still far below any printed digit.
            Assert.True(Math.Abs(scores[key] - value) <= 1e-12 * Math.Max(1, Math.Abs(value)), $"{key}: {scores[key]} vs {value}");
        }
    }

    [Fact]
    public void CopyingScoreReadsTheSignOfTheEigenvalues()
    {
        // Identity: every eigenvalue +1, pure copying. Minus identity: none positive. A rotation by 90° in each
        // plane: eigenvalues ±i, no positive real part. A rotation by 60°: ½ ± i·√3/2, so Σ Re⁺ / Σ|λ| = ½.
        double[] Rotation(double angle) => [Math.Cos(angle), -Math.Sin(angle), Math.Sin(angle), Math.Cos(angle)];
        Assert.Equal(1.0, HeadScores.Copying([1, 0, 0, 1], 2), 12);
        Assert.Equal(0.0, HeadScores.Copying([-1, 0, 0, -1], 2), 12);
        Assert.Equal(0.0, HeadScores.Copying(Rotation(Math.PI / 2), 2), 12);
        Assert.Equal(0.5, HeadScores.Copying(Rotation(Math.PI / 3), 2), 12);
    }
}
