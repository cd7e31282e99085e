using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using HeadLens.Cli.Viewer;

namespace HeadLens.Tests.Viewer;

/// <summary>The viewer's JSON API on the synthetic source: shapes, values, limits and errors.</summary>
public class ViewerApiTests
{
    private const string Text = "The quick brown fox jumps over the lazy dog. The quick brown fox sleeps.";

    // The server rounds probabilities to 4 decimals (±5e-5 each), so a row of T values sums to 1 within T·5e-5.
    private const double RoundingPerValue = 5e-5;

    private static async Task<(HttpStatusCode Status, JsonElement Body)> PostAsync(ViewerHost host, string path, object body)
    {
        using var response = await host.Client.PostAsJsonAsync(path, body);
        string text = await response.Content.ReadAsStringAsync();
        Assert.StartsWith("application/json", response.Content.Headers.ContentType?.ToString());
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    private static float[] Row(SyntheticSource source, int[] ids, int layer, int head, int query)
    {
        var row = new float[ids.Length];
        source.Patterns(ids, layer, [head], query, 1, row);
        return row;
    }

    [Fact]
    public async Task AblationNeedsAModelAndSaysSo()
    {
        await using var host = await ViewerHost.StartAsync();
        var (status, body) = await PostAsync(host, "/api/ablate", new { text = Text, layer = 0 });
        Assert.Equal(HttpStatusCode.NotImplemented, status);
        Assert.Contains("ablation needs a model", body.GetProperty("error").GetString());
        (status, body) = await PostAsync(host, "/api/ablate", new { text = Text, layer = 7 });
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("layer 7", body.GetProperty("error").GetString());
        (status, body) = await PostAsync(host, "/api/ablate", new { text = Text, layer = 0, method = "half" });
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("zero or mean", body.GetProperty("error").GetString());
    }

    [Fact]
    public async Task PatchingNeedsAModelAndTwoTexts()
    {
        await using var host = await ViewerHost.StartAsync();
        var (status, body) = await PostAsync(host, "/api/patch", new { text = Text, corrupted = Text, layer = 0 });
        Assert.Equal(HttpStatusCode.NotImplemented, status);
        Assert.Contains("patching needs a model", body.GetProperty("error").GetString());
        (status, body) = await PostAsync(host, "/api/patch", new { text = Text, layer = 0 });
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("corrupted", body.GetProperty("error").GetString());
        (status, body) = await PostAsync(host, "/api/patch", new { text = Text, corrupted = Text, layer = 9 });
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("layer 9", body.GetProperty("error").GetString());
    }

    private static readonly int[] ReceiverOneZero = [1, 0], ReceiverZeroOne = [0, 1];

    [Fact]
    public async Task PathPatchingNeedsAModelTwoTextsAndAReceiver()
    {
        await using var host = await ViewerHost.StartAsync();
        var (status, body) = await PostAsync(host, "/api/paths", new { text = Text, corrupted = Text, layer = 0, receiver = ReceiverOneZero });
        Assert.Equal(HttpStatusCode.NotImplemented, status);
        Assert.Contains("path patching needs a model", body.GetProperty("error").GetString());
        (status, body) = await PostAsync(host, "/api/paths", new { text = Text, layer = 0, receiver = ReceiverOneZero });
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("corrupted", body.GetProperty("error").GetString());
        (status, body) = await PostAsync(host, "/api/paths", new { text = Text, corrupted = Text, layer = 0 });
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("receiver: [layer, head]", body.GetProperty("error").GetString());
        (status, body) = await PostAsync(host, "/api/paths", new { text = Text, corrupted = Text, layer = 0, receiver = ReceiverZeroOne });
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("receiver 0.1 is not a head of layers 1 to", body.GetProperty("error").GetString());
    }

    [Fact]
    public async Task CompositionsNeedAModelAndSaySo()
    {
        await using var host = await ViewerHost.StartAsync();
        using var response = await host.Client.GetAsync("/api/compositions");
        Assert.Equal(HttpStatusCode.NotImplemented, response.StatusCode);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Contains("composition scores need a model's weights", body.GetProperty("error").GetString());
    }

    [Fact]
    public async Task TheLensNeedsAModelAndSaysSo()
    {
        await using var host = await ViewerHost.StartAsync();
        var (status, body) = await PostAsync(host, "/api/lens", new { text = Text });
        Assert.Equal(HttpStatusCode.NotImplemented, status);
        Assert.Contains("logit lens needs a model", body.GetProperty("error").GetString());
    }

    [Fact]
    public async Task ModelDescribesTheSourceAndTheLimits()
    {
        await using var host = await ViewerHost.StartAsync();
        var model = await host.Client.GetFromJsonAsync<JsonElement>("/api/model");
        Assert.Equal("synthetic", model.GetProperty("name").GetString());
        Assert.Equal(3, model.GetProperty("layers").GetInt32());
        Assert.Equal(4, model.GetProperty("heads").GetInt32());
        Assert.Equal(64, model.GetProperty("maxTokens").GetInt32()); // min(server limit 64, source context 1024)
        Assert.True(model.GetProperty("causal").GetBoolean());
    }

    [Fact]
    public async Task TokenizeReturnsIdsAndTheExactTokenText()
    {
        await using var host = await ViewerHost.StartAsync();
        var (status, body) = await PostAsync(host, "/api/tokenize", new { text = "the bank <b>" });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(["the", " bank", " <", "b", ">"], body.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToArray());
        Assert.Equal(5, body.GetProperty("ids").GetArrayLength());
    }

    [Fact]
    public async Task HeadsCarryEveryHeadsKindScoresAndThumbnail()
    {
        await using var host = await ViewerHost.StartAsync();
        var (status, body) = await PostAsync(host, "/api/heads", new { text = Text });
        Assert.Equal(HttpStatusCode.OK, status);
        int t = body.GetProperty("tokens").GetArrayLength();
        int size = body.GetProperty("thumbnailSize").GetInt32();
        Assert.Equal(Math.Min(t, AttentionViews.ThumbnailMax), size);
        var entries = body.GetProperty("entries").EnumerateArray().ToList();
        Assert.Equal(3 * 4, entries.Count);
        foreach (var entry in entries)
        {
            int layer = entry.GetProperty("layer").GetInt32(), head = entry.GetProperty("head").GetInt32();
            // The synthetic heads are built to be these kinds; the server's scores must find them.
            Assert.Equal(SyntheticSource.KindOf(layer, head), entry.GetProperty("kind").GetString());
            byte[] thumbnail = Convert.FromBase64String(entry.GetProperty("thumbnail").GetString()!);
            Assert.Equal(size * size, thumbnail.Length);
            Assert.Equal(255, thumbnail.Max());
            Assert.True(entry.GetProperty("scores").TryGetProperty("previous_token", out _));
        }

        // A previous-token head (layer 0, head 0) is dark just below the diagonal and blank above it.
        byte[] previous = Convert.FromBase64String(entries[0].GetProperty("thumbnail").GetString()!);
        Assert.Equal(0, previous[0 * size + 5]);
        Assert.True(previous[6 * size + 5] > 200);
    }

    [Fact]
    public async Task PatternRowsAreTheSourcesProbabilities()
    {
        await using var host = await ViewerHost.StartAsync();
        var (status, body) = await PostAsync(host, "/api/pattern", new { text = Text, layer = 1, heads = (int[])[0, 3] });
        Assert.Equal(HttpStatusCode.OK, status);
        int[] ids = body.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int t = ids.Length;
        var patterns = body.GetProperty("patterns");
        Assert.Equal(2, patterns.GetArrayLength());
        int[] heads = [0, 3];
        for (int h = 0; h < 2; h++)
        {
            Assert.Equal(t, patterns[h].GetArrayLength());
            for (int i = 0; i < t; i++)
            {
                var row = patterns[h][i].EnumerateArray().Select(e => e.GetDouble()).ToArray();
                var expected = Row(host.Source, ids, 1, heads[h], i);
                Assert.Equal(t, row.Length);
                Assert.Equal(1.0, row.Sum(), t * RoundingPerValue);
                for (int j = 0; j < t; j++)
                {
                    Assert.Equal(expected[j], row[j], RoundingPerValue);
                }
            }
        }
    }

    [Fact]
    public async Task TokenViewAveragesTheHeadsRowAndColumn()
    {
        await using var host = await ViewerHost.StartAsync();
        const int index = 4;
        var (status, body) = await PostAsync(host, "/api/token", new { text = Text, index });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(" jumps", body.GetProperty("token").GetString());
        int[] ids = body.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int t = ids.Length;
        var layers = body.GetProperty("layers");
        Assert.Equal(3, layers.GetArrayLength());
        for (int l = 0; l < 3; l++)
        {
            var looksAt = layers[l].GetProperty("looksAt").EnumerateArray().Select(e => e.GetDouble()).ToArray();
            var lookedAtBy = layers[l].GetProperty("lookedAtBy").EnumerateArray().Select(e => e.GetDouble()).ToArray();
            for (int j = 0; j < t; j++)
            {
                double row = Enumerable.Range(0, 4).Average(h => Row(host.Source, ids, l, h, index)[j]);
                double column = Enumerable.Range(0, 4).Average(h => Row(host.Source, ids, l, h, j)[index]);
                Assert.Equal(row, looksAt[j], RoundingPerValue);
                Assert.Equal(column, lookedAtBy[j], RoundingPerValue);
            }

            // Causal: nothing before the token reads it.
            Assert.All(lookedAtBy[..index], value => Assert.Equal(0, value));
            Assert.Equal(4, layers[l].GetProperty("heads").GetArrayLength());
        }
    }

    [Fact]
    public async Task CompareFindsTheSharedWordAndItsSimilarityFallsWithDepth()
    {
        await using var host = await ViewerHost.StartAsync();
        var (status, body) = await PostAsync(host, "/api/compare", new { a = "the bank of the river", b = "money in the bank" });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("bank", body.GetProperty("word").GetString());
        Assert.Equal(1, body.GetProperty("a").GetProperty("index").GetInt32());
        Assert.Equal(3, body.GetProperty("b").GetProperty("index").GetInt32());
        var cosine = body.GetProperty("cosine").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.Equal(4, cosine.Length); // embeddings + 3 layers
        Assert.Equal(1.0, cosine[0], 1e-4); // the same token's embedding
        Assert.True(cosine[1] < 0.99, $"after layer 0 the contexts differ: {cosine[1]}");

        var (missing, error) = await PostAsync(host, "/api/compare", new { a = "the bank", b = "a river", word = "bank" });
        Assert.Equal(HttpStatusCode.BadRequest, missing);
        Assert.Contains("second", error.GetProperty("error").GetString());
    }

    [Fact]
    public async Task GenerateStreamsEachNewTokenWithWhereItLooks()
    {
        await using var host = await ViewerHost.StartAsync();
        using var response = await host.Client.PostAsJsonAsync("/api/generate", new { text = "the bank of", maxTokens = 5 });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("application/x-ndjson", response.Content.Headers.ContentType?.ToString());
        var lines = (await response.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => JsonDocument.Parse(line).RootElement.Clone()).ToList();
        Assert.Equal("prompt", lines[0].GetProperty("type").GetString());
        Assert.Equal(3, lines[0].GetProperty("ids").GetArrayLength());
        Assert.Equal("done", lines[^1].GetProperty("type").GetString());
        var tokens = lines.Where(line => line.GetProperty("type").GetString() == "token").ToList();
        Assert.Equal(5, tokens.Count);
        for (int n = 0; n < tokens.Count; n++)
        {
            int index = tokens[n].GetProperty("index").GetInt32();
            Assert.Equal(3 + n, index);
            foreach (var row in tokens[n].GetProperty("layers").EnumerateArray())
            {
                Assert.Equal(index + 1, row.GetArrayLength());
                Assert.Equal(1.0, row.EnumerateArray().Sum(e => e.GetDouble()), (index + 1) * RoundingPerValue);
            }
        }
    }

    [Fact]
    public async Task TooManyTokensIsA400ThatNamesTheLimit()
    {
        await using var host = await ViewerHost.StartAsync();
        string text = string.Join(' ', Enumerable.Repeat("word", 65));
        var (status, body) = await PostAsync(host, "/api/heads", new { text });
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("limit is 64", body.GetProperty("error").GetString());
        var (idsStatus, _) = await PostAsync(host, "/api/pattern", new { ids = new int[65], layer = 0, head = 0 });
        Assert.Equal(HttpStatusCode.BadRequest, idsStatus);
    }

    [Fact]
    public async Task ABodyOverTheLimitIs413WhateverContentLengthSays()
    {
        await using var host = await ViewerHost.StartAsync(new ViewerOptions { MaxTokens = 64, MaxBodyBytes = 1000 });
        string big = JsonSerializer.Serialize(new { text = new string('a', 2000) });
        using (var response = await host.Client.PostAsync("/api/tokenize", new StringContent(big, Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
            Assert.Contains("larger than 1000 bytes", await response.Content.ReadAsStringAsync());
        }

        // Chunked (no Content-Length): the server counts what it reads.
        var chunked = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(big)));
        chunked.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/tokenize") { Content = chunked };
        request.Headers.TransferEncodingChunked = true;
        using var second = await host.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, second.StatusCode);
    }

