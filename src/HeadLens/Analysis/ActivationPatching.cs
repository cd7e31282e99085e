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

    /// <summary>One head's z at one position: which head carries the difference, and from where in the text.</summary>
    HeadPositions,

    /// <summary>One head's queries (hook_q, before RoPE) at every position: what the head looks for.</summary>
    Queries,

    /// <summary>One key head's keys (hook_k, before RoPE; shared by its query heads) at every position: where it finds it.</summary>
    Keys,

    /// <summary>One value head's values (hook_v; shared by its query heads) at every position: what it moves.</summary>
    Values,

    /// <summary>One head's attention pattern (hook_pattern, [T, T]): where it looks, with what it reads unchanged.</summary>
    Patterns,

    /// <summary>What one head sends straight to chosen later heads (or to the output): <see cref="ActivationPatching.Paths"/>.</summary>
    Paths,
}

/// <summary>The input of a receiving head that path patching replaces (<see cref="ActivationPatching.Paths"/>).</summary>
public enum HeadInput
{
    /// <summary>The stream as the receiver's queries read it (hook_q).</summary>
    Query,

    /// <summary>As its keys read it (hook_k: the receiver's key head).</summary>
    Key,

    /// <summary>As its values read it (hook_v: the receiver's value head).</summary>
    Value,
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
/// One patched run: <see cref="Index"/> is the head (the per-head sites, and the sending head of a path; the key or
/// value head for <see cref="PatchSite.Keys"/> and <see cref="PatchSite.Values"/>) or the position (the stream, attention
/// and MLP sites) in <see cref="Layer"/>; <see cref="Value"/> the metric on that run and
/// <see cref="Recovered"/> = (value − corrupted) / (clean − corrupted): 0 where the patch changes nothing, 1 where it
/// brings back the clean run's whole metric.
/// </summary>
public sealed record PatchEffect(int Layer, int Index, double Value, double Recovered)
{
    /// <summary>The position of a <see cref="PatchSite.HeadPositions"/> patch (the head is <see cref="Index"/>); −1 otherwise.</summary>
    public int Position { get; init; } = -1;

    /// <summary>A path's input of the receiving heads; null for the path to the output.</summary>
    public HeadInput? Input { get; init; }
}

/// <summary>
/// A patching sweep: the metric on the clean and the corrupted run, the tokens it reads (<see cref="Answer"/>, and
/// <see cref="Wrong"/> for a logit difference), and one effect per patch in layer-then-index order.
/// </summary>
public sealed record PatchingResult(int[] CleanIds, int[] CorruptedIds, PatchSite Site, PatchMetric Metric, int? Answer, int? Wrong,
    double Clean, double Corrupted, IReadOnlyList<PatchEffect> Effects)
{
    /// <summary>Path patching's receiving heads (layer, head); empty for the path to the output; null for other sweeps.</summary>
    public IReadOnlyList<(int Layer, int Head)>? Receivers { get; init; }

    /// <summary>The sending head of <see cref="ActivationPatching.PathsFrom"/> (the effects are then its receivers); null otherwise.</summary>
    public (int Layer, int Head)? Sender { get; init; }
}

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
    /// Patches every head (or every stream position, every head's queries, ...) of <paramref name="layers"/> (default:
    /// all) from <paramref name="cleanIds"/> into <paramref name="corruptedIds"/>. Decoders are measured at the last
    /// position by logit(<paramref name="answer"/>) − logit(<paramref name="wrong"/>), or by log p(answer) without a
    /// wrong token; with neither, the answer is the clean run's top token and the wrong one the corrupted run's (log
    /// p(answer) where they agree). Encoders are measured by their sentence embedding's cosine to the clean one.
    /// <paramref name="progress"/> gets (done, total) after each batch.
    /// </summary>
    public static PatchingResult Run(Transformer model, int[] cleanIds, int[] corruptedIds, PatchSite site, int? answer = null, int? wrong = null,
        IReadOnlyList<int>? layers = null, Action<int, int>? progress = null) =>
        Sweep(model, cleanIds, corruptedIds, site, answer, wrong, layers, progress, maxBatch: int.MaxValue);

