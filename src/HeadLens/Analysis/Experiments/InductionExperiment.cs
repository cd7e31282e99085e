using System.Diagnostics;
using System.Globalization;
using System.Text;
using HeadLens.Kernels;
using HeadLens.Model;
using HeadLens.Training;

namespace HeadLens.Analysis.Experiments;

/// <summary>What one trained model shows.</summary>
public sealed record InductionOutcome(
    int Layers, double FinalLoss, double[,] PrefixScores, double[,] PreviousScores, double[,] CopyingScores,
    double FirstCopyLoss, double SecondCopyLoss, (int Layer, int Head) TopInductionHead, double AblatedSecondCopyLoss,
    double Seconds, List<(int Step, double Loss)> Curve, int InductionHeads, double AllAblatedSecondCopyLoss);

/// <summary>
/// Induction heads from scratch (Olsson et al. 2022): train 1-layer and 2-layer attention-only transformers on
/// random tokens in which a segment of random length is copied to a random later position, then measure
///   - each head's prefix-matching score (HeadScores.Induction on a random block repeated twice), previous-token
///     score and copying score (positive OV eigenvalues);
///   - the loss on the second copy of a repeated random block against the first (only a model that looks back can
///     predict the second copy; random tokens give the first copy ln V);
///   - the second-copy loss when the top induction head is zero-ablated.
/// Random segment lengths and positions matter: with a fixed repeat period even one layer can learn a "look back P
/// tokens" head that scores high on prefix matching without any induction.
/// Positions: rotary (RoPE) on queries and keys only, never added to the residual stream — like the shortformer
/// positions of the paper's small models, so the values a head moves carry token identity, not position.
/// </summary>
public static class InductionExperiment
{
    public sealed record Settings
    {
        public static Settings Default { get; } = new();

        public int Steps { get; init; } = 4000;

        public int Batch { get; init; } = 64;

        public int Context { get; init; } = 64;

        public int Vocab { get; init; } = 128;

        public int Channels { get; init; } = 64;

        public int Heads { get; init; } = 8;

        public float LearningRate { get; init; } = 1e-3f;

        public int WarmupSteps { get; init; } = 100;

        public int MinSegment { get; init; } = 4;

        public int MaxSegment { get; init; } = 24;

        public int Seed { get; init; } = 1;

        /// <summary>Softmax attention (the paper's), or linear attention in its place.</summary>
        public AttentionForm Attention { get; init; } = AttentionForm.Softmax;

        /// <summary>The model depths trained, one model each.</summary>
        public IReadOnlyList<int> LayerCounts { get; init; } = [1, 2];

        /// <summary>Random repeated blocks averaged over in the evaluation.</summary>
        public int Probes { get; init; } = 16;
    }

    /// <summary>Llama's features (RMSNorm, rotary positions, no biases), attention-only, untied.</summary>
    public static ModelConfig ModelFor(Settings settings, int layers) =>
        ModelPresets.Llama(settings.Vocab, settings.Context, layers, settings.Heads, settings.Heads, settings.Channels, hidden: 0) with
        {
            Mlp = MlpKind.None,
            AttentionForm = settings.Attention,
        };

    /// <summary>
    /// One training sequence of T + 1 tokens: uniform random tokens, then a segment [s, s+L) copied to [d, d+L) with
    /// L uniform in [MinSegment, MaxSegment], s uniform, d uniform among the positions after the segment.
    /// </summary>
    public static void Sample(Random random, Settings settings, Span<int> sequence)
    {
        int n = sequence.Length;
        for (int i = 0; i < n; i++)
        {
            sequence[i] = random.Next(settings.Vocab);
        }

        int length = random.Next(settings.MinSegment, Math.Min(settings.MaxSegment, n / 2) + 1);
        int source = random.Next(0, n - (2 * length) + 1);
        int destination = random.Next(source + length, n - length + 1);
        sequence.Slice(source, length).CopyTo(sequence.Slice(destination, length));
    }