    [Theory]
    [InlineData("/api/pattern", "{\"text\":\"a b\",\"layer\":3,\"head\":0}", "layer 3")]
    [InlineData("/api/pattern", "{\"text\":\"a b\",\"layer\":0,\"head\":4}", "head 4")]
    [InlineData("/api/pattern", "{\"text\":\"a b\",\"layer\":0}", "head")]
    [InlineData("/api/token", "{\"text\":\"a b\",\"index\":2}", "index 2")]
    [InlineData("/api/token", "{\"text\":\"a b\",\"index\":-1}", "index -1")]
    [InlineData("/api/tokenize", "{\"text\":\"\"}", "no tokens")]
    [InlineData("/api/tokenize", "{}", "exactly one of")]
    [InlineData("/api/tokenize", "{\"text\":\"a\",\"ids\":[1]}", "exactly one of")]
    [InlineData("/api/tokenize", "{\"ids\":[99999]}", "99999")]
    [InlineData("/api/tokenize", "{\"text\":", "not the JSON")]
    [InlineData("/api/tokenize", "{\"text\":5}", "not the JSON")]
    [InlineData("/api/tokenize", "", "no JSON body")]
    [InlineData("/api/generate", "{\"text\":\"a\",\"maxTokens\":1000}", "maxTokens")]
    [InlineData("/api/generate", "{\"text\":\"a\",\"temperature\":-1}", "temperature")]
    public async Task BadRequestsGetA400WithOneClearLine(string path, string json, string mentions)
    {
        await using var host = await ViewerHost.StartAsync();
        using var response = await host.Client.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        string error = body.GetProperty("error").GetString()!;
        Assert.Contains(mentions, error);
        Assert.DoesNotContain("\n", error);
        Assert.DoesNotContain(" at ", error);
    }

