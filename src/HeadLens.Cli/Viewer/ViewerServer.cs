using System.Net;
using System.Reflection;
using System.Text.Json;
using System.Text.RegularExpressions;
using HeadLens.Analysis;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace HeadLens.Cli.Viewer;

/// <summary>A request the server refuses, with the HTTP status it answers (400, 404, 413) and one line saying why.</summary>
public sealed class ViewerException(int status, string message) : Exception(message)
{
    public int Status { get; } = status;
}

/// <summary>The JSON body every POST endpoint reads; each endpoint uses the fields it needs.</summary>
public sealed record ViewerRequest
{
    public string? Text { get; init; }

    public int[]? Ids { get; init; }

    public int? Layer { get; init; }

    public int? Head { get; init; }

    public int[]? Heads { get; init; }

    public int? Index { get; init; }

    public int? MaxTokens { get; init; }

    public float? Temperature { get; init; }

    public int? Seed { get; init; }

    public string? A { get; init; }

    public string? B { get; init; }

    public string? Word { get; init; }

    /// <summary>/api/patch and /api/paths: the corrupted text patched from the clean one (<see cref="Text"/>).</summary>
    public string? Corrupted { get; init; }

    /// <summary>/api/paths: the receiving head, [layer, head].</summary>
    public int[]? Receiver { get; init; }

    /// <summary>How /api/ablate removes a head: "zero" (default) or "mean".</summary>
    public string? Method { get; init; }
}

