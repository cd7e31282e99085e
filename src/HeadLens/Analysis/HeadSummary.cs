namespace HeadLens.Analysis;

/// <summary>
/// What one head does: its kind (<see cref="HeadKinds.Classify"/>), its scores by JSON key (formulas in
/// <see cref="HeadScores"/> and docs/head-scores.md), its mean attention distance in tokens on the text probe, and
/// for each score key the probe it was read from (<see cref="HeadProbe.Name"/>, e.g. induction: "repeated random
/// block", previous_token: "text").
/// </summary>
public sealed record HeadSummary(int Layer, int Head, string Kind, IReadOnlyDictionary<string, double> Scores, double MeanDistance, IReadOnlyDictionary<string, string> Sources);
