namespace HeadLens.Training;

/// <summary>How a training run goes. Defaults suit the small models HeadLens trains on two cores.</summary>
public sealed record TrainingSettings
{
    public int Steps { get; init; } = 1000;

    /// <summary>Sequences per micro-batch.</summary>
    public int Batch { get; init; } = 16;

    /// <summary>Micro-batches per optimiser step (gradient accumulation).</summary>
    public int Accumulation { get; init; } = 1;

    public int Context { get; init; } = 128;

    public float LearningRate { get; init; } = 3e-3f;

    public float MinLearningRate { get; init; } = 3e-4f;

    public int WarmupSteps { get; init; } = 50;

    public float WeightDecay { get; init; } = 0.1f;

    public float ClipNorm { get; init; } = 1f;

    public int EvalInterval { get; init; } = 100;

    public int CheckpointInterval { get; init; } = 250;

    public int Seed { get; init; } = 1337;

    /// <summary>Share of training windows that are a corpus passage written twice (see <see cref="CorpusBatches"/>); 0: none.</summary>
    public double RepeatedShare { get; init; }

    /// <summary>
    /// Whether the passage of a repeated window is random tokens rather than the corpus's text: a copy the model cannot
    /// have memorised (see <see cref="CorpusBatches"/>).
    /// </summary>
    public bool RepeatRandomTokens { get; init; }

    /// <summary>Learning rate at a step (1-based): linear warmup, then cosine decay to the minimum.</summary>
    public float LearningRateAt(int step)
    {
        if (step <= WarmupSteps)
        {
            return LearningRate * step / Math.Max(1, WarmupSteps);
        }

        double progress = Math.Min(1.0, (double)(step - WarmupSteps) / Math.Max(1, Steps - WarmupSteps));
        return (float)(MinLearningRate + 0.5 * (LearningRate - MinLearningRate) * (1 + Math.Cos(Math.PI * progress)));
    }
}
