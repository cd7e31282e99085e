using HeadLens.Kernels;
using HeadLens.Model;

namespace HeadLens.Training;

/// <summary>
/// AdamW over every parameter of a model, with its two moment buffers in arenas of the model's layout. Weight decay
/// applies to matrices and embeddings only (tensors with two or more dimensions), not to biases and norm weights,
/// as in nanoGPT and the golden tests' PyTorch parameter groups.
/// </summary>
public sealed class AdamWOptimizer
{
    private readonly Transformer model;

    public AdamWOptimizer(Transformer model, AdamWSettings settings)
    {
        this.model = model;
        Settings = settings;
        FirstMoment = new ModelWeights(model.Config, "adamw.m");
        SecondMoment = new ModelWeights(model.Config, "adamw.v");
    }

    public AdamWSettings Settings { get; }

    public ModelWeights FirstMoment { get; }

    public ModelWeights SecondMoment { get; }

    /// <summary>Optimiser steps taken so far.</summary>
    public int StepCount { get; set; }

    /// <summary>One update with the current gradients, at <paramref name="learningRate"/> (the schedule's value).</summary>
    public void Step(float learningRate)
    {
        StepCount++;
        var decaying = Settings with { LearningRate = learningRate };
        var plain = decaying with { WeightDecay = 0f };
        foreach (var (name, parameter, gradient, decay) in model.NamedParameters())
        {
            AdamW.Step(parameter.Span, gradient.Span, FirstMoment.Arena.Get(name).Span, SecondMoment.Arena.Get(name).Span,
                decay ? decaying : plain, StepCount);
        }
    }
}
