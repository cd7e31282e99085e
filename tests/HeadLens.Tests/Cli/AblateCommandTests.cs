using System.Text.Json;
using HeadLens.Analysis;
using HeadLens.Checkpoints;

namespace HeadLens.Tests.Cli;

/// <summary>`headlens ablate`: what breaks without each head, as JSON and as the table a reader sees.</summary>
public class AblateCommandTests
{
    private static readonly string Model = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", "tiny-gpt2");

    private static readonly HashSet<string> Kinds = ["previous-token", "duplicate-token", "induction", "sink", "delimiter", "local", "broad", "mixed", "next-token", "self"];

    [Fact]
    public void JsonRanksEveryHeadByItsEffectAsTheLibraryComputesIt()
    {
        int[] ids = [3, 14, 15, 9, 26, 5, 35, 8, 9, 7];
        var (code, output, error) = CliTests.Run("ablate", "--model", Model, "--ids", string.Join(',', ids), "--method", "mean", "--json");
        Assert.True(code == 0, error);
        var root = JsonDocument.Parse(output).RootElement;
        Assert.Equal(ids, root.GetProperty("ids").EnumerateArray().Select(value => value.GetInt32()));
        Assert.Equal("mean", root.GetProperty("method").GetString());
        Assert.Equal("next_token_loss", root.GetProperty("measure").GetString());

        var (model, _) = ModelFiles.Load(Model);
        var expected = HeadAblation.Run(model, ids, AblationMethod.Mean);
        Assert.Equal(Math.Round(expected.Clean, 6), root.GetProperty("clean").GetDouble());
        var heads = root.GetProperty("heads").EnumerateArray().ToList();
        Assert.Equal(6, heads.Count);
        double[] changes = [.. heads.Select(head => head.GetProperty("change").GetDouble())];
        Assert.Equal(changes.OrderDescending(), changes);
        foreach (var head in heads)
        {
            var effect = expected.Heads.Single(e => e.Layer == head.GetProperty("layer").GetInt32() && e.Head == head.GetProperty("head").GetInt32());
            Assert.Equal(Math.Round(effect.Change, 6), head.GetProperty("change").GetDouble());
            Assert.Equal(effect.Position, head.GetProperty("position").GetInt32());
            Assert.Equal(Math.Round(effect.AblatedProbability!.Value, 6), head.GetProperty("ablated_probability").GetDouble());
            Assert.Contains(head.GetProperty("kind").GetString()!, Kinds);
        }
    }

    [Fact]
    public void TheTableOnTheEmbeddedModelNamesTheHeadsThatMatter()
    {
        var (code, output, error) = CliTests.Run("ablate", "--top", "3");
        Assert.True(code == 0, error);
        Assert.Contains("What breaks without each head", output);
        Assert.Contains("nats/token with every head", output);
        var grid = output.Split('\n').SkipWhile(line => !line.StartsWith("layer", StringComparison.Ordinal)).Skip(1).TakeWhile(line => line.Length > 0).ToList();
        Assert.Equal(4, grid.Count);
        Assert.All(grid, line => Assert.Equal(4, line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length - 1));
        var ranked = output.Split('\n').SkipWhile(line => !line.StartsWith("The 3 heads", StringComparison.Ordinal)).Skip(1).Take(3).ToList();
        Assert.All(ranked, line => Assert.Matches(@"^  layer +\d head +\d  \+\d\.\d{4}  \S+ +most predicting '.+' after '.+' \(position \d+\): p \d\.\d{3} → \d\.\d{3}$", line));
    }

