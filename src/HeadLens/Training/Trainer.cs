using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using HeadLens.Checkpoints;
using HeadLens.Kernels;
using HeadLens.Model;
using HeadLens.Rendering;
using HeadLens.Tokenization;

namespace HeadLens.Training;

/// <summary>One progress report of a training run.</summary>
public sealed record TrainingProgress(int Step, int Steps, float Loss, float? ValidationLoss, double TokensPerSecond, TimeSpan Remaining, float LearningRate);

/// <summary>
/// Next-token training: random windows of the corpus (a seeded generator whose state is checkpointed), cross-entropy,
/// global-norm clipping, AdamW with warmup + cosine schedule, gradient accumulation. Checkpoints are Hugging Face
/// model directories plus the optimiser moments and the training state, so a resumed run continues exactly where an
/// uninterrupted one would have been.
/// </summary>
public sealed class Trainer
{
    public const string StateFile = "training_state.json";
    public const string OptimizerFile = "optimizer.safetensors";

    private readonly Corpus corpus;
    private readonly SplitMix64 random;

    public Trainer(Transformer model, ITokenizer tokenizer, Corpus corpus, TrainingSettings settings, string outputDirectory)
    {
        if (settings.Context > model.Config.ContextLength)
        {
            throw new HeadLensException($"training context {settings.Context} exceeds the model's context of {model.Config.ContextLength}");
        }

        Model = model;
        Tokenizer = tokenizer;
        this.corpus = corpus;
        Settings = settings;
        OutputDirectory = outputDirectory;
        Optimizer = new AdamWOptimizer(model, new Kernels.AdamWSettings(settings.LearningRate, WeightDecay: settings.WeightDecay));
        random = new SplitMix64((ulong)settings.Seed);
    }

    public Transformer Model { get; }

    public ITokenizer Tokenizer { get; }

    /// <summary>The run's settings; a resumed run may change only Steps, EvalInterval and CheckpointInterval.</summary>
    public TrainingSettings Settings { get; set; }

    public string OutputDirectory { get; }

    public AdamWOptimizer Optimizer { get; }

    /// <summary>Optimiser steps completed.</summary>
    public int Step { get; private set; }

    public List<float> Losses { get; } = [];

    public List<(int Step, float Loss)> ValidationLosses { get; } = [];

    /// <summary>Continues the run saved in <paramref name="outputDirectory"/>; <paramref name="steps"/> may extend it.</summary>
    public static Trainer Resume(string outputDirectory, Corpus corpus, int? steps, ModelConfig? expectedShape)
    {
        RecoverInterruptedSave(outputDirectory);
        string statePath = Path.Combine(outputDirectory, StateFile);
        if (!File.Exists(statePath))
        {
            throw new HeadLensException($"--resume: no checkpoint in {outputDirectory} (no {StateFile})");
        }

        var (model, tokenizer) = ModelFiles.Load(outputDirectory);
        if (expectedShape is not null && expectedShape with { } != model.Config)
        {
            throw new HeadLensException($"--resume: the checkpoint in {outputDirectory} has another shape than the requested preset " +
                $"({model.Config.Layers} layers × {model.Config.Heads} heads × {model.Config.Channels} channels, vocab {model.Config.VocabSize})");
        }

        using var document = JsonDocument.Parse(File.ReadAllText(statePath));
        var root = document.RootElement;
        var settings = JsonSerializer.Deserialize<TrainingSettings>(root.GetProperty("settings").GetRawText())!;
        if (steps is not null)
        {
            settings = settings with { Steps = steps.Value };
        }

        if (root.TryGetProperty("corpus_fingerprint", out var fingerprint) && fingerprint.GetString() != corpus.Fingerprint)
        {
            throw new HeadLensException($"--resume: the corpus is not the one the run in {outputDirectory} trained on " +
                $"({corpus.Train.Length + corpus.Validation.Length} tokens, fingerprint {corpus.Fingerprint}; the run saved {fingerprint.GetString()})");
        }

        var trainer = new Trainer(model, tokenizer ?? new ByteTokenizer(), corpus, settings, outputDirectory)
        {
            Step = root.GetProperty("step").GetInt32(),
        };
        trainer.random.State = ulong.Parse(root.GetProperty("rng").GetString()!, CultureInfo.InvariantCulture);
        trainer.Optimizer.StepCount = trainer.Step;
        trainer.Losses.AddRange(root.GetProperty("losses").EnumerateArray().Select(v => v.GetSingle()));
        foreach (var entry in root.GetProperty("validation_losses").EnumerateArray())
        {
            trainer.ValidationLosses.Add((entry[0].GetInt32(), entry[1].GetSingle()));
        }

        using var moments = SafeTensorsFile.Open(Path.Combine(outputDirectory, OptimizerFile));
        foreach (var (name, parameter, _, _) in model.NamedParameters())
        {
            moments.ReadFloat32("m." + name, trainer.Optimizer.FirstMoment.Arena.Get(name).Span);
            moments.ReadFloat32("v." + name, trainer.Optimizer.SecondMoment.Arena.Get(name).Span);
        }

        return trainer;
    }

