using HeadLens.Cli.Viewer;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.TestHost;

namespace HeadLens.Tests.Viewer;

/// <summary>The viewer server on the synthetic source, in memory (TestServer): no socket, no file.</summary>
public sealed class ViewerHost : IAsyncDisposable
{
    private ViewerHost(WebApplication app, SyntheticSource source, ViewerOptions options)
    {
        App = app;
        Source = source;
        Options = options;
        Client = app.GetTestClient();
    }

    public WebApplication App { get; }

    public SyntheticSource Source { get; }

    public ViewerOptions Options { get; }

    public HttpClient Client { get; }

    public TestServer Server => App.GetTestServer();

    public static async Task<ViewerHost> StartAsync(ViewerOptions? options = null, int layers = 3, int heads = 4)
    {
        options ??= new ViewerOptions { MaxTokens = 64 };
        var source = new SyntheticSource(layers, heads, maxTokens: 1024);
        var app = ViewerServer.Build(source, options, builder => builder.WebHost.UseTestServer());
        await app.StartAsync();
        return new ViewerHost(app, source, options);
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await App.DisposeAsync();
    }
}
