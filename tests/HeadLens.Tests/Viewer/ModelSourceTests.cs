using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using HeadLens.Analysis;
using HeadLens.Checkpoints;
using HeadLens.Cli.Viewer;
using HeadLens.Inference;
using HeadLens.Model;
using Microsoft.AspNetCore.TestHost;
using Xunit.Abstractions;

namespace HeadLens.Tests.Viewer;

/// <summary>The viewer on real models: the embedded default (byte tokenizer) and a PyTorch-made GPT-2 fixture.</summary>
public class ModelSourceTests(ITestOutputHelper output)
{
    internal static readonly string Embedded = Path.Combine(AppContext.BaseDirectory, "Data", "kjv-model");
    private static readonly string TinyGpt2 = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", "tiny-gpt2");

    internal static ModelSource Load(string path, out Transformer model)
    {
        var (loaded, tokenizer) = ModelFiles.Load(path);
        model = loaded;
        return new ModelSource(loaded, tokenizer, Path.GetFileName(path));
    }

    [Fact]
    public async Task PatchingAnswersEveryHeadOfALayerAsTheLibraryComputesIt()
    {
        const string Clean = "the word is kqzj; the word is kq", Corrupted = "the word is kqvj; the word is kq";
        var app = ViewerServer.Build(Load(Embedded, out _), new ViewerOptions(), builder => builder.WebHost.UseTestServer());
        await app.StartAsync();
        await using var stop = app;
        using var client = app.GetTestClient();
        using var response = await client.PostAsJsonAsync("/api/patch", new { text = Clean, corrupted = Corrupted, layer = 3 });
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        var root = JsonDocument.Parse(body).RootElement;
        Assert.Equal(("logit_difference", "z", "v"), (root.GetProperty("metric").GetString(), root.GetProperty("answer").GetString(), root.GetProperty("wrong").GetString()));

        // The library on a second copy of the model: the viewer must answer what `headlens patch --layer 3` prints.
        var (reference, tokenizer) = ModelFiles.Load(Embedded);
        var expected = ActivationPatching.Run(reference, tokenizer!.EncodeForModel(Clean), tokenizer.EncodeForModel(Corrupted), PatchSite.Heads, layers: [3]);
        Assert.Equal(Math.Round(expected.Clean, 6), root.GetProperty("clean").GetDouble());
        Assert.Equal(Math.Round(expected.Corrupted, 6), root.GetProperty("corrupted").GetDouble());
        var heads = root.GetProperty("heads").EnumerateArray().ToList();
        Assert.Equal(reference.Config.Heads, heads.Count);
        foreach (var (answer, effect) in heads.Zip(expected.Effects))
        {
            Assert.Equal(effect.Index, answer.GetProperty("head").GetInt32());
            Assert.Equal(Math.Round(effect.Recovered, 6), answer.GetProperty("recovered").GetDouble());
            Assert.Equal(Math.Round(effect.Value, 6), answer.GetProperty("value").GetDouble());
        }

        // Texts of different lengths: one line, 400.
        using var refused = await client.PostAsJsonAsync("/api/patch", new { text = Clean, corrupted = "the word", layer = 0 });
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Contains("the clean one has 32 tokens, the corrupted one 8", await refused.Content.ReadAsStringAsync());
    }

    // The embedded model's induction head that carries the copied letter, as /api/paths names a receiver.
    private static readonly int[] InductionHead = [3, 0];

