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
    internal static async Task<(WebApplication App, string Url)> StartAsync(IAttentionSource source)
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
        // The colour scale: a bar from 0 to 1 in the matrix's shading.
        Assert.Equal(["0", "0.25", "0.5", "0.75", "1"], browser.FindAll("#matrix-scale .ticks span").Select(e => e.Text).ToArray());
        Assert.Contains("attention weight", browser.Find("#matrix-scale").Text);
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
        Assert.False(browser.Find("#status").Displayed);
        Assert.Contains("bank", browser.Find("#cmp-status").Text);
        Assert.Equal("Context vectors of ‘bank’", browser.Find("#cmp-title").Text);
        Assert.Equal("1.000", browser.Find("#cmp-result tr[data-depth='0'] .value").Text);
        browser.Screenshot("6-compare");

        // Generation: new tokens stream in, each with where it looks.
        Tab(browser, "generate");
        browser.Find("#gen-run").Click();
        browser.WaitFor(() => browser.FindAll("#gen-output .tok.new").Count == 12 && browser.Find("#gen-status").Text.StartsWith("generated", StringComparison.Ordinal), "12 generated tokens");
        // The view's own status line; the main text's line is not shown here.
        Assert.False(browser.Find("#status").Displayed);
        Assert.StartsWith("Token 15", browser.Find("#gen-title").Text);
        Assert.Equal(3, browser.FindAll("#gen-detail .gen-summary").Count);
        browser.Screenshot("7-generate");
    }

    [BrowserFact]
    public async Task TheGridShowsWhatBreaksWithoutEachHead()
    {
        // The embedded model (4 × 4 heads, byte tokens): one click removes every head in turn, layer by layer.
        var source = ModelSourceTests.Load(ModelSourceTests.Embedded, out var model);
        Assert.Equal(4, model.Config.Layers);
        var (app, url) = await StartAsync(source);
        await using var _ = app;
        using var browser = new Browser();
        browser.Driver.Navigate().GoToUrl(url);
        browser.WaitFor(() => browser.FindAll("#grid .cell").Count == 16, "the model view's 4 × 4 heads");
        TypeText(browser, "In the beginning God created the heaven. In the beginning God created the earth.");
        browser.Find("#ablate-run").Click();
        browser.WaitFor(() => browser.Find("body").GetAttribute("data-ablated") is not null, "the ablation of every layer");
        Assert.Equal(16, browser.FindAll("#grid .cell .effect").Count);
        Assert.Contains("nats/token", browser.Find("#ablate-status").Text);
        Assert.Contains("Most needed: layer", browser.Find("#ablate-status").Text);
        foreach (var cell in browser.FindAll("#grid .cell"))
        {
            double change = double.Parse(cell.GetAttribute("data-change")!, System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal((change >= 0 ? "+" : "\u2212") + Math.Abs(change).ToString("F4", System.Globalization.CultureInfo.InvariantCulture), cell.FindElement(OpenQA.Selenium.By.CssSelector(".effect")).Text);
        }

        new Actions(browser.Driver).MoveToElement(browser.Find("#grid .cell[data-layer='3'][data-head='0']")).Perform();
        browser.WaitFor(() => browser.Find("#tooltip").Displayed, "the tooltip");
        string tip = browser.Find("#tooltip").Text;
        Assert.Contains("without it: next-token loss", tip);
        Assert.Matches(@"most: ‘.+’ after ‘.+’, p \d\.\d{3} → \d\.\d{3}", tip);
        browser.Screenshot("ablation");

        // Another text: the badges of the old one go.
        TypeText(browser, "And God said, Let there be light.");
        Assert.Empty(browser.FindAll("#grid .cell .effect"));
        Assert.Equal("", browser.Find("#ablate-status").Text);
    }

    [BrowserFact]
    public async Task TheGridShowsWhichHeadsCarryADifference()
    {
        // The embedded model: the text and a corrupted copy differing in the letter to be copied; one click patches
        // every head in turn, layer by layer, and the induction head that carries the letter gets the largest badge.
        var source = ModelSourceTests.Load(ModelSourceTests.Embedded, out var model);
        Assert.Equal(4, model.Config.Heads);
        var (app, url) = await StartAsync(source);
        await using var stop = app;
        using var browser = new Browser();
        browser.Driver.Navigate().GoToUrl(url);
        browser.WaitFor(() => browser.FindAll("#grid .cell").Count == 16, "the model view's 4 × 4 heads");
        TypeText(browser, "the word is kqzj; the word is kq");
        browser.Find("#patch-corrupted").SendKeys("the word is kqvj; the word is kq");
        browser.Find("#patch-run").Click();
        browser.WaitFor(() => browser.Find("body").GetAttribute("data-patched") is not null, "the patching of every layer");
        Assert.Equal(16, browser.FindAll("#grid .cell .effect").Count);
        string status = browser.Find("#ablate-status").Text;
        Assert.Contains("logit(‘z’) − logit(‘v’): +6.28", status);
        Assert.Contains("Most: layer 3 head 0 (+74%)", status);
        Assert.Equal("+74%", browser.Find("#grid .cell[data-layer='3'][data-head='0'] .effect").Text);
        // The status line above the grid grew: the grid is sized again and still ends inside the window.
        var grid = browser.Find("#grid");
        long height = Convert.ToInt64(browser.Driver.ExecuteScript("return window.innerHeight;"), System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(grid.Location.Y + grid.Size.Height <= height, $"the grid ends at {grid.Location.Y + grid.Size.Height} px in a {height} px window");
        new Actions(browser.Driver).MoveToElement(browser.Find("#grid .cell[data-layer='3'][data-head='0']")).Perform();
        browser.WaitFor(() => browser.Find("#tooltip").Displayed, "the tooltip");
        Assert.Contains("brings back +74% of the gap", browser.Find("#tooltip").Text);
        browser.Screenshot("patching");

        // What feeds that head: the picker now names it; one click traces every earlier head's path into its queries,
        // keys and values, and the previous-token head that builds its keys gets the largest badge.
        Assert.Equal("3.0", browser.Find("#paths-receiver").GetAttribute("value"));
        browser.Find("#paths-run").Click();
        browser.WaitFor(() => browser.Find("body").GetAttribute("data-paths") is not null, "the paths from layers 0 to 2");
        Assert.Equal(12, browser.FindAll("#grid .cell .effect").Count);
        Assert.Contains("receiver", browser.Find("#grid .cell[data-layer='3'][data-head='0']").GetAttribute("class"));
        Assert.Contains("Most: layer 2 head 0 into its keys (+11%)", browser.Find("#ablate-status").Text);
        Assert.Equal("+11% k", browser.Find("#grid .cell[data-layer='2'][data-head='0'] .effect").Text);
        new Actions(browser.Driver).MoveToElement(browser.Find("#grid .cell[data-layer='2'][data-head='0']")).Perform();
        browser.WaitFor(() => browser.Find("#tooltip").Text.Contains("sending to head 3.0", StringComparison.Ordinal), "the path tooltip");
        Assert.Contains("keys +11%", browser.Find("#tooltip").Text);
        browser.Screenshot("paths");

        // Different lengths: the status says so in one line.
        var box = browser.Find("#patch-corrupted");
        box.Clear();
        box.SendKeys("the word");
        browser.Find("#patch-run").Click();
        browser.WaitFor(() => browser.Find("#ablate-status").Text.Contains("tokens", StringComparison.Ordinal)
            && browser.Find("#ablate-status").GetAttribute("class")!.Contains("error", StringComparison.Ordinal), "the refusal");
        Assert.Contains("the clean one has 32 tokens, the corrupted one 8", browser.Find("#ablate-status").Text);
    }

    [BrowserFact]
    public async Task TheLensViewShowsWhereTheAnswerForms()
    {
        // The embedded model: stages × positions, the copied letter only at the last stage; then the same text's report,
        // offline, carries the same table.
        const string Text = "the word is kqzj; the word is kq";
        var source = ModelSourceTests.Load(ModelSourceTests.Embedded, out var model);
        Assert.Equal(4, model.Config.Layers);
        var (app, url) = await StartAsync(source);
        await using var stop = app;
        using var browser = new Browser();
        browser.Driver.Navigate().GoToUrl(url + "#view=lens&text=" + Uri.EscapeDataString(Text));
        browser.WaitFor(() => browser.FindAll("#lens-table tr").Count == 6, "the lens table's header and 5 stages");
        var rows = browser.FindAll("#lens-table tr");
        Assert.Equal(Text.Length + 2, rows[0].FindElements(OpenQA.Selenium.By.CssSelector("th")).Count);
        Assert.Equal(Text.Length + 1, rows[5].FindElements(OpenQA.Selenium.By.CssSelector("td")).Count);
        Assert.Equal("L3", browser.Find("#lens-table tr[data-stage='L3'] th").Text);
        Assert.Equal("z", browser.FindAll("#lens-table tr[data-stage='L3'] td")[Text.Length - 1].Text);
        Assert.Equal("u", browser.FindAll("#lens-table tr[data-stage='L2'] td")[Text.Length - 1].Text);
        Assert.NotEmpty(browser.FindAll("#lens-table td.hit"));
        Assert.Contains("predicts ‘z’", browser.Find("#lens-summary").Text);
        Assert.Contains("leading from L3 on", browser.Find("#lens-summary").Text);
        new Actions(browser.Driver).MoveToElement(browser.FindAll("#lens-table tr[data-stage='L3'] td")[Text.Length - 1]).Perform();
        browser.WaitFor(() => browser.Find("#tooltip").Displayed, "the tooltip");
        Assert.Contains("L3 at ‘q’ (position 31): the next token would be", browser.Find("#tooltip").Text);
        browser.Screenshot("lens");

        string folder = Path.Combine(Path.GetTempPath(), "headlens-lens-report-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        try
        {
            string path = Path.Combine(folder, "report.html");
            ReportWriter.Write(source, Text, path);
            browser.Driver.Navigate().GoToUrl(new Uri(path).AbsoluteUri);
            browser.WaitFor(() => browser.FindAll("#grid .cell").Count == 16, "the report's model view");
            Tab(browser, "lens");
            browser.WaitFor(() => browser.FindAll("#lens-table tr").Count == 6, "the report's lens table");
            Assert.Equal("z", browser.FindAll("#lens-table tr[data-stage='L3'] td")[Text.Length - 1].Text);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [BrowserFact]
    public async Task TheWeightsShowWhatCanFeedAHeadLiveAndInAReport()
    {
        // No text needed: the composition scores of every earlier head into the picked one, as multiples of the random
        // score; on the embedded model, previous-token head 2.0 can write 2.4× as much into induction head 3.0's keys.
        var source = ModelSourceTests.Load(ModelSourceTests.Embedded, out _);
        var (app, url) = await StartAsync(source);
        await using var stop = app;
        using var browser = new Browser();
        browser.Driver.Navigate().GoToUrl(url);
        browser.WaitFor(() => browser.FindAll("#grid .cell").Count == 16, "the model view's 4 × 4 heads");

        void Compose()
        {
            browser.Driver.ExecuteScript("document.getElementById('paths-receiver').value = '3.0';");
            browser.Find("#compose-run").Click();
            browser.WaitFor(() => browser.Find("body").GetAttribute("data-compositions") is not null, "the composition scores");
            Assert.Equal(12, browser.FindAll("#grid .cell .effect").Count);
            Assert.Contains("receiver", browser.Find("#grid .cell[data-layer='3'][data-head='0']").GetAttribute("class"));
            Assert.Equal("2.4× k", browser.Find("#grid .cell[data-layer='2'][data-head='0'] .effect").Text);
            Assert.Contains("Most: layer 2 head 0 into its keys (2.4×)", browser.Find("#ablate-status").Text);
            Assert.Contains("random matrices score (0.088)", browser.Find("#ablate-status").Text);
            new Actions(browser.Driver).MoveToElement(browser.Find("#grid .cell[data-layer='2'][data-head='0']")).Perform();
            browser.WaitFor(() => browser.Find("#tooltip").Text.Contains("weights: head 3.0", StringComparison.Ordinal), "the composition tooltip");
            Assert.Contains("keys 0.213 (2.4×)", browser.Find("#tooltip").Text);
        }

        Compose();
        browser.Screenshot("compositions");
        // Another text: the weights' scores do not depend on it, and stay.
        TypeText(browser, "In the beginning God created the heaven and the earth.");
        Assert.Equal("2.4× k", browser.Find("#grid .cell[data-layer='2'][data-head='0'] .effect").Text);

        // The report carries the scores: the picker and its button work offline, the text-bound ones do not.
        string folder = Path.Combine(Path.GetTempPath(), "headlens-compose-report-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        try
        {
            string path = Path.Combine(folder, "report.html");
            ReportWriter.Write(source, "the word is kqzj; the word is kq", path);
            browser.Driver.Navigate().GoToUrl(new Uri(path).AbsoluteUri);
            browser.WaitFor(() => browser.FindAll("#grid .cell").Count == 16, "the report's model view");
            Assert.False(browser.Find("#paths-run").Enabled);
            Assert.True(browser.Find("#compose-run").Enabled);
            Compose();
            Assert.Empty(browser.PolicyViolations());
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
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
            // The disabled tabs say what they need.
            Assert.Equal("Generate (needs serve)", browser.Find("#tabs button[data-view='generate']").Text);
            Assert.Equal("Compare (needs serve)", browser.Find("#tabs button[data-view='compare']").Text);
            Assert.Contains("headlens serve", browser.Find("#offline-note").Text);
            Assert.False(browser.Find("#ablate-run").Enabled);
            Assert.False(browser.Find("#patch-run").Enabled);
            Assert.False(browser.Find("#paths-run").Enabled);
            // A synthetic source has no weights: the report carries no composition scores, and the button says so.
            Assert.False(browser.Find("#compose-run").Enabled);
            Assert.Contains("no weights", browser.Find("#compose-run").GetAttribute("title"));
            Assert.Contains("What breaks without each head?", browser.Find("#offline-note").Text);
            Assert.Empty(browser.FindAll("#tokens i"));
            browser.Find("#grid .cell[data-layer='2'][data-head='3']").Click();
            browser.WaitFor(() => browser.FindAll("#matrix-left span").Count == 15, "the matrix from the embedded patterns");
            Assert.Equal("sink", browser.Find("#matrix-kind").Text);
            browser.FindAll("#tokens .tok")[4].Click();
            browser.WaitFor(() => browser.FindAll("#token-layers .layer-block").Count == 3, "the token view computed in the page");
            Assert.Equal("Token 4 ‘ river’", browser.Find("#token-title").Text);
            browser.Screenshot("10-report-offline");
            // The page ran under its own Content-Security-Policy (inline script and style allowed by hash) with
            // nothing refused.
            Assert.Empty(browser.PolicyViolations());

            // A shared address restores a view of the report too (its text is its own).
            browser.Driver.Navigate().GoToUrl(new Uri(path).AbsoluteUri + "#view=matrix&layer=1&head=2&text=ignored");
            browser.Driver.Navigate().Refresh();
            browser.WaitFor(() => browser.Find("#view-matrix").Displayed && browser.FindAll("#matrix-left span").Count == 15, "the shared matrix view of the report");
            Assert.Equal("1", browser.Find("#matrix-layer").GetAttribute("value"));
            Assert.Equal("2", browser.Find("#matrix-head").GetAttribute("value"));
        }

        Directory.Delete(folder, recursive: true);
    }
    [BrowserFact]
    public async Task TheModelGridScalesToTheWindow()
    {
        var (app, url) = await StartAsync(new SyntheticSource(3, 4));
        await using var _ = app;
        using var browser = new Browser();
        browser.Driver.Navigate().GoToUrl(url);
        browser.WaitFor(() => browser.FindAll("#grid .cell").Count == 12, "the model view");
        long windowWidth = Convert.ToInt64(browser.Driver.ExecuteScript("return window.innerWidth;"), System.Globalization.CultureInfo.InvariantCulture);
        long windowHeight = Convert.ToInt64(browser.Driver.ExecuteScript("return window.innerHeight;"), System.Globalization.CultureInfo.InvariantCulture);
        var grid = browser.Find("#grid");
        var cell = browser.Find("#grid .cell");
        // In a 1400 × 1000 window the grid takes more than half the width or the height below its top, not a corner.
        Assert.True(grid.Size.Width > windowWidth / 2 || grid.Location.Y + grid.Size.Height > windowHeight * 0.9,
            $"grid {grid.Size.Width} × {grid.Size.Height} at y {grid.Location.Y} in a {windowWidth} × {windowHeight} window");
        Assert.True(cell.Size.Width > 150, $"cells are {cell.Size.Width} px");
        Assert.Contains("thumbnail shade", browser.Find("#grid-scale").Text);
        browser.Screenshot("11-grid-1400");

        // A narrower window: the cells follow it.
        browser.Driver.Manage().Window.Size = new System.Drawing.Size(800, 1000);
        browser.WaitFor(() => browser.Find("#grid .cell").Size.Width < cell.Size.Width - 20 || browser.Find("#grid .cell").Size.Width < 160, "the cells to shrink");
        Assert.True(browser.Find("#grid").Size.Width <= Convert.ToInt64(browser.Driver.ExecuteScript("return window.innerWidth;"), System.Globalization.CultureInfo.InvariantCulture), "the grid fits the narrower window");
        browser.Screenshot("12-grid-800");
    }

    [BrowserFact]
    public async Task ViewsKeepTheirOwnStatusAndAnErrorClearsTheStaleView()
    {
        var (app, url) = await StartAsync(new SyntheticSource(2, 2));
        await using var _ = app;
        using var browser = new Browser();
        browser.Driver.Navigate().GoToUrl(url);
        browser.WaitFor(() => browser.FindAll("#grid .cell").Count == 4, "the model view");
        TypeText(browser, "the bank of the river");
        string mainStatus = browser.Find("#status").Text;

        // Compare: its error is its own, and leaves the main text's line alone.
        Tab(browser, "compare");
        browser.Find("#cmp-a").Clear();
        browser.Find("#cmp-a").SendKeys("one two");
        browser.Find("#cmp-b").Clear();
        browser.Find("#cmp-b").SendKeys("three four");
        browser.Find("#cmp-run").Click();
        browser.WaitFor(() => browser.Find("#cmp-status").Text.Contains("share no word", StringComparison.Ordinal), "the compare error");
        Assert.Contains("error", browser.Find("#cmp-status").GetAttribute("class"));
        Assert.False(browser.Find("#status").Displayed);
        Assert.Empty(browser.FindAll("#cmp-result tr"));
        Assert.Equal("", browser.Find("#gen-status").Text);
        browser.Screenshot("13-compare-own-status");

        Tab(browser, "model");
        browser.WaitFor(() => browser.Find("#status").Text == mainStatus || browser.Find("#status").Text.Contains("5 tokens", StringComparison.Ordinal), "the main status again");
        Assert.Equal(4, browser.FindAll("#grid .cell").Count);

        // A text over the limit (512 tokens here): the error, and nothing left of the previous text's view.
        string before = browser.Find("body").GetAttribute("data-error") ?? "";
        browser.Driver.ExecuteScript("const t = document.getElementById('text'); t.value = arguments[0]; t.dispatchEvent(new Event('input'));",
            string.Join(' ', Enumerable.Repeat("word", 600)));
        browser.WaitFor(() => (browser.Find("body").GetAttribute("data-error") ?? "") != before, "the error");
        Assert.Contains("limit is 512", browser.Find("#status").Text);
        Assert.Empty(browser.FindAll("#grid .cell"));
        Assert.Empty(browser.FindAll("#tokens .tok"));
        browser.Screenshot("14-error-clears-view");

        // The same in the matrix view: no stale matrix under the error.
        TypeText(browser, "the bank of the river");
        browser.Find("#grid .cell[data-layer='1'][data-head='1']").Click();
        browser.WaitFor(() => browser.FindAll("#matrix-left span").Count == 5, "the matrix");
        before = browser.Find("body").GetAttribute("data-error") ?? "";
        browser.Driver.ExecuteScript("const t = document.getElementById('text'); t.value = arguments[0]; t.dispatchEvent(new Event('input'));",
            string.Join(' ', Enumerable.Repeat("word", 600)));
        browser.WaitFor(() => (browser.Find("body").GetAttribute("data-error") ?? "") != before, "the error");
        Assert.Empty(browser.FindAll("#matrix-left span"));
        Assert.Equal(0, browser.Find("#matrix-canvas").Size.Width - 2); // the 1 px border is all that is left
        Assert.Empty(browser.PolicyViolations());
    }

    [BrowserFact]
    public async Task AnAddressRestoresTheViewItNames()
    {
        var (app, url) = await StartAsync(new SyntheticSource(3, 4));
        await using var _ = app;
        using var browser = new Browser();
        browser.Driver.Navigate().GoToUrl(url + "#view=matrix&layer=1&head=2&text=" + Uri.EscapeDataString("the bank of the river"));
        browser.WaitFor(() => browser.Find("#view-matrix").Displayed && browser.FindAll("#matrix-left span").Count == 5, "the matrix the address names");
        Assert.Equal("the bank of the river", browser.Find("#text").GetAttribute("value"));
        Assert.Equal("1", browser.Find("#matrix-layer").GetAttribute("value"));
        Assert.Equal("2", browser.Find("#matrix-head").GetAttribute("value"));
        browser.Screenshot("15-shared-matrix");

        // Changing the view changes the address, which restores it in a fresh page.
        browser.Driver.ExecuteScript("const s = document.getElementById('matrix-head'); s.value = '3'; s.dispatchEvent(new Event('change'));");
        browser.WaitFor(() => browser.Driver.Url.Contains("head=3", StringComparison.Ordinal), "the address to follow the head");
        string shared = browser.Driver.Url;
        Assert.Contains("view=matrix", shared);
        Assert.Contains("layer=1", shared);

        using var second = new Browser();
        second.Driver.Navigate().GoToUrl(shared);
        second.WaitFor(() => second.Find("#view-matrix").Displayed && second.FindAll("#matrix-left span").Count == 5, "the shared matrix in a second browser");
        Assert.Equal("3", second.Find("#matrix-head").GetAttribute("value"));

        // The head view with its picked heads, and the token view with its token.
        second.Driver.Navigate().GoToUrl(url + "#view=head&layer=2&heads=1,3&text=" + Uri.EscapeDataString("a b c d"));
        second.Driver.Navigate().Refresh();
        second.WaitFor(() => second.Find("#view-head").Displayed && second.Find("#head-info").Text.Contains("heads 1, 3", StringComparison.Ordinal), "the head view with heads 1 and 3");
        Assert.Contains("Layer 2", second.Find("#head-info").Text);
        second.Driver.Navigate().GoToUrl(url + "#view=token&token=2&text=" + Uri.EscapeDataString("a b c d"));
        second.WaitFor(() => second.Find("#view-token").Displayed && second.Find("#token-title").Text.StartsWith("Token 2", StringComparison.Ordinal), "the token view of token 2");

        // Nonsense in the address falls back to the defaults instead of breaking the page.
        second.Driver.Navigate().GoToUrl(url + "#view=nothing&layer=99&head=-1");
        second.Driver.Navigate().Refresh();
        second.WaitFor(() => second.FindAll("#grid .cell").Count == 12, "the model view");
        Assert.Empty(second.PolicyViolations());
    }
}
