using HeadLens.Rendering;

namespace HeadLens.Training;

/// <summary>
/// What a training run draws: its loss curve (training loss per step, validation loss where measured) as
/// <see cref="LossCurveFile"/> in each checkpoint directory, rendered by <see cref="LossCurveSvg"/>.
/// </summary>
public static class TrainingPlots
{
    public const string LossCurveFile = "loss.svg";

    public static void WriteLossCurve(string directory, IReadOnlyList<float> losses, IReadOnlyList<(int Step, float Loss)> validationLosses) =>
        File.WriteAllText(Path.Combine(directory, LossCurveFile), LossCurveSvg.Render(losses, validationLosses));
}
