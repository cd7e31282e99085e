using HeadLens.Model;

namespace HeadLens.Analysis;

/// <summary>Where a clean activation is copied into the corrupted run.</summary>
public enum PatchSite
{
    /// <summary>One head's z (pattern · V, [T, D]) at every position: which heads carry the difference.</summary>
    Heads,

    /// <summary>The stream entering one block (hook_resid_pre) at one position: where, and from which layer on, it lives.</summary>
    Stream,

    /// <summary>One block's attention output (hook_attn_out, all its heads and bias) at one position.</summary>
    Attention,

    /// <summary>One block's MLP output (hook_mlp_out) at one position.</summary>
    Mlp,
}

/// <summary>What a run is measured by, at the text's last position (decoders) or over the sentence (encoders).</summary>
public enum PatchMetric
{
    /// <summary>logit(answer) − logit(wrong): the answer the clean text calls for against the one the corrupted text does.</summary>
    LogitDifference,

    /// <summary>log p(answer), when no wrong answer is given or the two texts' top tokens agree.</summary>
    LogProbability,

    /// <summary>Encoders: the cosine between the run's sentence embedding (mean-pooled) and the clean text's.</summary>
    EmbeddingSimilarity,
}

/// <summary>
/// One patched run: <see cref="Index"/> is the head (<see cref="PatchSite.Heads"/>) or the position (the other
/// sites) in <see cref="Layer"/>; <see cref="Value"/> the metric on that run and
/// <see cref="Recovered"/> = (value − corrupted) / (clean − corrupted): 0 where the patch changes nothing, 1 where it
/// brings back the clean run's whole metric.
/// </summary>
public sealed record PatchEffect(int Layer, int Index, double Value, double Recovered);

/// <summary>
/// A patching sweep: the metric on the clean and the corrupted run, the tokens it reads (<see cref="Answer"/>, and
/// <see cref="Wrong"/> for a logit difference), and one effect per patch in layer-then-index order.
/// </summary>
public sealed record PatchingResult(int[] CleanIds, int[] CorruptedIds, PatchSite Site, PatchMetric Metric, int? Answer, int? Wrong,
    double Clean, double Corrupted, IReadOnlyList<PatchEffect> Effects);

/// <summary>
/// Activation patching (causal tracing): run a clean and a corrupted text of the same length (say "… John gave a
/// drink to" and "… Mary gave a drink to"), then the corrupted one again with one activation copied from the clean
/// run, and ask how much of the clean answer comes back. A head (or a stream position) that brings much back carries
/// what tells the two texts apart to the output (Meng et al. 2022, "Locating and Editing Factual Associations";
/// Wang et al. 2022, the indirect-object-identification circuit; TransformerLens's patching functions).
/// </summary>
public static class ActivationPatching
{
    /// <summary>
    /// Patches every head (or every stream position) of <paramref name="layers"/> (default: all) from
    /// <paramref name="cleanIds"/> into <paramref name="corruptedIds"/>. Decoders are measured at the last position by
    /// logit(<paramref name="answer"/>) − logit(<paramref name="wrong"/>), or by log p(answer) without a wrong token;
    /// with neither, the answer is the clean run's top token and the wrong one the corrupted run's (log p(answer)
    /// where they agree). Encoders are measured by their sentence embedding's cosine to the clean one.
    /// <paramref name="progress"/> gets (done, total) after each batch.
    /// </summary>
    public static PatchingResult Run(Transformer model, int[] cleanIds, int[] corruptedIds, PatchSite site, int? answer = null, int? wrong = null,
        IReadOnlyList<int>? layers = null, Action<int, int>? progress = null) =>
        Sweep(model, cleanIds, corruptedIds, site, answer, wrong, layers, progress, maxBatch: int.MaxValue);

