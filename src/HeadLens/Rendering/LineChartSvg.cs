using System.Globalization;
using System.Net;
using System.Text;

namespace HeadLens.Rendering;

/// <summary>
/// A few named series over the same categories (layers, say) as a small standalone SVG: one line with dots per series,
/// gridlines with values, the categories on the x axis, a legend with each series' last value.
/// </summary>
internal static class LineChartSvg
{
    private const int Width = 640, Height = 320, Left = 56, Right = 24, Top = 48, Bottom = 48;
    private static readonly string[] Colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

    public static string Render(string title, string xLabel, IReadOnlyList<string> categories, IReadOnlyList<(string Name, double[] Values)> series)
    {
        var values = series.SelectMany(s => s.Values).Where(double.IsFinite).ToList();
        double low = values.Count == 0 ? 0 : values.Min(), high = values.Count == 0 ? 1 : values.Max();
        double pad = Math.Max(1e-3, (high - low) * 0.08);
        double min = low - pad, max = high + pad;
        int count = Math.Max(1, categories.Count - 1);
        double X(int index) => Left + ((Width - Left - Right) * (double)index / count);
        double Y(double value) => Height - Bottom - ((Height - Top - Bottom) * (value - min) / (max - min));

        var svg = new StringBuilder();
        svg.Append(Invariant($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-family=\"sans-serif\" font-size=\"11\">"));
        svg.Append(Invariant($"<rect width=\"{Width}\" height=\"{Height}\" fill=\"white\"/>"));
        svg.Append(Invariant($"<text x=\"{Left}\" y=\"18\" font-size=\"13\">{WebUtility.HtmlEncode(title)}</text>"));
        for (int tick = 0; tick <= 4; tick++)
        {
            double value = min + ((max - min) * tick / 4), y = Y(value);
            svg.Append(Invariant($"<line x1=\"{Left}\" y1=\"{y:F1}\" x2=\"{Width - Right}\" y2=\"{y:F1}\" stroke=\"#eee\"/>"));
            svg.Append(Invariant($"<text x=\"{Left - 6}\" y=\"{y + 4:F1}\" text-anchor=\"end\" fill=\"#555\">{value:G3}</text>"));
        }

        for (int i = 0; i < categories.Count; i++)
        {
            svg.Append(Invariant($"<text x=\"{X(i):F1}\" y=\"{Height - Bottom + 16}\" text-anchor=\"middle\" fill=\"#555\">{WebUtility.HtmlEncode(categories[i])}</text>"));
        }

        svg.Append(Invariant($"<line x1=\"{Left}\" y1=\"{Height - Bottom}\" x2=\"{Width - Right}\" y2=\"{Height - Bottom}\" stroke=\"#444\"/>"));
        svg.Append(Invariant($"<line x1=\"{Left}\" y1=\"{Top}\" x2=\"{Left}\" y2=\"{Height - Bottom}\" stroke=\"#444\"/>"));
        svg.Append(Invariant($"<text x=\"{(Left + Width - Right) / 2}\" y=\"{Height - 10}\" text-anchor=\"middle\">{WebUtility.HtmlEncode(xLabel)}</text>"));
        for (int s = 0; s < series.Count; s++)
        {
            var (name, points) = series[s];
            string colour = Colours[s % Colours.Length];
            svg.Append(Invariant($"<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\""));
            for (int i = 0; i < points.Length && i < categories.Count; i++)
            {
                svg.Append(Invariant($"{X(i):F1},{Y(points[i]):F1} "));
            }

            svg.Append("\"/>");
            for (int i = 0; i < points.Length && i < categories.Count; i++)
            {
                svg.Append(Invariant($"<circle cx=\"{X(i):F1}\" cy=\"{Y(points[i]):F1}\" r=\"2.5\" fill=\"{colour}\"/>"));
            }

            string last = points.Length > 0 ? Invariant($" {points[^1]:G3}") : "";
            svg.Append(Invariant($"<text x=\"{Width - Right}\" y=\"{18 + (14 * s)}\" text-anchor=\"end\" fill=\"{colour}\">{WebUtility.HtmlEncode(name)}{last}</text>"));
        }

        return svg.Append("</svg>").ToString();
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