    /// <summary>
    /// Trains one model through the shared <see cref="TrainingLoop"/> on <see cref="RandomCopyBatches"/>: AdamW with a
    /// linear warm-up and no decay, gradients clipped to norm 1; the mean loss of every 250 steps goes to the curve.
    /// </summary>
    public static Transformer Train(Settings settings, int layers, Action<string> log, List<(int Step, double Loss)> curve)
    {
        var model = Transformer.Create(ModelFor(settings, layers), settings.Seed + layers);
        var optimizer = new AdamWOptimizer(model, new AdamWSettings(settings.LearningRate, WeightDecay: 0.01f));
        var batches = new RandomCopyBatches(new Random(settings.Seed * 7919 + layers), settings);
        var loop = new TrainingLoop(model, optimizer, batches, new TrainingLoopSettings(
            settings.Steps, settings.Batch, settings.Context, step => settings.LearningRate * Math.Min(1f, step / (float)settings.WarmupSteps)));
        var clock = Stopwatch.StartNew();
        double recent = 0;
        try
        {
            loop.Run(CancellationToken.None, progress =>
            {
                int step = progress.Step;
                recent += progress.Loss;
                if (step % 250 == 0 || step == settings.Steps)
                {
                    int span = step % 250 == 0 ? 250 : step % 250;
                    curve.Add((step, recent / span));
                    log(string.Create(CultureInfo.InvariantCulture, $"  {layers}-layer step {step,5}/{settings.Steps}: loss {recent / span:F3}  ({clock.Elapsed.TotalSeconds:F0} s; forward {loop.ForwardMilliseconds / step:F1} ms, backward {loop.BackwardMilliseconds / step:F1} ms per step)"));
                    recent = 0;
                }
            });
        }
        catch (NonFiniteLossException error)
        {
            throw new HeadLensException($"induction experiment: {error.Message}");
        }

        return model;
    }

    /// <summary>Batches of <see cref="Sample"/> sequences: ids are a sequence's first T tokens, targets its last T.</summary>
    private sealed class RandomCopyBatches(Random random, Settings settings) : IBatchSource
    {
        private readonly int[] sequence = new int[settings.Context + 1];

        public void Next(Span<int> ids, Span<int> targets, int batch, int context)
        {
            for (int row = 0; row < batch; row++)
            {
                Sample(random, settings, sequence);
                sequence.AsSpan(0, context).CopyTo(ids.Slice(row * context, context));
                sequence.AsSpan(1, context).CopyTo(targets.Slice(row * context, context));
            }
        }
    }

    /// <summary>Scores, copy losses and the ablation of one trained model, on fresh random repeated blocks.</summary>
    public static InductionOutcome Evaluate(Transformer model, Settings settings, double seconds, List<(int Step, double Loss)> curve)
    {
        var config = model.Config;
        int period = settings.Context / 2, t = 2 * period;
        var random = new Random(settings.Seed + 1000);
        var prefix = new double[config.Layers, config.Heads];
        var previous = new double[config.Layers, config.Heads];
        var probes = new List<int[]>();
        for (int p = 0; p < settings.Probes; p++)
        {
            var block = Enumerable.Range(0, period).Select(_ => random.Next(settings.Vocab)).ToArray();
            probes.Add([.. block, .. block]);
        }

        var forward = new HookedForward(model);
        double first = 0, second = 0;
        foreach (var ids in probes)
        {
            var run = forward.Run(ids, name => name.EndsWith("hook_pattern", StringComparison.Ordinal));
            for (int l = 0; l < config.Layers; l++)
            {
                var patterns = run[HookNames.Pattern(l)];
                for (int h = 0; h < config.Heads; h++)
                {
                    var pattern = patterns.AsSpan(h * t * t, t * t);
                    prefix[l, h] += HeadScores.Induction(pattern, t, ids) / probes.Count;
                    previous[l, h] += HeadScores.PreviousToken(pattern, t) / probes.Count;
                }
            }

            var (a, b) = CopyLosses(run.Logits, ids, period, config.VocabSize);
            first += a / probes.Count;
            second += b / probes.Count;
        }

        var top = (Layer: 0, Head: 0);
        for (int l = 0; l < config.Layers; l++)
        {
            for (int h = 0; h < config.Heads; h++)
            {
                top = prefix[l, h] > prefix[top.Layer, top.Head] ? (l, h) : top;
            }
        }

        var ablated = new HookedForward(model).ZeroAblateHead(top.Layer, top.Head);
        double ablatedSecond = probes.Average(ids => CopyLosses(ablated.Run(ids).Logits, ids, period, config.VocabSize).Second);

        // Induction heads are often redundant: ablate every head at or above the induction threshold as well.
        double threshold = HeadKinds.Rules.Single(rule => rule.Kind == "induction").Threshold;
        var allAblated = new HookedForward(model);
        int inductionHeads = 0;
        for (int l = 0; l < config.Layers; l++)
        {
            for (int h = 0; h < config.Heads; h++)
            {
                if (prefix[l, h] >= threshold)
                {
                    allAblated.ZeroAblateHead(l, h);
                    inductionHeads++;
                }
            }
        }

        double allAblatedSecond = probes.Average(ids => CopyLosses(allAblated.Run(ids).Logits, ids, period, config.VocabSize).Second);
        return new InductionOutcome(config.Layers, curve.Count > 0 ? curve[^1].Loss : double.NaN, prefix, previous, Circuits.CopyingScores(model),
            first, second, top, ablatedSecond, seconds, curve, inductionHeads, allAblatedSecond);
    }