    [Fact]
    public async Task APatternLargerThanOneAnswerCarriesIsRefused()
    {
        await using var host = await ViewerHost.StartAsync(new ViewerOptions { MaxTokens = 64, MaxPatternValues = 1000 });
        string text = string.Join(' ', Enumerable.Repeat("w", 20)); // 4 heads × 400 values > 1000; 2 heads fit
        var (tooMany, body) = await PostAsync(host, "/api/pattern", new { text, layer = 0, heads = (int[])[0, 1, 2, 3] });
        Assert.Equal(HttpStatusCode.BadRequest, tooMany);
        Assert.Contains("fewer heads", body.GetProperty("error").GetString());
        var (fits, _) = await PostAsync(host, "/api/pattern", new { text, layer = 0, heads = (int[])[0, 1] });
        Assert.Equal(HttpStatusCode.OK, fits);
    }

    [Fact]
    public async Task UnknownApiPathsAnd404AreJson()
    {
        await using var host = await ViewerHost.StartAsync();
        using var response = await host.Client.GetAsync("/api/nothing");
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("not found", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetString());
    }

    [Fact]
    public async Task LongInputsGetOnlyWhatAViewNeeds()
    {
        // 1024 tokens on a 12 × 12 source: the model view's answer is thumbnails (32 × 32 per head), not 144 T×T patterns.
        await using var host = await ViewerHost.StartAsync(new ViewerOptions(), layers: 12, heads: 12);
        string text = string.Join(' ', Enumerable.Range(0, 1024).Select(i => "w" + (i % 97)));
        using var response = await host.Client.PostAsJsonAsync("/api/heads", new { text });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        string json = await response.Content.ReadAsStringAsync();
        var body = JsonDocument.Parse(json).RootElement;
        Assert.Equal(1024, body.GetProperty("tokens").GetArrayLength());
        Assert.Equal(144, body.GetProperty("entries").GetArrayLength());
        Assert.Equal(32, body.GetProperty("thumbnailSize").GetInt32());
        Assert.True(json.Length < 600_000, $"the model view's answer is {json.Length} bytes");
        var (status, pattern) = await PostAsync(host, "/api/pattern", new { text, layer = 11, head = 5 });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(1024, pattern.GetProperty("patterns")[0].GetArrayLength());
    }
}
