namespace HeadLens.Analysis;

/// <summary>
/// What one head does: its kind (<see cref="HeadKinds.Classify"/>), its scores by JSON key (formulas in
/// <see cref="HeadScores"/> and docs/head-scores.md) and its mean attention distance in tokens.
/// </summary>
public sealed record HeadSummary(int Layer, int Head, string Kind, IReadOnlyDictionary<string, double> Scores, double MeanDistance);