    /// <summary>
    /// Mean next-token loss over the first copy (predicting tokens 1..P−1 of the block) and over the second copy
    /// (predicting tokens P+1..2P−1, each of which the first copy shows).
    /// </summary>
    public static (double First, double Second) CopyLosses(float[] logits, int[] ids, int period, int vocab)
    {
        int t = ids.Length;
        var targets = new int[t];
        for (int i = 0; i < t; i++)
        {
            targets[i] = i + 1 < t ? ids[i + 1] : -1;
        }

        var losses = new float[t];
        CrossEntropy.Forward(logits, targets, t, vocab, losses);
        double first = 0, second = 0;
        for (int i = 0; i < period - 1; i++)
        {
            first += losses[i];
            second += losses[period + i];
        }

        return (first / (period - 1), second / (period - 1));
    }

    public static string Run(Settings settings, Action<string> log)
    {
        var outcomes = new List<InductionOutcome>();
        foreach (int layers in settings.LayerCounts)
        {
            log($"Training a {layers}-layer attention-only model ({settings.Heads} {Form(settings)}heads, d_model {settings.Channels}, RoPE on q/k only, "
                + $"batch {settings.Batch}×{settings.Context}, AdamW {settings.LearningRate}, {settings.Steps} steps) on random-copy data:");
            var clock = Stopwatch.StartNew();
            var curve = new List<(int Step, double Loss)>();
            var model = Train(settings, layers, log, curve);
            var outcome = Evaluate(model, settings, clock.Elapsed.TotalSeconds, curve);
            outcomes.Add(outcome);
            log(Summary(outcome));
        }

        return Report(settings, outcomes);
    }

    private static string Summary(InductionOutcome o)
    {
        var culture = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        for (int l = 0; l < o.Layers; l++)
        {
            text.AppendLine(culture, $"  layer {l}: prefix matching {Row(o.PrefixScores, l)}");
            text.AppendLine(culture, $"           previous token  {Row(o.PreviousScores, l)}");
            text.AppendLine(culture, $"           copying         {Row(o.CopyingScores, l)}");
        }

        text.AppendLine(culture, $"  top induction head {o.TopInductionHead.Layer}.{o.TopInductionHead.Head} (prefix score {o.PrefixScores[o.TopInductionHead.Layer, o.TopInductionHead.Head]:F2})");
        text.AppendLine(culture, $"  loss on a repeated random block: first copy {o.FirstCopyLoss:F3}, second copy {o.SecondCopyLoss:F3} "
            + $"({100 * o.SecondCopyLoss / o.FirstCopyLoss:F0}% of the first); with the top induction head ablated {o.AblatedSecondCopyLoss:F3} "
            + $"({100 * o.AblatedSecondCopyLoss / o.FirstCopyLoss:F0}%)");
        text.AppendLine(culture, $"  with all {o.InductionHeads} heads of prefix score ≥ 0.4 ablated: second copy {o.AllAblatedSecondCopyLoss:F3} ({100 * o.AllAblatedSecondCopyLoss / o.FirstCopyLoss:F0}%)");
        text.Append(culture, $"  trained in {o.Seconds:F0} s");
        return text.ToString();
    }

