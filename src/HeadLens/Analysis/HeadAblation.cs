using HeadLens.Model;

namespace HeadLens.Analysis;

/// <summary>How a head is removed: its z (pattern · V, [T, D]) set to zero, or to its mean over the text's positions.</summary>
public enum AblationMethod
{
    Zero,
    Mean,
}

/// <summary>What an ablation is measured by.</summary>
public enum AblationMeasure
{
    /// <summary>Decoders: the mean next-token loss, −log p(ids[i+1] | ids[..i]) over the T − 1 predictions, in nats.</summary>
    NextTokenLoss,

    /// <summary>Encoders (no output head): 1 − cosine between the clean and the ablated sentence embedding (mean-pooled).</summary>
    EmbeddingDrift,
}

/// <summary>
/// What removing one head changed. <see cref="Change"/> is the measure with the head removed minus the clean one
/// (positive: the model got worse). <see cref="Position"/> is where it changed most, by <see cref="PositionChange"/>:
/// for the loss, the position i whose prediction of token i + 1 lost most probability (<see cref="CleanProbability"/>
/// − <see cref="AblatedProbability"/>); for the embedding, the token whose final hidden state turned most (1 − cosine).
/// </summary>
public sealed record HeadAblationEffect(int Layer, int Head, double Measure, double Change, int Position, double PositionChange,
    double? CleanProbability, double? AblatedProbability);

/// <summary>One text's ablations: the clean measure and one effect per head asked for, in layer-then-head order.</summary>
public sealed record HeadAblationResult(int[] Ids, AblationMethod Method, AblationMeasure Measure, double Clean, IReadOnlyList<HeadAblationEffect> Heads);

/// <summary>
/// "What breaks without it": every head removed in turn (one forward each, the rest of the model untouched) and the
/// model's output measured against the clean run. This is the causal half of reading a head; its pattern and scores
/// (<see cref="HeadTaxonomy"/>) say what it looks at, the ablation whether the model needs it (Michel et al. 2019,
/// "Are Sixteen Heads Really Better than One?"; Olsson et al. 2022 for induction heads).
/// </summary>
public static class HeadAblation
{
    /// <summary>Ablates each of <paramref name="heads"/> (default: every head) on <paramref name="ids"/>; <paramref name="progress"/> gets (done, total) after each.</summary>
    public static HeadAblationResult Run(Transformer model, int[] ids, AblationMethod method,
        IReadOnlyList<(int Layer, int Head)>? heads = null, Action<int, int>? progress = null)
    {
        var config = model.Config;
        var measure = config.HasOutputHead ? AblationMeasure.NextTokenLoss : AblationMeasure.EmbeddingDrift;
        if (measure == AblationMeasure.NextTokenLoss && ids.Length < 2)
        {
            throw new HeadLensException("ablation needs at least 2 tokens: the loss is over predictions of the next token");
        }

        heads ??= [.. Enumerable.Range(0, config.Layers).SelectMany(l => Enumerable.Range(0, config.Heads).Select(h => (l, h)))];
        foreach (var (layer, head) in heads)
        {
            if ((uint)layer >= (uint)config.Layers || (uint)head >= (uint)config.Heads)
            {
                throw new HeadLensException($"no head {layer}.{head}: the model has {config.Layers} layers of {config.Heads} heads");
            }
        }

        float[][]? meanZ = method == AblationMethod.Mean ? Interventions.MeanZ(model, [ids]) : null;
        // The clean run keeps the stream entering each block: a head's ablation changes nothing before its own block,
        // so each ablated run starts there (half the blocks on average), from the same bits the full run would have.
        var layers = heads.Select(pair => pair.Layer).ToHashSet();
        var clean = Observe(new HookedForward(model), ids, measure, 0, null, name => layers.Any(l => name == HookNames.ResidPre(l)), out var cleanRun);
        var effects = new List<HeadAblationEffect>(heads.Count);
        foreach (var (layer, head) in heads)
        {
            var forward = new HookedForward(model);
            forward = meanZ is null ? forward.ZeroAblateHead(layer, head)
                : forward.MeanAblateHead(layer, head, meanZ[layer].AsSpan(head * config.HeadDim, config.HeadDim).ToArray());
            var ablated = Observe(forward, ids, measure, layer, cleanRun[HookNames.ResidPre(layer)], null, out _);
            effects.Add(Compare(layer, head, clean, ablated, measure));
            progress?.Invoke(effects.Count, heads.Count);
        }

        return new HeadAblationResult(ids, method, measure, clean.Value, effects);
    }

