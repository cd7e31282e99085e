using System.Globalization;
using System.Text;

namespace HeadLens.Rendering;

/// <summary>A loss curve as a small standalone SVG: training loss per step, validation loss as dots.</summary>
public static class LossCurveSvg
{
    public static string Render(IReadOnlyList<float> losses, IReadOnlyList<(int Step, float Loss)> validation)
    {
        const int width = 640, height = 320, margin = 48;
        var finite = losses.Where(float.IsFinite).Concat(validation.Select(v => v.Loss)).ToList();
        float max = finite.Count == 0 ? 1 : finite.Max(), min = finite.Count == 0 ? 0 : Math.Min(0, finite.Min());
        int steps = Math.Max(1, losses.Count);
        string X(double step) => (margin + (width - 2 * margin) * step / steps).ToString("F1", CultureInfo.InvariantCulture);
        string Y(double loss) => (height - margin - (height - 2 * margin) * (loss - min) / Math.Max(1e-9, max - min)).ToString("F1", CultureInfo.InvariantCulture);
        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">");
        svg.Append(CultureInfo.InvariantCulture, $"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>");
        svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{margin}\" y1=\"{height - margin}\" x2=\"{width - margin}\" y2=\"{height - margin}\" stroke=\"#444\"/>");
        svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{margin}\" y1=\"{margin}\" x2=\"{margin}\" y2=\"{height - margin}\" stroke=\"#444\"/>");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{width / 2}\" y=\"{height - 12}\" text-anchor=\"middle\">step (0 – {steps})</text>");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"8\" y=\"{margin - 8}\">loss {min:F2} – {max:F2}</text>");
        svg.Append("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"");
        for (int i = 0; i < losses.Count; i++)
        {
            if (float.IsFinite(losses[i]))
            {
                svg.Append(X(i + 1)).Append(',').Append(Y(losses[i])).Append(' ');
            }
        }

        svg.Append("\"/>");
        foreach (var (step, loss) in validation)
        {
            svg.Append(CultureInfo.InvariantCulture, $"<circle cx=\"{X(step)}\" cy=\"{Y(loss)}\" r=\"3\" fill=\"#d62728\"/>");
        }

        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{width - margin}\" y=\"{margin - 8}\" text-anchor=\"end\" fill=\"#1f77b4\">train</text>");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{width - margin}\" y=\"{margin + 6}\" text-anchor=\"end\" fill=\"#d62728\">validation</text>");
        svg.Append("</svg>\n");
        return svg.ToString();
    }
}
