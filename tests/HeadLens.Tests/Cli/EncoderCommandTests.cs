using System.Text.Json;

namespace HeadLens.Tests.Cli;

/// <summary>The commands on the built-in real encoder (minilm): what works, and what refuses in one line.</summary>
public class EncoderCommandTests
{
    private const string Article = "The animal didn't cross the street because it was too tired.";

    [Fact]
    public void HeadsRanksTheCoreferenceHeadsAndTheBestIsAboveHalf()
    {
        var (code, output, error) = CliTests.Run("heads", "--model", "minilm", "--text", Article, "--from", "it", "--to", "animal", "--json");
        Assert.True(code == 0, error);
        var pair = JsonDocument.Parse(output).RootElement.GetProperty("pair");
        var heads = pair.GetProperty("heads").EnumerateArray().ToList();
        Assert.Equal(72, heads.Count);
        Assert.True(heads[0].GetProperty("attention").GetDouble() > 0.5, $"best it → animal head: {heads[0]}");
        var kinds = JsonDocument.Parse(output).RootElement.GetProperty("heads").EnumerateArray().Select(h => h.GetProperty("kind").GetString()).ToHashSet();
        Assert.Contains("previous-token", kinds);
        Assert.Contains("next-token", kinds);
    }

    [Fact]
    public void AttentionGivesFullBidirectionalMatrices()
    {
        var (code, output, error) = CliTests.Run("attention", "--model", "minilm", "--text", "Money in the bank.", "--layer", "1", "--json");
        Assert.True(code == 0, error);
        var root = JsonDocument.Parse(output).RootElement;
        int t = root.GetProperty("ids").GetArrayLength();
        var head = root.GetProperty("patterns")[0][0];
        Assert.Equal(t, head.GetArrayLength());
        Assert.True(head[0][t - 1].GetDouble() > 0, "the first token attends to the last: no causal mask");
    }

    [Fact]
    public void EmbedGivesUnitVectorsAndTheirCosines()
    {
        var (code, output, error) = CliTests.Run("embed", "--text", "The bank of the river.", "--text", "The river bank was muddy.", "--text", "I deposited cash at the bank.", "--json");
        Assert.True(code == 0, error);
        var root = JsonDocument.Parse(output).RootElement;
        var embeddings = root.GetProperty("embeddings").EnumerateArray().Select(e => e.EnumerateArray().Select(v => v.GetDouble()).ToArray()).ToList();
        Assert.All(embeddings, e => Assert.Equal(1.0, Math.Sqrt(e.Sum(v => v * v)), 4));
        Assert.Equal(384, embeddings[0].Length);
        var similarity = root.GetProperty("similarity");
        Assert.True(similarity[0][1].GetDouble() > similarity[0][2].GetDouble(), "river bank is nearer river bank than money bank");
    }

    [Fact]
    public void DecoderOnlyCommandsRefuseAnEncoderInOneLine()
    {
        CliTests.AssertOneLineError(CliTests.Run("logits", "--model", "minilm", "--text", "hi"), "no output head");
        CliTests.AssertOneLineError(CliTests.Run("generate", "--model", "minilm", "--prompt", "hi"), "causal");
        CliTests.AssertOneLineError(CliTests.Run("embed", "--model", Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", "tiny-gpt2"), "--text", "hi"), "encoder");
    }

    [Fact]
    public void RealHeadsWritesItsReportWithFigures()
    {
        string directory = Path.Combine(Path.GetTempPath(), "headlens-real-heads-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
        try
        {
            string report = Path.Combine(directory, "real-heads.md");
            var (code, _, error) = CliTests.Run("experiment", "real-heads", "--out", report);
            Assert.True(code == 0, error);
            string text = File.ReadAllText(report);
            foreach (string section in new[] { "## Coreference", "## Positional", "## Syntactic heads", "## Layers", "## Contextual meaning", "## What breaks without a head", "## Which heads compose" })
            {
                Assert.Contains(section, text, StringComparison.Ordinal);
            }

            Assert.True(File.Exists(Path.Combine(directory, "real-heads-bank.svg")));
            Assert.True(File.Exists(Path.Combine(directory, "real-heads-layers.svg")));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