    /// <summary>
    /// One run's outputs as the measure reads them: per prediction the loss [T − 1] (decoders), or per token the unit
    /// final hidden state [T][C] and the unit sentence embedding [C] (encoders); <see cref="Value"/> the measure alone.
    /// </summary>
    private sealed record Observation(double Value, double[] Losses, double[][] Tokens, double[] Sentence);

    // A run from block firstLayer (residual: the stream entering it; null: from the embedding), also capturing what
    // extraCapture accepts (returned as run).
    private static Observation Observe(HookedForward forward, int[] ids, AblationMeasure measure, int firstLayer, float[]? residual,
        Func<string, bool>? extraCapture, out HookedRun run)
    {
        var config = forward.Config;
        // The encoder's last hidden states: after the final norm where the model has one, else the last block's output.
        string last = forward.Model.Parameters.HasFinalNorm ? HookNames.FinalNormalized : HookNames.ResidPost(config.Layers - 1);
        bool Capture(string name) => (measure == AblationMeasure.EmbeddingDrift && name == last) || extraCapture?.Invoke(name) == true;
        run = residual is null ? forward.Run(ids, Capture) : forward.RunFrom(ids, firstLayer, residual, Capture);
        if (measure == AblationMeasure.NextTokenLoss)
        {
            var logits = run.Logits; // [T, V]
            int vocab = config.VocabSize;
            var losses = new double[ids.Length - 1];
            for (int i = 0; i < losses.Length; i++)
            {
                losses[i] = NegativeLogLikelihood(logits.AsSpan(i * vocab, vocab), ids[i + 1]);
            }

            return new Observation(losses.Average(), losses, [], []);
        }

        var hidden = run[last]; // [T, C]
        int c = config.Channels;
        var tokens = new double[ids.Length][];
        var sentence = new double[c];
        for (int i = 0; i < ids.Length; i++)
        {
            var row = hidden.AsSpan(i * c, c);
            for (int j = 0; j < c; j++)
            {
                sentence[j] += row[j];
            }

            tokens[i] = Unit([.. row.ToArray().Select(value => (double)value)]);
        }

        return new Observation(0, [], tokens, Unit(sentence));
    }

    private static HeadAblationEffect Compare(int layer, int head, Observation clean, Observation ablated, AblationMeasure measure)
    {
        if (measure == AblationMeasure.NextTokenLoss)
        {
            // Where the probability of the actual next token fell most (the largest loss rise is often at a token the
            // model already gave ~0, where nothing a reader would call a prediction broke).
            double[] before = [.. clean.Losses.Select(loss => Math.Exp(-loss))];
            double[] after = [.. ablated.Losses.Select(loss => Math.Exp(-loss))];
            int worst = 0;
            for (int i = 1; i < before.Length; i++)
            {
                if (before[i] - after[i] > before[worst] - after[worst])
                {
                    worst = i;
                }
            }

            return new HeadAblationEffect(layer, head, ablated.Value, ablated.Value - clean.Value, worst,
                before[worst] - after[worst], before[worst], after[worst]);
        }

        double drift = 1 - Dot(clean.Sentence, ablated.Sentence);
        double[] turns = [.. clean.Tokens.Select((row, i) => 1 - Dot(row, ablated.Tokens[i]))];
        int turned = Array.IndexOf(turns, turns.Max());
        return new HeadAblationEffect(layer, head, drift, drift, turned, turns[turned], null, null);
    }

    // −log softmax(logits)[target], in float64 and shifted by the row's maximum so that large logits cannot overflow.
    private static double NegativeLogLikelihood(ReadOnlySpan<float> logits, int target)
    {
        double max = double.NegativeInfinity;
        foreach (float value in logits)
        {
            max = Math.Max(max, value);
        }

        double sum = 0;
        foreach (float value in logits)
        {
            sum += Math.Exp(value - max);
        }

        return max + Math.Log(sum) - logits[target];
    }

    private static double[] Unit(double[] vector)
    {
        double norm = Math.Sqrt(Dot(vector, vector));
        return norm > 0 ? [.. vector.Select(value => value / norm)] : vector;
    }

    private static double Dot(double[] a, double[] b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++)
        {
            sum += a[i] * b[i];
        }

        return sum;
    }
}
