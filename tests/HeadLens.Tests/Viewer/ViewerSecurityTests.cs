using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using HeadLens.Cli.Viewer;

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
}
