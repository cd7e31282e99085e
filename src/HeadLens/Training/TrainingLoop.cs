using System.Diagnostics;
using HeadLens.Kernels;
using HeadLens.Model;

namespace HeadLens.Training;

/// <summary>One progress report of a training run.</summary>
public sealed record TrainingProgress(int Step, int Steps, float Loss, float? ValidationLoss, double TokensPerSecond, TimeSpan Remaining, float LearningRate);

/// <summary>What the loop needs to know: how long, how large a step, how to clip, and the learning-rate schedule.</summary>
public sealed record TrainingLoopSettings(int Steps, int Batch, int Context, Func<int, float> LearningRateAt)
{
    /// <summary>Micro-batches per optimiser step (gradient accumulation).</summary>
    public int Accumulation { get; init; } = 1;

    /// <summary>Global gradient norm the gradients are clipped to.</summary>
    public float ClipNorm { get; init; } = 1f;
}

/// <summary>A NaN or infinite loss: the step it happened at, so that callers can say what they keep.</summary>
public sealed class NonFiniteLossException(float loss, int step) : HeadLensException($"the loss became {loss} at step {step}")
{
    public float Loss { get; } = loss;

    public int Step { get; } = step;
}

/// <summary>
/// The training loop, whatever the data: for each optimiser step, zero the gradients; for each of Accumulation
/// micro-batches from the batch source, forward (next-token cross-entropy) and backward; average the micro-batches'
/// gradients; clip them to a global norm; take an AdamW step at the schedule's learning rate. Used by
/// <see cref="Trainer"/> (corpus windows, checkpoints) and by the induction experiment (random-copy sequences).
/// </summary>
public sealed class TrainingLoop(Transformer model, AdamWOptimizer optimizer, IBatchSource batches, TrainingLoopSettings settings)
{
    public Transformer Model { get; } = model;

    public AdamWOptimizer Optimizer { get; } = optimizer;

    public TrainingLoopSettings Settings { get; set; } = settings;

    /// <summary>Optimiser steps completed (a resumed run starts where its checkpoint stopped).</summary>
    public int Step { get; set; }

    /// <summary>The training loss of every step so far.</summary>
    public List<float> Losses { get; } = [];

    /// <summary>Time spent in the forward passes (gradients zeroed included) and in the backward passes, in ms.</summary>
    public double ForwardMilliseconds { get; private set; }

    public double BackwardMilliseconds { get; private set; }

    /// <summary>
    /// Steps until Settings.Steps. After each step, <paramref name="afterStep"/> may evaluate or save (it gets the
    /// step and returns a validation loss to report, or null); then <paramref name="progress"/> hears of the step.
    /// Cancellation is checked before each step: returns false when cancelled, true when every step ran.
    /// </summary>
    /// <exception cref="NonFiniteLossException">A step's loss is NaN or infinite; no optimiser step was taken.</exception>
    public bool Run(CancellationToken cancellation, Action<TrainingProgress>? progress = null, Func<int, float?>? afterStep = null)
    {
        var s = Settings;
        int tokensPerStep = s.Batch * s.Context * s.Accumulation;
        var ids = new int[s.Batch * s.Context];
        var targets = new int[s.Batch * s.Context];
        var clock = Stopwatch.StartNew();
        int startStep = Step;
        while (Step < s.Steps)
        {
            if (cancellation.IsCancellationRequested)
            {
                return false;
            }

            float loss = TrainStep(ids, targets, out float learningRate);
            float? validation = afterStep?.Invoke(Step);
            double seconds = clock.Elapsed.TotalSeconds;
            double tokensPerSecond = (Step - startStep) * (double)tokensPerStep / Math.Max(seconds, 1e-9);
            var remaining = TimeSpan.FromSeconds(seconds / (Step - startStep) * (s.Steps - Step));
            progress?.Invoke(new TrainingProgress(Step, s.Steps, loss, validation, tokensPerSecond, remaining, learningRate));
        }

        return true;
    }

    // One optimiser step; returns its loss (the mean over the micro-batches).
    private float TrainStep(int[] ids, int[] targets, out float learningRate)
    {
        var s = Settings;
        long started = Stopwatch.GetTimestamp();
        Model.ZeroGradients();
        float loss = 0f;
        for (int micro = 0; micro < s.Accumulation; micro++)
        {
            batches.Next(ids, targets, s.Batch, s.Context);
            loss += Model.Forward(ids, targets, s.Batch, s.Context) / s.Accumulation;
            long forwardDone = Stopwatch.GetTimestamp();
            ForwardMilliseconds += Stopwatch.GetElapsedTime(started, forwardDone).TotalMilliseconds;
            Model.Backward();
            started = Stopwatch.GetTimestamp();
            BackwardMilliseconds += Stopwatch.GetElapsedTime(forwardDone, started).TotalMilliseconds;
        }

        if (!float.IsFinite(loss))
        {
            throw new NonFiniteLossException(loss, Step + 1);
        }

        if (s.Accumulation > 1)
        {
            System.Numerics.Tensors.TensorPrimitives.Multiply(Model.Gradients.Arena.All, 1f / s.Accumulation, Model.Gradients.Arena.All);
        }

        GradientClipping.ClipByGlobalNorm(Model.Gradients.Arena.All, s.ClipNorm);
        learningRate = s.LearningRateAt(Step + 1);
        Optimizer.Step(learningRate);
        Step++;
        Losses.Add(loss);
        return loss;
    }
}
