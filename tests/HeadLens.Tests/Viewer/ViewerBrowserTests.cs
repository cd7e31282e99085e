using HeadLens.Cli.Viewer;
using Microsoft.AspNetCore.Builder;
using OpenQA.Selenium.Interactions;

namespace HeadLens.Tests.Viewer;

/// <summary>
/// The viewer end to end in real headless Chromium, served by Kestrel on a free loopback port from the synthetic
/// source: load, type, switch views, click a token, hover a head, generate, compare; a screenshot after each step.
/// </summary>
public class ViewerBrowserTests
{
    private static async Task<(WebApplication App, string Url)> StartAsync(IAttentionSource source)
    {
        var app = ViewerServer.Build(source, new ViewerOptions { Port = 0, MaxTokens = 512 });
        await app.StartAsync();
        return (app, app.Urls.Single() + "/");
    }

    private static void TypeText(Browser browser, string text)
    {
        string before = browser.Find("body").GetAttribute("data-ready") ?? "";
        var box = browser.Find("#text");
        box.Clear();
        box.SendKeys(text);
        browser.WaitFor(() => (browser.Find("body").GetAttribute("data-ready") ?? "") != before
            && browser.Find("#status").Text.Contains("tokens", StringComparison.Ordinal), "the page to update after typing");
    }

    private static void Tab(Browser browser, string view)
    {
        browser.Find($"#tabs button[data-view='{view}']").Click();
        browser.WaitFor(() => browser.Find($"#view-{view}").Displayed, $"the {view} view");
    }

    [BrowserFact]
    public async Task TheViewerShowsEveryViewOfATypedText()
    {
        var (app, url) = await StartAsync(new SyntheticSource(3, 4));
        await using var _ = app;
        using var browser = new Browser();
        browser.Driver.Navigate().GoToUrl(url);
        browser.WaitFor(() => browser.FindAll("#grid .cell").Count == 12, "the model view's 3 × 4 heads");
        Assert.Contains("synthetic", browser.Find("#model-name").Text);
        browser.Screenshot("1-model-view");

        // Typing: the token strip and the grid follow the text; markup in the text stays text.
        TypeText(browser, "the bank of the river <b>bold</b> bank");
        var tokens = browser.FindAll("#tokens .tok").Select(t => t.Text).ToList();
        Assert.Equal(14, tokens.Count);
        Assert.Equal("<", tokens[5].Trim());
        Assert.Empty(browser.FindAll("#tokens b"));
        Assert.Contains("14 tokens", browser.Find("#status").Text);
        Assert.Equal(12, browser.FindAll("#grid .cell").Count);
        Assert.Equal("previous-token", browser.Find("#grid .cell[data-layer='0'][data-head='0']").GetAttribute("data-kind"));
        Assert.Contains("previous-token", browser.Find("#legend").Text);

        // Hovering a head shows its kind and scores.
        new Actions(browser.Driver).MoveToElement(browser.Find("#grid .cell[data-layer='0'][data-head='1']")).Perform();
        browser.WaitFor(() => browser.Find("#tooltip").Displayed, "the tooltip");
        string tip = browser.Find("#tooltip").Text;
        Assert.Contains("layer 0 · head 1: sink", tip);
        Assert.Contains("sink 0.8", tip);
        // Each score names its probe: the token-matching scores come from the repeated random block, the rest from the text.
        Assert.Contains("sink 0.80 (text)", tip);
        Assert.Matches(@"induction \d\.\d\d \(repeated random block\)", tip);
        Assert.Contains("repeated random block: duplicate_token, induction", browser.Find("#sources").Text);
        browser.Screenshot("2-hover-head");

        // Clicking a head opens its matrix, labelled with the tokens.
        browser.Find("#grid .cell[data-layer='0'][data-head='0']").Click();
        browser.WaitFor(() => browser.Find("#view-matrix").Displayed && browser.FindAll("#matrix-top span").Count == 14, "the matrix of layer 0 head 0");
        Assert.Equal("previous-token", browser.Find("#matrix-kind").Text);
        Assert.Equal(" river", browser.FindAll("#matrix-left span")[4].GetAttribute("textContent"));
        // Selenium's offsets count from the element's centre: this is the top-left cell.
        var canvas = browser.Find("#matrix-canvas");
        new Actions(browser.Driver).MoveToElement(canvas, 3 - (canvas.Size.Width / 2), 3 - (canvas.Size.Height / 2)).Perform();
        browser.WaitFor(() => browser.Find("#matrix-info").Text.Contains("query 0", StringComparison.Ordinal), "the hovered cell's line");
        browser.Screenshot("3-matrix-view");

        // The head view: two columns of tokens joined by lines; hovering a query isolates its lines.
        Tab(browser, "head");
        browser.WaitFor(() => browser.FindAll("#head-svg text.query").Count == 14, "the head view's token columns");
        Assert.NotEmpty(browser.FindAll("#head-svg line"));
        browser.Find("#head-picks input[data-head='1']").Click();
        browser.WaitFor(() => browser.Find("#head-info").Text.Contains("heads 0, 1", StringComparison.Ordinal), "two heads at once");
        new Actions(browser.Driver).MoveToElement(browser.FindAll("#head-svg text.query")[4]).Perform();
        browser.WaitFor(() => browser.Find("#head-info").Text.Contains("looks at", StringComparison.Ordinal), "the hovered token's lines");
        Assert.Contains("head 0 → ‘ the’ 0.90", browser.Find("#head-info").Text);
        browser.Screenshot("4-head-view");

        // Clicking a token opens the token view: where it looks at every layer.
        browser.FindAll("#tokens .tok")[4].Click();
        browser.WaitFor(() => browser.Find("#view-token").Displayed && browser.FindAll("#token-layers .layer-block").Count == 3, "the token view");
        Assert.Equal("Token 4 ‘ river’", browser.Find("#token-title").Text);
        Assert.StartsWith("Layer 0: looks most at", browser.FindAll("#token-layers .summary")[0].Text);
        Assert.Contains("selected", browser.FindAll("#tokens .tok")[4].GetAttribute("class"));
        browser.Screenshot("5-token-view");

        // Compare: the shared word's context vectors, layer by layer.
        Tab(browser, "compare");
        browser.Find("#cmp-run").Click();
        browser.WaitFor(() => browser.FindAll("#cmp-result tr[data-depth]").Count == 4, "the comparison table");
        Assert.Equal("Context vectors of ‘bank’", browser.Find("#cmp-title").Text);
        Assert.Equal("1.000", browser.Find("#cmp-result tr[data-depth='0'] .value").Text);
        browser.Screenshot("6-compare");

        // Generation: new tokens stream in, each with where it looks.
        Tab(browser, "generate");
        browser.Find("#gen-run").Click();
        browser.WaitFor(() => browser.FindAll("#gen-output .tok.new").Count == 12 && browser.Find("#status").Text.StartsWith("generated", StringComparison.Ordinal), "12 generated tokens");
        Assert.StartsWith("Token 15", browser.Find("#gen-title").Text);
        Assert.Equal(3, browser.FindAll("#gen-detail .gen-summary").Count);
        browser.Screenshot("7-generate");
    }

