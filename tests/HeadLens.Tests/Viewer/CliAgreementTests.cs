using System.Net.Http.Json;
using System.Text.Json;
using HeadLens.Checkpoints;
using HeadLens.Cli.Viewer;
using HeadLens.Tests.Analysis;
using HeadLens.Tests.Cli;
using HeadLens.Tests.Tokenization;
using HeadLens.Tokenization;
using Microsoft.AspNetCore.TestHost;

namespace HeadLens.Tests.Viewer;

/// <summary>
/// A tiny Llama-style model with a SentencePiece tokenizer (BOS 1, EOS 2, AddsBos), saved as a model directory, in
/// three variants: as trained (random), and with the output head bent so that greedy decoding of <see cref="Prompt"/>
/// first picks BOS, or EOS.
/// </summary>
public sealed class BosModelFixture : IDisposable
{
    public const string Prompt = "hello world";

    public BosModelFixture()
    {
        Plain = Write("plain", target: null);
        StopsOnBos = Write("bos", target: 1);
        StopsOnEos = Write("eos", target: 2);
    }

    public string Root { get; } = Path.Combine(Path.GetTempPath(), "headlens-bos-" + Guid.NewGuid().ToString("N"));

    public string Plain { get; }

    public string StopsOnBos { get; }

    public string StopsOnEos { get; }

    public void Dispose() => Directory.Delete(Root, recursive: true);

    private string Write(string name, int? target)
    {
        ITokenizer tokenizer = new SentencePieceTokenizer(SentencePieceTokenizerTests.Vocabulary());
        var config = TinyModels.Llama with { VocabSize = tokenizer.VocabSize, ContextLength = 32 };
        var model = TinyModels.Random(config.Validated(), seed: 11);
        if (target is { } stop)
        {
            // logits = W_out · h: making the target's row twice the winning row's makes the target win (no bias).
            int[] ids = tokenizer.EncodeForModel(Prompt);
            model.Forward(ids, [], 1, ids.Length);
            var last = model.Logits.Slice((ids.Length - 1) * config.VocabSize, config.VocabSize).ToArray();
            int best = Array.IndexOf(last, last.Max());
            Assert.True(last[best] > 0, "the winning logit must be positive for the doubling to win");
            var head = model.Parameters.OutputHead.Span;
            int c = config.Channels;
            for (int x = 0; x < c; x++)
            {
                head[(stop * c) + x] = 2 * head[(best * c) + x];
            }
        }

        string directory = Path.Combine(Root, name);
        Directory.CreateDirectory(directory);
        ModelFiles.Save(model, tokenizer, directory);
        return directory;
    }
}

/// <summary>
/// The CLI and the viewer take the same path: the same ids for the same text, the same stop tokens, and the same kind
/// and scores for every head (issue 11).
/// </summary>
public class CliAgreementTests(BosModelFixture models) : IClassFixture<BosModelFixture>
{
    private static readonly string Embedded = Path.Combine(AppContext.BaseDirectory, "Data", "kjv-model");
    private static readonly string TinyGpt2 = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", "tiny-gpt2");

    private static async Task<T> WithViewerAsync<T>(string modelPath, Func<HttpClient, Task<T>> use)
    {
        var (model, tokenizer) = ModelFiles.Load(modelPath);
        var app = ViewerServer.Build(new ModelSource(model, tokenizer, "model"), new ViewerOptions(), builder => builder.WebHost.UseTestServer());
        await app.StartAsync();
        await using var _ = app;
        using var client = app.GetTestClient();
        return await use(client);
    }

