using System.Text.Json;
using HeadLens.Analysis;
using HeadLens.Checkpoints;
using HeadLens.Cli.Commands;

namespace HeadLens.Tests.Cli;

/// <summary>`headlens patch`: activation patching as JSON and as the tables a reader sees.</summary>
public class PatchCommandTests
{
    private static readonly string Model = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", "tiny-gpt2");

    // The embedded model copies the letter after "kq" from earlier in the text (an induction task).
    private const string Clean = "the word is kqzj; the word is kq";
    private const string Corrupted = "the word is kqvj; the word is kq";

    [Theory]
    [InlineData("heads")]
    [InlineData("stream")]
    [InlineData("attention")]
    [InlineData("mlp")]
    [InlineData("head-positions")]
    [InlineData("queries")]
    [InlineData("keys")]
    [InlineData("values")]
    [InlineData("patterns")]
    public void JsonRanksEveryPatchAsTheLibraryComputesIt(string over)
    {
        int[] clean = [3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 9, 3], corrupted = [3, 14, 15, 9, 26, 5, 35, 8, 22, 7, 9, 3];
        var (code, output, error) = CliTests.Run("patch", "--model", Model, "--clean-ids", string.Join(',', clean),
            "--corrupted-ids", string.Join(',', corrupted), "--answer", "7", "--wrong", "9", "--over", over, "--json");
        Assert.True(code == 0, error);
        var root = JsonDocument.Parse(output).RootElement;
        Assert.Equal(clean, root.GetProperty("clean_ids").EnumerateArray().Select(value => value.GetInt32()));
        Assert.Equal(corrupted, root.GetProperty("corrupted_ids").EnumerateArray().Select(value => value.GetInt32()));
        Assert.Equal(over, root.GetProperty("over").GetString());
        Assert.Equal("activation", root.GetProperty("method").GetString());
        Assert.Equal("logit_difference", root.GetProperty("metric").GetString());
        Assert.Equal((7, 9), (root.GetProperty("answer").GetInt32(), root.GetProperty("wrong").GetInt32()));
        Assert.False(root.TryGetProperty("answer_token", out _));

        var (model, _) = ModelFiles.Load(Model);
        var expected = ActivationPatching.Run(model, clean, corrupted, over switch
        {
            "heads" => PatchSite.Heads,
            "stream" => PatchSite.Stream,
            "attention" => PatchSite.Attention,
            "mlp" => PatchSite.Mlp,
            "head-positions" => PatchSite.HeadPositions,
            "queries" => PatchSite.Queries,
            "keys" => PatchSite.Keys,
            "values" => PatchSite.Values,
            _ => PatchSite.Patterns,
        }, 7, 9);
        Assert.Equal(Math.Round(expected.Clean, 6), root.GetProperty("clean").GetDouble());
        Assert.Equal(Math.Round(expected.Corrupted, 6), root.GetProperty("corrupted").GetDouble());
        var patches = root.GetProperty("patches").EnumerateArray().ToList();
        Assert.Equal(expected.Effects.Count, patches.Count);
        double[] recovered = [.. patches.Select(p => p.GetProperty("recovered").GetDouble())];
        Assert.Equal(recovered.OrderByDescending(r => r), recovered);
        bool heads = over is not ("stream" or "attention" or "mlp");
        string index = heads ? "head" : "position";
        foreach (var patch in patches)
        {
            int position = over == "head-positions" ? patch.GetProperty("position").GetInt32() : -1;
            var effect = expected.Effects.Single(e => e.Layer == patch.GetProperty("layer").GetInt32() && e.Index == patch.GetProperty(index).GetInt32()
                && e.Position == position);
            Assert.Equal(Math.Round(effect.Value, 6), patch.GetProperty("value").GetDouble());
            Assert.Equal(Math.Round(effect.Recovered, 6), patch.GetProperty("recovered").GetDouble());
            Assert.Equal(heads, patch.TryGetProperty("kind", out _));
            Assert.False(patch.TryGetProperty("input", out _));
        }
    }

