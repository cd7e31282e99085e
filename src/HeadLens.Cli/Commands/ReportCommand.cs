using HeadLens.Cli.Viewer;

namespace HeadLens.Cli.Commands;

/// <summary>One self-contained HTML file with the viewer and every head's pattern on one text; optional PNG heat maps.</summary>
internal sealed class ReportCommand : ICommand
{
    public string Name => "report";

    public CommandSpec Spec { get; } = new(
        "One self-contained HTML file with the viewer and every head's pattern on one text; optional PNG heat maps.",
        [
            SharedOptions.Model,
            SharedOptions.Tokenizer,
            .. SharedOptions.Input(),
            CliOption.Valued("out", "FILE.html", "the report") with { Required = true },
            CliOption.Valued("png", "DIR", "also write one PNG heat map per head here"),
        ],
        "headlens report --text \"In the beginning God created the heaven and the earth.\" --out report.html");

    public int Run(CommandArgs args)
    {
        string output = args.Require("out");
        string? pngDirectory = args.Get("png");
        var (model, tokenizer, path) = ModelInput.LoadModel(args);
        int[] ids = ModelInput.ReadIds(args, model, tokenizer);
        string text = args.Get("text") ?? string.Join(',', ids);
        args.RejectUnknown();
        // Checked before any work: the writers would fail only at the end, with an IOException naming no option.
        if (pngDirectory is not null && File.Exists(pngDirectory))
        {
            throw new HeadLensException($"--png {pngDirectory}: is a file; give a directory for the heat maps");
        }

        if (Directory.Exists(output))
        {
            throw new HeadLensException($"--out {output}: is a directory; give the HTML file to write");
        }

        var source = new ModelSource(model, tokenizer, Path.GetFileName(Path.TrimEndingDirectorySeparator(path)));
        var input = new TokenizedText(ids, ids.Select(source.TokenText).ToArray());
        ReportWriter.Write(source, input, text, output, pngDirectory);
        Console.WriteLine($"report: {Path.GetFullPath(output)} ({ids.Length} tokens, {model.Config.Layers} layers × {model.Config.Heads} heads)");
        if (pngDirectory is not null)
        {
            Console.WriteLine($"heat maps: {Path.GetFullPath(pngDirectory)}/layer*-head*.png");
        }

        return 0;
    }
}
