using System.Diagnostics;
using System.Text.Json;

namespace HeadLens.Tests.Cli;

/// <summary>The `headlens` tool run as a user runs it: a separate process, its exit code, stdout and stderr.</summary>
public class CliTests
{
    private static readonly string App = Path.Combine(AppContext.BaseDirectory, "HeadLens.Cli.dll");
    private static readonly string Model = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", "tiny-gpt2");

    internal static (int Code, string Out, string Error) Run(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Path.GetTempPath() };
        start.ArgumentList.Add(App);
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        string error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output.Result, error);
    }

    internal static void AssertOneLineError((int Code, string Out, string Error) result, string mentions)
    {
        Assert.NotEqual(0, result.Code);
        var lines = result.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one line on stderr, got: {result.Error}");
        Assert.Contains(mentions, lines[0]);
        Assert.DoesNotContain("   at ", result.Error);
    }

    [Fact]
    public void LogitsJsonFollowsTheContract()
    {
        var (code, output, _) = Run("logits", "--model", Model, "--ids", "1,2,3,60", "--json");
        Assert.Equal(0, code);
        using var json = JsonDocument.Parse(output);
        Assert.Equal([1, 2, 3, 60], json.RootElement.GetProperty("ids").EnumerateArray().Select(v => v.GetInt32()));
        var rows = json.RootElement.GetProperty("logits").EnumerateArray().ToList();
        Assert.Equal(4, rows.Count);
        Assert.All(rows, row => Assert.Equal(61, row.GetArrayLength()));
    }

    [Fact]
    public void AttentionJsonRowsSumToOneWithZerosAboveTheDiagonal()
    {
        var (code, output, _) = Run("attention", "--model", Model, "--ids", "5,6,7,8,9", "--json");
        Assert.Equal(0, code);
        using var json = JsonDocument.Parse(output);
        Assert.Equal(2, json.RootElement.GetProperty("layers").GetInt32());
        Assert.Equal(3, json.RootElement.GetProperty("heads").GetInt32());
        foreach (var layer in json.RootElement.GetProperty("patterns").EnumerateArray())
        {
            foreach (var head in layer.EnumerateArray())
            {
                var rows = head.EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetDouble()).ToArray()).ToArray();
                for (int i = 0; i < rows.Length; i++)
                {
                    Assert.Equal(1.0, rows[i].Sum(), 5);
                    Assert.All(rows[i][(i + 1)..], p => Assert.Equal(0.0, p));
                }
            }
        }

        var slice = Run("attention", "--model", Model, "--ids", "5,6,7", "--layer", "1", "--head", "2", "--json");
        using var single = JsonDocument.Parse(slice.Out);
        Assert.Equal(3, single.RootElement.GetProperty("patterns").GetArrayLength());
    }

    [Fact]
    public void GenerateJsonGivesOnlyTheNewIds()
    {
        var (code, output, _) = Run("generate", "--model", Model, "--ids", "1,2,3", "--max-tokens", "5", "--temperature", "0", "--json");
        Assert.Equal(0, code);
        using var json = JsonDocument.Parse(output);
        Assert.Equal([1, 2, 3], json.RootElement.GetProperty("prompt_ids").EnumerateArray().Select(v => v.GetInt32()));
        Assert.Equal(5, json.RootElement.GetProperty("ids").GetArrayLength());
        Assert.False(json.RootElement.TryGetProperty("text", out _)); // this model has no tokenizer
    }

    [Fact]
    public void BadInputGetsOneClearLine()
    {
        AssertOneLineError(Run("frobnicate"), "unknown command");
        AssertOneLineError(Run("generate", "--model", Model, "--ids", "1,2,99"), "token id 99");
        AssertOneLineError(Run("generate", "--model", Model, "--ids", string.Join(',', Enumerable.Repeat(1, 17))), "context");
        AssertOneLineError(Run("generate", "--model", Model, "--prompt", "hello"), "no tokenizer");
        AssertOneLineError(Run("logits", "--model", "/nonexistent/model", "--ids", "1"), "no such model");
        AssertOneLineError(Run("train", "--corpus", "/nonexistent/corpus.txt", "--steps", "1"), "not found");
        AssertOneLineError(Run("train", "--preset", "gpt5", "--steps", "1"), "unknown preset");
        AssertOneLineError(Run("describe", "--preset", "gpt2", "--contex", "5"), "unknown option --contex");
        AssertOneLineError(Run("train", "--resume", "--out", Path.Combine(Path.GetTempPath(), "no-such-run")), "no checkpoint");
    }

    [Fact]
    public void DescribeCountsGpt2()
    {
        var (code, output, _) = Run("describe", "--preset", "gpt2", "--context", "131072");
        Assert.Equal(0, code);
        Assert.Contains("124.4M", output);
        Assert.Contains("17.18B", output); // 131072² scores per head: ~17 billion
    }

    [Fact]
    public void DescribeNamesLinearAttentionAndItsState()
    {
        // kjv-linear: 4 heads × 32, so 4 × 32 × 33 = 4,224 floats of state per layer; 4 × 4 × 128 × 32 = 65.5k FLOPs.
        var (code, output, _) = Run("describe", "--preset", "kjv-linear", "--context", "128");
        Assert.Equal(0, code);
        Assert.Contains("causal linear attention", output);
        Assert.Contains("a state of 4.224K floats per layer", output);
        Assert.Contains("65.5 kFLOP per token at any length", output);
        Assert.DoesNotContain("linear attention:", Run("describe", "--preset", "kjv-llama").Out);
    }

    [Fact]
    public void DemoRunsOnTheEmbeddedModel()
    {
        string report = Path.Combine(Path.GetTempPath(), $"headlens-demo-{Guid.NewGuid():N}.html");
        try
        {
            var (code, output, error) = Run("demo", "--out", report);
            Assert.True(code == 0, error);
            Assert.Contains("HeadLens demo", output);
            // The sample is text: no byte that fails to decode (the model saw random bytes in training; top-p cuts them).
            Assert.DoesNotContain("\uFFFD", output);
            Assert.Contains("induction", output);
            Assert.Contains("layer head  kind", output);
            // From patterns to causes: the copied letter traced to an induction head, the last layer, and its MLP.
            Assert.Contains("Who copies?", output);
            Assert.Matches(@"Activation patching: layer 3 head \d \(induction\) alone brings back [5-9]\d% of the difference", output);
            Assert.Matches(@"Path patching: of what earlier heads send to it, layer [0-2] head \d \(previous-token\) into its keys brings back the most, \d+%", output);
            Assert.Matches(@"the weights let that path carry \d\.\d× what random ones would \(K-composition 0\.\d{3}; headlens circuits\)", output);
            Assert.Contains("Logit lens: 'z' leads from L3 on", output);
            Assert.Matches(@"Direct attribution: of the \+6\.\d\d, layer 3's MLP writes \+\d\.\d\d", output);
            Assert.True(File.Exists(report));
            string html = File.ReadAllText(report);
            Assert.StartsWith("<!doctype html>", html);
            Assert.Contains("In the beginning God created", html); // the sample text travels in the report's data
            Assert.DoesNotContain("src=\"viewer.js\"", html); // self-contained: the viewer's script is inline
        }
        finally
        {
            File.Delete(report);
        }
    }

    [Fact]
    public void HeadsRanksAttentionBetweenTwoWords()
    {
        var (code, output, error) = Run("heads", "--text", "The animal didn't cross the street because it was too tired", "--from", "it", "--to", "animal", "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        var pair = json.RootElement.GetProperty("pair");
        var heads = pair.GetProperty("heads").EnumerateArray().Select(h => h.GetProperty("attention").GetDouble()).ToList();
        Assert.Equal(16, heads.Count); // 4 layers × 4 heads of the embedded model
        Assert.Equal(heads.OrderByDescending(a => a), heads);
        Assert.All(heads, a => Assert.InRange(a, 0, 1));
        Assert.Equal(6, pair.GetProperty("key_positions").GetArrayLength()); // "animal" is 6 byte tokens
        AssertOneLineError(Run("heads", "--text", "The animal", "--from", "it", "--to", "animal"), "'it'");
    }

    [Fact]
    public void ExperimentHandcraftedWritesItsReportAndBadSettingsAreOneLine()
    {
        string report = Path.Combine(Path.GetTempPath(), $"headlens-handcrafted-{Guid.NewGuid():N}.md");
        try
        {
            var (code, output, error) = Run("experiment", "handcrafted", "--out", report);
            Assert.True(code == 0, error);
            Assert.Contains("the fat cat sat on the mat", output);
            Assert.StartsWith("# A hand-written article", File.ReadAllText(report));
        }
        finally
        {
            File.Delete(report);
        }

        AssertOneLineError(Run("experiment", "induction", "--heads", "3"), "--heads must divide the model width 64");
        AssertOneLineError(Run("experiment", "induction", "--layers", "9"), "--layers");
        AssertOneLineError(Run("experiment", "frobnicate"), "unknown experiment 'frobnicate'");
    }

    [Fact]
    public void HeadsJsonUsesTheContractKinds()
    {
        var (code, output, _) = Run("heads", "--json");
        Assert.Equal(0, code);
        using var json = JsonDocument.Parse(output);
        string[] kinds = ["previous-token", "duplicate-token", "induction", "sink", "delimiter", "local", "broad", "mixed"];
        var heads = json.RootElement.GetProperty("heads").EnumerateArray().ToList();
        Assert.NotEmpty(heads);
        Assert.All(heads, head => Assert.Contains(head.GetProperty("kind").GetString(), kinds));
    }
}