    /// <summary>As <see cref="Run"/>, at most <paramref name="maxBatch"/> patches per batched pass (tests).</summary>
    internal static PatchingResult Sweep(Transformer model, int[] cleanIds, int[] corruptedIds, PatchSite site, int? answer, int? wrong,
        IReadOnlyList<int>? layers, Action<int, int>? progress, int maxBatch)
    {
        var config = model.Config;
        int t = cleanIds.Length, c = config.Channels, d = config.HeadDim, h = config.Heads, vocab = config.VocabSize;
        Validate(config, cleanIds, corruptedIds, answer, wrong);
        if (site == PatchSite.Mlp && !config.HasMlp)
        {
            throw new HeadLensException("this model has no MLP blocks (attention-only): there is no MLP output to patch");
        }

        layers ??= [.. Enumerable.Range(0, config.Layers)];
        foreach (int layer in layers)
        {
            if ((uint)layer >= (uint)config.Layers)
            {
                throw new HeadLensException($"no layer {layer}: the model has {config.Layers}");
            }
        }

        // The clean run keeps what is copied (every asked layer's z, stream, attention or MLP output); the corrupted run
        // keeps the stream entering each asked block, where the patched runs start (nothing before a patch changes).
        bool encoder = !config.HasOutputHead;
        string last = HeadAblation.LastHidden(model);
        var asked = layers.ToHashSet();
        bool Kept(string name, bool clean) => (encoder && name == last)
            || asked.Any(l => name == HookNames.ResidPre(l) || (clean && name == Point(site, l)));
        var cleanRun = new HookedForward(model).Run(cleanIds, name => Kept(name, clean: true));
        var corruptedRun = new HookedForward(model).Run(corruptedIds, name => Kept(name, clean: false));
        double[] cleanSentence = encoder ? Sentence(cleanRun[last], t, c) : [];

        PatchMetric metric;
        if (encoder)
        {
            metric = PatchMetric.EmbeddingSimilarity;
        }
        else
        {
            if (answer is null)
            {
                answer = TopToken(cleanRun.Logits.AsSpan((t - 1) * vocab, vocab));
                wrong = TopToken(corruptedRun.Logits.AsSpan((t - 1) * vocab, vocab));
            }

            if (wrong == answer)
            {
                wrong = null;
            }

            metric = wrong is null ? PatchMetric.LogProbability : PatchMetric.LogitDifference;
        }

        // The metric of one sequence's output: its last position's logits [V], or its last hidden states [T, C].
        double Measure(ReadOnlySpan<float> output) => metric switch
        {
            PatchMetric.LogitDifference => (double)output[answer!.Value] - output[wrong!.Value],
            PatchMetric.LogProbability => LogProbability(output, answer!.Value),
            _ => HeadAblation.Dot(Sentence(output, t, c), cleanSentence),
        };
        // A whole run's logits are [T, V]; a patched batch's only each sequence's last row, [B, V].
        ReadOnlySpan<float> Output(HookedRun run, int sequence, bool lastRowsOnly) => encoder
            ? run[last].AsSpan(sequence * t * c, t * c)
            : run.Logits.AsSpan(lastRowsOnly ? sequence * vocab : (t - 1) * vocab, vocab);

        double clean = Measure(Output(cleanRun, 0, false)), corrupted = Measure(Output(corruptedRun, 0, false));
        if (Math.Abs(clean - corrupted) <= 1e-6 * Math.Max(1, Math.Abs(clean)))
        {
            throw new HeadLensException($"the clean and the corrupted text give the same {Describe(metric)} ({clean:G6}): "
                + "there is no difference for a patch to bring back; corrupt the part of the text the answer depends on");
        }

        var patches = layers.SelectMany(l => Enumerable.Range(0, site == PatchSite.Heads ? h : t).Select(index => (Layer: l, Index: index))).ToList();
        int batchCap = HeadAblation.BatchCap(config, t, Math.Min(site == PatchSite.Heads ? h : t, maxBatch));
        var effects = new List<PatchEffect>(patches.Count);
        foreach (var (first, batch) in HeadAblation.LayerBatches([.. patches.Select(patch => patch.Layer)], batchCap))
        {
            int layer = patches[first].Layer;
            int[] index = [.. Enumerable.Range(first, batch).Select(i => patches[i].Index)];
            var batchIds = new int[batch * t];           // [B, T]: the corrupted text once per patch
            var residual = new float[batch * t * c];      // [B·T, C]: the corrupted stream entering the block
            var cleanStream = cleanRun[HookNames.ResidPre(layer)];
            for (int b = 0; b < batch; b++)
            {
                corruptedIds.CopyTo(batchIds, b * t);
                corruptedRun[HookNames.ResidPre(layer)].CopyTo(residual, b * t * c);
                if (site == PatchSite.Stream)
                {
                    // Sequence b gets the clean stream at position index[b].
                    cleanStream.AsSpan(index[b] * c, c).CopyTo(residual.AsSpan(((b * t) + index[b]) * c, c));
                }
            }

            var forward = new HookedForward(model);
            var source = cleanRun[Point(site, layer)];
            if (site == PatchSite.Heads)
            {
                // z [B·T, H, D]: sequence b gets head index[b]'s clean z at every position.
                forward.AddHook(HookNames.Z(layer), (_, z, _) =>
                {
                    for (int b = 0; b < batch; b++)
                    {
                        for (int i = 0; i < t; i++)
                        {
                            source.AsSpan(((i * h) + index[b]) * d, d).CopyTo(z.Slice(((((b * t) + i) * h) + index[b]) * d, d));
                        }
                    }
                });
            }
            else if (site != PatchSite.Stream)
            {
                // The attention's or the MLP's output [B·T, C]: sequence b gets the clean row at position index[b].
                forward.AddHook(Point(site, layer), (_, output, _) =>
                {
                    for (int b = 0; b < batch; b++)
                    {
                        source.AsSpan(index[b] * c, c).CopyTo(output.Slice(((b * t) + index[b]) * c, c));
                    }
                });
            }

            var run = forward.RunBatchFromForLastLogits(batchIds, batch, layer, residual, name => encoder && name == last);
            for (int b = 0; b < batch; b++)
            {
                double value = Measure(Output(run, b, true));
                effects.Add(new PatchEffect(layer, index[b], value, (value - corrupted) / (clean - corrupted)));
            }

            progress?.Invoke(effects.Count, patches.Count);
        }

        return new PatchingResult(cleanIds, corruptedIds, site, metric, answer, wrong, clean, corrupted, effects);
    }

