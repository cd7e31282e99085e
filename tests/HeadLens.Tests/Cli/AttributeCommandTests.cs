using System.Text.Json;
using HeadLens.Analysis;
using HeadLens.Checkpoints;

namespace HeadLens.Tests.Cli;

/// <summary>`headlens attribute`: direct logit attribution as JSON and as the grid a reader sees.</summary>
public class AttributeCommandTests
{
    private static readonly string Model = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", "tiny-gpt2");

    private const string Text = "the word is kqzj; the word is kq";

    [Fact]
    public void JsonHoldsEveryShareAsTheLibraryComputesIt()
    {
        int[] ids = [3, 14, 15, 9, 26, 5, 35, 8, 9, 7];
        var (code, output, error) = CliTests.Run("attribute", "--model", Model, "--ids", string.Join(',', ids), "--token", "5", "--wrong-id", "9", "--position", "7", "--json");
        Assert.True(code == 0, error);
        var root = JsonDocument.Parse(output).RootElement;
        var (model, _) = ModelFiles.Load(Model);
        var expected = DirectLogitAttribution.Compute(model, ids, 7, 5, 9);
        Assert.Equal((7, 5, 9), (root.GetProperty("position").GetInt32(), root.GetProperty("token").GetInt32(), root.GetProperty("wrong").GetInt32()));
        Assert.Equal(Math.Round(expected.Logit, 6), root.GetProperty("logit").GetDouble());
        var heads = root.GetProperty("heads").EnumerateArray().ToList();
        Assert.Equal(6, heads.Count);
        double[] shares = [.. heads.Select(head => head.GetProperty("share").GetDouble())];
        Assert.Equal(shares.OrderByDescending(share => share), shares);
        foreach (var head in heads)
        {
            Assert.Equal(Math.Round(expected.Heads[head.GetProperty("layer").GetInt32(), head.GetProperty("head").GetInt32()], 6), head.GetProperty("share").GetDouble());
        }

        Assert.Equal(expected.Mlps.Select(share => Math.Round(share, 6)), root.GetProperty("mlps").EnumerateArray().Select(value => value.GetDouble()));
        Assert.Equal(Math.Round(expected.Embeddings, 6), root.GetProperty("embeddings").GetDouble());
        Assert.Equal(Math.Round(expected.FinalBias, 6), root.GetProperty("final_bias").GetDouble());
    }

    [Fact]
    public void TheEmbeddedModelWritesTheCopiedLetterInItsLastLayer()
    {
        // Without --token, the model's own answer at the last position: 'z'. Its last layer writes most of the
        // logit difference to 'v', through the induction heads and the MLP after them; the shares add up to it.
        var (code, output, error) = CliTests.Run("attribute", "--text", Text, "--wrong", "v", "--json");
        Assert.True(code == 0, error);
        var root = JsonDocument.Parse(output).RootElement;
        Assert.Equal(("z", "v"), (root.GetProperty("token_text").GetString(), root.GetProperty("wrong_text").GetString()));
        Assert.Equal(Text.Length - 1, root.GetProperty("position").GetInt32());
        var heads = root.GetProperty("heads").EnumerateArray().ToList();
        Assert.Equal(3, heads[0].GetProperty("layer").GetInt32());
        Assert.Equal("induction", heads[0].GetProperty("kind").GetString());
        double[] mlps = [.. root.GetProperty("mlps").EnumerateArray().Select(value => value.GetDouble())];
        double total = heads.Sum(head => head.GetProperty("share").GetDouble()) + mlps.Sum() + root.GetProperty("embeddings").GetDouble()
            + root.GetProperty("output_biases").EnumerateArray().Sum(value => value.GetDouble()) + root.GetProperty("final_bias").GetDouble();
        Assert.Equal(root.GetProperty("logit").GetDouble(), total, 3);
        Assert.Equal(mlps.Max(), mlps[^1]);

        var table = CliTests.Run("attribute", "--text", Text, "--wrong", "v", "--top", "3");
        Assert.True(table.Code == 0, table.Error);
        Assert.Contains("what each component writes into logit('z') − logit('v') = +", table.Out);
        Assert.Matches(@"\nlayer +H0 +H1 +H2 +H3 +MLP\n", table.Out);
        Assert.Contains("The 3 largest shares (either sign):", table.Out);
        Assert.Matches(@"\n  layer  3 head  \d +\+\d\.\d{3}  induction\n", table.Out);
    }

    [Fact]
    public void BadInputGetsOneLine()
    {
        CliTests.AssertOneLineError(CliTests.Run("attribute", "--model", "minilm", "--text", "a cat"), "output head");
        CliTests.AssertOneLineError(CliTests.Run("attribute", "--model", Model, "--ids", "1,2,3", "--position", "-4"), "--position -4 is outside the text's 3 tokens");
        CliTests.AssertOneLineError(CliTests.Run("attribute", "--model", Model, "--ids", "1,2,3", "--token-id", "99999"), "outside the vocabulary");
        CliTests.AssertOneLineError(CliTests.Run("attribute", "--model", Model, "--ids", "1,2,3", "--token", "a", "--token-id", "2"), "--token");
    }
}