    [Theory]
    [InlineData("heads", "head")]
    [InlineData("head-positions", "head")]
    [InlineData("stream", "position")]
    [InlineData("attention", "position")]
    [InlineData("mlp", "position")]
    public void AttributionJsonHoldsTheLibrarysEstimates(string over, string index)
    {
        int[] clean = [3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 9, 3], corrupted = [3, 14, 15, 9, 26, 5, 35, 8, 22, 7, 9, 3];
        var (code, output, error) = CliTests.Run("patch", "--model", Model, "--clean-ids", string.Join(',', clean),
            "--corrupted-ids", string.Join(',', corrupted), "--answer", "7", "--wrong", "9", "--over", over, "--attribution", "--json");
        Assert.True(code == 0, error);
        Assert.Matches(@"^estimated \d+ (heads|head positions|positions) from one backward pass \(\d+\.\d\d s\)", error);
        var root = JsonDocument.Parse(output).RootElement;
        Assert.Equal(("attribution", over), (root.GetProperty("method").GetString(), root.GetProperty("over").GetString()));
        var (model, _) = ModelFiles.Load(Model);
        var site = PatchCommand.SiteNames[over];
        var expected = AttributionPatching.Run(model, clean, corrupted, site, 7, 9);
        var patches = root.GetProperty("patches").EnumerateArray().ToList();
        Assert.Equal(expected.Effects.Count, patches.Count);
        foreach (var patch in patches)
        {
            int position = over == "head-positions" ? patch.GetProperty("position").GetInt32() : -1;
            var effect = expected.Effects.Single(e => e.Layer == patch.GetProperty("layer").GetInt32() && e.Index == patch.GetProperty(index).GetInt32()
                && e.Position == position);
            Assert.Equal(Math.Round(effect.Recovered, 6), patch.GetProperty("recovered").GetDouble());
        }
    }