    [Fact]
    public void ATargetIsMeasuredByItsOnePrediction()
    {
        // The embedded model (byte tokens): which heads does it need to finish "ligh" with "t"?
        const string Text = "And God said, Let there be light: and there was ligh";
        var (code, output, error) = CliTests.Run("ablate", "--text", Text, "--target", "t", "--json");
        Assert.True(code == 0, error);
        var root = JsonDocument.Parse(output).RootElement;
        Assert.Equal("target_loss", root.GetProperty("measure").GetString());
        Assert.Equal('t', root.GetProperty("target").GetInt32());
        Assert.Equal("t", root.GetProperty("target_token").GetString());

        var (model, tokenizer) = ModelFiles.Load(Path.Combine(AppContext.BaseDirectory, "Data", "kjv-model"));
        var expected = HeadAblation.Run(model, tokenizer!.EncodeForModel(Text), AblationMethod.Zero, target: 't');
        Assert.Equal(Math.Round(expected.Clean, 6), root.GetProperty("clean").GetDouble());
        var best = expected.Heads.MaxBy(e => e.Change)!;
        var first = root.GetProperty("heads")[0];
        Assert.Equal((best.Layer, best.Head), (first.GetProperty("layer").GetInt32(), first.GetProperty("head").GetInt32()));
        Assert.Equal(Math.Round(best.AblatedProbability!.Value, 6), first.GetProperty("ablated_probability").GetDouble());

        var table = CliTests.Run("ablate", "--text", Text, "--target", "t", "--top", "2");
        Assert.True(table.Code == 0, table.Error);
        Assert.Contains("Measure: −log p('t') right after the text", table.Out);
        Assert.Matches(@"p\('t'\) \d\.\d{3} → \d\.\d{3}", table.Out);

        // A target of several tokens is measured by its first, and says so; without a tokenizer, a target is an id.
        var longer = CliTests.Run("ablate", "--text", Text, "--target", "ts", "--layer", "0");
        Assert.True(longer.Code == 0, longer.Error);
        Assert.Contains("is 2 tokens; the first, 't', is used", longer.Error);
        CliTests.AssertOneLineError(CliTests.Run("ablate", "--model", Model, "--ids", "5,6", "--target", "x"), "needs the model's tokenizer");
        var byId = CliTests.Run("ablate", "--model", Model, "--ids", "5,6", "--target", "7", "--json");
        Assert.True(byId.Code == 0, byId.Error);
        Assert.Equal(7, JsonDocument.Parse(byId.Out).RootElement.GetProperty("target").GetInt32());
        CliTests.AssertOneLineError(CliTests.Run("ablate", "--model", "minilm", "--text", "hi", "--target", "x"), "output head");
    }

    [Fact]
    public void AnEncoderIsMeasuredByItsSentenceEmbedding()
    {
        var (code, output, error) = CliTests.Run("ablate", "--model", "minilm", "--text", "The cat sat on the mat.", "--layer", "5", "--json");
        Assert.True(code == 0, error);
        var root = JsonDocument.Parse(output).RootElement;
        Assert.Equal("embedding_drift", root.GetProperty("measure").GetString());
        var heads = root.GetProperty("heads").EnumerateArray().ToList();
        Assert.Equal(12, heads.Count);
        Assert.All(heads, head => Assert.Equal(5, head.GetProperty("layer").GetInt32()));
        Assert.All(heads, head => Assert.InRange(head.GetProperty("change").GetDouble(), 1e-6, 1));
        Assert.False(heads[0].TryGetProperty("clean_probability", out _));
        Assert.Equal(root.GetProperty("ids").GetArrayLength(), root.GetProperty("tokens").GetArrayLength());
    }

    [Fact]
    public void BadInputGetsOneLine()
    {
        CliTests.AssertOneLineError(CliTests.Run("ablate", "--model", Model, "--ids", "5"), "at least 2 tokens");
        CliTests.AssertOneLineError(CliTests.Run("ablate", "--model", Model, "--ids", "5,6", "--layer", "2"), "--layer");
        CliTests.AssertOneLineError(CliTests.Run("ablate", "--model", Model, "--ids", "5,6", "--method", "half"), "--method");
        CliTests.AssertOneLineError(CliTests.Run("ablate", "--model", Model, "--text", "hello"), "no tokenizer");
    }
}