    /// <summary>
    /// A save writes the new checkpoint to a sibling "DIR.saving-PID", moves the old one aside to "DIR.previous-PID",
    /// then moves the new one into place. A process killed between those two moves leaves no DIR but a complete
    /// previous checkpoint (and a complete new one): put the new one in place if its state file was written (the
    /// state is written last), else the previous one. Partial "DIR.saving-*" directories are left alone; they never
    /// replace a checkpoint.
    /// </summary>
    public static void RecoverInterruptedSave(string outputDirectory)
    {
        string full = Path.GetFullPath(outputDirectory);
        string? parent = Path.GetDirectoryName(full);
        if (Directory.Exists(full) || parent is null || !Directory.Exists(parent))
        {
            return;
        }

        string name = Path.GetFileName(full);
        foreach (string previous in Directory.GetDirectories(parent, name + ".previous-*"))
        {
            string pid = previous[(full.Length + ".previous-".Length)..];
            string saved = full + ".saving-" + pid;
            string complete = File.Exists(Path.Combine(saved, StateFile)) ? saved : previous;
            if (File.Exists(Path.Combine(complete, StateFile)))
            {
                Directory.Move(complete, full);
                return;
            }
        }
    }

    /// <summary>
    /// Trains until <see cref="TrainingSettings.Steps"/>, reporting progress; saves a checkpoint every
    /// CheckpointInterval steps, at the end, and when cancelled (Ctrl-C). A NaN or infinite loss stops the run
    /// with an error naming the step; the last good checkpoint stays.
    /// </summary>
    public void Run(CancellationToken cancellation, Action<TrainingProgress>? progress = null)
    {
        var s = Settings;
        int t = s.Context, tokensPerStep = s.Batch * t * s.Accumulation;
        var ids = new int[s.Batch * t];
        var targets = new int[s.Batch * t];
        var clock = Stopwatch.StartNew();
        int startStep = Step;
        while (Step < s.Steps)
        {
            if (cancellation.IsCancellationRequested)
            {
                SaveCheckpoint();
                throw new OperationCanceledException($"stopped at step {Step}; checkpoint saved in {OutputDirectory}");
            }

            Model.ZeroGradients();
            float loss = 0f;
            for (int micro = 0; micro < s.Accumulation; micro++)
            {
                SampleBatch(ids, targets);
                loss += Model.Forward(ids, targets, s.Batch, t) / s.Accumulation;
                Model.Backward();
            }

            if (!float.IsFinite(loss))
            {
                throw new HeadLensException($"the loss became {loss} at step {Step + 1}; training stopped, the last good checkpoint in {OutputDirectory} is kept");
            }

            if (s.Accumulation > 1)
            {
                System.Numerics.Tensors.TensorPrimitives.Multiply(Model.Gradients.Arena.All, 1f / s.Accumulation, Model.Gradients.Arena.All);
            }

            GradientClipping.ClipByGlobalNorm(Model.Gradients.Arena.All, s.ClipNorm);
            float learningRate = s.LearningRateAt(Step + 1);
            Optimizer.Step(learningRate);
            Step++;
            Losses.Add(loss);
            float? validation = null;
            if (Step % s.EvalInterval == 0 || Step == s.Steps)
            {
                validation = ValidationLoss();
                ValidationLosses.Add((Step, validation.Value));
            }

            if (Step % s.CheckpointInterval == 0 || Step == s.Steps)
            {
                SaveCheckpoint();
            }

            double seconds = clock.Elapsed.TotalSeconds;
            double tokensPerSecond = (Step - startStep) * (double)tokensPerStep / Math.Max(seconds, 1e-9);
            var remaining = TimeSpan.FromSeconds(seconds / (Step - startStep) * (s.Steps - Step));
            progress?.Invoke(new TrainingProgress(Step, s.Steps, loss, validation, tokensPerSecond, remaining, learningRate));
        }
    }

