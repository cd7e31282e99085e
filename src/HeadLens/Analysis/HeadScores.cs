namespace HeadLens.Analysis;

/// <summary>
/// Head scores: pure functions of one head's attention pattern P [T, T] (row i = query i, rows sum to 1; causal:
/// P[i, j] = 0 for j &gt; i), plus the token ids or the delimiter positions where a score needs them. Every score is a
/// mean over the queries it is defined for, lies in [0, 1], and is 0 when no query qualifies. Query 0 is left out
/// of the positional scores of a causal head: it can attend only to itself, so it says nothing about the head.
/// Bidirectional (encoder) heads see every key: distances are |i − j|, normalised by the farthest key of the row,
/// and entropy by log T; they add next_token and self.
/// The formulas are repeated, with the thresholds that name a head, in docs/head-scores.md.
/// </summary>
public static class HeadScores
{
    /// <summary>previous_token = mean_{i≥1} P[i, i−1].</summary>
    public static double PreviousToken(ReadOnlySpan<float> pattern, int tokens)
    {
        double sum = 0;
        for (int i = 1; i < tokens; i++)
        {
            sum += pattern[i * tokens + i - 1];
        }

        return tokens > 1 ? sum / (tokens - 1) : 0;
    }

    /// <summary>
    /// duplicate_token = mean over queries i whose token occurred before of Σ_{j&lt;i, id_j = id_i} P[i, j]:
    /// the attention a repeated token pays to its own earlier occurrences.
    /// </summary>
    public static double DuplicateToken(ReadOnlySpan<float> pattern, int tokens, ReadOnlySpan<int> ids)
    {
        double sum = 0;
        int queries = 0;
        for (int i = 1; i < tokens; i++)
        {
            double mass = 0;
            bool seen = false;
            for (int j = 0; j < i; j++)
            {
                if (ids[j] == ids[i])
                {
                    mass += pattern[i * tokens + j];
                    seen = true;
                }
            }

            if (seen)
            {
                sum += mass;
                queries++;
            }
        }

        return queries > 0 ? sum / queries : 0;
    }

    /// <summary>
    /// induction (prefix matching, Olsson et al. 2022) = mean over queries i whose token occurred before at some
    /// j &lt; i − 1 of Σ_{j&lt;i−1, id_j = id_i} P[i, j + 1]: attention to the token that followed an earlier occurrence
    /// of the current token. On a random block repeated twice, the qualifying queries are the second copy and
    /// j + 1 is the position one period back plus one — the textbook prefix-matching score.
    /// </summary>
    public static double Induction(ReadOnlySpan<float> pattern, int tokens, ReadOnlySpan<int> ids)
    {
        double sum = 0;
        int queries = 0;
        for (int i = 2; i < tokens; i++)
        {
            double mass = 0;
            bool seen = false;
            for (int j = 0; j < i - 1; j++)
            {
                if (ids[j] == ids[i])
                {
                    mass += pattern[i * tokens + j + 1];
                    seen = true;
                }
            }

            if (seen)
            {
                sum += mass;
                queries++;
            }
        }

        return queries > 0 ? sum / queries : 0;
    }

    /// <summary>sink = mean_{i≥1} P[i, 0]: the first token as a resting place (Xiao et al. 2023).</summary>
    public static double Sink(ReadOnlySpan<float> pattern, int tokens)
    {
        double sum = 0;
        for (int i = 1; i < tokens; i++)
        {
            sum += pattern[i * tokens];
        }

        return tokens > 1 ? sum / (tokens - 1) : 0;
    }

    /// <summary>
    /// delimiter = mean_{i≥1} Σ_{j ≤ i, j ≥ 1, j a delimiter} P[i, j]: attention to punctuation and separators
    /// (Clark et al. 2019 found BERT heads parking on [SEP] and periods). Position 0 is left out, so a sink head is
    /// not also a delimiter head.
    /// </summary>
    public static double Delimiter(ReadOnlySpan<float> pattern, int tokens, ReadOnlySpan<bool> isDelimiter, bool bidirectional = false)
    {
        double sum = 0;
        for (int i = 1; i < tokens; i++)
        {
            for (int j = 1; j <= (bidirectional ? tokens - 1 : i); j++)
            {
                if (isDelimiter[j])
                {
                    sum += pattern[i * tokens + j];
                }
            }
        }

        return tokens > 1 ? sum / (tokens - 1) : 0;
    }

    /// <summary>
    /// Mean attention distance in tokens: mean_{i≥1} Σ_j P[i, j]·(i − j) (Vig and Belinkov 2019 call it the
    /// attention span).
    /// </summary>
    public static double MeanDistance(ReadOnlySpan<float> pattern, int tokens, bool bidirectional = false)
    {
        double sum = 0;
        int first = bidirectional ? 0 : 1;
        for (int i = first; i < tokens; i++)
        {
            int last = bidirectional ? tokens - 1 : i;
            for (int j = 0; j <= last; j++)
            {
                sum += pattern[i * tokens + j] * (double)Math.Abs(i - j);
            }
        }

        return tokens > first ? sum / (tokens - first) : 0;
    }

    /// <summary>
    /// local = 1 − mean_{i≥1} (Σ_j P[i, j]·(i − j)) / i: the distance normalised by the farthest key query i can
    /// see, so 1 = attends to itself, 0 = attends to the first token, 0.5 = uniform.
    /// </summary>
    public static double Local(ReadOnlySpan<float> pattern, int tokens, bool bidirectional = false)
    {
        double sum = 0;
        if (bidirectional)
        {
            // Bidirectional: normalised by the farthest key of the row, max(i, T − 1 − i).
            for (int i = 0; i < tokens && tokens > 1; i++)
            {
                double distance = 0;
                for (int j = 0; j < tokens; j++)
                {
                    distance += pattern[i * tokens + j] * (double)Math.Abs(i - j);
                }

                sum += 1 - (distance / Math.Max(i, tokens - 1 - i));
            }

            return tokens > 1 ? sum / tokens : 0;
        }

        for (int i = 1; i < tokens; i++)
        {
            double distance = 0;
            for (int j = 0; j <= i; j++)
            {
                distance += pattern[i * tokens + j] * (double)(i - j);
            }

            sum += 1 - (distance / i);
        }

        return tokens > 1 ? sum / (tokens - 1) : 0;
    }

