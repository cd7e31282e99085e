using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using HeadLens.Cli.Viewer;
using Microsoft.AspNetCore.TestHost;

namespace HeadLens.Tests.Viewer;

/// <summary>
/// Loopback by default, no path reaches the file system, token text stays data: checked on a real Kestrel socket
/// (raw request lines, so no client normalises the path first) and in memory.
/// </summary>
public class ViewerSecurityTests
{
    public static readonly TheoryData<string> TraversalPaths = new()
    {
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "/..%5c..%5c..%5cetc%5cpasswd",
        "/viewer.js/../../../etc/passwd",
        "/api/../../../../etc/passwd",
        "/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
        "//etc/passwd",
        "/etc/passwd",
        "/canary-viewer.txt",
        "/../canary-viewer.txt",
        "/%2e%2e/canary-viewer.txt",
        "/HeadLens.Cli.dll",
        "/index.html",
        "/Viewer/Assets/viewer.js",
    };

    private static async Task<(int Status, string Response)> RawGetAsync(Uri server, string target, string? host = null)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(server.Host, server.Port);
        using var stream = client.GetStream();
        string request = $"GET {target} HTTP/1.1\r\nHost: {host ?? server.Authority}\r\nConnection: close\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request));
        using var reader = new StreamReader(stream, Encoding.UTF8);
        string response = await reader.ReadToEndAsync();
        int status = int.Parse(response.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        return (status, response);
    }

    private static async Task<(Microsoft.AspNetCore.Builder.WebApplication App, Uri Url)> StartKestrelAsync()
    {
        var app = ViewerServer.Build(new SyntheticSource(), new ViewerOptions { Port = 0 });
        await app.StartAsync();
        return (app, new Uri(app.Urls.Single()));
    }

    [Fact]
    public void TheDefaultHostIsLoopback()
    {
        Assert.Equal("127.0.0.1", new ViewerOptions().Host);
        Assert.True(ViewerServer.IsLoopback("127.0.0.1"));
        Assert.True(ViewerServer.IsLoopback("[::1]"));
        Assert.True(ViewerServer.IsLoopback("localhost"));
        Assert.False(ViewerServer.IsLoopback("0.0.0.0"));
        Assert.False(ViewerServer.IsLoopback("192.168.1.5"));
    }

    [Fact]
    public async Task AServerWithDefaultOptionsListensOnLoopbackOnly()
    {
        var (app, url) = await StartKestrelAsync();
        await using (app)
        {
            Assert.True(IPAddress.IsLoopback(IPAddress.Parse(url.Host)), $"listening on {url}");
            using var client = new HttpClient { BaseAddress = url };
            var model = await client.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/model");
            Assert.Equal("synthetic", model.GetProperty("name").GetString());
        }
    }

    [Fact]
    public async Task TraversalOverARealSocketNeverReadsAFile()
    {
        // A canary next to the app: the server's content root. Its text must never come back.
        string canary = Path.Combine(AppContext.BaseDirectory, "canary-viewer.txt");
        string secret = "canary-" + Guid.NewGuid().ToString("N");
        await File.WriteAllTextAsync(canary, secret);
        var (app, url) = await StartKestrelAsync();
        await using (app)
        {
            foreach (string path in TraversalPaths)
            {
                var (status, response) = await RawGetAsync(url, path);
                Assert.True(status is 400 or 404, $"{path}: HTTP {status}");
                Assert.DoesNotContain("root:", response);
                Assert.DoesNotContain(secret, response);
            }
        }
    }

    [Theory]
    [MemberData(nameof(TraversalPaths))]
    public async Task TraversalInMemoryIs404(string path)
    {
        await using var host = await ViewerHost.StartAsync();
        // Sets the path as given, undecoded and unnormalised: what reaches routing if nothing cleaned it up.
        var context = await host.Server.SendAsync(c =>
        {
            c.Request.Method = "GET";
            c.Request.Path = new Microsoft.AspNetCore.Http.PathString(path.StartsWith("//", StringComparison.Ordinal) ? path[1..] : path);
        });
        Assert.Equal(404, context.Response.StatusCode);
        string body = await new StreamReader(context.Response.Body).ReadToEndAsync();
        Assert.Contains("not found", body);
    }

    [Fact]
    public async Task AForeignHostHeaderIsRefused()
    {
        var (app, url) = await StartKestrelAsync();
        await using (app)
        {
            var (refused, _) = await RawGetAsync(url, "/api/model", host: "attacker.example");
            Assert.Equal(400, refused);
            var (allowed, _) = await RawGetAsync(url, "/api/model", host: "localhost:" + url.Port);
            Assert.Equal(200, allowed);
        }
    }

