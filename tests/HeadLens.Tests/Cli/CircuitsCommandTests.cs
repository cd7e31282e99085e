using System.Text.Json;
using HeadLens.Analysis;
using HeadLens.Checkpoints;

namespace HeadLens.Tests.Cli;

/// <summary>`headlens circuits`: composition scores as JSON and as rankings, one head's pairs, and the refusals.</summary>
public class CircuitsCommandTests
{
    private static readonly string Embedded = Path.Combine(AppContext.BaseDirectory, "Data", "kjv-model");

    private static readonly string Gpt2 = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", "tiny-gpt2");

    private static List<(int[] Sender, int[] Receiver, double Query, double Key, double Value)> Pairs(JsonElement root) =>
        [.. root.GetProperty("compositions").EnumerateArray().Select(pair => (
            pair.GetProperty("sender").EnumerateArray().Select(value => value.GetInt32()).ToArray(),
            pair.GetProperty("receiver").EnumerateArray().Select(value => value.GetInt32()).ToArray(),
            pair.GetProperty("query").GetDouble(), pair.GetProperty("key").GetDouble(), pair.GetProperty("value").GetDouble()))];

    private static void AssertSame(List<Composition> expected, List<(int[] Sender, int[] Receiver, double Query, double Key, double Value)> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        foreach (var (want, got) in expected.Zip(actual))
        {
            Assert.Equal([want.SourceLayer, want.SourceHead], got.Sender);
            Assert.Equal([want.Layer, want.Head], got.Receiver);
            Assert.Equal((Math.Round(want.Query, 6), Math.Round(want.Key, 6), Math.Round(want.Value, 6)), (got.Query, got.Key, got.Value));
        }
    }

    [Fact]
    public void JsonHoldsEveryPairAsTheLibraryComputesIt()
    {
        var (code, output, error) = CliTests.Run("circuits", "--model", Gpt2, "--json");
        Assert.True(code == 0, error);
        var root = JsonDocument.Parse(output).RootElement;
        var (model, _) = ModelFiles.Load(Gpt2);
        AssertSame(Circuits.Compositions(model), Pairs(root));
        Assert.Equal(Math.Round(Circuits.RandomBaseline(model.Config), 6), root.GetProperty("random_baseline").GetDouble());
        Assert.Equal((2, 3, 24), (root.GetProperty("layers").GetInt32(), root.GetProperty("heads").GetInt32(), root.GetProperty("channels").GetInt32()));
        var kinds = HeadTaxonomy.Analyse(model, null, null, 0).ToDictionary(s => $"{s.Layer}.{s.Head}", s => s.Kind);
        Assert.Equal(kinds, root.GetProperty("kinds").EnumerateObject().ToDictionary(kind => kind.Name, kind => kind.Value.GetString()!));
    }

    [Fact]
    public void OneHeadsPairsAreThoseIntoOrOutOfIt()
    {
        var (model, _) = ModelFiles.Load(Embedded);
        var into = CliTests.Run("circuits", "--receiver", "3.0", "--json");
        Assert.True(into.Code == 0, into.Error);
        AssertSame(Circuits.CompositionsInto(model, 3, 0), Pairs(JsonDocument.Parse(into.Out).RootElement));
        var from = CliTests.Run("circuits", "--sender", "2.0", "--json");
        Assert.True(from.Code == 0, from.Error);
        AssertSame(Circuits.CompositionsFrom(model, 2, 0), Pairs(JsonDocument.Parse(from.Out).RootElement));
    }

    [Fact]
    public void TheRankingsNameTheEmbeddedModelsInductionHeadsReadingLayerTwo()
    {
        // The embedded model's induction heads (layer 3) read layer 2's heads through their keys: its strongest
        // K-composition is 2.0 into 3.2, 0.235, 2.7 times what random weights score (0.088 at 128 channels).
        var (code, output, error) = CliTests.Run("circuits", "--top", "3");
        Assert.True(code == 0, error);
        Assert.Contains("4 layers × 4 heads, 128 channels", output);
        Assert.Contains("independent random matrices score about 0.088", output);
        int keys = output.IndexOf("K-composition:", StringComparison.Ordinal), queries = output.IndexOf("Q-composition:", StringComparison.Ordinal);
        Assert.True(keys >= 0 && queries > keys && output.IndexOf("V-composition:", StringComparison.Ordinal) > queries, output);
        var keyRows = output[keys..queries].Split('\n').Where(line => line.Contains('→')).ToList();
        Assert.Equal(3, keyRows.Count);
        Assert.Matches(@"^  2\.0 \S+ +→  3\.2 induction +0\.235 +2\.7×$", keyRows[0]);

        var onlyKeys = CliTests.Run("circuits", "--input", "key", "--top", "2");
        Assert.True(onlyKeys.Code == 0, onlyKeys.Error);
        Assert.Contains("K-composition:", onlyKeys.Out);
        Assert.DoesNotContain("Q-composition:", onlyKeys.Out);
        Assert.DoesNotContain("V-composition:", onlyKeys.Out);
        Assert.Equal(2, onlyKeys.Out.Split('\n').Count(line => line.Contains('→')));

        var intoHead = CliTests.Run("circuits", "--receiver", "3.0", "--input", "key", "--top", "1");
        Assert.True(intoHead.Code == 0, intoHead.Error);
        Assert.Contains("Composition into head 3.0 induction", intoHead.Out);
        Assert.Matches(@"\n  2\.0 \S+ +→  3\.0 induction +0\.213 +2\.4×\n", intoHead.Out);
    }

    [Fact]
    public void TheRealMiniLmsStrongestPairIsNamed()
    {
        var (code, output, error) = CliTests.Run("circuits", "--model", "minilm", "--input", "key", "--top", "1");
        Assert.True(code == 0, error);
        Assert.Contains("6 layers × 12 heads, 384 channels", output);
        Assert.Matches(@"\n  1\.1 \S+ +→  2\.9 \S+ +0\.242 +4\.8×\n", output);
    }

    [Fact]
    public void BadRequestsGetOneLine()
    {
        CliTests.AssertOneLineError(CliTests.Run("circuits", "--receiver", "0.1"), "--receiver 0.1 is in the first layer");
        CliTests.AssertOneLineError(CliTests.Run("circuits", "--sender", "3.2"), "--sender 3.2 is in the last layer");
        CliTests.AssertOneLineError(CliTests.Run("circuits", "--receiver", "3.0", "--sender", "1.0"), "not both");
        CliTests.AssertOneLineError(CliTests.Run("circuits", "--receiver", "7.0"), "circuits: --receiver 7.0: the model has 4 layers of 4 heads");
        CliTests.AssertOneLineError(CliTests.Run("circuits", "--sender", "two"), "circuits: --sender 'two' is not LAYER.HEAD");
        CliTests.AssertOneLineError(CliTests.Run("circuits", "--input", "keys"), "--input");
        CliTests.AssertOneLineError(CliTests.Run("circuits", "--top", "0"), "--top");
    }
}
