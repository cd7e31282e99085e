using System.Globalization;
using System.Text;

namespace HeadLens.Rendering;

/// <summary>
/// A loss curve as a small standalone SVG: training loss per step (a line), validation loss where it was measured
/// (dots), gridlines with values on both axes, and the last values written out. Non-finite losses are left out.
/// </summary>
internal static class LossCurveSvg
{
    private const int Width = 640, Height = 340, Left = 56, Right = 24, Top = 40, Bottom = 48;

    public static string Render(IReadOnlyList<float> losses, IReadOnlyList<(int Step, float Loss)> validation)
    {
        var finite = losses.Where(float.IsFinite).Concat(validation.Select(v => v.Loss).Where(float.IsFinite)).ToList();
        // The y range: from the lowest to the highest loss seen, widened a little so that no point sits on the frame.
        float low = finite.Count == 0 ? 0 : finite.Min(), high = finite.Count == 0 ? 1 : finite.Max();
        float pad = Math.Max(1e-3f, (high - low) * 0.05f);
        double min = Math.Max(0, low - pad), max = high + pad;
        int steps = Math.Max(1, Math.Max(losses.Count, validation.Count == 0 ? 0 : validation.Max(v => v.Step)));
        double X(double step) => Left + (Width - Left - Right) * step / steps;
        double Y(double loss) => Height - Bottom - (Height - Top - Bottom) * (loss - min) / (max - min);

        var svg = new StringBuilder();
        svg.Append(Invariant($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-family=\"sans-serif\" font-size=\"11\">"));
        svg.Append(Invariant($"<rect width=\"{Width}\" height=\"{Height}\" fill=\"white\"/>"));
        for (int tick = 0; tick <= 4; tick++)
        {
            double loss = min + (max - min) * tick / 4, y = Y(loss);
            int step = (int)Math.Round(steps * tick / 4.0);
            double x = X(step);
            svg.Append(Invariant($"<line x1=\"{Left}\" y1=\"{y:F1}\" x2=\"{Width - Right}\" y2=\"{y:F1}\" stroke=\"#eee\"/>"));
            svg.Append(Invariant($"<text x=\"{Left - 6}\" y=\"{y + 4:F1}\" text-anchor=\"end\" fill=\"#555\">{loss:F2}</text>"));
            svg.Append(Invariant($"<text x=\"{x:F1}\" y=\"{Height - Bottom + 16}\" text-anchor=\"middle\" fill=\"#555\">{step}</text>"));
        }

        svg.Append(Invariant($"<line x1=\"{Left}\" y1=\"{Height - Bottom}\" x2=\"{Width - Right}\" y2=\"{Height - Bottom}\" stroke=\"#444\"/>"));
        svg.Append(Invariant($"<line x1=\"{Left}\" y1=\"{Top}\" x2=\"{Left}\" y2=\"{Height - Bottom}\" stroke=\"#444\"/>"));
        svg.Append(Invariant($"<text x=\"{(Left + Width - Right) / 2}\" y=\"{Height - 10}\" text-anchor=\"middle\">step</text>"));
        svg.Append(Invariant($"<text x=\"14\" y=\"{(Top + Height - Bottom) / 2}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {(Top + Height - Bottom) / 2})\">loss (nats per token)</text>"));

        svg.Append("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.2\" points=\"");
        for (int i = 0; i < losses.Count; i++)
        {
            if (float.IsFinite(losses[i]))
            {
                svg.Append(Invariant($"{X(i + 1):F1},{Y(losses[i]):F1} "));
            }
        }

        svg.Append("\"/>");
        foreach (var (step, loss) in validation.Where(v => float.IsFinite(v.Loss)))
        {
            svg.Append(Invariant($"<circle cx=\"{X(step):F1}\" cy=\"{Y(loss):F1}\" r=\"3\" fill=\"#d62728\"/>"));
        }

        string lastTrain = losses.Count > 0 && float.IsFinite(losses[^1]) ? Invariant($" {losses[^1]:F3}") : "";
        string lastValidation = validation.Count > 0 && float.IsFinite(validation[^1].Loss) ? Invariant($" {validation[^1].Loss:F3}") : "";
        svg.Append(Invariant($"<text x=\"{Width - Right}\" y=\"{Top - 22}\" text-anchor=\"end\" fill=\"#1f77b4\">train{lastTrain}</text>"));
        svg.Append(Invariant($"<text x=\"{Width - Right}\" y=\"{Top - 8}\" text-anchor=\"end\" fill=\"#d62728\">validation{lastValidation}</text>"));
        svg.Append(Invariant($"<text x=\"{Left}\" y=\"{Top - 14}\">loss per step ({losses.Count} steps)</text>"));
        svg.Append("</svg>\n");
        return svg.ToString();
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
