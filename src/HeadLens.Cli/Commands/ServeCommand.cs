using System.Globalization;
using System.Net.Sockets;
using HeadLens.Cli.Viewer;
using Microsoft.Extensions.Hosting;

namespace HeadLens.Cli.Commands;

/// <summary>
/// The interactive viewer on one model, fixed at startup. Listens on 127.0.0.1 unless --host names another address.
/// --synthetic LxH serves hand-made patterns instead of a model (to try the viewer, or to test it).
/// </summary>
internal sealed class ServeCommand : ICommand
{
    public string Name => "serve";

    public CommandSpec Spec { get; } = new(
        "The interactive viewer in the browser, on one model fixed at startup. Listens on 127.0.0.1 unless --host names another address.",
        [
            SharedOptions.Model,
            SharedOptions.Tokenizer,
            CliOption.Valued("port", "N", "the TCP port; 0 picks a free one", "5005"),
            CliOption.Valued("host", "H", "the address to listen on", "127.0.0.1"),
            CliOption.Valued("max-tokens", "N", "the longest text the viewer accepts", "1024"),
            CliOption.Valued("synthetic", "LAYERSxHEADS", "serve hand-made patterns instead of a model (to try the viewer)"),
            SharedOptions.Dtype,
            SharedOptions.Activations,
        ],
        "headlens serve --port 5005");

    public int Run(CommandArgs args)
    {
        var options = new ViewerOptions
        {
            Port = args.GetInt("port", 5005, 0, 65535),
            Host = args.Get("host") ?? "127.0.0.1",
            MaxTokens = args.GetInt("max-tokens", 1024, 1, ViewerOptions.MaxTokensLimit),
        };
        string? synthetic = args.Get("synthetic");
        IAttentionSource source;
        if (synthetic is not null)
        {
            var (layers, heads) = ParseSize(synthetic);
            source = new SyntheticSource(layers, heads, options.MaxTokens);
        }
        else
        {
            var (model, tokenizer, path) = ModelInput.LoadModel(args);
            ModelInput.PackForRepeatedInference(model);
            ModelInput.ApplyDecodingDtype(args, model);
            ModelInput.ApplyActivations(args, model);
            source = new ModelSource(model, tokenizer, Path.GetFileName(Path.TrimEndingDirectorySeparator(path)));
        }

        args.RejectUnknown();
        if (!ViewerServer.IsLoopback(options.Host))
        {
            Console.Error.WriteLine($"warning: listening on {options.Host}: anyone who can reach this address can use the viewer");
        }

        var app = ViewerServer.Build(source, options);
        try
        {
            app.Start();
        }
        catch (IOException error) when (error.InnerException is SocketException || error.Message.Contains("address", StringComparison.OrdinalIgnoreCase))
        {
            throw new HeadLensException($"cannot listen on {options.Host}:{options.Port}: {error.Message}");
        }

        foreach (string url in app.Urls)
        {
            Console.WriteLine($"HeadLens viewer on {url}/ — model {source.Info.Name}: {source.Info.Layers} layers × {source.Info.Heads} heads (Ctrl-C stops)");
        }

        app.WaitForShutdown();
        return 0;
    }

    private static (int Layers, int Heads) ParseSize(string text)
    {
        var parts = text.Split('x');
        if (parts.Length == 2
            && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int layers)
            && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int heads)
            && layers is >= 1 and <= 64 && heads is >= 1 and <= 64)
        {
            return (layers, heads);
        }

        throw new UsageException($"serve: --synthetic must look like 4x8 (layers x heads, 1 to 64 each), got '{text}'");
    }
}
