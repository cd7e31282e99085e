using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using HeadLens.Cli.Viewer;
using Microsoft.AspNetCore.TestHost;
using Xunit.Abstractions;

namespace HeadLens.Tests.Viewer;

/// <summary>
/// How long a user waits for the viewer's update after typing, through the API and in real Chromium. These run alone
/// (<see cref="RunsAlone"/>): beside the rest of the suite they timed the other tests.
/// </summary>
[Collection(RunsAlone.Name)]
public class ViewerTimingTests(ITestOutputHelper output)
{
    [Fact]
    public async Task TheEmbeddedModelUpdatesAFullContextInUnderASecond()
    {
        // The page's update after typing: tokenize, then the model view's heads (every layer's patterns, scores,
        // thumbnails). The embedded model's context is 128 tokens.
        var source = ModelSourceTests.Load(ModelSourceTests.Embedded, out var model);
        var app = ViewerServer.Build(source, new ViewerOptions(), builder => builder.WebHost.UseTestServer());
        await app.StartAsync();
        await using var _ = app;
        using var client = app.GetTestClient();
        var times = new List<double>();
        for (int round = 0; round < 3; round++)
        {
            string text = string.Concat(Enumerable.Repeat("In the beginning. ", 10))[..(model.Config.ContextLength - round)];
            var clock = Stopwatch.StartNew();
            using var tokens = await client.PostAsJsonAsync("/api/tokenize", new { text });
            using var heads = await client.PostAsJsonAsync("/api/heads", new { text });
            times.Add(clock.Elapsed.TotalMilliseconds);
            var body = JsonDocument.Parse(await heads.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal(model.Config.ContextLength - round, body.GetProperty("ids").GetArrayLength());
            Assert.Equal(16, body.GetProperty("entries").GetArrayLength());
        }

        times.Sort();
        output.WriteLine($"embedded model, full context: {string.Join(", ", times.Select(t => t.ToString("F0", System.Globalization.CultureInfo.InvariantCulture)))} ms");
        // The median of three, so that one round delayed by another process on a shared machine does not decide.
        Assert.True(times[1] < 1000, $"updates took {string.Join(", ", times.Select(t => t.ToString("F0", System.Globalization.CultureInfo.InvariantCulture)))} ms");
    }

    [BrowserFact]
    public async Task TypingA256TokenTextUpdatesThePageInUnderASecond()
    {
        // The embedded model's shape (4 layers × 4 heads × 128 channels, byte tokens) computes every pattern; its
        // own context is 128 tokens, so the same shape with a context of 256 stands in for it here.
        var embedded = global::HeadLens.Checkpoints.ModelFiles.Load(Path.Combine(AppContext.BaseDirectory, "Data", "kjv-model")).Model.Config;
        var model = global::HeadLens.Model.Transformer.Create(embedded with { ContextLength = 256 }, seed: 5);
        var (app, url) = await ViewerBrowserTests.StartAsync(new ModelSource(model, new global::HeadLens.Tokenization.ByteTokenizer(), "kjv-shaped"));
        await using var _ = app;
        using var browser = new Browser();
        browser.Driver.Navigate().GoToUrl(url);
        browser.WaitFor(() => browser.FindAll("#grid .cell").Count == 16, "the model view");
        string text = string.Concat(Enumerable.Repeat("In the beginning God created the heaven. ", 7))[..256];
        // Put the text in at once (as a paste), then time the update the page itself reports.
        var times = new List<int>();
        for (int round = 0; round < 3; round++)
        {
            string before = browser.Find("body").GetAttribute("data-ready") ?? "";
            browser.Driver.ExecuteScript("const t = document.getElementById('text'); t.value = arguments[0]; t.dispatchEvent(new Event('input'));", text[..(256 - round)]);
            browser.WaitFor(() => (browser.Find("body").GetAttribute("data-ready") ?? "") != before, "the update");
            string status = browser.Find("#status").Text;
            Assert.Contains($"{256 - round} tokens", status);
            times.Add(int.Parse(status.Split('·')[^1].Replace("ms", "", StringComparison.Ordinal).Trim(), System.Globalization.CultureInfo.InvariantCulture));
        }

        times.Sort();
        // The median of three: one update that waited behind another process on a shared machine is not the page's speed.
        Assert.True(times[1] < 1000, $"updates took {string.Join(", ", times)} ms");
        browser.Screenshot("9-256-tokens");
    }
}