    private static async Task<JsonElement> PostAsync(HttpClient client, string path, object body)
    {
        using var response = await client.PostAsJsonAsync(path, body);
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static JsonElement RunJson(params string[] args)
    {
        var (code, output, error) = CliTests.Run(args);
        Assert.True(code == 0, error);
        return JsonDocument.Parse(output).RootElement.Clone();
    }

    private static int[] Ints(JsonElement array) => [.. array.EnumerateArray().Select(e => e.GetInt32())];

    public static TheoryData<string, string, string> HeadsInputs => new()
    {
        { "kjv", "--text", "In the beginning God created the heaven and the earth. And the earth was without form, and void;\nand God said." },
        { "tiny-gpt2", "--ids", "5,6,7,8,9,5,6,7,8,9,1,2,3,60,4" },
        { "bos", "--text", "hello world, hello world." },
    };

    [Theory]
    [MemberData(nameof(HeadsInputs))]
    public async Task HeadsJsonAndTheViewerGiveEveryHeadTheSameKindAndScores(string which, string option, string input)
    {
        string path = which switch { "kjv" => Embedded, "tiny-gpt2" => TinyGpt2, _ => models.Plain };
        var cli = RunJson("heads", "--model", path, option, input, "--json").GetProperty("heads").EnumerateArray().ToList();
        object body = option == "--text" ? new { text = input } : new { ids = input.Split(',').Select(int.Parse).ToArray() };
        var view = await WithViewerAsync(path, client => PostAsync(client, "/api/heads", body));
        var entries = view.GetProperty("entries").EnumerateArray().ToList();
        Assert.Equal(cli.Count, entries.Count);
        for (int n = 0; n < cli.Count; n++)
        {
            var (expected, actual) = (cli[n], entries[n]);
            string where = $"layer {expected.GetProperty("layer")} head {expected.GetProperty("head")}";
            Assert.Equal(expected.GetProperty("layer").GetInt32(), actual.GetProperty("layer").GetInt32());
            Assert.Equal(expected.GetProperty("head").GetInt32(), actual.GetProperty("head").GetInt32());
            Assert.True(expected.GetProperty("kind").GetString() == actual.GetProperty("kind").GetString(), where);
            var cliScores = expected.GetProperty("scores").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
            var viewScores = actual.GetProperty("scores").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
            Assert.Equal(cliScores.OrderBy(p => p.Key, StringComparer.Ordinal), viewScores.OrderBy(p => p.Key, StringComparer.Ordinal));
            Assert.Equal(expected.GetProperty("mean_distance").GetDouble(), actual.GetProperty("meanDistance").GetDouble());
        }

        // Every score says where it comes from; the token-matching ones from the repeated random block.
        var sources = view.GetProperty("sources");
        Assert.Equal("repeated random block", sources.GetProperty("induction").GetString());
        Assert.Equal("repeated random block", sources.GetProperty("duplicate_token").GetString());
        Assert.Equal("text", sources.GetProperty("previous_token").GetString());
        Assert.Equal("weights (OV circuit)", sources.GetProperty("copying").GetString());
        Assert.Equal(option == "--text", sources.TryGetProperty("delimiter", out _)); // delimiters need a tokenizer
        Assert.All(entries, entry => Assert.All(entry.GetProperty("scores").EnumerateObject(), score => Assert.True(sources.TryGetProperty(score.Name, out _), score.Name)));
    }

    [Fact]
    public async Task EveryCommandAndTheViewerSeeTheSameIds()
    {
        // A tokenizer that adds BOS: every path must put it first, once.
        string text = BosModelFixture.Prompt;
        int[] expected = [1, .. new SentencePieceTokenizer(SentencePieceTokenizerTests.Vocabulary()).Encode(text)];
        Assert.Equal(expected, Ints(RunJson("logits", "--model", models.Plain, "--text", text, "--json").GetProperty("ids")));
        Assert.Equal(expected, Ints(RunJson("attention", "--model", models.Plain, "--text", text, "--json").GetProperty("ids")));
        Assert.Equal(expected, Ints(RunJson("generate", "--model", models.Plain, "--prompt", text, "--max-tokens", "1", "--json").GetProperty("prompt_ids")));
        var viewer = await WithViewerAsync(models.Plain, async client => (
            await PostAsync(client, "/api/tokenize", new { text }),
            await PostAsync(client, "/api/heads", new { text })));
        Assert.Equal(expected, Ints(viewer.Item1.GetProperty("ids")));
        Assert.Equal(expected, Ints(viewer.Item2.GetProperty("ids")));
        // `heads` has no ids field; its scores equal the viewer's on the viewer's ids (the theory above), and its
        // --text goes through the same ModelInput.ReadIds as logits and attention.
    }

    [Theory]
    [InlineData("plain")]
    [InlineData("bos")]
    [InlineData("eos")]
    public async Task GenerateAndTheViewerStopOnTheSameTokens(string which)
    {
        string path = which switch { "bos" => models.StopsOnBos, "eos" => models.StopsOnEos, _ => models.Plain };
        var cli = RunJson("generate", "--model", path, "--prompt", BosModelFixture.Prompt, "--max-tokens", "12", "--temperature", "0", "--json");
        int[] fromCli = Ints(cli.GetProperty("ids"));
        int[] fromViewer = await WithViewerAsync(path, async client =>
        {
            using var response = await client.PostAsJsonAsync("/api/generate", new { text = BosModelFixture.Prompt, maxTokens = 12, temperature = 0 });
            string lines = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, lines);
            return lines.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => JsonDocument.Parse(line).RootElement)
                .Where(line => line.GetProperty("type").GetString() == "token").Select(line => line.GetProperty("id").GetInt32()).ToArray();
        });
        Assert.Equal(fromCli, fromViewer);
        Assert.DoesNotContain(1, fromCli);
        Assert.DoesNotContain(2, fromCli);
        if (which == "plain")
        {
            Assert.Equal(12, fromCli.Length); // a random model that never picks BOS or EOS here: the check above is not empty
        }
        else
        {
            Assert.Empty(fromCli); // greedy decoding's first pick is the stop token: nothing is generated
        }
    }
}
