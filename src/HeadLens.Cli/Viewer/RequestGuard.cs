using System.Net.Http.Headers;
using Microsoft.AspNetCore.Http;

namespace HeadLens.Cli.Viewer;

/// <summary>
/// Which requests reach the viewer's endpoints, decided before routing. Any web page the user opens can send a
/// "simple" cross-site POST (text/plain, no preflight) to a loopback port; the browser then hides the answer, but the
/// model would still run. So, for every /api/ path:
///   - a browser's word on where the request comes from is checked: Sec-Fetch-Site must be same-origin or none (a
///     request the user typed), and an Origin header must be this server's own origin. "same-site" is refused too:
///     another port on localhost is the same site. Clients that send neither header (curl, scripts) are allowed:
///     they are not a web page acting for someone else;
///   - a POST must say Content-Type: application/json, which no page can send cross-origin without a CORS preflight,
///     and this server answers no preflight;
///   - a method the path does not take is 405, with Allow.
/// The page and its two assets may be opened from anywhere (a link is a navigation), but only with GET.
/// </summary>
public static class RequestGuard
{
    /// <summary>Every path the server maps, with the one method it takes: the table the server maps from.</summary>
    public static readonly IReadOnlyDictionary<string, string> Methods = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["/"] = HttpMethods.Get,
        ["/viewer.js"] = HttpMethods.Get,
        ["/viewer.css"] = HttpMethods.Get,
        ["/api/model"] = HttpMethods.Get,
        ["/api/tokenize"] = HttpMethods.Post,
        ["/api/heads"] = HttpMethods.Post,
        ["/api/pattern"] = HttpMethods.Post,
        ["/api/token"] = HttpMethods.Post,
        ["/api/generate"] = HttpMethods.Post,
        ["/api/compare"] = HttpMethods.Post,
        ["/api/ablate"] = HttpMethods.Post,
        ["/api/lens"] = HttpMethods.Post,
        ["/api/patch"] = HttpMethods.Post,
        ["/api/paths"] = HttpMethods.Post,
        ["/api/compositions"] = HttpMethods.Get,
    };

    /// <summary>The refusal for this request (status and one line), or null when it may go on.</summary>
    public static (int Status, string Message)? Check(HttpRequest request)
    {
        string path = request.Path.Value ?? "";
        bool api = path.StartsWith("/api/", StringComparison.Ordinal);
        if (api && CrossSite(request) is { } refusal)
        {
            return (StatusCodes.Status403Forbidden, refusal);
        }

        if (Methods.TryGetValue(path, out string? method) && !Allowed(method, request.Method))
        {
            return (StatusCodes.Status405MethodNotAllowed, $"{request.Method} {path}: this endpoint takes {method}");
        }

        if (api && HttpMethods.IsPost(request.Method) && !IsJson(request.ContentType))
        {
            string given = string.IsNullOrEmpty(request.ContentType) ? "none" : request.ContentType;
            return (StatusCodes.Status415UnsupportedMediaType, $"POST {path}: the body must be sent as Content-Type: application/json (got {given})");
        }

        return null;
    }

    /// <summary>The method a known path takes (for the Allow header of a 405).</summary>
    public static string? AllowFor(string path) => Methods.TryGetValue(path, out string? method) ? method : null;

    private static bool Allowed(string expected, string actual) => string.Equals(expected, actual, StringComparison.OrdinalIgnoreCase);

    private static string? CrossSite(HttpRequest request)
    {
        string? site = request.Headers["Sec-Fetch-Site"].FirstOrDefault();
        if (site is not null && site is not ("same-origin" or "none"))
        {
            return $"a {site} request is refused: the viewer answers only its own page (Sec-Fetch-Site: {site})";
        }

        string? origin = request.Headers.Origin.FirstOrDefault();
        if (origin is not null)
        {
            string own = request.Scheme + "://" + request.Host.Value;
            if (!string.Equals(origin, own, StringComparison.OrdinalIgnoreCase))
            {
                return $"a request from {origin} is refused: the viewer answers only its own page ({own})";
            }
        }

        return null;
    }

    private static bool IsJson(string? contentType) =>
        MediaTypeHeaderValue.TryParse(contentType, out var parsed)
        && string.Equals(parsed.MediaType, "application/json", StringComparison.OrdinalIgnoreCase);
}
