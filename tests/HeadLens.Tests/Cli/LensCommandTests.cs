using System.Text.Json;
using HeadLens.Analysis;
using HeadLens.Checkpoints;

namespace HeadLens.Tests.Cli;

/// <summary>`headlens lens`: the logit lens as JSON, as the grid and as one position's list.</summary>
public class LensCommandTests
{
    private static readonly string Model = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", "tiny-llama-gqa");

    private const string Text = "the word is kqzj; the word is kq";

    [Fact]
    public void JsonHoldsEveryStageAsTheLibraryComputesIt()
    {
        int[] ids = [1, 4, 1, 5, 9, 2, 6, 5, 3, 5];
        var (code, output, error) = CliTests.Run("lens", "--model", Model, "--ids", string.Join(',', ids), "--top", "2", "--json");
        Assert.True(code == 0, error);
        var root = JsonDocument.Parse(output).RootElement;
        var (model, _) = ModelFiles.Load(Model);
        var expected = LogitLens.Run(model, ids, top: 2);
        Assert.Equal(ids, root.GetProperty("ids").EnumerateArray().Select(value => value.GetInt32()));
        Assert.Equal(expected.Answers, root.GetProperty("answers").EnumerateArray().Select(value => value.GetInt32()));
        var stages = root.GetProperty("stages").EnumerateArray().ToList();
        Assert.Equal(["embed", "L0", "L1"], stages.Select(stage => stage.GetProperty("name").GetString()));
        foreach (var (stage, lens) in stages.Zip(expected.Stages))
        {
            Assert.Equal(lens.Layer, stage.GetProperty("layer").GetInt32());
            Assert.Equal(Math.Round(lens.Loss, 6), stage.GetProperty("loss").GetDouble());
            Assert.Equal(lens.NextProbabilities.Select(p => Math.Round(p, 6)), stage.GetProperty("next_probabilities").EnumerateArray().Select(value => value.GetDouble()));
            var top = stage.GetProperty("top").EnumerateArray().ToList();
            Assert.Equal(ids.Length, top.Count);
            Assert.Equal(lens.Top[3].Select(token => token.Token), top[3].EnumerateArray().Select(token => token.GetProperty("id").GetInt32()));
        }

        Assert.False(root.TryGetProperty("tokens", out _));
    }

    [Fact]
    public void TheGridShowsWhereTheEmbeddedModelsAnswerForms()
    {
        // The embedded model copies 'z' after the second "kq" only in its last layer (its induction heads' layer).
        var (code, output, error) = CliTests.Run("lens", "--text", Text);
        Assert.True(code == 0, error);
        Assert.Matches(@"\ninput( +'[^']+'){8} +loss\n", output);
        Assert.Matches(@"\nembed( +'[^']+'){8} +\d+\.\d{3}\n", output);
        Assert.Matches(@"\nL3( +'[^']+'){7} +'z' +\d+\.\d{3}\n", output);
        Assert.Contains("The model's answer after the text, 'z'", output);
        Assert.Contains("leads from L3 on.", output);

        var detail = CliTests.Run("lens", "--text", Text, "--position", "-1", "--top", "2");
        Assert.True(detail.Code == 0, detail.Error);
        Assert.Contains("position 31", detail.Out);
        Assert.Matches(@"\nL3 +0\.\d{4} +'z' 0\.\d{3}  '[^']+' 0\.\d{3}\n", detail.Out);

        var json = JsonDocument.Parse(CliTests.Run("lens", "--text", Text, "--json").Out).RootElement;
        Assert.Equal("z", json.GetProperty("answer_tokens")[Text.Length - 1].GetString());
        Assert.Equal(Text.Length, json.GetProperty("tokens").GetArrayLength());
    }

    [Fact]
    public void BadInputGetsOneLine()
    {
        CliTests.AssertOneLineError(CliTests.Run("lens", "--model", "minilm", "--text", "a cat"), "output head");
        CliTests.AssertOneLineError(CliTests.Run("lens", "--model", Model, "--ids", "1,2,3", "--position", "3"), "--position 3 is outside the text's 3 tokens");
        CliTests.AssertOneLineError(CliTests.Run("lens", "--model", Model, "--ids", "1,2,3", "--top", "0"), "--top");
    }
}
