using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using HeadLens.Rendering;

namespace HeadLens.Cli.Viewer;

/// <summary>
/// `headlens report`: the viewer as one self-contained HTML file. The page, its style and its script are the served
/// viewer's own assets, inlined; the data (tokens, heads, every pattern) sits in a JSON script block that the script
/// reads instead of calling the server. JSON escapes &lt;, &gt; and &amp;, so no token text can close that block.
/// Works offline from file://; generation and comparison need the live server and are disabled there.
/// </summary>
public static class ReportWriter
{
    /// <summary>Probabilities a report may carry (L·H·T²): the embedded model at its full context is 0.26 M.</summary>
    public const long MaxValues = 4L * 1024 * 1024;

    private const string StyleLink = "<link rel=\"stylesheet\" href=\"viewer.css\">";
    private const string ScriptTag = "<script src=\"viewer.js\"></script>";
    private const string Title = "<title>HeadLens viewer</title>";
    private const string Charset = "<meta charset=\"utf-8\">";

    /// <summary>Writes the report of <paramref name="text"/> to <paramref name="path"/> (atomically); the entry point for `headlens demo`.</summary>
    public static void Write(IAttentionSource source, string text, string path) => Write(source, source.Tokenize(text), text, path);

    public static void Write(IAttentionSource source, TokenizedText input, string text, string path, string? pngDirectory = null)
    {
        if (pngDirectory is not null && File.Exists(pngDirectory))
        {
            throw new HeadLensException($"--png {pngDirectory}: is a file; give a folder for the heat maps");
        }

        var views = new AttentionViews(source);
        var patterns = Patterns(views, input);
        var heads = views.Heads(input);
        WriteAtomically(path, Encoding.UTF8.GetBytes(Render(source, input, text, patterns, heads, LensOrNull(views, input), CompositionsOrNull(views))));
        if (pngDirectory is not null)
        {
            WriteHeatMaps(source, input, patterns, pngDirectory, heads);
        }
    }

    public static string Render(IAttentionSource source, string text)
    {
        var views = new AttentionViews(source);
        var input = source.Tokenize(text);
        return Render(source, input, text, Patterns(views, input), views.Heads(input), LensOrNull(views, input), CompositionsOrNull(views));
    }

    // The report carries the text's logit lens where the model predicts tokens; an encoder's or a synthetic source's
    // report has none, and its Lens tab says so.
    private static LensView? LensOrNull(AttentionViews views, TokenizedText input)
    {
        try
        {
            return views.Lens(input);
        }
        catch (Exception error) when (error is HeadLensException or ViewerException)
        {
            return null;
        }
    }

    // The weights' composition scores, which need no text: where there are two layers or more and weights to read
    // (a synthetic source has none).
    private static CompositionsView? CompositionsOrNull(AttentionViews views)
    {
        try
        {
            return views.Compositions();
        }
        catch (ViewerException)
        {
            return null;
        }
    }

    /// <summary>
    /// One PNG heat map per head, layer{l}-head{h}.png: rows are queries, columns keys, darker is more attention;
    /// titled with the layer, head and (when given) its kind, with token labels where they fit and a colour bar.
    /// </summary>
    public static IReadOnlyList<string> WriteHeatMaps(IAttentionSource source, TokenizedText input, float[][][][] patterns, string directory, HeadsView? heads = null)
    {
        try
        {
            Directory.CreateDirectory(directory);
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            throw new HeadLensException($"--png {directory}: cannot create the folder: {error.Message}");
        }

        int t = input.Ids.Length;
        var written = new List<string>();
        var flat = new float[t * t];
        for (int l = 0; l < source.Info.Layers; l++)
        {
            for (int h = 0; h < source.Info.Heads; h++)
            {
                for (int i = 0; i < t; i++)
                {
                    patterns[l][h][i].CopyTo(flat, i * t);
                }

                string? kind = heads?.Entries.FirstOrDefault(entry => entry.Layer == l && entry.Head == h)?.Kind;
                string title = $"{source.Info.Name}: layer {l}, head {h}" + (kind is null ? "" : $" ({kind})");
                string file = Path.Combine(directory, $"layer{l}-head{h}.png");
                WriteAtomically(file, LabelledHeatMap.Render(flat, t, t, title, input.Tokens, input.Tokens, out _));
                written.Add(file);
            }
        }

        return written;
    }