    /// <summary>The capture point a site copies from the clean run, in <paramref name="layer"/>.</summary>
    public static string Point(PatchSite site, int layer) => site switch
    {
        PatchSite.Heads => HookNames.Z(layer),
        PatchSite.Stream => HookNames.ResidPre(layer),
        PatchSite.Attention => HookNames.AttentionOut(layer),
        _ => HookNames.MlpOut(layer),
    };

    /// <summary>The metric in words, for messages and tables.</summary>
    public static string Describe(PatchMetric metric) => metric switch
    {
        PatchMetric.LogitDifference => "logit difference",
        PatchMetric.LogProbability => "log-probability",
        _ => "embedding similarity",
    };

    private static void Validate(ModelConfig config, int[] cleanIds, int[] corruptedIds, int? answer, int? wrong)
    {
        if (cleanIds.Length != corruptedIds.Length)
        {
            throw new HeadLensException($"patching compares the two texts position by position: the clean one has {cleanIds.Length} tokens, "
                + $"the corrupted one {corruptedIds.Length}; make them the same length (swap a word for one of as many tokens)");
        }

        if (!config.HasOutputHead && (answer is not null || wrong is not null))
        {
            throw new HeadLensException("an answer token needs a model with an output head; an encoder is measured by its sentence embedding");
        }

        if (answer is null && wrong is not null)
        {
            throw new HeadLensException("a wrong answer needs the right one: give the answer token too");
        }

        foreach (int? token in new[] { answer, wrong })
        {
            if (token is { } id && (uint)id >= (uint)config.VocabSize)
            {
                throw new HeadLensException($"answer token id {id} is outside the vocabulary (0..{config.VocabSize - 1})");
            }
        }
    }

    private static int TopToken(ReadOnlySpan<float> logits) => System.Numerics.Tensors.TensorPrimitives.IndexOfMax(logits);

    // log softmax(logits)[token] in float64.
    private static double LogProbability(ReadOnlySpan<float> logits, int token) => logits[token] - LogitLens.LogSumExp(logits);

    // The unit mean of hidden states [T, C].
    private static double[] Sentence(ReadOnlySpan<float> hidden, int t, int c)
    {
        var sum = new double[c];
        for (int i = 0; i < t; i++)
        {
            var row = hidden.Slice(i * c, c);
            for (int j = 0; j < c; j++)
            {
                sum[j] += row[j];
            }
        }

        return HeadAblation.Unit(sum);
    }
}