    /// <summary>Mean loss over fixed, evenly spaced windows of the validation split (the same windows every time).</summary>
    public float ValidationLoss(int maxBatches = 4)
    {
        var s = Settings;
        int t = s.Context, windows = Math.Max(1, (corpus.Validation.Length - 1) / t);
        int batches = Math.Min(maxBatches, Math.Max(1, windows / s.Batch));
        var ids = new int[s.Batch * t];
        var targets = new int[s.Batch * t];
        double total = 0;
        for (int batch = 0; batch < batches; batch++)
        {
            for (int b = 0; b < s.Batch; b++)
            {
                int start = (int)((long)(batch * s.Batch + b) * (corpus.Validation.Length - t - 1) / (batches * s.Batch));
                corpus.Validation.AsSpan(start, t).CopyTo(ids.AsSpan(b * t));
                corpus.Validation.AsSpan(start + 1, t).CopyTo(targets.AsSpan(b * t));
            }

            total += Model.Forward(ids, targets, s.Batch, t);
        }

        return (float)(total / batches);
    }

    public void SaveCheckpoint()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(OutputDirectory))!);
        ModelFiles.Save(Model, Tokenizer, OutputDirectory, directory =>
        {
            var moments = new List<(string, int[], ReadOnlyMemory<float>)>();
            foreach (var (name, parameter, _, _) in Model.NamedParameters())
            {
                moments.Add(("m." + name, parameter.Shape, Optimizer.FirstMoment.Arena.Get(name).Memory));
                moments.Add(("v." + name, parameter.Shape, Optimizer.SecondMoment.Arena.Get(name).Memory));
            }

            SafeTensorsWriter.Write(Path.Combine(directory, OptimizerFile), moments);
            var state = new Dictionary<string, object>
            {
                ["step"] = Step,
                ["rng"] = random.State.ToString(CultureInfo.InvariantCulture),
                ["corpus_fingerprint"] = corpus.Fingerprint,
                ["settings"] = Settings,
                ["losses"] = Losses,
                ["validation_losses"] = ValidationLosses.Select(v => new object[] { v.Step, v.Loss }).ToList(),
            };
            File.WriteAllText(Path.Combine(directory, "loss.svg"), LossCurveSvg.Render(Losses, ValidationLosses));
            // The state goes last: a directory with a state file is a complete checkpoint (see RecoverInterruptedSave).
            File.WriteAllText(Path.Combine(directory, StateFile), JsonSerializer.Serialize(state));
        });
    }

    private void SampleBatch(int[] ids, int[] targets)
    {
        int t = Settings.Context;
        for (int b = 0; b < Settings.Batch; b++)
        {
            int start = random.NextInt(corpus.Train.Length - t - 1);
            corpus.Train.AsSpan(start, t).CopyTo(ids.AsSpan(b * t));
            corpus.Train.AsSpan(start + 1, t).CopyTo(targets.AsSpan(b * t));
        }
    }
}