    /// <summary>patterns[l][h][i][j], rounded as the server rounds them.</summary>
    public static float[][][][] Patterns(AttentionViews views, TokenizedText input)
    {
        var info = views.Source.Info;
        long values = (long)info.Layers * info.Heads * input.Ids.Length * input.Ids.Length;
        if (values > MaxValues)
        {
            throw new HeadLensException($"a report of {input.Ids.Length} tokens on {info.Layers} × {info.Heads} heads holds {values} probabilities, more than {MaxValues}: use a shorter text (the live viewer, headlens serve, has no such limit)");
        }

        int[] heads = Enumerable.Range(0, info.Heads).ToArray();
        return Enumerable.Range(0, info.Layers).Select(l => views.Pattern(input, l, heads).Patterns).ToArray();
    }

    private static string Render(IAttentionSource source, TokenizedText input, string text, float[][][][] patterns, HeadsView heads, LensView? lens,
        CompositionsView? compositions)
    {
        var data = new
        {
            model = ViewerServer.ModelDocument(source, input.Ids.Length, new ViewerOptions()),
            text,
            input = new { ids = input.Ids, tokens = input.Tokens },
            heads,
            patterns,
            lens,
            compositions,
        };
        // The default encoder writes <, > and & as \u003C, \u003E, \u0026: the block cannot be closed from inside.
        string json = JsonSerializer.Serialize(data, ViewerServer.Json);
        string page = Asset("index.html");
        string style = Asset("viewer.css");
        string script = Asset("viewer.js");
        foreach (var (name, content, closing) in new[] { ("viewer.css", style, "</style"), ("viewer.js", script, "</script") })
        {
            if (content.Contains(closing, StringComparison.OrdinalIgnoreCase))
            {
                throw new InvalidOperationException($"{name} contains '{closing}' and cannot be inlined");
            }
        }

        string inlineStyle = "\n" + style, inlineScript = "\n" + script;
        return Replace(Replace(page, Title, $"<title>HeadLens report: {WebUtility.HtmlEncode(source.Info.Name)}</title>"), Charset, Charset + "\n" + PolicyMeta(inlineScript, inlineStyle))
            .Replace(StyleLink, "<style>" + inlineStyle + "</style>", StringComparison.Ordinal)
            .Replace(ScriptTag, "<script type=\"application/json\" id=\"headlens-data\">" + json + "</script>\n<script>" + inlineScript + "</script>", StringComparison.Ordinal);
    }

    /// <summary>
    /// The report's Content-Security-Policy, as a meta element (a file has no headers): nothing is fetched, and the
    /// only script and style that run are the two inlined here, named by their SHA-256 (so no 'unsafe-inline'); the
    /// JSON data block is not a script the browser runs. Opening the file offline, from file://, needs nothing more.
    /// </summary>
    public static string PolicyMeta(string inlineScript, string inlineStyle) =>
        "<meta http-equiv=\"Content-Security-Policy\" content=\"" + Policy(inlineScript, inlineStyle) + "\">";

    public static string Policy(string inlineScript, string inlineStyle) =>
        $"default-src 'none'; script-src 'sha256-{Hash(inlineScript)}'; style-src 'sha256-{Hash(inlineStyle)}'; img-src data:; base-uri 'none'; form-action 'none'";

    private static string Hash(string content) => Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(content)));

    private static string Replace(string page, string marker, string replacement) =>
        page.Contains(marker, StringComparison.Ordinal) ? page.Replace(marker, replacement, StringComparison.Ordinal)
            : throw new InvalidOperationException($"the viewer page lacks '{marker}'");

    private static string Asset(string name) => Encoding.UTF8.GetString(ViewerServer.ReadAsset(name));

    /// <summary>Temp file in the same folder, then rename: a reader never sees half a file, a failure leaves none.</summary>
    private static void WriteAtomically(string path, byte[] content)
    {
        string full = Path.GetFullPath(path);
        string? folder = Path.GetDirectoryName(full);
        if (folder is null || !Directory.Exists(folder))
        {
            throw new HeadLensException($"{path}: the folder {folder} does not exist");
        }

        string temporary = Path.Combine(folder, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            File.WriteAllBytes(temporary, content);
            File.Move(temporary, full, overwrite: true);
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            File.Delete(temporary);
            throw new HeadLensException($"{path}: cannot write the report: {error.Message}");
        }
    }
}