    [Fact]
    public void AttributionRanksTheEmbeddedModelsInductionHeadFirstAndSaysItEstimates()
    {
        // The same text as below: the estimate puts induction head 3.0 first, as the patched runs do (53% estimated
        // against 74% measured: a first-order estimate of a change that is not small).
        var (code, output, error) = CliTests.Run("patch", "--clean", Clean, "--corrupted", Corrupted, "--attribution", "--top", "3");
        Assert.True(code == 0, error);
        Assert.StartsWith("Attribution patching on ", output);
        Assert.Contains("estimated to first order from one backward pass", output);
        Assert.Contains("The 3 heads estimated to bring back most:", output);
        Assert.Matches(@"\n  layer  3 head  0 +\+5\d\.\d% +induction", output);

        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", "minilm", "--clean", "The cat sat on the mat.", "--corrupted", "The dog sat on the mat.",
            "--attribution"), "needs activation patching");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--clean", Clean, "--corrupted", Corrupted, "--attribution", "--over", "keys"),
            "--attribution estimates --over heads, head-positions, stream, attention or mlp");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--clean", Clean, "--corrupted", Corrupted, "--attribution", "--over", "paths", "--receiver", "3.0"),
            "--attribution estimates");
    }

    [Fact]
    public void TheEmbeddedModelsInductionHeadCarriesTheCopiedLetter()
    {
        // Without --answer the metric compares the two runs' own answers: 'z' after the clean text, 'v' after the
        // corrupted one. One head, an induction head in the last layer, brings back most of the difference.
        var (code, output, error) = CliTests.Run("patch", "--clean", Clean, "--corrupted", Corrupted, "--json");
        Assert.True(code == 0, error);
        var root = JsonDocument.Parse(output).RootElement;
        Assert.Equal(("z", "v"), (root.GetProperty("answer_token").GetString(), root.GetProperty("wrong_token").GetString()));
        Assert.True(root.GetProperty("clean").GetDouble() - root.GetProperty("corrupted").GetDouble() > 5, output);
        var best = root.GetProperty("patches")[0];
        Assert.Equal("induction", best.GetProperty("kind").GetString());
        Assert.True(best.GetProperty("recovered").GetDouble() > 0.5, output);
        Assert.Equal(Clean.Length, root.GetProperty("clean_tokens").GetArrayLength());

        // The table: the grid, the ranking with kinds, the metric in words.
        var table = CliTests.Run("patch", "--clean", Clean, "--corrupted", Corrupted, "--top", "2");
        Assert.True(table.Code == 0, table.Error);
        Assert.Contains("they differ at position 14 ('z' → 'v')", table.Out);
        Assert.Contains("Metric: logit('z') − logit('v') after the text", table.Out);
        Assert.Matches(@"layer +\d head +\d +\+\d+\.\d% +induction +logit difference", table.Out);
        Assert.Contains("The 2 heads that bring back most:", table.Out);
    }

    [Fact]
    public void TheStreamTableShowsWhereTheDifferenceLives()
    {
        // Entering the first block, the stream at the changed position is all the difference there is: 100.0%.
        var (code, output, error) = CliTests.Run("patch", "--clean", Clean, "--corrupted", Corrupted, "--over", "stream", "--top", "1");
        Assert.True(code == 0, error);
        Assert.Matches(@"\n +14  'z'→'v' +\+100\.0%", output);
        Assert.Contains("positions where no patch moves the metric by 0.5% or more are left out", output);
        Assert.Contains("The 1 patches that bring back most:", output);

        // The last layer's attention output at the last position carries nearly all of it: the induction heads'
        // layer moves the letter to where it is read.
        var attention = CliTests.Run("patch", "--clean", Clean, "--corrupted", Corrupted, "--over", "attention", "--json");
        Assert.True(attention.Code == 0, attention.Error);
        var best = JsonDocument.Parse(attention.Out).RootElement.GetProperty("patches")[0];
        Assert.Equal((3, Clean.Length - 1), (best.GetProperty("layer").GetInt32(), best.GetProperty("position").GetInt32()));
        Assert.InRange(best.GetProperty("recovered").GetDouble(), 0.9, 1.1);
    }

    [Theory]
    [InlineData("1.1,1.2")]
    [InlineData("output")]
    public void PathJsonListsEverySenderAndInputAsTheLibraryComputesIt(string receiver)
    {
        int[] clean = [3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 9, 3], corrupted = [3, 14, 15, 9, 26, 5, 35, 8, 22, 7, 9, 3];
        var (code, output, error) = CliTests.Run("patch", "--model", Model, "--clean-ids", string.Join(',', clean),
            "--corrupted-ids", string.Join(',', corrupted), "--answer", "7", "--wrong", "9", "--over", "paths", "--receiver", receiver, "--json");
        Assert.True(code == 0, error);
        var root = JsonDocument.Parse(output).RootElement;
        Assert.Equal("paths", root.GetProperty("over").GetString());
        (int, int)[] receivers = receiver == "output" ? [] : [(1, 1), (1, 2)];
        Assert.Equal(receivers, root.GetProperty("receivers").EnumerateArray().Select(r => (r.GetProperty("layer").GetInt32(), r.GetProperty("head").GetInt32())));

        var (model, _) = ModelFiles.Load(Model);
        var expected = ActivationPatching.Paths(model, clean, corrupted, receivers, 7, 9);
        var patches = root.GetProperty("patches").EnumerateArray().ToList();
        Assert.Equal(expected.Effects.Count, patches.Count);
        Assert.Equal(receiver == "output" ? 6 : 9, patches.Count);
        foreach (var patch in patches)
        {
            string? input = patch.TryGetProperty("input", out var name) ? name.GetString() : null;
            var effect = expected.Effects.Single(e => e.Layer == patch.GetProperty("layer").GetInt32() && e.Index == patch.GetProperty("head").GetInt32()
                && (e.Input is { } into ? PatchCommand.InputName(into) : null) == input);
            Assert.Equal(receiver == "output", input is null);
            Assert.Equal(Math.Round(effect.Recovered, 6), patch.GetProperty("recovered").GetDouble());
            Assert.True(patch.TryGetProperty("kind", out _));
            Assert.False(patch.TryGetProperty("composition", out _)); // only with one receiving head
        }
    }

    [Fact]
    public void PathPatchingFindsThePreviousTokenHeadFeedingTheInductionHeadsKeys()
    {
        // K-composition, measured: of everything the earlier heads send to the induction head 3.0, what a
        // previous-token head writes into its keys brings back the most; the direct path to the output is 3.0 itself.
        var (code, output, error) = CliTests.Run("patch", "--clean", Clean, "--corrupted", Corrupted, "--over", "paths", "--receiver", "3.0", "--json");
        Assert.True(code == 0, error);
        var patches = JsonDocument.Parse(output).RootElement.GetProperty("patches").EnumerateArray().ToList();
        var best = patches[0];
        Assert.Equal(("key", "previous-token"), (best.GetProperty("input").GetString(), best.GetProperty("kind").GetString()));
        Assert.True(best.GetProperty("layer").GetInt32() < 3);
        Assert.InRange(best.GetProperty("recovered").GetDouble(), 0.05, 1);

        // With one receiver each path also carries its composition score from the weights (Circuits.CompositionsInto).
        var (embedded, _) = ModelFiles.Load(Path.Combine(AppContext.BaseDirectory, "Data", "kjv-model"));
        var compositions = Circuits.CompositionsInto(embedded, 3, 0).ToDictionary(c => (c.SourceLayer, c.SourceHead));
        Assert.Equal(36, patches.Count);
        foreach (var patch in patches)
        {
            var composition = compositions[(patch.GetProperty("layer").GetInt32(), patch.GetProperty("head").GetInt32())];
            double expected = patch.GetProperty("input").GetString() switch { "query" => composition.Query, "key" => composition.Key, _ => composition.Value };
            Assert.Equal(Math.Round(expected, 6), patch.GetProperty("composition").GetDouble());
        }

        var table = CliTests.Run("patch", "--clean", Clean, "--corrupted", Corrupted, "--over", "paths", "--receiver", "3.0", "--top", "3");
        Assert.True(table.Code == 0, table.Error);
        Assert.Contains("Path patching on", table.Out);
        Assert.Contains("what each earlier head sends straight to 3.0 is clean", table.Out);
        Assert.Contains("Into the receivers' query rows:", table.Out);
        Assert.Contains("Into the receivers' key rows (where they are found):", table.Out);
        Assert.Contains("Into the receivers' value rows (what they move):", table.Out);
        Assert.Matches(@"layer +\d head +\d → key +\+\d+\.\d% +previous-token +logit difference [-+]\d+\.\d+  \(K-composition 0\.\d{3}\)", table.Out);
        Assert.Contains("In brackets: the path's composition score from the weights alone", table.Out);

        // --input key: only the key paths, the same numbers.
        var keys = CliTests.Run("patch", "--clean", Clean, "--corrupted", Corrupted, "--over", "paths", "--receiver", "3.0", "--input", "key", "--json");
        Assert.True(keys.Code == 0, keys.Error);
        var keyPatches = JsonDocument.Parse(keys.Out).RootElement.GetProperty("patches").EnumerateArray().ToList();
        Assert.Equal(12, keyPatches.Count);
        Assert.All(keyPatches, p => Assert.Equal("key", p.GetProperty("input").GetString()));
        Assert.Equal(best.GetProperty("recovered").GetDouble(), keyPatches[0].GetProperty("recovered").GetDouble());

        var direct = CliTests.Run("patch", "--clean", Clean, "--corrupted", Corrupted, "--over", "paths", "--receiver", "output", "--json");
        Assert.True(direct.Code == 0, direct.Error);
        var first = JsonDocument.Parse(direct.Out).RootElement.GetProperty("patches")[0];
        Assert.Equal((3, 0), (first.GetProperty("layer").GetInt32(), first.GetProperty("head").GetInt32()));
    }

    [Fact]
    public void FromTheSenderThePreviousTokenHeadsLargestPathIsIntoTheInductionHeadsKeys()
    {
        // --sender 2.0: the same path as --receiver 3.0 finds, seen from the other end, with the receivers' kinds and
        // the compositions from 2.0 (Circuits.CompositionsFrom).
        var (code, output, error) = CliTests.Run("patch", "--clean", Clean, "--corrupted", Corrupted, "--over", "paths", "--sender", "2.0", "--json");
        Assert.True(code == 0, error);
        var root = JsonDocument.Parse(output).RootElement;
        Assert.Equal((2, 0), (root.GetProperty("sender").GetProperty("layer").GetInt32(), root.GetProperty("sender").GetProperty("head").GetInt32()));
        Assert.False(root.TryGetProperty("receivers", out _));
        var patches = root.GetProperty("patches").EnumerateArray().ToList();
        Assert.Equal(12, patches.Count); // layer 3's four heads × query, key, value
        var best = patches[0];
        Assert.Equal((3, 0, "key", "induction"), (best.GetProperty("layer").GetInt32(), best.GetProperty("head").GetInt32(),
            best.GetProperty("input").GetString(), best.GetProperty("kind").GetString()));

        var (embedded, tokenizer) = ModelFiles.Load(Path.Combine(AppContext.BaseDirectory, "Data", "kjv-model"));
        var into = ActivationPatching.Paths(embedded, tokenizer!.EncodeForModel(Clean), tokenizer.EncodeForModel(Corrupted), [(3, 0)], senderLayers: [2]);
        double expected = into.Effects.Single(e => e.Index == 0 && e.Input == HeadInput.Key).Recovered;
        Assert.True(Math.Abs(best.GetProperty("recovered").GetDouble() - expected) <= 1e-5, $"{best} vs {expected}");
        var compositions = Circuits.CompositionsFrom(embedded, 2, 0).ToDictionary(c => (c.Layer, c.Head));
        Assert.Equal(Math.Round(compositions[(3, 0)].Key, 6), best.GetProperty("composition").GetDouble());

        var table = CliTests.Run("patch", "--clean", Clean, "--corrupted", Corrupted, "--over", "paths", "--sender", "2.0", "--input", "key", "--top", "1");
        Assert.True(table.Code == 0, table.Error);
        Assert.Contains("what 2.0 sends straight to each later head is clean", table.Out);
        Assert.Contains("Into each head's key rows (where they are found):", table.Out);
        Assert.DoesNotContain("query rows", table.Out);
        Assert.Matches(@"layer +3 head +0 ← key +\+11\.\d% +induction", table.Out);
    }

    [Fact]
    public void HeadPositionsShowWhereInTheTextAHeadCarriesIt()
    {
        // The induction head carries the letter at the last position only, where the copy is read.
        var (code, output, error) = CliTests.Run("patch", "--clean", Clean, "--corrupted", Corrupted, "--over", "head-positions", "--top", "1");
        Assert.True(code == 0, error);
        Assert.Contains("heads (layer.head) whose patches at one position move the metric most:", output);
        Assert.Matches(@"layer +3 head +0 position +31 'q' +\+\d+\.\d% +induction", output);
        Assert.Contains("positions where no patch moves the metric by 0.5% or more are left out", output);
    }

    [Fact]
    public void AnEncoderIsMeasuredByItsSentenceEmbedding()
    {
        var (code, output, error) = CliTests.Run("patch", "--model", "minilm", "--clean", "The cat sat on the mat.",
            "--corrupted", "The dog sat on the mat.", "--layer", "5", "--json");
        Assert.True(code == 0, error);
        var root = JsonDocument.Parse(output).RootElement;
        Assert.Equal("embedding_similarity", root.GetProperty("metric").GetString());
        Assert.Equal(1, root.GetProperty("clean").GetDouble(), 5);
        Assert.InRange(root.GetProperty("corrupted").GetDouble(), 0, 0.99);
        var patches = root.GetProperty("patches").EnumerateArray().ToList();
        Assert.Equal(12, patches.Count);
        Assert.All(patches, p => Assert.Equal(5, p.GetProperty("layer").GetInt32()));
        Assert.False(root.TryGetProperty("answer", out _));
    }

    [Fact]
    public void BadInputGetsOneLine()
    {
        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", Model, "--clean-ids", "5,6,7", "--corrupted-ids", "5,6"), "the clean one has 3 tokens, the corrupted one 2");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", Model, "--clean-ids", "5,6,7", "--corrupted-ids", "5,6,7", "--answer", "1", "--wrong", "2"), "give the same logit difference");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", Model, "--clean-ids", "5,6,7", "--corrupted-ids", "5,8,7", "--wrong", "2"), "give the answer token too");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", Model, "--clean-ids", "5,6,7", "--corrupted-ids", "5,8,7", "--answer", "x"), "needs the model's tokenizer");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", Model, "--clean-ids", "5,6,7", "--corrupted-ids", "5,8,7", "--over", "neurons"), "--over");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", Model, "--clean-ids", "5,6,7"), "--corrupted");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", "minilm", "--clean", "a cat", "--corrupted", "a dog", "--answer", "x"), "output head");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", Model, "--clean-ids", "5,6,7", "--corrupted-ids", "5,8,7", "--over", "paths"), "--over paths needs --receiver");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", Model, "--clean-ids", "5,6,7", "--corrupted-ids", "5,8,7", "--receiver", "1.0"), "--receiver goes with --over paths");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", Model, "--clean-ids", "5,6,7", "--corrupted-ids", "5,8,7", "--over", "paths", "--receiver", "output", "--input", "key"), "--input goes with --over paths and receiving heads");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", Model, "--clean-ids", "5,6,7", "--corrupted-ids", "5,8,7", "--over", "paths", "--receiver", "1.0", "--sender", "0.1"), "not both");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", Model, "--clean-ids", "5,6,7", "--corrupted-ids", "5,8,7", "--sender", "0.1"), "--sender goes with --over paths");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", Model, "--clean-ids", "5,6,7", "--corrupted-ids", "5,8,7", "--over", "paths", "--sender", "0"), "--sender '0' is not LAYER.HEAD (say 3.0)");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", Model, "--clean-ids", "5,6,7", "--corrupted-ids", "5,8,7", "--answer", "1", "--wrong", "2", "--over", "paths", "--sender", "1.0"), "layer 1 is the last");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", Model, "--clean-ids", "5,6,7", "--corrupted-ids", "5,8,7", "--over", "paths", "--receiver", "1.0", "--input", "keys"), "--input");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", Model, "--clean-ids", "5,6,7", "--corrupted-ids", "5,8,7", "--over", "paths", "--receiver", "1"), "is not LAYER.HEAD");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", Model, "--clean-ids", "5,6,7", "--corrupted-ids", "5,8,7", "--over", "paths", "--receiver", "1.3"), "2 layers of 3 heads");
        CliTests.AssertOneLineError(CliTests.Run("patch", "--model", Model, "--clean-ids", "5,6,7", "--corrupted-ids", "5,8,7", "--answer", "1", "--wrong", "2", "--over", "paths", "--receiver", "0.1"), "layer 0 has no heads before it");
    }
}