    [Fact]
    public async Task ThePageIsAFixedAssetThatNeverInterpolatesData()
    {
        await using var host = await ViewerHost.StartAsync();
        byte[] before = await host.Client.GetByteArrayAsync("/");
        using var posted = await host.Client.PostAsJsonAsync("/api/tokenize", new { text = "<script>alert(1)</script><img src=x onerror=alert(2)>" });
        string json = await posted.Content.ReadAsStringAsync();
        // Token text comes back as JSON data, with the HTML-significant characters escaped.
        Assert.DoesNotContain("<", json);
        Assert.Contains("\\u003C", json);
        byte[] after = await host.Client.GetByteArrayAsync("/");
        Assert.Equal(ViewerServer.ReadAsset("index.html"), before);
        Assert.Equal(before, after);
        using var page = await host.Client.GetAsync("/");
        Assert.Equal("text/html; charset=utf-8", page.Content.Headers.ContentType?.ToString());
        string policy = page.Headers.GetValues("Content-Security-Policy").Single();
        Assert.Contains("script-src 'self'", policy);
        Assert.DoesNotContain("unsafe-inline", policy);
        Assert.Equal("nosniff", page.Headers.GetValues("X-Content-Type-Options").Single());
    }

    [Fact]
    public void TheScriptWritesDataOnlyAsText()
    {
        string script = Encoding.UTF8.GetString(ViewerServer.ReadAsset("viewer.js"));
        foreach (string sink in new[] { "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function" })
        {
            Assert.DoesNotContain(sink, script);
        }

        Assert.Contains("textContent", script);
        Assert.DoesNotContain("http://", script.Replace("http://www.w3.org/2000/svg", "", StringComparison.Ordinal));
        Assert.DoesNotContain("https://", script);
    }
    public static readonly TheoryData<string, string, string?, string?, string?, int> Requests = new()
    {
        // method, path, Content-Type, Origin, Sec-Fetch-Site, status
        { "POST", "/api/tokenize", "application/json", null, null, 200 },                       // curl, a script
        { "POST", "/api/tokenize", "application/json; charset=utf-8", "http://localhost", "same-origin", 200 }, // the page
        { "POST", "/api/tokenize", "application/json", null, "none", 200 },                     // typed by the user
        { "POST", "/api/tokenize", "text/plain", "http://evil.example", "cross-site", 403 },   // the simple POST
        { "POST", "/api/tokenize", "text/plain", "http://evil.example", null, 403 },           // an older browser
        { "POST", "/api/tokenize", "application/json", "http://evil.example", null, 403 },
        { "POST", "/api/tokenize", "application/json", "null", null, 403 },                    // a sandboxed frame or file://
        { "POST", "/api/tokenize", "application/json", "http://localhost:8080", null, 403 },    // another local port
        { "POST", "/api/tokenize", "application/json", null, "same-site", 403 },                // same site, other origin
        { "POST", "/api/tokenize", "application/json", null, "cross-site", 403 },
        { "GET", "/api/model", null, null, "cross-site", 403 },
        { "GET", "/api/model", null, "http://evil.example", null, 403 },
        { "POST", "/api/tokenize", "text/plain", null, null, 415 },
        { "POST", "/api/tokenize", "application/x-www-form-urlencoded", null, null, 415 },
        { "POST", "/api/heads", "multipart/form-data; boundary=x", null, null, 415 },
        { "POST", "/api/pattern", null, null, null, 415 },
        { "POST", "/api/generate", "application/jsonp", null, null, 415 },
        { "GET", "/api/heads", null, null, null, 405 },
        { "PUT", "/api/tokenize", "application/json", null, null, 405 },
        { "DELETE", "/api/compare", null, null, null, 405 },
        { "POST", "/api/model", "application/json", null, null, 405 },
        { "POST", "/", "application/json", null, null, 405 },
        { "PUT", "/viewer.js", null, null, null, 405 },
        { "HEAD", "/api/model", null, null, null, 405 },
        { "GET", "/api/model", null, null, null, 200 },
        { "GET", "/", null, null, "cross-site", 200 },                                        // a link to the page
    };

    [Theory]
    [MemberData(nameof(Requests))]
    public async Task OnlyTheViewersOwnJsonRequestsReachTheModel(string method, string path, string? contentType, string? origin, string? site, int status)
    {
        var source = new CountingSource(new SyntheticSource());
        var app = ViewerServer.Build(source, new ViewerOptions(), builder => builder.WebHost.UseTestServer());
        await app.StartAsync();
        await using var _ = app;
        using var client = app.GetTestClient();
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        if (method is not ("GET" or "HEAD"))
        {
            request.Content = new ByteArrayContent(Encoding.UTF8.GetBytes("{\"text\":\"the bank of the river\"}"));
            if (contentType is not null)
            {
                request.Content.Headers.TryAddWithoutValidation("Content-Type", contentType);
            }
        }

        if (origin is not null)
        {
            request.Headers.TryAddWithoutValidation("Origin", origin);
        }

        if (site is not null)
        {
            request.Headers.TryAddWithoutValidation("Sec-Fetch-Site", site);
        }

        using var response = await client.SendAsync(request);
        Assert.Equal(status, (int)response.StatusCode);
        if (status != 200)
        {
            // A refusal is one JSON line that says why, and the model never ran.
            Assert.StartsWith("application/json", response.Content.Headers.ContentType?.ToString());
            string error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetString()!;
            Assert.Contains(status switch { 403 => "refused", 415 => "application/json", _ => "takes" }, error);
            Assert.DoesNotContain("\n", error);
            Assert.Equal(0, source.Calls);
        }

        if (status == 405)
        {
            Assert.Equal(RequestGuard.AllowFor(path), string.Join(", ", response.Content.Headers.Allow));
        }
    }

