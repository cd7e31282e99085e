using System.Text;
using System.Text.Json;
using HeadLens.Cli.Viewer;
using HeadLens.Rendering;
using HeadLens.Tests.Cli;
using HeadLens.Tests.Rendering;

namespace HeadLens.Tests.Viewer;

/// <summary>`headlens report`: one self-contained file, the viewer's own script, every pattern, written atomically.</summary>
public class ReportTests
{
    private const string DataOpen = "<script type=\"application/json\" id=\"headlens-data\">";

    // Probabilities are rounded to 4 decimals, as the server sends them.
    private const double Rounding = 5e-5;

    private static JsonElement Data(string html)
    {
        int start = html.IndexOf(DataOpen, StringComparison.Ordinal) + DataOpen.Length;
        int end = html.IndexOf("</script>", start, StringComparison.Ordinal);
        return JsonDocument.Parse(html[start..end]).RootElement.Clone();
    }

    private static int Count(string html, string what)
    {
        int count = 0;
        for (int at = html.IndexOf(what, StringComparison.Ordinal); at >= 0; at = html.IndexOf(what, at + 1, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }

    private static string TempFolder()
    {
        string folder = Path.Combine(Path.GetTempPath(), "headlens-report-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        return folder;
    }

    [Fact]
    public void TheReportInlinesTheViewerAndEveryPattern()
    {
        var source = new SyntheticSource(3, 4);
        string html = ReportWriter.Render(source, "the bank of the river. the bank");
        // Self-contained: the served script and style inline, nothing fetched.
        Assert.Contains(Encoding.UTF8.GetString(ViewerServer.ReadAsset("viewer.js")), html);
        Assert.DoesNotContain("src=\"viewer.js\"", html);
        Assert.DoesNotContain("href=\"viewer.css\"", html);
        Assert.DoesNotContain("https://", html);
        var data = Data(html);
        int[] ids = data.GetProperty("input").GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(8, ids.Length);
        var patterns = data.GetProperty("patterns");
        Assert.Equal(3, patterns.GetArrayLength());
        var row = new float[ids.Length];
        for (int l = 0; l < 3; l++)
        {
            Assert.Equal(4, patterns[l].GetArrayLength());
            for (int h = 0; h < 4; h++)
            {
                for (int i = 0; i < ids.Length; i++)
                {
                    source.Patterns(ids, l, [h], i, 1, row);
                    var written = patterns[l][h][i].EnumerateArray().Select(e => e.GetDouble()).ToArray();
                    Assert.Equal(ids.Length, written.Length);
                    for (int j = 0; j < ids.Length; j++)
                    {
                        Assert.Equal(row[j], written[j], Rounding);
                    }
                }
            }
        }

        var entries = data.GetProperty("heads").GetProperty("entries");
        Assert.Equal(12, entries.GetArrayLength());
        Assert.Equal("sink", entries[1].GetProperty("kind").GetString());
    }

    [Fact]
    public void TheReportCarriesAPolicyThatAllowsOnlyItsOwnInlineScriptAndStyle()
    {
        string html = ReportWriter.Render(new SyntheticSource(2, 2), "the bank of the river");
        var policy = System.Text.RegularExpressions.Regex.Match(html, "<meta http-equiv=\"Content-Security-Policy\" content=\"([^\"]+)\">");
        Assert.True(policy.Success, "no policy meta element");
        // Before anything it governs: the first script and style come after it.
        Assert.True(policy.Index < html.IndexOf("<style>", StringComparison.Ordinal) && policy.Index < html.IndexOf("<script", StringComparison.Ordinal));
        var directives = policy.Groups[1].Value.Split("; ").ToDictionary(d => d.Split(' ')[0], d => d[(d.IndexOf(' ', StringComparison.Ordinal) + 1)..]);
        Assert.Equal("'none'", directives["default-src"]);
        Assert.DoesNotContain("unsafe", policy.Groups[1].Value);
        Assert.DoesNotContain("connect-src", policy.Groups[1].Value); // default 'none': the report fetches nothing

        static string Sha(string content) => "'sha256-" + Convert.ToBase64String(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(content))) + "'";
        static string Between(string html, string open, string close)
        {
            int start = html.IndexOf(open, StringComparison.Ordinal) + open.Length;
            return html[start..html.IndexOf(close, start, StringComparison.Ordinal)];
        }

        // The hashes are of exactly what the browser will run: the inline style and the last (executable) script.
        Assert.Equal(Sha(Between(html, "<style>", "</style>")), directives["style-src"]);
        int script = html.LastIndexOf("<script>", StringComparison.Ordinal);
        Assert.Equal(Sha(Between(html[script..], "<script>", "</script>")), directives["script-src"]);
    }

    [Fact]
    public void MarkupInTheTextCannotCloseTheDataBlock()
    {
        const string text = "a </script><script>alert(1)</script> <!-- b";
        string html = ReportWriter.Render(new SyntheticSource(2, 2), text);
        Assert.Equal(2, Count(html, "<script")); // the data block and the viewer's script, nothing else
        Assert.DoesNotContain("alert(1)</script>", html);
        var data = Data(html);
        Assert.Equal(text, data.GetProperty("text").GetString());
        Assert.Contains(" <", data.GetProperty("input").GetProperty("tokens").EnumerateArray().Select(t => t.GetString()));
    }

    [Fact]
    public void WritingReplacesTheFileWholeAndLeavesNoTemporaryFile()
    {
        string folder = TempFolder();
        string path = Path.Combine(folder, "report.html");
        File.WriteAllText(path, "old");
        ReportWriter.Write(new SyntheticSource(2, 2), "one two three", path);
        string html = File.ReadAllText(path);
        Assert.StartsWith("<!doctype html>", html);
        Assert.EndsWith("</html>\n", html);
        Assert.Equal("report.html", Path.GetFileName(Assert.Single(Directory.GetFiles(folder))));
        Directory.Delete(folder, recursive: true);
    }

    [Fact]
    public void AMissingFolderIsOneClearErrorAndNoFile()
    {
        string path = Path.Combine(Path.GetTempPath(), "headlens-missing-" + Guid.NewGuid().ToString("N"), "r.html");
        var error = Assert.Throws<HeadLensException>(() => ReportWriter.Write(new SyntheticSource(2, 2), "a b", path));
        Assert.Contains("does not exist", error.Message);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void AReportTooLargeToOpenIsRefused()
    {
        // 12 × 12 heads × 200² = 5.76 M probabilities, over the limit; the live viewer has no such limit.
        string text = string.Join(' ', Enumerable.Repeat("w", 200));
        var error = Assert.Throws<HeadLensException>(() => ReportWriter.Render(new SyntheticSource(12, 12), text));
        Assert.Contains("shorter text", error.Message);
    }

    [Fact]
    public void HeatMapsArePngsOfEachHeadsPatternLabelledWithTitleTokensAndScale()
    {
        var source = new SyntheticSource(2, 4);
        string folder = TempFolder();
        var input = source.Tokenize("one two three four five six seven eight");
        int t = input.Ids.Length;
        var views = new AttentionViews(source);
        var patterns = ReportWriter.Patterns(views, input);
        var files = ReportWriter.WriteHeatMaps(source, input, patterns, folder, views.Heads(input));
        Assert.Equal(8, files.Count);
        byte[] png = File.ReadAllBytes(Path.Combine(folder, "layer0-head0.png"));
        var (width, height, rgb) = PngEncoderTests.Decode(png);
        // The same drawing, rendered again, gives the layout to read the file by.
        var flat = patterns[0][0].SelectMany(row => row).ToArray();
        LabelledHeatMap.Render(flat, t, t, "synthetic: layer 0, head 0 (previous-token)", input.Tokens, input.Tokens, out var layout);
        Assert.Equal(png, LabelledHeatMap.Render(flat, t, t, "synthetic: layer 0, head 0 (previous-token)", input.Tokens, input.Tokens, out _));
        Assert.Equal((layout.Width, layout.Height), (width, height));
        int scale = layout.Cell;
        Assert.Equal(512 / t, scale);
        byte Red(int i, int j) => rgb[((((layout.MapTop + (i * scale)) + (scale / 2)) * width) + layout.MapLeft + (j * scale) + (scale / 2)) * 3];
        // Layer 0 head 0 is a previous-token head: 0.9 on the sub-diagonal, 0.1 on the diagonal, nothing above.
        for (int i = 1; i < t; i++)
        {
            Assert.True(Red(i, i - 1) < Red(i, i), $"row {i}");
            Assert.True(Red(i, i) < 255, $"row {i}");
            Assert.Equal(255, Red(i - 1, i)); // above the diagonal: masked, white
        }

        Assert.True(layout.Labels, "8 tokens leave 64 px a cell: room for labels");
        LabelledHeatMapTests.AssertText(rgb, width, "synthetic: layer 0, head 0 (previous-token)", 8, 8, 2);
        Directory.Delete(folder, recursive: true);
    }

    [Fact]
    public void TheReportCommandWritesTheFileAndHeatMapsOfTheEmbeddedModel()
    {
        string folder = TempFolder();
        string path = Path.Combine(folder, "demo.html");
        string png = Path.Combine(folder, "png");
        var (code, output, error) = CliTests.Run("report", "--text", "In the beginning <b>", "--out", path, "--png", png);
        Assert.True(code == 0, error);
        Assert.Contains(path, output);
        var data = Data(File.ReadAllText(path));
        Assert.Equal(4, data.GetProperty("model").GetProperty("layers").GetInt32());
        Assert.Equal(20, data.GetProperty("input").GetProperty("ids").GetArrayLength()); // bytes: the embedded model's tokenizer
        Assert.Equal(16, Directory.GetFiles(png, "layer*-head*.png").Length);

        var (badCode, _, badError) = CliTests.Run("report", "--text", "x", "--out", Path.Combine(folder, "no", "r.html"));
        Assert.Equal(1, badCode);
        Assert.Single(badError.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("does not exist", badError);

        // --png naming a file (issue 16): one line naming the option, not an internal error, and no report written.
        string file = Path.Combine(folder, "a-file");
        File.WriteAllText(file, "x");
        string second = Path.Combine(folder, "second.html");
        var (fileCode, _, fileError) = CliTests.Run("report", "--text", "x", "--out", second, "--png", file);
        Assert.Equal(1, fileCode);
        Assert.Single(fileError.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("--png", fileError);
        Assert.False(File.Exists(second));
        Directory.Delete(folder, recursive: true);
    }
}