    /// <summary>How many patches one layer of a site has: heads, key/value heads, head × position pairs, or positions.</summary>
    public static int PatchesPerLayer(ModelConfig config, PatchSite site, int tokens) => site switch
    {
        PatchSite.Heads or PatchSite.Queries or PatchSite.Patterns or PatchSite.Paths => config.Heads,
        PatchSite.Keys or PatchSite.Values => config.KvHeads,
        PatchSite.HeadPositions => config.Heads * tokens,
        _ => tokens,
    };

    /// <summary>As <see cref="Run"/>, at most <paramref name="maxBatch"/> patches per batched pass (tests).</summary>
    internal static PatchingResult Sweep(Transformer model, int[] cleanIds, int[] corruptedIds, PatchSite site, int? answer, int? wrong,
        IReadOnlyList<int>? layers, Action<int, int>? progress, int maxBatch)
    {
        var config = model.Config;
        int t = cleanIds.Length, c = config.Channels, d = config.HeadDim;
        if (site == PatchSite.Paths)
        {
            throw new ArgumentException("path patching has receivers: call ActivationPatching.Paths", nameof(site));
        }

        if (site == PatchSite.Mlp && !config.HasMlp)
        {
            throw new HeadLensException("this model has no MLP blocks (attention-only): there is no MLP output to patch");
        }

        layers ??= [.. Enumerable.Range(0, config.Layers)];
        foreach (int layer in layers)
        {
            CheckLayer(config, layer);
        }

        // The clean run keeps what is copied (every asked layer's z, stream, queries, ...); the corrupted run keeps the
        // stream entering each asked block, where the patched runs start (nothing before a patch changes).
        var asked = layers.ToHashSet();
        var baseline = new Baseline(model, cleanIds, corruptedIds, answer, wrong,
            (name, clean) => asked.Any(l => name == HookNames.ResidPre(l) || (clean && name == Point(site, l))));

        int perLayer = PatchesPerLayer(config, site, t);
        var patches = layers.SelectMany(l => Enumerable.Range(0, perLayer).Select(index => (Layer: l, Index: index))).ToList();
        int batchCap = HeadAblation.BatchCap(config, t, Math.Min(Math.Min(perLayer, config.Heads * t), maxBatch));
        var effects = new List<PatchEffect>(patches.Count);
        foreach (var (first, batch) in HeadAblation.LayerBatches([.. patches.Select(patch => patch.Layer)], batchCap))
        {
            int layer = patches[first].Layer;
            int[] index = [.. Enumerable.Range(first, batch).Select(i => patches[i].Index)];
            var residual = baseline.CorruptedStream(layer, batch);
            if (site == PatchSite.Stream)
            {
                // Sequence b gets the clean stream at position index[b].
                var cleanStream = baseline.CleanRun[HookNames.ResidPre(layer)];
                for (int b = 0; b < batch; b++)
                {
                    cleanStream.AsSpan(index[b] * c, c).CopyTo(residual.AsSpan(((b * t) + index[b]) * c, c));
                }
            }

            var forward = new HookedForward(model);
            var source = baseline.CleanRun[Point(site, layer)];
            if (site is PatchSite.Heads or PatchSite.HeadPositions or PatchSite.Queries or PatchSite.Keys or PatchSite.Values)
            {
                // [B·T, width, D] (width: heads, or key/value heads): sequence b gets one head's clean rows at every
                // position, or (head positions: index = head·T + position) at one.
                int width = site is PatchSite.Keys or PatchSite.Values ? config.KvHeads : config.Heads;
                forward.AddHook(Point(site, layer), (_, x, _) =>
                {
                    for (int b = 0; b < batch; b++)
                    {
                        bool one = site == PatchSite.HeadPositions;
                        int head = one ? index[b] / t : index[b], from = one ? index[b] % t : 0, to = one ? from + 1 : t;
                        for (int i = from; i < to; i++)
                        {
                            source.AsSpan(((i * width) + head) * d, d).CopyTo(x.Slice(((((b * t) + i) * width) + head) * d, d));
                        }
                    }
                });
            }
            else if (site == PatchSite.Patterns)
            {
                // hook_pattern fires once per sequence, in order, with its [H, T, T]: sequence b gets one head's clean pattern.
                int sequence = 0;
                forward.AddHook(Point(site, layer), (_, pattern, _) =>
                {
                    int head = index[sequence++];
                    source.AsSpan(head * t * t, t * t).CopyTo(pattern.Slice(head * t * t, t * t));
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

            var run = forward.RunBatchFromForLastLogits(baseline.BatchIds(batch), batch, layer, residual, baseline.KeepsLast);
            for (int b = 0; b < batch; b++)
            {
                double value = baseline.Measure(run, b);
                var effect = new PatchEffect(layer, index[b], value, baseline.Recovered(value));
                effects.Add(site == PatchSite.HeadPositions ? effect with { Index = index[b] / t, Position = index[b] % t } : effect);
            }

            progress?.Invoke(effects.Count, patches.Count);
        }

        return baseline.Result(site, effects);
    }

    /// <summary>
    /// Path patching (Wang et al. 2022, §3.1 and appendix B): how much of the clean answer comes back when only what
    /// each head of <paramref name="senderLayers"/> (default: every layer before the first receiver) sends straight to
    /// the <paramref name="receivers"/> is clean. Per sender, first the corrupted text is run with the sender's z taken
    /// from the clean run and every other head's z held at its corrupted value (MLPs and norms recomputed), so its
    /// change reaches the receivers only through the stream, not through other heads; the receivers' queries, keys and
    /// values are read there. Then, per input, the corrupted text again with those of the receivers replaced by
    /// what was read, everything else recomputed. With no receivers the path ends at the output: the first run's metric.
    /// Effects per sender in layer-then-head order: one per input (query, key, value; or only <paramref name="inputs"/>),
    /// or one for the output.
    /// </summary>
    public static PatchingResult Paths(Transformer model, int[] cleanIds, int[] corruptedIds, IReadOnlyList<(int Layer, int Head)> receivers,
        int? answer = null, int? wrong = null, IReadOnlyList<int>? senderLayers = null, Action<int, int>? progress = null,
        IReadOnlyList<HeadInput>? inputs = null) =>
        SweepPaths(model, cleanIds, corruptedIds, receivers, answer, wrong, senderLayers, progress, maxBatch: int.MaxValue, inputs);

    /// <summary>As <see cref="Paths"/>, at most <paramref name="maxBatch"/> senders per batched pass (tests).</summary>
    internal static PatchingResult SweepPaths(Transformer model, int[] cleanIds, int[] corruptedIds, IReadOnlyList<(int Layer, int Head)> receivers,
        int? answer, int? wrong, IReadOnlyList<int>? senderLayers, Action<int, int>? progress, int maxBatch, IReadOnlyList<HeadInput>? inputs = null)
    {
        var config = model.Config;
        if (receivers.Count == 0 && inputs is not null)
        {
            throw new HeadLensException("the output has no queries, keys or values: an input goes with receiving heads");
        }

        int t = cleanIds.Length, h = config.Heads;
        foreach (var (layer, head) in receivers)
        {
            CheckLayer(config, layer);
            if ((uint)head >= (uint)h)
            {
                throw new HeadLensException($"no head {layer}.{head}: layer {layer} has {h} heads");
            }
        }

        // Senders come before every receiver (the output comes after every layer).
        int firstReceiver = receivers.Count == 0 ? config.Layers : receivers.Min(r => r.Layer);
        if (firstReceiver == 0)
        {
            throw new HeadLensException("a receiving head in layer 0 has no heads before it to receive from: pick receivers in later layers");
        }

        senderLayers ??= [.. Enumerable.Range(0, firstReceiver)];
        foreach (int layer in senderLayers)
        {
            CheckLayer(config, layer);
            if (layer >= firstReceiver)
            {
                throw new HeadLensException($"layer {layer} does not come before the first receiving head's layer ({firstReceiver}): "
                    + "a path runs from an earlier head to a later one");
            }
        }

        // Held at their corrupted values: every head in the layers from the first sender to the last receiver (before
        // the output: to the last layer).
        int lastHeld = receivers.Count == 0 ? config.Layers - 1 : receivers.Max(r => r.Layer) - 1;
        int[] receiverLayers = [.. receivers.Select(r => r.Layer).Distinct().Order()];
        var asked = senderLayers.ToHashSet();
        var baseline = new Baseline(model, cleanIds, corruptedIds, answer, wrong,
            (name, clean) => asked.Any(l => name == HookNames.ResidPre(l) || (clean && name == HookNames.Z(l)))
                || receiverLayers.Any(l => name == HookNames.ResidPre(l))
                || (!clean && Enumerable.Range(0, config.Layers).Any(l => name == HookNames.Z(l))));

        HeadInput?[] traced = receivers.Count == 0 ? [null]
            : [.. (inputs ?? [HeadInput.Query, HeadInput.Key, HeadInput.Value]).Distinct().Order().Select(input => (HeadInput?)input)];
        var senders = senderLayers.Order().SelectMany(l => Enumerable.Range(0, h).Select(head => (Layer: l, Head: head))).ToList();
        int total = senders.Count * traced.Length;
        int batchCap = HeadAblation.BatchCap(config, t, Math.Min(h, maxBatch));
        var effects = new List<PatchEffect>(total);
        foreach (var (first, batch) in HeadAblation.LayerBatches([.. senders.Select(s => s.Layer)], batchCap))
        {
            int senderLayer = senders[first].Layer;
            int[] sender = [.. Enumerable.Range(first, batch).Select(i => senders[i].Head)];

            // 1. The sender's clean z with every other head held, from its layer on: the receivers' inputs [B·T, ·, D].
            var sending = Sending(model, baseline, senderLayer, lastHeld, sender, t);
            bool Read(string name) => baseline.KeepsLast(name) || receiverLayers.Any(l => IsInput(name, l));
            // Read where the receivers are, or (the output) at the end.
            var sent = receivers.Count == 0
                ? sending.RunBatchFromForLastLogits(baseline.BatchIds(batch), batch, senderLayer, baseline.CorruptedStream(senderLayer, batch), Read)
                : sending.RunBatchFromThrough(baseline.BatchIds(batch), batch, senderLayer, receiverLayers[^1], baseline.CorruptedStream(senderLayer, batch), Read);

            // 2. Per input, the corrupted text with the receivers' query, key or value rows replaced by those read in 1.
            var values = new double[traced.Length][];
            for (int n = 0; n < traced.Length; n++)
            {
                values[n] = new double[batch];
                if (traced[n] is not { } input)
                {
                    for (int b = 0; b < batch; b++)
                    {
                        values[n][b] = baseline.Measure(sent, b);
                    }

                    continue;
                }

                var receiving = new HookedForward(model);
                foreach (int l in receiverLayers)
                {
                    int[] columns = [.. receivers.Where(r => r.Layer == l).Select(r => Column(config, input, r.Head)).Distinct()];
                    Receive(receiving, config, InputPoint(input, l), input, sent[InputPoint(input, l)], shared: false, _ => columns, batch, t);
                }

                var run = receiving.RunBatchFromForLastLogits(baseline.BatchIds(batch), batch, receiverLayers[0],
                    baseline.CorruptedStream(receiverLayers[0], batch), baseline.KeepsLast);
                for (int b = 0; b < batch; b++)
                {
                    values[n][b] = baseline.Measure(run, b);
                }
            }

            for (int b = 0; b < batch; b++)
            {
                for (int n = 0; n < traced.Length; n++)
                {
                    effects.Add(new PatchEffect(senderLayer, sender[b], values[n][b], baseline.Recovered(values[n][b])) { Input = traced[n] });
                }
            }

            progress?.Invoke(effects.Count, total);
        }

        return baseline.Result(PatchSite.Paths, effects) with { Receivers = receivers };
    }

    /// <summary>
    /// Path patching the other way round: what one head (<paramref name="sender"/>) sends straight to the queries, keys
    /// and values of every head of <paramref name="receiverLayers"/> (default: every later layer), each receiver on its
    /// own. One sending run (the sender's z clean, every other head held at its corrupted value; the later heads'
    /// inputs read there), then per receiving layer and input one batch with each head's input replaced. The path to
    /// one receiver is the one <see cref="Paths"/> measures into it. Effects per receiver (layer, head) in
    /// layer-then-head order, one per input (or only <paramref name="inputs"/>).
    /// </summary>
    public static PatchingResult PathsFrom(Transformer model, int[] cleanIds, int[] corruptedIds, (int Layer, int Head) sender,
        int? answer = null, int? wrong = null, IReadOnlyList<int>? receiverLayers = null, Action<int, int>? progress = null,
        IReadOnlyList<HeadInput>? inputs = null)
    {
        var config = model.Config;
        int t = cleanIds.Length, h = config.Heads;
        CheckLayer(config, sender.Layer);
        if ((uint)sender.Head >= (uint)h)
        {
            throw new HeadLensException($"no head {sender.Layer}.{sender.Head}: layer {sender.Layer} has {h} heads");
        }

        if (sender.Layer == config.Layers - 1)
        {
            throw new HeadLensException($"layer {sender.Layer} is the last: no head comes after {sender.Layer}.{sender.Head} to receive from it");
        }

        receiverLayers ??= [.. Enumerable.Range(sender.Layer + 1, config.Layers - sender.Layer - 1)];
        foreach (int layer in receiverLayers)
        {
            CheckLayer(config, layer);
            if (layer <= sender.Layer)
            {
                throw new HeadLensException($"layer {layer} does not come after the sending head's layer ({sender.Layer}): "
                    + "a path runs from an earlier head to a later one");
            }
        }

        int[] layers = [.. receiverLayers.Distinct().Order()];
        var baseline = new Baseline(model, cleanIds, corruptedIds, answer, wrong,
            (name, clean) => (clean && name == HookNames.Z(sender.Layer))
                || (!clean && (name == HookNames.ResidPre(sender.Layer) || layers.Any(l => name == HookNames.ResidPre(l))
                    || Enumerable.Range(0, config.Layers).Any(l => name == HookNames.Z(l)))));
        HeadInput[] traced = [.. (inputs ?? [HeadInput.Query, HeadInput.Key, HeadInput.Value]).Distinct().Order()];

        // 1. One sending run, stopped after the last receiving layer's inputs.
        var sent = Sending(model, baseline, sender.Layer, layers[^1] - 1, [sender.Head], t)
            .RunBatchFromThrough(baseline.BatchIds(1), 1, sender.Layer, layers[^1], baseline.CorruptedStream(sender.Layer, 1),
                name => layers.Any(l => IsInput(name, l)));

        // 2. Per receiving layer and input, one batch: sequence b gets head b's input as the sending run had it.
        int total = layers.Length * h * traced.Length;
        int batchCap = HeadAblation.BatchCap(config, t, h);
        var values = new Dictionary<(int Layer, int Head, HeadInput Input), double>();
        foreach (int layer in layers)
        {
            foreach (var input in traced)
            {
                for (int first = 0; first < h; first += batchCap)
                {
                    int batch = Math.Min(batchCap, h - first);
                    var receiving = new HookedForward(model);
                    Receive(receiving, config, InputPoint(input, layer), input, sent[InputPoint(input, layer)], shared: true,
                        b => [Column(config, input, first + b)], batch, t);
                    var run = receiving.RunBatchFromForLastLogits(baseline.BatchIds(batch), batch, layer, baseline.CorruptedStream(layer, batch),
                        baseline.KeepsLast);
                    for (int b = 0; b < batch; b++)
                    {
                        values[(layer, first + b, input)] = baseline.Measure(run, b);
                    }

                    progress?.Invoke(values.Count, total);
                }
            }
        }

        var effects = layers.SelectMany(layer => Enumerable.Range(0, h).SelectMany(head => traced.Select(input =>
        {
            double value = values[(layer, head, input)];
            return new PatchEffect(layer, head, value, baseline.Recovered(value)) { Input = input };
        }))).ToList();
        return baseline.Result(PatchSite.Paths, effects) with { Sender = sender };
    }

    // The sending run of path patching, from senderLayer: each sequence b's z takes head sender[b]'s from the clean run
    // and every other head's, up to lastHeld, from the corrupted one.
    private static HookedForward Sending(Transformer model, Baseline baseline, int senderLayer, int lastHeld, int[] sender, int t)
    {
        int h = model.Config.Heads, d = model.Config.HeadDim;
        var sending = new HookedForward(model);
        for (int l = senderLayer; l <= lastHeld; l++)
        {
            var held = baseline.CorruptedRun[HookNames.Z(l)];
            var clean = l == senderLayer ? baseline.CleanRun[HookNames.Z(l)] : null;
            sending.AddHook(HookNames.Z(l), (_, z, _) =>
            {
                for (int b = 0; b < sender.Length; b++)
                {
                    held.CopyTo(z.Slice(b * t * h * d, t * h * d));
                    for (int i = 0; clean is not null && i < t; i++)
                    {
                        clean.AsSpan(((i * h) + sender[b]) * d, d).CopyTo(z.Slice(((((b * t) + i) * h) + sender[b]) * d, d));
                    }
                }
            });
        }

        return sending;
    }

    // The receiving runs' hook at `point` ([B·T, width, D]): sequence b's rows of the heads columns(b) replaced by
    // those of `read`, the sending run's — B·T rows of its own batch, or (shared) one sequence's T rows for every b.
    private static void Receive(HookedForward receiving, ModelConfig config, string point, HeadInput input, float[] read, bool shared,
        Func<int, int[]> columns, int batch, int t)
    {
        int width = input == HeadInput.Query ? config.Heads : config.KvHeads, d = config.HeadDim;
        receiving.AddHook(point, (_, x, _) =>
        {
            for (int b = 0; b < batch; b++)
            {
                foreach (int column in columns(b))
                {
                    for (int i = 0; i < t; i++)
                    {
                        int row = (b * t) + i, from = shared ? i : row;
                        read.AsSpan(((from * width) + column) * d, d).CopyTo(x.Slice(((row * width) + column) * d, d));
                    }
                }
            }
        });
    }

    // The capture point of a head input in a layer, whether a name is one of a layer's inputs, and the column a query
    // head's input sits in (its key/value head's for keys and values).
    private static string InputPoint(HeadInput input, int layer) => input switch
    {
        HeadInput.Query => HookNames.Q(layer),
        HeadInput.Key => HookNames.K(layer),
        _ => HookNames.V(layer),
    };

    private static bool IsInput(string name, int layer) => name == HookNames.Q(layer) || name == HookNames.K(layer) || name == HookNames.V(layer);

    private static int Column(ModelConfig config, HeadInput input, int head) => input == HeadInput.Query ? head : head / (config.Heads / config.KvHeads);

    /// <summary>The capture point a site copies from the clean run, in <paramref name="layer"/>.</summary>
    public static string Point(PatchSite site, int layer) => site switch
    {
        PatchSite.Heads or PatchSite.HeadPositions or PatchSite.Paths => HookNames.Z(layer),
        PatchSite.Stream => HookNames.ResidPre(layer),
        PatchSite.Attention => HookNames.AttentionOut(layer),
        PatchSite.Mlp => HookNames.MlpOut(layer),
        PatchSite.Queries => HookNames.Q(layer),
        PatchSite.Keys => HookNames.K(layer),
        PatchSite.Values => HookNames.V(layer),
        _ => HookNames.Pattern(layer),
    };

    /// <summary>The metric in words, for messages and tables.</summary>
    public static string Describe(PatchMetric metric) => metric switch
    {
        PatchMetric.LogitDifference => "logit difference",
        PatchMetric.LogProbability => "log-probability",
        _ => "embedding similarity",
    };

    private static void CheckLayer(ModelConfig config, int layer)
    {
        if ((uint)layer >= (uint)config.Layers)
        {
            throw new HeadLensException($"no layer {layer}: the model has {config.Layers}");
        }
    }

    /// <summary>
    /// The clean and the corrupted run a sweep compares with (each keeping the points <c>kept(name, clean)</c> asks
    /// for), the metric both are read by, and the pieces every patched batch needs.
    /// </summary>
    internal sealed class Baseline
    {
        private readonly int[] corruptedIds;
        private readonly int t, c, vocab;
        private readonly bool encoder;
        private readonly string last;
        private readonly double[] cleanSentence;
        private readonly int? answer, wrong;
        private readonly PatchMetric metric;
        private readonly double clean, corrupted;
        private readonly HookedRun? corruptedRun;
        private readonly float[] corruptedLast;   // [V]: the corrupted run's last-position logits (decoders)

        /// <param name="corruptedLastLogits">
        /// The corrupted run's last-position logits [V] where the caller has them (attribution patching's training
        /// forward): the corrupted run is then not repeated, and <see cref="CorruptedRun"/> is not there to read; the
        /// clean run computes its last position's logits only, with fused attention (<see cref="HookedForward.RunForLastLogits"/>).
        /// </param>
        public Baseline(Transformer model, int[] cleanIds, int[] corruptedIds, int? answer, int? wrong, Func<string, bool, bool> kept,
            float[]? corruptedLastLogits = null)
        {
            var config = model.Config;
            Validate(config, cleanIds, corruptedIds, answer, wrong);
            this.corruptedIds = corruptedIds;
            (t, c, vocab) = (cleanIds.Length, config.Channels, config.VocabSize);
            encoder = !config.HasOutputHead;
            last = HeadAblation.LastHidden(model);
            CleanRun = corruptedLastLogits is null
                ? new HookedForward(model).Run(cleanIds, name => KeepsLast(name) || kept(name, true))
                : new HookedForward(model).RunForLastLogits(cleanIds, name => kept(name, true));
            int cleanLastRow = corruptedLastLogits is null ? t - 1 : 0;
            corruptedRun = corruptedLastLogits is null ? new HookedForward(model).Run(corruptedIds, name => KeepsLast(name) || kept(name, false)) : null;
            corruptedLast = corruptedLastLogits ?? (encoder ? [] : corruptedRun!.Logits.AsSpan((t - 1) * vocab, vocab).ToArray());
            cleanSentence = encoder ? Sentence(CleanRun[last], t, c) : [];
            if (encoder)
            {
                metric = PatchMetric.EmbeddingSimilarity;
            }
            else
            {
                if (answer is null)
                {
                    answer = TopToken(CleanRun.Logits.AsSpan(cleanLastRow * vocab, vocab));
                    wrong = TopToken(corruptedLast);
                }

                if (wrong == answer)
                {
                    wrong = null;
                }

                metric = wrong is null ? PatchMetric.LogProbability : PatchMetric.LogitDifference;
            }

            (this.answer, this.wrong) = (answer, wrong);
            clean = Measure(encoder ? CleanRun[last] : CleanRun.Logits.AsSpan(cleanLastRow * vocab, vocab));
            corrupted = Measure(encoder ? CorruptedRun[last] : corruptedLast);
            if (Math.Abs(clean - corrupted) <= 1e-6 * Math.Max(1, Math.Abs(clean)))
            {
                throw new HeadLensException($"the clean and the corrupted text give the same {Describe(metric)} ({clean:G6}): "
                    + "there is no difference for a patch to bring back; corrupt the part of the text the answer depends on");
            }
        }

        public HookedRun CleanRun { get; }

        public HookedRun CorruptedRun => corruptedRun ?? throw new InvalidOperationException("this baseline was given the corrupted run's logits only");

        /// <summary>Whether a patched run keeps this point: the encoder's last hidden states, which its metric reads.</summary>
        public bool KeepsLast(string name) => encoder && name == last;

        /// <summary>[B, T]: the corrupted text once per sequence of a batch.</summary>
        public int[] BatchIds(int batch)
        {
            var ids = new int[batch * t];
            for (int b = 0; b < batch; b++)
            {
                corruptedIds.CopyTo(ids, b * t);
            }

            return ids;
        }

        /// <summary>[B·T, C]: the corrupted stream entering <paramref name="layer"/>, once per sequence.</summary>
        public float[] CorruptedStream(int layer, int batch)
        {
            var stream = CorruptedRun[HookNames.ResidPre(layer)];
            var residual = new float[batch * t * c];
            for (int b = 0; b < batch; b++)
            {
                stream.CopyTo(residual, b * t * c);
            }

            return residual;
        }

        /// <summary>The metric of sequence b of a batch run with last-row logits ([B, V]) or kept hidden states.</summary>
        public double Measure(HookedRun run, int b) =>
            Measure(encoder ? run[last].AsSpan(b * t * c, t * c) : run.Logits.AsSpan(b * vocab, vocab));

        public double Recovered(double value) => (value - corrupted) / (clean - corrupted);

        /// <summary>The corrupted run's metric.</summary>
        public double Corrupted => corrupted;

        /// <summary>
        /// ∂metric/∂logits on the corrupted run [T·V], nonzero at the last position only: +1 for the answer and −1 for
        /// the wrong token (a logit difference), or onehot(answer) − softmax (log p(answer)). Decoders only.
        /// </summary>
        public float[] MetricGradient()
        {
            var gradient = new float[t * vocab];
            var lastRow = gradient.AsSpan((t - 1) * vocab, vocab);
            if (metric == PatchMetric.LogitDifference)
            {
                lastRow[answer!.Value] = 1;
                lastRow[wrong!.Value] = -1;
            }
            else
            {
                ReadOnlySpan<float> logits = corruptedLast;
                double logSumExp = LogitLens.LogSumExp(logits);
                for (int i = 0; i < vocab; i++)
                {
                    lastRow[i] = (float)-Math.Exp(logits[i] - logSumExp);
                }

                lastRow[answer!.Value] += 1;
            }

            return gradient;
        }

        public PatchingResult Result(PatchSite site, List<PatchEffect> effects) =>
            new(CleanRun.Ids, corruptedIds, site, metric, answer, wrong, clean, corrupted, effects);

        // The metric of one sequence's output: its last position's logits [V], or its last hidden states [T, C].
        private double Measure(ReadOnlySpan<float> output) => metric switch
        {
            PatchMetric.LogitDifference => (double)output[answer!.Value] - output[wrong!.Value],
            PatchMetric.LogProbability => LogProbability(output, answer!.Value),
            _ => HeadAblation.Dot(Sentence(output, t, c), cleanSentence),
        };
    }

    internal static void Validate(ModelConfig config, int[] cleanIds, int[] corruptedIds, int? answer, int? wrong)
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