    [BrowserFact]
    public async Task AScriptInTheTextIsShownNotRun()
    {
        var (app, url) = await StartAsync(new SyntheticSource(2, 2));
        await using var _ = app;
        using var browser = new Browser();
        browser.Driver.Navigate().GoToUrl(url);
        browser.WaitFor(() => browser.FindAll("#grid .cell").Count == 4, "the model view");
        TypeText(browser, "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>");
        Tab(browser, "head");
        browser.WaitFor(() => browser.FindAll("#head-svg text.query").Count > 5, "the head view");
        browser.FindAll("#tokens .tok")[0].Click();
        browser.WaitFor(() => browser.FindAll("#token-layers .layer-block").Count == 2, "the token view");
        Assert.Equal("HeadLens viewer", browser.Driver.Title);
        Assert.Empty(browser.FindAll("main img, main script, #tokens img, #tokens script"));
        Assert.Contains("script", browser.Find("#tokens").Text);
        browser.Screenshot("8-script-as-text");
    }

    [BrowserFact]
    public async Task TypingA256TokenTextUpdatesThePageInUnderASecond()
    {
        // The embedded model's shape (4 layers × 4 heads × 128 channels, byte tokens) computes every pattern; its
        // own context is 128 tokens, so the same shape with a context of 256 stands in for it here.
        var embedded = global::HeadLens.Checkpoints.ModelFiles.Load(Path.Combine(AppContext.BaseDirectory, "Data", "kjv-model")).Model.Config;
        var model = global::HeadLens.Model.Transformer.Create(embedded with { ContextLength = 256 }, seed: 5);
        var (app, url) = await StartAsync(new ModelSource(model, new global::HeadLens.Tokenization.ByteTokenizer(), "kjv-shaped"));
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

    [BrowserFact]
    public void TheReportWorksOfflineFromAFile()
    {
        string folder = Path.Combine(Path.GetTempPath(), "headlens-report-e2e-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, "report.html");
        ReportWriter.Write(new SyntheticSource(3, 4), "the bank of the river <i>and</i> the bank", path);
        using (var browser = new Browser())
        {
            browser.Driver.Navigate().GoToUrl(new Uri(path).AbsoluteUri);
            browser.WaitFor(() => browser.FindAll("#grid .cell").Count == 12, "the report's model view");
            Assert.Contains("report", browser.Find("#model-name").Text);
            Assert.False(browser.Find("#tabs button[data-view='generate']").Enabled);
            Assert.Empty(browser.FindAll("#tokens i"));
            browser.Find("#grid .cell[data-layer='2'][data-head='3']").Click();
            browser.WaitFor(() => browser.FindAll("#matrix-left span").Count == 15, "the matrix from the embedded patterns");
            Assert.Equal("sink", browser.Find("#matrix-kind").Text);
            browser.FindAll("#tokens .tok")[4].Click();
            browser.WaitFor(() => browser.FindAll("#token-layers .layer-block").Count == 3, "the token view computed in the page");
            Assert.Equal("Token 4 ‘ river’", browser.Find("#token-title").Text);
            browser.Screenshot("10-report-offline");
        }

        Directory.Delete(folder, recursive: true);
    }
}