    /// <summary>
    /// broad = mean_{i≥1} H(P[i, :]) / log(i + 1), H(p) = −Σ_j p_j log p_j: entropy normalised by that of the
    /// uniform row over the i + 1 visible keys (after Clark et al. 2019), so 1 = uniform, 0 = one key.
    /// </summary>
    public static double Broad(ReadOnlySpan<float> pattern, int tokens, bool bidirectional = false)
    {
        double sum = 0;
        if (bidirectional)
        {
            // Bidirectional: every row sees all T keys.
            for (int i = 0; i < tokens && tokens > 1; i++)
            {
                sum += Entropy(pattern.Slice(i * tokens, tokens)) / Math.Log(tokens);
            }

            return tokens > 1 ? sum / tokens : 0;
        }

        for (int i = 1; i < tokens; i++)
        {
            sum += Entropy(pattern.Slice(i * tokens, i + 1)) / Math.Log(i + 1);
        }

        return tokens > 1 ? sum / (tokens - 1) : 0;
    }

    /// <summary>next_token = mean_{i&lt;T−1} P[i, i+1] (bidirectional heads: the mirror of previous_token).</summary>
    public static double NextToken(ReadOnlySpan<float> pattern, int tokens)
    {
        double sum = 0;
        for (int i = 0; i < tokens - 1; i++)
        {
            sum += pattern[i * tokens + i + 1];
        }

        return tokens > 1 ? sum / (tokens - 1) : 0;
    }

    /// <summary>self = mean_i P[i, i]: attention a token pays to itself (bidirectional heads).</summary>
    public static double Self(ReadOnlySpan<float> pattern, int tokens)
    {
        double sum = 0;
        for (int i = 0; i < tokens; i++)
        {
            sum += pattern[i * tokens + i];
        }

        return tokens > 0 ? sum / tokens : 0;
    }

    /// <summary>Entropy in nats of one row (0·log 0 = 0).</summary>
    public static double Entropy(ReadOnlySpan<float> row)
    {
        double entropy = 0;
        foreach (float p in row)
        {
            if (p > 0)
            {
                entropy -= p * Math.Log(p);
            }
        }

        return entropy;
    }

    /// <summary>
    /// copying = Σ_k max(Re λ_k, 0) / Σ_k |λ_k| over the eigenvalues λ of the OV circuit W_U·W_O·W_V·W_Eᵀ [V, V]
    /// (Elhage et al. 2021: a head that copies the token it attends to raises that token's own logit, so its
    /// circuit has mostly positive eigenvalues). Computed from the [D, D] matrix given here (see
    /// <see cref="Circuits.OvEigenvalueMatrix"/>), which has the same nonzero eigenvalues. 1 = pure copying.
    /// </summary>
    public static double Copying(ReadOnlySpan<double> matrix, int size)
    {
        var eigenvalues = Eigenvalues.Compute(matrix, size);
        double positive = 0, total = 0;
        foreach (var lambda in eigenvalues)
        {
            positive += Math.Max(lambda.Real, 0);
            total += lambda.Magnitude;
        }

        return total > 0 ? positive / total : 0;
    }

    /// <summary>Per-head scores for every head of a layer's patterns [H, T, T].</summary>
    public static Dictionary<string, double>[] ForLayer(ReadOnlySpan<float> patterns, int heads, int tokens, ReadOnlySpan<int> ids, ReadOnlySpan<bool> isDelimiter)
    {
        var result = new Dictionary<string, double>[heads];
        for (int h = 0; h < heads; h++)
        {
            result[h] = ForHead(patterns.Slice(h * tokens * tokens, tokens * tokens), tokens, ids, isDelimiter);
        }

        return result;
    }

    /// <summary>
    /// All pattern scores of one head [T, T], snake_case keys as in the JSON contract. duplicate_token and induction
    /// need ids; delimiter needs delimiter flags; empty spans leave those keys out.
    /// </summary>
    public static Dictionary<string, double> ForHead(ReadOnlySpan<float> pattern, int tokens, ReadOnlySpan<int> ids, ReadOnlySpan<bool> isDelimiter,
        bool bidirectional = false)
    {
        var scores = new Dictionary<string, double>
        {
            [HeadKinds.PreviousTokenScore] = PreviousToken(pattern, tokens),
            [HeadKinds.SinkScore] = Sink(pattern, tokens),
            [HeadKinds.LocalScore] = Local(pattern, tokens, bidirectional),
            [HeadKinds.BroadScore] = Broad(pattern, tokens, bidirectional),
        };
        if (bidirectional)
        {
            scores[HeadKinds.NextTokenScore] = NextToken(pattern, tokens);
            scores[HeadKinds.SelfScore] = Self(pattern, tokens);
        }

        if (!ids.IsEmpty)
        {
            scores[HeadKinds.DuplicateTokenScore] = DuplicateToken(pattern, tokens, ids);
            scores[HeadKinds.InductionScore] = Induction(pattern, tokens, ids);
        }

        if (!isDelimiter.IsEmpty)
        {
            scores[HeadKinds.DelimiterScore] = Delimiter(pattern, tokens, isDelimiter, bidirectional);
        }

        return scores;
    }
}