    [Fact]
    public async Task PathPatchingAnswersEverySenderOfALayerAsTheLibraryComputesIt()
    {
        const string Clean = "the word is kqzj; the word is kq", Corrupted = "the word is kqvj; the word is kq";
        var app = ViewerServer.Build(Load(Embedded, out _), new ViewerOptions(), builder => builder.WebHost.UseTestServer());
        await app.StartAsync();
        await using var stop = app;
        using var client = app.GetTestClient();
        using var response = await client.PostAsJsonAsync("/api/paths", new { text = Clean, corrupted = Corrupted, layer = 2, receiver = InductionHead });
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        var root = JsonDocument.Parse(body).RootElement;
        Assert.Equal([3, 0], root.GetProperty("receiver").EnumerateArray().Select(value => value.GetInt32()));
        Assert.Equal(("logit_difference", "z", "v"), (root.GetProperty("metric").GetString(), root.GetProperty("answer").GetString(), root.GetProperty("wrong").GetString()));

        // The library on a second copy of the model: what `headlens patch --over paths --receiver 3.0 --layer 2` prints.
        var (reference, tokenizer) = ModelFiles.Load(Embedded);
        var expected = ActivationPatching.Paths(reference, tokenizer!.EncodeForModel(Clean), tokenizer.EncodeForModel(Corrupted), [(3, 0)], senderLayers: [2]);
        var heads = root.GetProperty("heads").EnumerateArray().ToList();
        Assert.Equal(reference.Config.Heads, heads.Count);
        foreach (var answer in heads)
        {
            int head = answer.GetProperty("head").GetInt32();
            foreach (var (name, input) in new[] { ("query", HeadInput.Query), ("key", HeadInput.Key), ("value", HeadInput.Value) })
            {
                var effect = expected.Effects.Single(e => e.Index == head && e.Input == input);
                Assert.Equal(Math.Round(effect.Recovered, 6), answer.GetProperty(name).GetDouble());
            }
        }

        // A sender that does not come before the receiver: one line, 400.
        using var refused = await client.PostAsJsonAsync("/api/paths", new { text = Clean, corrupted = Corrupted, layer = 3, receiver = InductionHead });
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Contains("does not come before", await refused.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task CompositionsAnswerEveryPairAsTheLibraryComputesIt()
    {
        var app = ViewerServer.Build(Load(Embedded, out _), new ViewerOptions(), builder => builder.WebHost.UseTestServer());
        await app.StartAsync();
        await using var stop = app;
        using var client = app.GetTestClient();
        using var response = await client.GetAsync("/api/compositions");
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        var root = JsonDocument.Parse(body).RootElement;

        // The library on a second copy of the model: what `headlens circuits --json` prints, to 4 decimals.
        var (reference, _) = ModelFiles.Load(Embedded);
        var expected = Circuits.Compositions(reference);
        Assert.Equal(Math.Round(Circuits.RandomBaseline(reference.Config), 4), root.GetProperty("random").GetDouble());
        var pairs = root.GetProperty("pairs").EnumerateArray().ToList();
        Assert.Equal(expected.Count, pairs.Count);
        foreach (var (pair, score) in pairs.Zip(expected))
        {
            Assert.Equal([score.SourceLayer, score.SourceHead], pair.GetProperty("sender").EnumerateArray().Select(value => value.GetInt32()));
            Assert.Equal([score.Layer, score.Head], pair.GetProperty("receiver").EnumerateArray().Select(value => value.GetInt32()));
            Assert.Equal((Math.Round(score.Query, 4), Math.Round(score.Key, 4), Math.Round(score.Value, 4)),
                (pair.GetProperty("query").GetDouble(), pair.GetProperty("key").GetDouble(), pair.GetProperty("value").GetDouble()));
        }

        // A read, not a computation on a text: POST is refused, with the method it takes.
        using var posted = await client.PostAsJsonAsync("/api/compositions", new { text = "x" });
        Assert.Equal(System.Net.HttpStatusCode.MethodNotAllowed, posted.StatusCode);
        Assert.Equal("GET", string.Join(",", posted.Content.Headers.Allow));
    }

    [Fact]
    public async Task TheLensAnswersEveryStageAsTheLibraryComputesIt()
    {
        const string Text = "the word is kqzj; the word is kq";
        var app = ViewerServer.Build(Load(Embedded, out var served), new ViewerOptions(), builder => builder.WebHost.UseTestServer());
        await app.StartAsync();
        await using var stop = app;
        using var client = app.GetTestClient();
        using var response = await client.PostAsJsonAsync("/api/lens", new { text = Text });
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        var root = JsonDocument.Parse(body).RootElement;

        // The library on a second copy of the model: the viewer must answer what `headlens lens --json` prints.
        var (reference, tokenizer) = ModelFiles.Load(Embedded);
        int[] ids = tokenizer!.EncodeForModel(Text);
        var expected = LogitLens.Run(reference, ids, AttentionViews.LensTop);
        Assert.Equal(["embed", "L0", "L1", "L2", "L3"], root.GetProperty("stages").EnumerateArray().Select(stage => stage.GetString()));
        var cells = root.GetProperty("cells").EnumerateArray().ToList();
        foreach (var (stage, row) in expected.Stages.Zip(cells))
        {
            var positions = row.EnumerateArray().ToList();
            Assert.Equal(ids.Length, positions.Count);
            for (int i = 0; i < ids.Length; i++)
            {
                Assert.Equal(stage.Top[i].Select(token => token.Token), positions[i].GetProperty("ids").EnumerateArray().Select(id => id.GetInt32()));
                Assert.Equal(stage.Top[i].Select(token => tokenizer.TokenText(token.Token)), positions[i].GetProperty("top").EnumerateArray().Select(text => text.GetString()));
                Assert.Equal(stage.Top[i].Select(token => Math.Round(token.Probability, 4)), positions[i].GetProperty("probabilities").EnumerateArray().Select(p => p.GetDouble()));
                var next = positions[i].GetProperty("next");
                double? expectedNext = i < ids.Length - 1 ? Math.Round(stage.NextProbabilities[i], 4) : null;
                Assert.Equal(expectedNext, next.ValueKind == JsonValueKind.Null ? null : next.GetDouble());
            }
        }

        Assert.Equal(expected.Stages.Select(stage => Math.Round(stage.Loss, 4)), root.GetProperty("loss").EnumerateArray().Select(loss => loss.GetDouble()));

        // An encoder has no next token to read (the server answers a HeadLensException with 400 and its line).
        Assert.Equal(reference.Config.Layers, served.Config.Layers);
        var encoder = Load(Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", "tiny-bert"), out _);
        Assert.Contains("output head", Assert.Throws<HeadLensException>(() => encoder.Lens([1, 2, 3])).Message);
    }

    [Theory]
    [InlineData("zero", 3)]
    [InlineData("mean", 0)]
    public async Task AblationAnswersEveryHeadOfALayerAsTheLibraryComputesIt(string method, int layer)
    {
        const string Text = "In the beginning God created the heaven. In the beginning God created the earth.";
        var app = ViewerServer.Build(Load(Embedded, out var model), new ViewerOptions(), builder => builder.WebHost.UseTestServer());
        await app.StartAsync();
        await using var _ = app;
        using var client = app.GetTestClient();
        using var response = await client.PostAsJsonAsync("/api/ablate", new { text = Text, layer, method });
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        var root = JsonDocument.Parse(body).RootElement;
        Assert.Equal(layer, root.GetProperty("layer").GetInt32());
        Assert.Equal("next_token_loss", root.GetProperty("measure").GetString());

        // The library on a second copy of the model: the viewer must answer what `headlens ablate --layer` prints.
        var (reference, tokenizer) = ModelFiles.Load(Embedded);
        var expected = HeadAblation.Run(reference, tokenizer!.EncodeForModel(Text), method == "mean" ? AblationMethod.Mean : AblationMethod.Zero,
            [.. Enumerable.Range(0, reference.Config.Heads).Select(head => (layer, head))]);
        Assert.Equal(Math.Round(expected.Clean, 6), root.GetProperty("clean").GetDouble());
        var heads = root.GetProperty("heads").EnumerateArray().ToList();
        Assert.Equal(model.Config.Heads, heads.Count);
        foreach (var (answer, effect) in heads.Zip(expected.Heads))
        {
            Assert.Equal(effect.Head, answer.GetProperty("head").GetInt32());
            Assert.Equal(Math.Round(effect.Change, 6), answer.GetProperty("change").GetDouble());
            Assert.Equal(effect.Position, answer.GetProperty("position").GetInt32());
            Assert.Equal(Math.Round(effect.AblatedProbability!.Value, 6), answer.GetProperty("ablatedProbability").GetDouble());
        }
    }

    [Fact]
    public void PatternsAreTheRecordersPatternsForAnyQueryRange()
    {
        var source = Load(Embedded, out var model);
        var input = source.Tokenize("And God said, Let there be light: and there was light.");
        int t = input.Ids.Length, heads = model.Config.Heads;
        // The library's own recorder on a second copy of the model: the source must not change what the model computes.
        var (reference, _) = ModelFiles.Load(Embedded);
        var expected = AttentionRecorder.Record(reference, input.Ids); // [L][H·T·T]
        int[] all = Enumerable.Range(0, heads).ToArray();
        for (int l = 0; l < model.Config.Layers; l++)
        {
            var full = new float[heads * t * t];
            source.Patterns(input.Ids, l, all, 0, t, full);
            // Same kernels on the same q and k: equal to the last bit.
            Assert.Equal(expected[l], full);
            var rows = new float[2 * 3 * t]; // heads {3, 1}, queries 7..9
            source.Patterns(input.Ids, l, [3, 1], 7, 3, rows);
            for (int q = 0; q < 3; q++)
            {
                Assert.Equal(expected[l].AsSpan(((3 * t) + 7 + q) * t, t).ToArray(), rows.AsSpan(q * t, t).ToArray());
                Assert.Equal(expected[l].AsSpan(((1 * t) + 7 + q) * t, t).ToArray(), rows.AsSpan((3 + q) * t, t).ToArray());
            }
        }
    }

    [Fact]
    public void AContextVectorDependsOnlyOnTheTextUpToIt()
    {
        // What the compare view relies on: in a causal model, position i's vectors from the whole text equal those from
        // the text cut after i. Tolerance 1e-4: the two runs multiply matrices of different row counts (blocking order).
        var source = Load(Embedded, out var model);
        var whole = source.Tokenize("the bank of the river is green");
        var cut = source.Tokenize("the bank");
        int position = cut.Ids.Length - 1;
        var fromWhole = source.ContextVectors(whole.Ids, position);
        var fromCut = source.ContextVectors(cut.Ids, position);
        Assert.Equal(model.Config.Layers + 1, fromWhole.Length);
        for (int l = 0; l <= model.Config.Layers; l++)
        {
            Assert.Equal(model.Config.Channels, fromWhole[l].Length);
            for (int x = 0; x < fromWhole[l].Length; x++)
            {
                Assert.Equal(fromCut[l][x], fromWhole[l][x], 1e-4);
            }
        }

        // Different positions give different vectors after the first block (the check above could not pass trivially).
        Assert.NotEqual(source.ContextVectors(whole.Ids, 2)[1], fromWhole[1]);
    }

    [Fact]
    public void GreedyGenerationIsTheGenerators()
    {
        var source = Load(Embedded, out var model);
        var prompt = source.Tokenize("And God said");
        var generated = source.Generate(prompt.Ids, 20, temperature: 0, seed: 1);
        var (reference, _) = ModelFiles.Load(Embedded);
        var expected = Generator.Generate(reference, prompt.Ids, 20, new Sampler(new SamplingSettings { Temperature = 0 })).ToList();
        Assert.Equal(expected, generated);
        Assert.Equal(20, generated.Count);
        // The next pattern request must see fresh activations, not those left by generation.
        var row = new float[model.Config.Heads * prompt.Ids.Length];
        source.Patterns(prompt.Ids, 0, Enumerable.Range(0, model.Config.Heads).ToArray(), prompt.Ids.Length - 1, 1, row);
        Assert.Equal(1.0, row.AsSpan(0, prompt.Ids.Length).ToArray().Sum(), 1e-5);
    }

    [Fact]
    public void AModelWithoutATokenizerTakesIdsAndSaysSoForText()
    {
        var source = Load(TinyGpt2, out _);
        Assert.Equal("[5]", source.TokenText(5));
        var error = Assert.Throws<HeadLensException>(() => source.Tokenize("hello"));
        Assert.Contains("no tokenizer", error.Message);
        Assert.Throws<HeadLensException>(() => source.TokenText(100_000));
    }

    [Fact]
    public async Task A1024TokenInputOnA12By12ModelComputesAndSendsOnlyOneHead()
    {
        // GPT-2's shape (12 layers × 12 heads, context 1024) at a narrow width so the test stays fast. The matrix view
        // of one head must cost that head's pattern (not its layer's 12 heads, nor all 144) and send one T×T matrix;
        // a second head costs its own pattern again, from the forward pass the source kept.
        var config = ModelPresets.Get("gpt2") with { VocabSize = 256, Channels = 192, HiddenChannels = 768 };
        var model = Transformer.Create(config.Validated(), seed: 3);
        var source = new CountingSource(new ModelSource(model, new global::HeadLens.Tokenization.ByteTokenizer(), "gpt2-shaped"));
        var app = ViewerServer.Build(source, new ViewerOptions(), builder => builder.WebHost.UseTestServer());
        await app.StartAsync();
        await using var _ = app;
        using var client = app.GetTestClient();
        string text = new('a', 1024);
        var clock = Stopwatch.StartNew();
        using var pattern = await client.PostAsJsonAsync("/api/pattern", new { text, layer = 11, head = 7 });
        double firstMs = clock.Elapsed.TotalMilliseconds;
        string json = await pattern.Content.ReadAsStringAsync();
        Assert.Equal(System.Net.HttpStatusCode.OK, pattern.StatusCode);
        Assert.Equal(1024, JsonDocument.Parse(json).RootElement.GetProperty("patterns")[0].GetArrayLength());
        Assert.Equal(1024L * 1024, source.Values); // one head: 1024²
        Assert.True(json.Length < 8_000_000, $"one head's matrix is {json.Length} bytes of JSON");
        clock.Restart();
        using var second = await client.PostAsJsonAsync("/api/pattern", new { text, layer = 11, head = 2 });
        double secondMs = clock.Elapsed.TotalMilliseconds;
        Assert.Equal(System.Net.HttpStatusCode.OK, second.StatusCode);
        Assert.Equal(2L * 1024 * 1024, source.Values);
        // Timings depend on the machine's load; they are reported, not asserted.
        output.WriteLine($"1024 tokens, 12 × 12 heads: first head {firstMs:F0} ms (forward pass + one head), second head {secondMs:F0} ms");
    }

    /// <summary>Counts the probabilities a source is asked to compute.</summary>
    private sealed class CountingSource(IAttentionSource inner) : IAttentionSource
    {
        public long Values { get; private set; }

        public SourceInfo Info => inner.Info;

        public TokenizedText Tokenize(string text) => inner.Tokenize(text);

        public string TokenText(int id) => inner.TokenText(id);

        public void Patterns(int[] ids, int layer, ReadOnlySpan<int> heads, int firstQuery, int queries, Span<float> destination)
        {
            Values += (long)heads.Length * queries * ids.Length;
            inner.Patterns(ids, layer, heads, firstQuery, queries, destination);
        }

        public HeadProbes Probes(int[] ids) => inner.Probes(ids);

        public float[][] ContextVectors(int[] ids, int position) => inner.ContextVectors(ids, position);

        public HeadAblationResult Ablate(int[] ids, int layer, AblationMethod method) => inner.Ablate(ids, layer, method);

        public LogitLensResult Lens(int[] ids) => inner.Lens(ids);

        public PatchingResult Patch(int[] clean, int[] corrupted, int layer) => inner.Patch(clean, corrupted, layer);

        public PatchingResult Paths(int[] clean, int[] corrupted, int layer, int receiverLayer, int receiverHead) =>
            inner.Paths(clean, corrupted, layer, receiverLayer, receiverHead);

        public IReadOnlyList<Composition> Compositions() => inner.Compositions();

        public IReadOnlyList<int> Generate(int[] prompt, int maxTokens, float temperature, int seed) => inner.Generate(prompt, maxTokens, temperature, seed);
    }
}
