using HeadLens.Training;

namespace HeadLens.Inference;

/// <summary>How the next token is chosen from the logits.</summary>
public sealed record SamplingSettings
{
    /// <summary>0 (or below) means greedy: always the most likely token.</summary>
    public float Temperature { get; init; } = 0.8f;

    /// <summary>Keep only the K most likely tokens (0 = all).</summary>
    public int TopK { get; init; }

    /// <summary>Keep the smallest set of most likely tokens whose probability reaches P (1 = all).</summary>
    public float TopP { get; init; } = 1f;

    public int Seed { get; init; } = 42;
}

/// <summary>
/// Greedy, temperature, top-k and top-p (nucleus) sampling:
///   p = softmax(logits / temperature); keep the top-k; keep the smallest prefix (by probability) with mass ≥ top-p;
///   renormalise; draw with a seeded generator.
/// </summary>
public sealed class Sampler(SamplingSettings settings)
{
    private readonly SplitMix64 random = new((ulong)settings.Seed);

    public SamplingSettings Settings { get; } = settings;

    public int Next(ReadOnlySpan<float> logits)
    {
        if (Settings.Temperature <= 0f)
        {
            return ArgMax(logits);
        }

        var candidates = Candidates(logits);
        double draw = (random.Next() >> 11) * (1.0 / (1UL << 53));
        double cumulative = 0;
        foreach (var (id, probability) in candidates)
        {
            cumulative += probability;
            if (draw < cumulative)
            {
                return id;
            }
        }

        return candidates[^1].Id;
    }

    /// <summary>The tokens that survive temperature, top-k and top-p, with renormalised probabilities, most likely first.</summary>
    public List<(int Id, double Probability)> Candidates(ReadOnlySpan<float> logits)
    {
        double max = double.NegativeInfinity;
        foreach (float logit in logits)
        {
            max = Math.Max(max, logit);
        }

        var all = new List<(int Id, double Probability)>(logits.Length);
        double sum = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            double weight = Math.Exp((logits[i] - max) / Settings.Temperature);
            all.Add((i, weight));
            sum += weight;
        }

        // Stable order: by probability, ties by id, so a seed reproduces the same draw.
        all.Sort((a, b) => a.Probability != b.Probability ? b.Probability.CompareTo(a.Probability) : a.Id.CompareTo(b.Id));
        int keep = Settings.TopK > 0 ? Math.Min(Settings.TopK, all.Count) : all.Count;
        if (Settings.TopP < 1f)
        {
            double mass = 0;
            int nucleus = 0;
            while (nucleus < keep && mass < Settings.TopP * sum)
            {
                mass += all[nucleus++].Probability;
            }

            keep = Math.Max(1, nucleus);
        }

        var kept = all.GetRange(0, keep);
        double keptSum = kept.Sum(c => c.Probability);
        return kept.Select(c => (c.Id, c.Probability / keptSum)).ToList();
    }

    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
        {
            if (logits[i] > logits[best])
            {
                best = i;
            }
        }

        return best;
    }
}