    [Fact]
    public async Task EveryMappedPathAnswersItsOwnMethod()
    {
        await using var host = await ViewerHost.StartAsync();
        foreach (var (path, method) in RequestGuard.Methods)
        {
            using var request = new HttpRequestMessage(new HttpMethod(method), path);
            if (method == "POST")
            {
                request.Content = new StringContent("{}", Encoding.UTF8, "application/json");
            }

            using var response = await host.Client.SendAsync(request);
            // GETs answer (the synthetic source has no weights to compose: 501 with its reason); POSTs read the body
            // ("{}" names no input: 400 with its reason, not 404 or 405).
            var answer = path == "/api/compositions" ? HttpStatusCode.NotImplemented : HttpStatusCode.OK;
            Assert.True(method == "GET" ? response.StatusCode == answer : response.StatusCode == HttpStatusCode.BadRequest,
                $"{method} {path}: HTTP {(int)response.StatusCode}");
        }
    }

    [Fact]
    public void MaxTokensIsBoundedSoThatOneLayerFitsAnArray()
    {
        var twelve = new SourceInfo("m", 12, 12, 768, 100_000, Causal: true);
        Assert.Equal(ViewerOptions.MaxTokensLimit, ViewerServer.CheckMaxTokens(twelve, ViewerOptions.MaxTokensLimit));
        Assert.Equal(512, ViewerServer.CheckMaxTokens(twelve with { MaxTokens = 512 }, 4096)); // the model's context lowers it
        var over = Assert.Throws<HeadLensException>(() => ViewerServer.CheckMaxTokens(twelve, 16384));
        Assert.Contains("--max-tokens", over.Message);
        // 200 heads × 4096² = 3.4 billion values would wrap an int: the most that fits is named.
        var wide = Assert.Throws<HeadLensException>(() => ViewerServer.CheckMaxTokens(twelve with { Heads = 200 }, 4096));
        int most = (int)Math.Sqrt((double)Array.MaxLength / 200);
        Assert.Contains($"at most {most}", wide.Message);
        Assert.True(200L * most * most <= Array.MaxLength);
        Assert.Equal(most, ViewerServer.CheckMaxTokens(twelve with { Heads = 200 }, most));

        var (code, _, error) = global::HeadLens.Tests.Cli.CliTests.Run("serve", "--synthetic", "2x2", "--max-tokens", "16384");
        Assert.NotEqual(0, code);
        Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("max-tokens", error);
    }

    /// <summary>Counts every call that reaches the model.</summary>
    private sealed class CountingSource(IAttentionSource inner) : IAttentionSource
    {
        private int calls;

        public int Calls => calls;

        public SourceInfo Info => inner.Info;

        public TokenizedText Tokenize(string text)
        {
            Interlocked.Increment(ref calls);
            return inner.Tokenize(text);
        }

        public string TokenText(int id)
        {
            Interlocked.Increment(ref calls);
            return inner.TokenText(id);
        }

        public void Patterns(int[] ids, int layer, ReadOnlySpan<int> heads, int firstQuery, int queries, Span<float> destination)
        {
            Interlocked.Increment(ref calls);
            inner.Patterns(ids, layer, heads, firstQuery, queries, destination);
        }

        public global::HeadLens.Analysis.HeadProbes Probes(int[] ids)
        {
            Interlocked.Increment(ref calls);
            return inner.Probes(ids);
        }

        public float[][] ContextVectors(int[] ids, int position)
        {
            Interlocked.Increment(ref calls);
            return inner.ContextVectors(ids, position);
        }

        public global::HeadLens.Analysis.HeadAblationResult Ablate(int[] ids, int layer, global::HeadLens.Analysis.AblationMethod method)
        {
            Interlocked.Increment(ref calls);
            return inner.Ablate(ids, layer, method);
        }

        public global::HeadLens.Analysis.PatchingResult Patch(int[] clean, int[] corrupted, int layer)
        {
            Interlocked.Increment(ref calls);
            return inner.Patch(clean, corrupted, layer);
        }

        public global::HeadLens.Analysis.PatchingResult Paths(int[] clean, int[] corrupted, int layer, int receiverLayer, int receiverHead)
        {
            Interlocked.Increment(ref calls);
            return inner.Paths(clean, corrupted, layer, receiverLayer, receiverHead);
        }

        public IReadOnlyList<global::HeadLens.Analysis.Composition> Compositions()
        {
            Interlocked.Increment(ref calls);
            return inner.Compositions();
        }

        public global::HeadLens.Analysis.LogitLensResult Lens(int[] ids)
        {
            Interlocked.Increment(ref calls);
            return inner.Lens(ids);
        }

        public IReadOnlyList<int> Generate(int[] prompt, int maxTokens, float temperature, int seed)
        {
            Interlocked.Increment(ref calls);
            return inner.Generate(prompt, maxTokens, temperature, seed);
        }
    }
}