    private static string Form(Settings settings) => settings.Attention == AttentionForm.Linear ? "linear-attention " : "";

    private static string Row(double[,] scores, int layer) =>
        string.Join(" ", Enumerable.Range(0, scores.GetLength(1)).Select(h => scores[layer, h].ToString("F2", CultureInfo.InvariantCulture)));

    private static string Report(Settings settings, List<InductionOutcome> outcomes)
    {
        var culture = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        text.AppendLine("# Induction heads from scratch").AppendLine();
        text.AppendLine(culture, $"Attention-only transformers ({settings.Heads} {Form(settings)}heads, d_model {settings.Channels}, pre-RMSNorm, rotary positions on queries and keys only),");
        text.AppendLine(culture, $"trained {settings.Steps} steps with AdamW (lr {settings.LearningRate}, warm-up {settings.WarmupSteps}), batch {settings.Batch} × {settings.Context} tokens,");
        text.AppendLine(culture, $"on uniform random tokens (V = {settings.Vocab}) in which a segment of {settings.MinSegment}–{settings.MaxSegment} tokens is copied to a random later position.");
        text.AppendLine(culture, $"Evaluation on {settings.Probes} random blocks of {settings.Context / 2} tokens repeated twice.").AppendLine();
        text.AppendLine("| model | final train loss | first-copy loss | second-copy loss | second / first | top induction head | its prefix score | second-copy loss with it ablated | heads with prefix score ≥ 0.4 | second-copy loss with all of them ablated | max previous-token score (layer 0) | time |");
        text.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var o in outcomes)
        {
            double maxPrevious = Enumerable.Range(0, o.PreviousScores.GetLength(1)).Max(h => o.PreviousScores[0, h]);
            text.AppendLine(culture, $"| {o.Layers}-layer | {o.FinalLoss:F3} | {o.FirstCopyLoss:F3} | {o.SecondCopyLoss:F3} | {100 * o.SecondCopyLoss / o.FirstCopyLoss:F0}% | "
                + $"{o.TopInductionHead.Layer}.{o.TopInductionHead.Head} | {o.PrefixScores[o.TopInductionHead.Layer, o.TopInductionHead.Head]:F2} | "
                + $"{o.AblatedSecondCopyLoss:F3} ({100 * o.AblatedSecondCopyLoss / o.FirstCopyLoss:F0}%) | {o.InductionHeads} | "
                + $"{o.AllAblatedSecondCopyLoss:F3} ({100 * o.AllAblatedSecondCopyLoss / o.FirstCopyLoss:F0}%) | {maxPrevious:F2} | {o.Seconds:F0} s |");
        }

        foreach (var o in outcomes)
        {
            text.AppendLine().AppendLine(culture, $"## {o.Layers}-layer model: scores per head").AppendLine();
            text.AppendLine("| layer | score | " + string.Join(" | ", Enumerable.Range(0, o.PrefixScores.GetLength(1)).Select(h => $"head {h}")) + " |");
            text.AppendLine("|---|---|" + string.Concat(Enumerable.Repeat("---|", o.PrefixScores.GetLength(1))));
            for (int l = 0; l < o.Layers; l++)
            {
                foreach (var (name, scores) in new[] { ("prefix matching", o.PrefixScores), ("previous token", o.PreviousScores), ("copying", o.CopyingScores) })
                {
                    text.AppendLine(culture, $"| {l} | {name} | {Row(scores, l).Replace(" ", " | ", StringComparison.Ordinal)} |");
                }
            }

            text.AppendLine().AppendLine("Training loss: " + string.Join(", ", o.Curve.Select(point => string.Create(culture, $"{point.Step}: {point.Loss:F3}"))));
        }

        return text.ToString();
    }
}
