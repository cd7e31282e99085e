using HeadLens.Kernels;
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

    /// <summary>Decoders given a target token: −log p(target | ids), the one prediction after the text, in nats.</summary>
    TargetLoss,
}

/// <summary>
/// What removing one head changed. <see cref="Change"/> is the measure with the head removed minus the clean one
/// (positive: the model got worse). <see cref="Position"/> is where it changed most, by <see cref="PositionChange"/>:
/// for the loss, the position i whose prediction of token i + 1 lost most probability (<see cref="CleanProbability"/>
/// − <see cref="AblatedProbability"/>), with a target the last position (the target's probability after the text);
/// for the embedding, the token whose final hidden state turned most (1 − cosine).
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
    // Activations and logits one batched pass of ablated runs may hold.
    private const long MaxBatchBytes = 256L << 20;

    /// <summary>
    /// Ablates each of <paramref name="heads"/> (default: every head) on <paramref name="ids"/>; <paramref name="progress"/>
    /// gets (done, total) after each batch. With <paramref name="target"/> (decoders), only the prediction of that token
    /// after the text is measured (<see cref="AblationMeasure.TargetLoss"/>): which heads the model needs to say it.
    /// </summary>
    public static HeadAblationResult Run(Transformer model, int[] ids, AblationMethod method,
        IReadOnlyList<(int Layer, int Head)>? heads = null, Action<int, int>? progress = null, int? target = null) =>
        Sweep(model, ids, method, heads, progress, maxBatch: int.MaxValue, target);

    /// <summary>As <see cref="Run"/>, at most <paramref name="maxBatch"/> heads per batched pass (tests).</summary>
    internal static HeadAblationResult Sweep(Transformer model, int[] ids, AblationMethod method,
        IReadOnlyList<(int Layer, int Head)>? heads, Action<int, int>? progress, int maxBatch, int? target = null)
    {
        var config = model.Config;
        var measure = !config.HasOutputHead ? AblationMeasure.EmbeddingDrift
            : target is null ? AblationMeasure.NextTokenLoss : AblationMeasure.TargetLoss;
        if (target is not null && !config.HasOutputHead)
        {
            throw new HeadLensException("an ablation target needs a model with an output head; an encoder is measured by its sentence embedding");
        }

        if (target is { } id && (uint)id >= (uint)config.VocabSize)
        {
            throw new HeadLensException($"target token id {id} is outside the vocabulary (0..{config.VocabSize - 1})");
        }

        if (measure == AblationMeasure.NextTokenLoss && ids.Length < 2)
        {
            throw new HeadLensException("ablation needs at least 2 tokens: the loss is over predictions of the next token (or give a target)");
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
        // so each ablated run starts there (half the blocks on average), from the stream the whole run would have had.
        string last = LastHidden(model);
        var layers = heads.Select(pair => pair.Layer).ToHashSet();
        var cleanRun = new HookedForward(model).Run(ids, name => (measure == AblationMeasure.EmbeddingDrift && name == last)
            || layers.Any(l => name == HookNames.ResidPre(l)));
        var clean = Observe(cleanRun.Logits, measure == AblationMeasure.EmbeddingDrift ? cleanRun[last] : [], ids, target, config);

        // Several heads of one layer run as one batch (one sequence per head removed): the products get B·T rows
        // instead of T, which the kernels run faster.
        int batchCap = BatchCap(config, ids.Length, Math.Min(config.Heads, maxBatch));
        int t = ids.Length, c = config.Channels, d = config.HeadDim, h = config.Heads;
        var effects = new List<HeadAblationEffect>(heads.Count);
        foreach (var (first, batch) in LayerBatches([.. heads.Select(pair => pair.Layer)], batchCap))
        {
            int layer = heads[first].Layer;
            int[] removed = [.. Enumerable.Range(first, batch).Select(i => heads[i].Head)];
            var batchIds = new int[batch * t];                // [B, T]: the text once per head removed
            var residual = new float[batch * t * c];           // [B·T, C]: the clean stream entering the block
            for (int b = 0; b < batch; b++)
            {
                ids.CopyTo(batchIds, b * t);
                cleanRun[HookNames.ResidPre(layer)].CopyTo(residual, b * t * c);
            }

            // z [B·T, H, D]: sequence b loses head removed[b] (zeros, or that head's mean z).
            var forward = new HookedForward(model).AddHook(HookNames.Z(layer), (_, z, _) =>
            {
                for (int b = 0; b < batch; b++)
                {
                    for (int i = 0; i < t; i++)
                    {
                        var slot = z.Slice(((((b * t) + i) * h) + removed[b]) * d, d);
                        if (meanZ is null)
                        {
                            slot.Clear();
                        }
                        else
                        {
                            meanZ[layer].AsSpan(removed[b] * d, d).CopyTo(slot);
                        }
                    }
                }
            });
            // A target's loss reads only the prediction after the text: the batch's logits are then each copy's last row.
            bool encoder = measure == AblationMeasure.EmbeddingDrift, lastRows = measure == AblationMeasure.TargetLoss;
            var run = lastRows ? forward.RunBatchFromForLastLogits(batchIds, batch, layer, residual)
                : forward.RunBatchFrom(batchIds, batch, layer, residual, name => encoder && name == last);
            for (int b = 0; b < batch; b++)
            {
                int rows = lastRows ? 1 : t;
                var logits = encoder ? [] : run.Logits.AsSpan(b * rows * config.VocabSize, rows * config.VocabSize);
                var hidden = encoder ? run[last].AsSpan(b * t * c, t * c) : [];
                effects.Add(Compare(layer, removed[b], clean, Observe(logits, hidden, ids, target, config)));
            }

            progress?.Invoke(effects.Count, heads.Count);
        }

        return new HeadAblationResult(ids, method, measure, clean.Value, effects);
    }

    /// <summary>
    /// One run's outputs as the measure reads them: per prediction the loss (decoders: [T − 1] from position 0, or the
    /// target's [1] at position T − 1: <see cref="FirstPosition"/>), or per token the unit final hidden state [T][C] and
    /// the unit sentence embedding [C] (encoders); <see cref="Value"/> the measure alone.
    /// </summary>
    private sealed record Observation(double Value, double[] Losses, int FirstPosition, double[][] Tokens, double[] Sentence);

    /// <summary>
    /// How many sequences of <paramref name="tokens"/> one batched pass of intervened runs may hold, at most
    /// <paramref name="limit"/>: capped so that its activations and logits stay within <see cref="MaxBatchBytes"/>.
    /// </summary>
    internal static int BatchCap(ModelConfig config, int tokens, int limit)
    {
        long rowBytes = sizeof(float) * ((config.HasOutputHead ? (long)config.VocabSize : 0) + (16L * config.Channels) + (3L * config.HiddenChannels));
        return (int)Math.Clamp(MaxBatchBytes / (rowBytes * tokens), 1, Math.Max(1, limit));
    }

    /// <summary>
    /// The batches of a sweep: runs of consecutive items of one layer (<paramref name="layers"/>[i] is item i's), each
    /// at most <paramref name="cap"/> long, as (first item, count).
    /// </summary>
    internal static IEnumerable<(int First, int Count)> LayerBatches(int[] layers, int cap)
    {
        for (int first = 0; first < layers.Length;)
        {
            int count = 1;
            while (count < cap && first + count < layers.Length && layers[first + count] == layers[first])
            {
                count++;
            }

            yield return (first, count);
            first += count;
        }
    }

    /// <summary>The encoder's last hidden states: after the final norm where the model has one, else the last block's output.</summary>
    internal static string LastHidden(Transformer model) =>
        model.Parameters.HasFinalNorm ? HookNames.FinalNormalized : HookNames.ResidPost(model.Config.Layers - 1);

    // One sequence's logits [T, V] (decoders; a target's loss needs only the last row, [V]) or last hidden states
    // [T, C] (encoders, given empty logits) as the measure reads them.
    private static Observation Observe(ReadOnlySpan<float> logits, ReadOnlySpan<float> hidden, int[] ids, int? target, ModelConfig config)
    {
        int vocab = config.VocabSize, t = ids.Length;
        if (!logits.IsEmpty)
        {
            // The loss of each prediction with the training's cross-entropy: every next token from position 0, or the
            // target from the last position.
            int[] targets = target is { } id ? [id] : ids[1..];
            var rows = target is null ? logits[..((t - 1) * vocab)] : logits[^vocab..];
            var losses = new float[targets.Length];
            CrossEntropy.Forward(rows, targets, targets.Length, vocab, losses);
            double[] values = [.. losses.Select(loss => (double)loss)];
            return new Observation(values.Average(), values, target is null ? 0 : t - 1, [], []);
        }

        int c = config.Channels;
        var tokens = new double[ids.Length][];
        var sentence = new double[c];
        for (int i = 0; i < ids.Length; i++)
        {
            var row = hidden.Slice(i * c, c);
            for (int j = 0; j < c; j++)
            {
                sentence[j] += row[j];
            }

            tokens[i] = Unit([.. row.ToArray().Select(value => (double)value)]);
        }

        return new Observation(0, [], 0, tokens, Unit(sentence));
    }

    private static HeadAblationEffect Compare(int layer, int head, Observation clean, Observation ablated)
    {
        if (clean.Losses.Length > 0)
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

            return new HeadAblationEffect(layer, head, ablated.Value, ablated.Value - clean.Value, clean.FirstPosition + worst,
                before[worst] - after[worst], before[worst], after[worst]);
        }

        double drift = 1 - Dot(clean.Sentence, ablated.Sentence);
        double[] turns = [.. clean.Tokens.Select((row, i) => 1 - Dot(row, ablated.Tokens[i]))];
        int turned = Array.IndexOf(turns, turns.Max());
        return new HeadAblationEffect(layer, head, drift, drift, turned, turns[turned], null, null);
    }

    internal static double[] Unit(double[] vector)
    {
        double norm = Math.Sqrt(Dot(vector, vector));
        return norm > 0 ? [.. vector.Select(value => value / norm)] : vector;
    }

    internal static double Dot(double[] a, double[] b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++)
        {
            sum += a[i] * b[i];
        }

        return sum;
    }
}
