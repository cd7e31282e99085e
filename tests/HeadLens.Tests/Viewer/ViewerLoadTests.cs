using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using HeadLens.Checkpoints;
using HeadLens.Cli.Viewer;
using Xunit.Abstractions;

namespace HeadLens.Tests.Viewer;

/// <summary>
/// The viewer under load, over a real loopback socket: the embedded model behind Kestrel, 200 requests of every
/// kind the page sends, on ten texts, 20 at a time. Every one must answer 200 with the JSON it promises.
/// (bench/viewer-load.sh measures the same against `headlens serve` for BENCHMARKS.md.)
/// </summary>
public class ViewerLoadTests(ITestOutputHelper output)
{
    private static readonly string[] Texts =
    [
        "In the beginning God created the heaven and the earth.",
        "And the earth was without form, and void; and darkness was upon the face of the deep.",
        "And God said, Let there be light: and there was light.",
        "And God saw the light, that it was good: and God divided the light from the darkness.",
        "And God called the light Day, and the darkness he called Night.",
        "And the evening and the morning were the first day.",
        "And God said, Let there be a firmament in the midst of the waters.",
        "And God made the firmament, and divided the waters which were under the firmament.",
        "And God called the firmament Heaven.",
        "Let the waters under the heaven be gathered together unto one place, and let the dry land appear.",
    ];

    [Fact]
    public async Task TwoHundredRequestsTwentyAtATimeAllAnswer()
    {
        const int requests = 200, concurrent = 20;
        var (model, tokenizer) = ModelFiles.Load(Path.Combine(AppContext.BaseDirectory, "Data", "kjv-model"));
        var app = ViewerServer.Build(new ModelSource(model, tokenizer, "kjv-model"), new ViewerOptions { Port = 0 });
        await app.StartAsync();
        await using var _ = app;
        using var handler = new SocketsHttpHandler { MaxConnectionsPerServer = concurrent };
        using var client = new HttpClient(handler) { BaseAddress = new Uri(app.Urls.Single()), Timeout = TimeSpan.FromSeconds(120) };
        using var gate = new SemaphoreSlim(concurrent);
        var latencies = new double[requests];
        var failures = new List<string>();

        async Task One(int n)
        {
            await gate.WaitAsync();
            try
            {
                string text = Texts[n % Texts.Length];
                (string path, object body, string field) = (n % 5) switch
                {
                    0 => ("/api/tokenize", (object)new { text }, "tokens"),
                    1 => ("/api/heads", new { text }, "entries"),
                    2 => ("/api/pattern", new { text, layer = n % 4, head = (n / 5) % 4 }, "patterns"),
                    3 => ("/api/token", new { text, index = n % 10 }, "layers"),
                    _ => ("/api/compare", new { a = text, b = Texts[(n + 1) % Texts.Length] + " " + text.Split(' ')[1] }, "cosine"),
                };
                var clock = Stopwatch.StartNew();
                using var response = await client.PostAsJsonAsync(path, body);
                string json = await response.Content.ReadAsStringAsync();
                latencies[n] = clock.Elapsed.TotalMilliseconds;
                if (response.StatusCode != HttpStatusCode.OK || !JsonDocument.Parse(json).RootElement.TryGetProperty(field, out var _))
                {
                    lock (failures)
                    {
                        failures.Add($"#{n} {path}: HTTP {(int)response.StatusCode} {json[..Math.Min(json.Length, 200)]}");
                    }
                }
            }
            finally
            {
                gate.Release();
            }
        }

        var wall = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, requests).Select(One));
        wall.Stop();
        Array.Sort(latencies);
        output.WriteLine($"{requests} requests, {concurrent} at a time: {wall.Elapsed.TotalSeconds:F2} s, p50 {latencies[requests / 2]:F0} ms, " +
            $"p99 {latencies[(requests * 99 / 100) - 1]:F0} ms, {failures.Count} errors");
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(5)));
    }
}