/// <summary>
/// The viewer: a minimal-API server over one <see cref="IAttentionSource"/> fixed at startup. The page and its script
/// are resources inside this assembly, served from a fixed table of three names, so no request path ever reaches the
/// file system. Every answer is JSON (errors too: {"error": "..."}) except the page itself.
/// </summary>
public static partial class ViewerServer
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private static readonly Dictionary<string, (string ContentType, byte[] Content)> Assets = LoadAssets();

    /// <summary>
    /// Builds (does not start) the server. <paramref name="configure"/> runs last, so a test can swap Kestrel for an
    /// in-memory TestServer.
    /// </summary>
    public static WebApplication Build(IAttentionSource source, ViewerOptions options, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = "HeadLens.Viewer", ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = options.MaxBodyBytes;
            kestrel.AddServerHeader = false;
            Listen(kestrel, options.Host, options.Port);
        });
        // Loopback servers answer only to loopback names: a page elsewhere cannot reach this one by DNS rebinding.
        builder.Services.AddHostFiltering(filter =>
        {
            filter.AllowedHosts = IsLoopback(options.Host) ? ["localhost", "127.0.0.1", "[::1]"] : ["*"];
        });
        configure?.Invoke(builder);
        var app = builder.Build();
        app.UseHostFiltering();
        // Answers the framework gives without a body (405 for a wrong method, 400 from host filtering) get one JSON line too.
        app.UseStatusCodePages(async pages =>
        {
            var response = pages.HttpContext.Response;
            await Results.Json(new { error = $"HTTP {response.StatusCode}" }, Json, statusCode: response.StatusCode).ExecuteAsync(pages.HttpContext);
        });
        app.Use(async (context, next) =>
        {
            var headers = context.Response.Headers;
            headers.ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
            headers.XContentTypeOptions = "nosniff";
            headers["Referrer-Policy"] = "no-referrer";
            headers.CacheControl = "no-store";
            try
            {
                await next(context);
            }
            catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
            {
                // The client has gone: there is no one to answer.
            }
            catch (Exception error) when (!context.Response.HasStarted)
            {
                (int status, string message) = error switch
                {
                    ViewerException viewer => (viewer.Status, viewer.Message),
                    HeadLensException input => (StatusCodes.Status400BadRequest, input.Message),
                    Microsoft.AspNetCore.Http.BadHttpRequestException bad => (bad.StatusCode, bad.StatusCode == StatusCodes.Status413PayloadTooLarge
                        ? $"the request body is larger than {options.MaxBodyBytes} bytes" : "bad request"),
                    JsonException => (StatusCodes.Status400BadRequest, "the request body is not the JSON this endpoint reads"),
                    _ => (StatusCodes.Status500InternalServerError, "internal error: " + error.GetType().Name),
                };
                context.Response.Clear();
                await Results.Json(new { error = message }, Json, statusCode: status).ExecuteAsync(context);
            }
        });
        app.Use(async (context, next) =>
        {
            if (RequestGuard.Check(context.Request) is { } refusal)
            {
                if (refusal.Status == StatusCodes.Status405MethodNotAllowed)
                {
                    context.Response.Headers.Allow = RequestGuard.AllowFor(context.Request.Path.Value ?? "");
                }

                await Results.Json(new { error = refusal.Message }, Json, statusCode: refusal.Status).ExecuteAsync(context);
                return;
            }

            await next(context);
        });

        var views = new AttentionViews(source);
        var limits = new Limits(source, options);
        foreach (var (path, asset) in Assets)
        {
            app.MapGet(path, () => Results.Bytes(asset.Content, asset.ContentType));
        }

        app.MapGet("/api/model", () => Results.Json(ModelDocument(source, limits.MaxTokens, options), Json));
        var gate = new ComputeGate();
        app.Lifetime.ApplicationStopped.Register(gate.Dispose);
        app.MapPost("/api/tokenize", async (HttpRequest request) =>
        {
            var body = await ReadAsync(request, options);
            var input = await gate.RunAsync(() => limits.Input(body), request.HttpContext.RequestAborted);
            return Results.Json(new { ids = input.Ids, tokens = input.Tokens }, Json);
        });
        app.MapPost("/api/heads", async (HttpRequest request) =>
        {
            var body = await ReadAsync(request, options);
            return Results.Json(await gate.RunAsync(() => views.Heads(limits.Input(body)), request.HttpContext.RequestAborted), Json);
        });
        app.MapPost("/api/pattern", async (HttpRequest request) =>
        {
            var body = await ReadAsync(request, options);
            return Results.Json(await gate.RunAsync(() =>
            {
                var input = limits.Input(body);
                int layer = limits.Layer(body.Layer);
                int[] heads = limits.Heads(body, input.Ids.Length);
                return views.Pattern(input, layer, heads);
            }, request.HttpContext.RequestAborted), Json);
        });
        app.MapPost("/api/token", async (HttpRequest request) =>
        {
            var body = await ReadAsync(request, options);
            return Results.Json(await gate.RunAsync(() =>
            {
                var input = limits.Input(body);
                int index = body.Index ?? throw new ViewerException(400, "give the token's index");
                if (index < 0 || index >= input.Ids.Length)
                {
                    throw new ViewerException(400, $"index {index} is outside the {input.Ids.Length} tokens");
                }

                return views.Token(input, index);
            }, request.HttpContext.RequestAborted), Json);
        });
        app.MapPost("/api/generate", async (HttpContext context) =>
        {
            var body = await ReadAsync(context.Request, options);
            await GenerateAsync(context, views, limits, body, options, gate);
        });
        app.MapPost("/api/compare", async (HttpRequest request) =>
        {
            var body = await ReadAsync(request, options);
            return Results.Json(await gate.RunAsync(() => Compare(views, limits, body), request.HttpContext.RequestAborted), Json);
        });
        app.MapPost("/api/ablate", async (HttpRequest request) =>
        {
            var body = await ReadAsync(request, options);
            return Results.Json(await gate.RunAsync(() => views.Ablate(limits.Input(body), limits.Layer(body.Layer), AblationMethodOf(body.Method)),
                request.HttpContext.RequestAborted), Json);
        });
        app.MapPost("/api/patch", async (HttpRequest request) =>
        {
            var body = await ReadAsync(request, options);
            string corrupted = body.Corrupted ?? throw new ViewerException(400, "give the corrupted text: corrupted");
            return Results.Json(await gate.RunAsync(() => views.Patch(limits.Input(body), limits.Input(new ViewerRequest { Text = corrupted }), limits.Layer(body.Layer)),
                request.HttpContext.RequestAborted), Json);
        });
        app.MapPost("/api/paths", async (HttpRequest request) =>
        {
            var body = await ReadAsync(request, options);
            string corrupted = body.Corrupted ?? throw new ViewerException(400, "give the corrupted text: corrupted");
            var (receiverLayer, receiverHead) = limits.Receiver(body.Receiver);
            int layer = limits.Layer(body.Layer);
            return Results.Json(await gate.RunAsync(() => views.Paths(limits.Input(body), limits.Input(new ViewerRequest { Text = corrupted }), layer, receiverLayer, receiverHead),
                request.HttpContext.RequestAborted), Json);
        });
        app.MapGet("/api/compositions", async (HttpRequest request) =>
            Results.Json(await gate.RunAsync(views.Compositions, request.HttpContext.RequestAborted), Json));
        app.MapPost("/api/lens", async (HttpRequest request) =>
        {
            var body = await ReadAsync(request, options);
            return Results.Json(await gate.RunAsync(() => views.Lens(limits.Input(body)), request.HttpContext.RequestAborted), Json);
        });
        // Every other path, file-like or not, is 404: nothing maps a path to a file.
        app.MapFallback("{**path}", () =>
            Results.Json(new { error = "not found" }, Json, statusCode: StatusCodes.Status404NotFound));
        return app;
    }

    public static object ModelDocument(IAttentionSource source, int maxTokens, ViewerOptions options) => new
    {
        name = source.Info.Name,
        layers = source.Info.Layers,
        heads = source.Info.Heads,
        channels = source.Info.Channels,
        causal = source.Info.Causal,
        maxTokens,
        maxGeneratedTokens = options.MaxGeneratedTokens,
        maxPatternValues = options.MaxPatternValues,
        kinds = HeadKinds.All,
    };

    /// <summary>
    /// The longest input the server takes: the option, lowered to the model's context. Refused (one line naming
    /// --max-tokens) when one layer's patterns [H, T, T] at that length would not fit a .NET array: the model's own
    /// analysis pass may hold a layer when a hook asks for it, and an int length must never wrap.
    /// </summary>
    public static int CheckMaxTokens(SourceInfo info, int maxTokens)
    {
        if (maxTokens < 1 || maxTokens > ViewerOptions.MaxTokensLimit)
        {
            throw new HeadLensException($"--max-tokens must be in [1, {ViewerOptions.MaxTokensLimit}], got {maxTokens}");
        }

        int tokens = Math.Min(maxTokens, info.MaxTokens);
        long values = (long)info.Heads * tokens * tokens;
        if (values > Array.MaxLength)
        {
            int most = (int)Math.Sqrt((double)Array.MaxLength / info.Heads);
            throw new HeadLensException($"--max-tokens {maxTokens}: one layer's patterns on {info.Heads} heads would hold {values} values, more than an array can; use at most {most}");
        }

        return tokens;
    }

    /// <summary>True when the address is a loopback address or the name localhost.</summary>
    public static bool IsLoopback(string host) =>
        host.Equals("localhost", StringComparison.OrdinalIgnoreCase)
        || (IPAddress.TryParse(host.Trim('[', ']'), out var address) && IPAddress.IsLoopback(address));

    private static void Listen(KestrelServerOptions kestrel, string host, int port)
    {
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase))
        {
            kestrel.Listen(IPAddress.Loopback, port);
        }
        else if (IPAddress.TryParse(host.Trim('[', ']'), out var address))
        {
            kestrel.Listen(address, port);
        }
        else
        {
            throw new HeadLensException($"--host '{host}' is not an IP address or localhost");
        }
    }

    /// <summary>Reads at most MaxBodyBytes (whatever Content-Length claims), then parses the JSON.</summary>
    private static async Task<ViewerRequest> ReadAsync(HttpRequest request, ViewerOptions options)
    {
        if (request.ContentLength > options.MaxBodyBytes)
        {
            throw new ViewerException(413, $"the request body is larger than {options.MaxBodyBytes} bytes");
        }

        var buffer = new byte[Math.Min(options.MaxBodyBytes + 1, 64 * 1024)];
        using var body = new MemoryStream();
        int read;
        while ((read = await request.Body.ReadAsync(buffer)) > 0)
        {
            body.Write(buffer, 0, read);
            if (body.Length > options.MaxBodyBytes)
            {
                throw new ViewerException(413, $"the request body is larger than {options.MaxBodyBytes} bytes");
            }
        }

        if (body.Length == 0)
        {
            throw new ViewerException(400, "the request has no JSON body");
        }

        return JsonSerializer.Deserialize<ViewerRequest>(body.GetBuffer().AsSpan(0, (int)body.Length), Json)
            ?? throw new ViewerException(400, "the request body is null");
    }

    /// <summary>
    /// Streams newline-delimited JSON: the prompt, then each new token with where it looks at every layer, then done.
    /// The page draws each line as it arrives.
    /// </summary>
    private static async Task GenerateAsync(HttpContext context, AttentionViews views, Limits limits, ViewerRequest body, ViewerOptions options, ComputeGate gate)
    {
        var cancel = context.RequestAborted;
        var prompt = await gate.RunAsync(() => limits.Input(body), cancel);
        int count = body.MaxTokens ?? 16;
        if (count < 1 || count > options.MaxGeneratedTokens)
        {
            throw new ViewerException(400, $"maxTokens must be in [1, {options.MaxGeneratedTokens}], got {count}");
        }

        float temperature = body.Temperature ?? 0f;
        if (!float.IsFinite(temperature) || temperature < 0 || temperature > 5)
        {
            throw new ViewerException(400, "temperature must be in [0, 5]");
        }

        var source = views.Source;
        count = Math.Min(count, limits.MaxTokens - prompt.Ids.Length);
        var generated = count <= 0 ? [] : await gate.RunAsync(() => source.Generate(prompt.Ids, count, temperature, body.Seed ?? 0), cancel);
        context.Response.ContentType = "application/x-ndjson; charset=utf-8";
        await WriteLineAsync(context, new { type = "prompt", ids = prompt.Ids, tokens = prompt.Tokens });
        var ids = prompt.Ids.ToList();
        foreach (int id in generated)
        {
            ids.Add(id);
            int[] sequence = [.. ids];
            var (rows, strongest, token) = await gate.RunAsync(() =>
            {
                var (rows, strongest) = views.LastRow(sequence);
                return (rows, strongest, source.TokenText(id));
            }, cancel);
            await WriteLineAsync(context, new { type = "token", index = ids.Count - 1, id, token, layers = rows, strongest });
        }

        await WriteLineAsync(context, new { type = "done", count = generated.Count });
    }

    private static async Task WriteLineAsync(HttpContext context, object line)
    {
        await context.Response.WriteAsync(JsonSerializer.Serialize(line, Json) + "\n", context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);
    }

    /// <summary>
    /// The word both texts share (the one given, else the longest common word), its last occurrence in each, and the
    /// cosine similarity of the context vectors of its last token. A causal model's vector at a position depends only
    /// on the text up to it, so each side runs on the text up to the end of the word.
    /// </summary>
    private static CompareView Compare(AttentionViews views, Limits limits, ViewerRequest body)
    {
        string a = body.A ?? throw new ViewerException(400, "give two texts: a and b");
        string b = body.B ?? throw new ViewerException(400, "give two texts: a and b");
        var fullA = limits.Input(new ViewerRequest { Text = a });
        var fullB = limits.Input(new ViewerRequest { Text = b });
        string word = string.IsNullOrWhiteSpace(body.Word) ? CommonWord(a, b) : body.Word.Trim();
        int endA = EndOfLast(a, word), endB = EndOfLast(b, word);
        if (endA < 0 || endB < 0)
        {
            throw new ViewerException(400, $"the word '{word}' is not in {(endA < 0 ? "the first" : "the second")} text");
        }

        var prefixA = views.Source.Tokenize(a[..endA]);
        var prefixB = views.Source.Tokenize(b[..endB]);
        if (prefixA.Ids.Length == 0 || prefixB.Ids.Length == 0)
        {
            throw new ViewerException(400, $"the word '{word}' encodes to no tokens");
        }

        var cosine = views.Cosine(prefixA.Ids, prefixA.Ids.Length - 1, prefixB.Ids, prefixB.Ids.Length - 1);
        var depths = Enumerable.Range(0, cosine.Length).Select(l => l == 0 ? "embeddings" : $"after layer {l - 1}").ToArray();
        return new CompareView(word, new CompareSide(fullA.Tokens, prefixA.Ids.Length - 1), new CompareSide(fullB.Tokens, prefixB.Ids.Length - 1), cosine, depths);
    }

    private static AblationMethod AblationMethodOf(string? method) => method switch
    {
        null or "zero" => AblationMethod.Zero,
        "mean" => AblationMethod.Mean,
        _ => throw new ViewerException(400, $"method must be zero or mean, got '{method}'"),
    };

    private static string CommonWord(string a, string b)
    {
        var inB = Words().Matches(b).Select(match => match.Value).ToHashSet(StringComparer.Ordinal);
        return Words().Matches(a).Select(match => match.Value).Where(inB.Contains)
            .OrderByDescending(word => word.Length).FirstOrDefault()
            ?? throw new ViewerException(400, "the two texts share no word: give one with 'word'");
    }

    private static int EndOfLast(string text, string word)
    {
        var matches = Regex.Matches(text, $@"(?<![\p{{L}}\p{{N}}_]){Regex.Escape(word)}(?![\p{{L}}\p{{N}}_])", RegexOptions.None, TimeSpan.FromSeconds(1));
        return matches.Count == 0 ? -1 : matches[^1].Index + matches[^1].Length;
    }

    [GeneratedRegex(@"[\p{L}\p{N}_]+")]
    private static partial Regex Words();

    private static Dictionary<string, (string ContentType, byte[] Content)> LoadAssets()
    {
        var assembly = Assembly.GetExecutingAssembly();
        (string Path, string Resource, string Type)[] table =
        [
            ("/", "index.html", "text/html; charset=utf-8"),
            ("/viewer.js", "viewer.js", "text/javascript; charset=utf-8"),
            ("/viewer.css", "viewer.css", "text/css; charset=utf-8"),
        ];
        return table.ToDictionary(entry => entry.Path, entry => (entry.Type, ReadAsset(assembly, entry.Resource)), StringComparer.Ordinal);
    }

    public static byte[] ReadAsset(string name) => ReadAsset(Assembly.GetExecutingAssembly(), name);

    private static byte[] ReadAsset(Assembly assembly, string name)
    {
        using var stream = assembly.GetManifestResourceStream("HeadLens.Viewer." + name)
            ?? throw new InvalidOperationException($"the viewer asset {name} is not embedded in the assembly");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    /// <summary>Checks every input against the source and the server's limits.</summary>
    private sealed class Limits(IAttentionSource source, ViewerOptions options)
    {
        public int MaxTokens { get; } = CheckMaxTokens(source.Info, options.MaxTokens);

        public TokenizedText Input(ViewerRequest body)
        {
            if ((body.Text is null) == (body.Ids is null))
            {
                throw new ViewerException(400, "give exactly one of 'text' or 'ids'");
            }

            TokenizedText input;
            if (body.Text is not null)
            {
                input = source.Tokenize(body.Text);
            }
            else
            {
                if (body.Ids!.Length > MaxTokens)
                {
                    throw new ViewerException(400, $"the input has {body.Ids.Length} tokens; the limit is {MaxTokens}");
                }

                input = new TokenizedText(body.Ids, body.Ids.Select(source.TokenText).ToArray());
            }

            if (input.Ids.Length == 0)
            {
                throw new ViewerException(400, "the text encodes to no tokens");
            }

            if (input.Ids.Length > MaxTokens)
            {
                throw new ViewerException(400, $"the text has {input.Ids.Length} tokens; the limit is {MaxTokens}");
            }

            return input;
        }

        public int Layer(int? layer)
        {
            int value = layer ?? throw new ViewerException(400, "give a layer");
            return value >= 0 && value < source.Info.Layers ? value
                : throw new ViewerException(400, $"layer {value} is outside [0, {source.Info.Layers - 1}]");
        }

        /// <summary>A receiving head [layer, head] of path patching: a head with layers before it.</summary>
        public (int Layer, int Head) Receiver(int[]? receiver)
        {
            if (receiver is not [int layer, int head])
            {
                throw new ViewerException(400, "give the receiving head as receiver: [layer, head]");
            }

            if (layer < 1 || layer >= source.Info.Layers || head < 0 || head >= source.Info.Heads)
            {
                throw new ViewerException(400, $"receiver {layer}.{head} is not a head of layers 1 to {source.Info.Layers - 1} (heads 0 to {source.Info.Heads - 1})");
            }

            return (layer, head);
        }

        public int[] Heads(ViewerRequest body, int tokens)
        {
            int[] heads = body.Heads ?? (body.Head is { } head ? [head] : throw new ViewerException(400, "give a head or heads"));
            if (heads.Length == 0 || heads.Length > source.Info.Heads || heads.Distinct().Count() != heads.Length)
            {
                throw new ViewerException(400, $"heads must be 1 to {source.Info.Heads} distinct head numbers");
            }

            foreach (int h in heads)
            {
                if (h < 0 || h >= source.Info.Heads)
                {
                    throw new ViewerException(400, $"head {h} is outside [0, {source.Info.Heads - 1}]");
                }
            }

            if ((long)heads.Length * tokens * tokens > options.MaxPatternValues)
            {
                throw new ViewerException(400, $"{heads.Length} heads × {tokens}² values are more than one answer carries ({options.MaxPatternValues}): ask for fewer heads");
            }

            return heads;
        }
    }
}
