namespace HeadLens.Analysis;

/// <summary>
/// Naming a head from its scores. Each kind has one score and a threshold; a head's kind is the kind whose score is
/// furthest above its threshold, measured as the share of the way from the threshold to 1,
///   strength = (score − threshold) / (1 − threshold),
/// so kinds with different thresholds compare fairly (a perfect previous-token head, strength 1, is not called
/// local just because attending one token back is also local). No score at or above its threshold: "mixed".
/// Ties go to the earlier rule (the more specific kinds come first).
/// </summary>
public static class HeadKinds
{
    public const string PreviousTokenScore = "previous_token";
    public const string DuplicateTokenScore = "duplicate_token";
    public const string InductionScore = "induction";
    public const string SinkScore = "sink";
    public const string DelimiterScore = "delimiter";
    public const string LocalScore = "local";
    public const string BroadScore = "broad";
    public const string CopyingScore = "copying";
    public const string NextTokenScore = "next_token";
    public const string SelfScore = "self";

    public const string PreviousToken = "previous-token";
    public const string DuplicateToken = "duplicate-token";
    public const string Induction = "induction";
    public const string Sink = "sink";
    public const string Delimiter = "delimiter";
    public const string Local = "local";
    public const string Broad = "broad";
    public const string NextToken = "next-token";
    public const string Self = "self";
    public const string Mixed = "mixed";

    /// <summary>
    /// (score key, kind, threshold). Why these thresholds: a head whose mean attention on one target is above 0.5 (0.4
    /// for the token-matching scores, whose targets are single keys among up to hundreds) spends most of its
    /// attention there; local and broad are graded on [0, 1] where a uniform row scores 0.5 on local and 1 on broad,
    /// so 0.8 on either means clearly nearer than uniform or clearly near-uniform.
    /// </summary>
    public static readonly IReadOnlyList<(string Score, string Kind, double Threshold)> Rules =
    [
        (InductionScore, Induction, 0.4),
        (DuplicateTokenScore, DuplicateToken, 0.4),
        (PreviousTokenScore, PreviousToken, 0.5),
        (NextTokenScore, NextToken, 0.5),
        (SelfScore, Self, 0.5),
        (SinkScore, Sink, 0.5),
        (DelimiterScore, Delimiter, 0.5),
        (LocalScore, Local, 0.8),
        (BroadScore, Broad, 0.8),
    ];

    /// <summary>
    /// The contract's kinds, in rule order, then "mixed": the one list (the viewer's page reads it from /api/model or
    /// the report's data). next-token and self are scored for encoders (bidirectional heads) only.
    /// </summary>
    public static IReadOnlyList<string> All { get; } = [.. Rules.Select(rule => rule.Kind), Mixed];

    /// <summary>The kind whose score is furthest above its threshold (see the class comment), else "mixed".</summary>
    public static string Classify(IReadOnlyDictionary<string, double> scores)
    {
        string kind = Mixed;
        double best = double.NegativeInfinity;
        foreach (var (score, name, threshold) in Rules)
        {
            if (scores.TryGetValue(score, out double value) && value >= threshold)
            {
                double strength = (value - threshold) / (1 - threshold);
                if (strength > best)
                {
                    best = strength;
                    kind = name;
                }
            }
        }

        return kind;
    }

    /// <summary>The score key that names a kind (null for "mixed").</summary>
    public static string? ScoreOf(string kind) => Rules.FirstOrDefault(rule => rule.Kind == kind).Score;
}
