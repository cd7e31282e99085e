using System.Globalization;
using System.Net;
using System.Text;
using HeadLens.Analysis;

namespace HeadLens.Rendering;

/// <summary>
/// A self-contained HTML page (no script, no external file): the text, the per-head table, and every head's pattern
/// as an inline PNG heat map with its kind. Token text is HTML-escaped everywhere.
/// </summary>
public static class HtmlReport
{
    public static string Render(string title, string description, IReadOnlyList<string> tokens, float[][] patterns, int heads, IReadOnlyList<HeadSummary> summaries)
    {
        int t = tokens.Count;
        var html = new StringBuilder();
        html.Append("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>").Append(WebUtility.HtmlEncode(title)).Append("</title>");
        html.Append("<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}" +
            "th{background:#f4f4f4}.grid{display:grid;grid-template-columns:repeat(" + heads.ToString(CultureInfo.InvariantCulture) + ",auto);gap:12px}" +
            "figure{margin:0}img{image-rendering:pixelated;width:180px;height:180px;border:1px solid #ccc}figcaption{font-size:12px}" +
            ".tokens span{border:1px solid #ccc;margin:1px;padding:0 2px;font-family:monospace}</style></head><body>");
        html.Append("<h1>").Append(WebUtility.HtmlEncode(title)).Append("</h1><p>").Append(WebUtility.HtmlEncode(description)).Append("</p>");
        html.Append("<h2>Tokens</h2><p class=\"tokens\">");
        foreach (string token in tokens)
        {
            html.Append("<span>").Append(WebUtility.HtmlEncode(token)).Append("</span>");
        }

        html.Append("</p><h2>Heads</h2><table><tr><th>layer</th><th>head</th><th>kind</th><th>previous token</th><th>first token</th><th>local</th><th>broad</th><th>mean distance</th></tr>");
        foreach (var s in summaries)
        {
            html.Append(CultureInfo.InvariantCulture,
                $"<tr><td>{s.Layer}</td><td>{s.Head}</td><td>{s.Kind}</td><td>{s.Scores["previous_token"]:F2}</td><td>{s.Scores["sink"]:F2}</td><td>{s.Scores["local"]:F2}</td><td>{s.Scores["broad"]:F2}</td><td>{s.MeanDistance:F1}</td></tr>");
        }

        html.Append("</table><h2>Patterns</h2><p>Rows are queries (top to bottom), columns keys (left to right); darker is more attention.</p><div class=\"grid\">");
        foreach (var s in summaries)
        {
            var pattern = patterns[s.Layer].AsSpan(s.Head * t * t, t * t);
            string png = Convert.ToBase64String(PngEncoder.HeatMap(pattern, t, t, scale: Math.Max(1, 180 / Math.Max(1, t))));
            html.Append(CultureInfo.InvariantCulture, $"<figure><img alt=\"layer {s.Layer} head {s.Head}\" src=\"data:image/png;base64,{png}\"><figcaption>L{s.Layer} H{s.Head}: {s.Kind}</figcaption></figure>");
        }

        html.Append("</div></body></html>\n");
        return html.ToString();
    }

    /// <summary>Writes to a temporary file, then renames, so a reader never sees half a report.</summary>
    public static void WriteAtomically(string path, string content)
    {
        string temporary = path + ".tmp-" + Environment.ProcessId;
        File.WriteAllText(temporary, content);
        File.Move(temporary, path, overwrite: true);
    }
}
