using System.Globalization;
using System.Text.Json;
using HeadLens.Checkpoints;
using HeadLens.Cli;
using HeadLens.Cli.Commands;

namespace HeadLens.Tests.Cli;

/// <summary>
/// `logits` and `attention` for people (a top-k table, a text heat map) and for scripts (the contract's JSON plus
/// the token strings), and `heads --from/--to WORD@N` (issue 15).
/// </summary>
public class InspectionOutputTests
{
    private const string Text = "In the beginning God";
    private static readonly string EmbeddedModel = Path.Combine(AppContext.BaseDirectory, "Data", "kjv-model");

    [Fact]
    public void LogitsTableShowsTheTopTokensWithTheProbabilitiesOfTheJson()
    {
        var table = CliTests.Run("logits", "--text", Text, "--top-k", "3");
        Assert.True(table.Code == 0, table.Error);
        var json = CliTests.Run("logits", "--text", Text, "--json");
        using var document = JsonDocument.Parse(json.Out);
        var root = document.RootElement;
        var (_, tokenizer) = ModelFiles.Load(EmbeddedModel);
        int[] ids = [.. root.GetProperty("ids").EnumerateArray().Select(v => v.GetInt32())];
        Assert.Equal(ids.Select(tokenizer!.TokenText), root.GetProperty("tokens").EnumerateArray().Select(v => v.GetString()));

        var rows = table.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(2).ToList();
        Assert.Equal(ids.Length, rows.Count);
        var logits = root.GetProperty("logits").EnumerateArray().ToList();
        for (int t = 0; t < ids.Length; t++)
        {
            // The reference: softmax of the JSON row in float64, the three likeliest, each shown with its probability.
            double[] row = [.. logits[t].EnumerateArray().Select(v => v.GetDouble())];
            double max = row.Max(), sum = row.Sum(l => Math.Exp(l - max));
            var top = Enumerable.Range(0, row.Length).OrderByDescending(v => row[v]).Take(3).ToList();
            string expected = string.Join("  ", top.Select(v =>
                $"{ModelInput.Show(tokenizer.TokenText(v), v)} {(Math.Exp(row[v] - max) / sum).ToString("F3", CultureInfo.InvariantCulture)}"));
            Assert.EndsWith(expected, rows[t].TrimEnd());
            Assert.StartsWith($"{t,4}  {ModelInput.Show(tokenizer.TokenText(ids[t]), ids[t])}", rows[t]);
        }

        // 'next' is the following input token, ranked among all tokens.
        Assert.Matches(@"^\s+0\s+'I'\s+'n'\s+#\d+\s+0\.\d{3}", rows[0]);
    }

    [Fact]
    public void AttentionHeatMapShadesEachCellAsTheJsonProbability()
    {
        var map = CliTests.Run("attention", "--text", "the cat sat", "--layer", "1", "--head", "2");
        Assert.True(map.Code == 0, map.Error);
        var json = CliTests.Run("attention", "--text", "the cat sat", "--layer", "1", "--head", "2", "--json");
        using var document = JsonDocument.Parse(json.Out);
        var pattern = document.RootElement.GetProperty("patterns").EnumerateArray()
            .Select(row => row.EnumerateArray().Select(v => v.GetSingle()).ToArray()).ToArray();
        Assert.Equal(11, document.RootElement.GetProperty("tokens").GetArrayLength());
        var lines = map.Out.Split('\n');
        int header = Array.FindIndex(lines, line => line == "layer 1 head 2");
        Assert.True(header > 0, map.Out);
        for (int i = 0; i < pattern.Length; i++)
        {
            string line = lines[header + 3 + i]; // a tens row and a units row above the grid (11 tokens)
            string cells = line.Substring(18, pattern.Length);
            Assert.Equal(string.Concat(pattern[i].Select(AttentionCommand.Shade)), cells);
            Assert.All(cells[(i + 1)..], c => Assert.Equal(' ', c)); // causal: nothing after the attending token
        }
    }

    [Fact]
    public void AttentionPrintsEveryHeadWithoutJson()
    {
        var (code, output, error) = CliTests.Run("attention", "--model", Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", "tiny-gpt2"), "--ids", "5,6,7");
        Assert.True(code == 0, error);
        for (int layer = 0; layer < 2; layer++)
        {
            for (int head = 0; head < 3; head++)
            {
                Assert.Contains($"layer {layer} head {head}\n", output);
            }
        }

        Assert.Contains("   0 [5]          @", output); // no tokenizer: tokens shown by id; the first token attends to itself
        Assert.DoesNotContain("{", output);
    }

    [Fact]
    public void HeadsFromAndToTakeTheNthOccurrence()
    {
        const string Sentence = "the cat saw the dog and the cat ran";
        var (code, output, error) = CliTests.Run("heads", "--text", Sentence, "--from", "cat@2", "--to", "dog", "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        var pair = json.RootElement.GetProperty("pair");
        // Byte tokens: the second "cat" ends at character 30, "dog" is characters 16..18.
        Assert.Equal(Sentence.LastIndexOf("cat", StringComparison.Ordinal) + 2, pair.GetProperty("query_position").GetInt32());
        Assert.Equal([16, 17, 18], pair.GetProperty("key_positions").EnumerateArray().Select(v => v.GetInt32()));

        var second = CliTests.Run("heads", "--text", Sentence, "--from", "cat@2", "--to", "the@2", "--json");
        using var secondJson = JsonDocument.Parse(second.Out);
        Assert.Equal([12, 13, 14], secondJson.RootElement.GetProperty("pair").GetProperty("key_positions").EnumerateArray().Select(v => v.GetInt32()));

        CliTests.AssertOneLineError(CliTests.Run("heads", "--text", Sentence, "--from", "cat", "--to", "dog"), "--from cat@2 picks the second");
        CliTests.AssertOneLineError(CliTests.Run("heads", "--text", Sentence, "--from", "cat@3", "--to", "dog"), "occurs 2 times");
        CliTests.AssertOneLineError(CliTests.Run("heads", "--text", Sentence, "--from", "cat@1", "--to", "the@2"), "occurrence 2 of 'the'");
        CliTests.AssertOneLineError(CliTests.Run("heads", "--text", Sentence, "--from", "cat@0", "--to", "dog"), "counts from 1");
    }
}
