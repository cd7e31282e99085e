using HeadLens.Model;
using HeadLens.Tokenization;

namespace HeadLens.Training;

/// <summary>
/// Next-token training on a corpus: random windows of it (CorpusBatches, a seeded generator whose state is
/// checkpointed), the shared <see cref="TrainingLoop"/> (cross-entropy, gradient accumulation, global-norm clipping,
/// AdamW) with warmup + cosine schedule, validation on fixed windows, and checkpoints (<see cref="TrainingCheckpoint"/>,
/// with the loss curve of <see cref="TrainingPlots"/>), so a resumed run continues exactly where an uninterrupted one
/// would have been.
/// </summary>
public sealed class Trainer
{
    public const string StateFile = TrainingCheckpoint.StateFile;
    public const string OptimizerFile = TrainingCheckpoint.OptimizerFile;

    private readonly Corpus corpus;
    private readonly CorpusBatches batches;
    private readonly TrainingLoop loop;

    public Trainer(Transformer model, ITokenizer tokenizer, Corpus corpus, TrainingSettings settings, string outputDirectory)
    {
        if (settings.Context > model.Config.ContextLength)
        {
            throw new HeadLensException($"training context {settings.Context} exceeds the model's context of {model.Config.ContextLength}");
        }

        Tokenizer = tokenizer;
        this.corpus = corpus;
        Settings = settings;
        OutputDirectory = outputDirectory;
        batches = new CorpusBatches(corpus, (ulong)settings.Seed, settings.RepeatedShare,
            settings.RepeatRandomTokens ? tokenizer.VocabSize : 0);
        var optimizer = new AdamWOptimizer(model, new Kernels.AdamWSettings(settings.LearningRate, WeightDecay: settings.WeightDecay));
        loop = new TrainingLoop(model, optimizer, batches, LoopSettings(settings));
    }

    public Transformer Model => loop.Model;

    public ITokenizer Tokenizer { get; }

    /// <summary>The run's settings; a resumed run may change only Steps, EvalInterval and CheckpointInterval.</summary>
    public TrainingSettings Settings { get; set; }

    public string OutputDirectory { get; }

    public AdamWOptimizer Optimizer => loop.Optimizer;

    /// <summary>Optimiser steps completed.</summary>
    public int Step => loop.Step;

    public List<float> Losses => loop.Losses;

    public List<(int Step, float Loss)> ValidationLosses { get; } = [];

    /// <summary>Continues the run saved in <paramref name="outputDirectory"/>; <paramref name="steps"/> may extend it.</summary>
    public static Trainer Resume(string outputDirectory, Corpus corpus, int? steps, ModelConfig? expectedShape)
    {
        var checkpoint = TrainingCheckpoint.Load(outputDirectory, corpus, steps, expectedShape);
        var state = checkpoint.State;
        var trainer = new Trainer(checkpoint.Model, checkpoint.Tokenizer ?? new ByteTokenizer(), corpus, state.Settings, outputDirectory);
        trainer.loop.Step = state.Step;
        trainer.batches.State = state.SamplerState;
        trainer.Losses.AddRange(state.Losses);
        trainer.ValidationLosses.AddRange(state.ValidationLosses);
        checkpoint.RestoreMoments(trainer.Optimizer);
        return trainer;
    }

    /// <inheritdoc cref="TrainingCheckpoint.RecoverInterruptedSave"/>
    public static void RecoverInterruptedSave(string outputDirectory) => TrainingCheckpoint.RecoverInterruptedSave(outputDirectory);

    /// <summary>
    /// Trains until <see cref="TrainingSettings.Steps"/>, reporting progress; saves a checkpoint every
    /// CheckpointInterval steps, at the end, and when cancelled (Ctrl-C). A NaN or infinite loss stops the run
    /// with an error naming the step; the last good checkpoint stays.
    /// </summary>
    public void Run(CancellationToken cancellation, Action<TrainingProgress>? progress = null)
    {
        var s = Settings;
        loop.Settings = LoopSettings(s);
        bool finished;
        try
        {
            finished = loop.Run(cancellation, progress, step =>
            {
                float? validation = null;
                if (step % s.EvalInterval == 0 || step == s.Steps)
                {
                    validation = ValidationLoss();
                    ValidationLosses.Add((step, validation.Value));
                }

                if (step % s.CheckpointInterval == 0 || step == s.Steps)
                {
                    SaveCheckpoint();
                }

                return validation;
            });
        }
        catch (NonFiniteLossException error)
        {
            throw new HeadLensException($"{error.Message}; training stopped, the last good checkpoint in {OutputDirectory} is kept");
        }

        if (!finished)
        {
            SaveCheckpoint();
            throw new OperationCanceledException($"stopped at step {Step}; checkpoint saved in {OutputDirectory}");
        }
    }

    /// <summary>Mean loss over fixed, evenly spaced windows of the validation split (the same windows every time).</summary>
    public float ValidationLoss(int maxBatches = 4)
    {
        var s = Settings;
        int t = s.Context, windows = Math.Max(1, (corpus.Validation.Length - 1) / t);
        int batchCount = Math.Min(maxBatches, Math.Max(1, windows / s.Batch));
        var ids = new int[s.Batch * t];
        var targets = new int[s.Batch * t];
        double total = 0;
        for (int batch = 0; batch < batchCount; batch++)
        {
            for (int b = 0; b < s.Batch; b++)
            {
                int start = (int)((long)(batch * s.Batch + b) * (corpus.Validation.Length - t - 1) / (batchCount * s.Batch));
                corpus.Validation.AsSpan(start, t).CopyTo(ids.AsSpan(b * t));
                corpus.Validation.AsSpan(start + 1, t).CopyTo(targets.AsSpan(b * t));
            }

            total += Model.Forward(ids, targets, s.Batch, t);
        }

        return (float)(total / batchCount);
    }

    public void SaveCheckpoint()
    {
        var state = new TrainingState(Step, batches.State, corpus.Fingerprint, Settings, Losses, ValidationLosses);
        TrainingCheckpoint.Save(OutputDirectory, Model, Tokenizer, Optimizer, state,
            directory => TrainingPlots.WriteLossCurve(directory, Losses, ValidationLosses));
    }

    private static TrainingLoopSettings LoopSettings(TrainingSettings s) =>
        new(s.Steps, s.Batch, s.Context, s.LearningRateAt) { Accumulation = s.Accumulation, ClipNorm = s.ClipNorm };
}
