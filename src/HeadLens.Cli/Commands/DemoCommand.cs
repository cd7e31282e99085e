using System.Diagnostics;
using HeadLens.Analysis;
using HeadLens.Checkpoints;
using HeadLens.Cli.Viewer;
using HeadLens.Inference;

namespace HeadLens.Cli.Commands;

/// <summary>
/// The main job on the embedded default: what the model is, a generated sample, what every head attends to, and a
/// self-contained HTML report of the patterns. No arguments needed.
/// </summary>
internal sealed class DemoCommand : ICommand
{
    private const string Prompt = "And God said, ";
    private const string SampleText = "In the beginning God created the heaven and the earth.";

    public string Name => "demo";

    public string Usage => "demo     [--model MODEL] [--out FILE.html] [--max-tokens N] [--seed S]";

    public int Run(CommandArgs args)
    {
        string modelPath = args.Get("model") ?? AppData.DefaultModel;
        string reportPath = args.Get("out") ?? Path.Combine(Environment.CurrentDirectory, "headlens-demo.html");
        int maxTokens = args.GetInt("max-tokens", 240, 1, 100_000);
        int seed = args.GetInt("seed", 7);
        args.RejectUnknown();

        var clock = Stopwatch.StartNew();
        var (model, tokenizer) = ModelFiles.Load(modelPath);
        if (tokenizer is null)
        {
            throw new HeadLensException($"{modelPath}: the demo needs a model with a tokenizer");
        }

        var c = model.Config;
        Console.WriteLine($"HeadLens demo — a {c.ParameterCount / 1e6:F2}M-parameter {(c.HasMlp ? "" : "attention-only ")}transformer ({c.DescribeFeatures()}): {c.Layers} layers × {c.Heads} heads " +
            $"(head size {c.HeadDim}), context {c.ContextLength} tokens, vocabulary {c.VocabSize} ({(c.VocabSize == 256 ? "bytes" : "tokens")}).");
        Console.WriteLine($"Loaded from {modelPath}.");
        Console.WriteLine();
        Console.WriteLine($"Sample (temperature 0.8, seed {seed}, KV cache):");
        Console.WriteLine();
        var prompt = tokenizer.EncodeForModel(Prompt);
        Console.Write(Prompt);
        int generated = 0;
        var generation = Stopwatch.StartNew();
        foreach (var token in Generator.Stream(model, tokenizer, prompt, maxTokens, new Sampler(new SamplingSettings { Temperature = 0.8f, Seed = seed })))
        {
            generated++;
            Console.Write(token.Text);
        }

        Console.WriteLine();
        Console.WriteLine();
        Console.WriteLine($"({generated} tokens in {generation.Elapsed.TotalMilliseconds:F0} ms, {generated / generation.Elapsed.TotalSeconds:F0} tokens/s)");
        Console.WriteLine();

        int[] ids = tokenizer.EncodeForModel(SampleText);
        var summaries = HeadTaxonomy.Analyse(model, tokenizer, ids);
        Console.WriteLine($"What each head attends to on \"{SampleText}\" :");
        Console.WriteLine();
        HeadsCommand.Print(summaries);
        var source = new ModelSource(model, tokenizer, Path.GetFileName(Path.TrimEndingDirectorySeparator(modelPath)));
        ReportWriter.Write(source, SampleText, reportPath);
        Console.WriteLine();
        Console.WriteLine($"Report (the viewer with every head's pattern, one self-contained file; open it in a browser): {Path.GetFullPath(reportPath)}");
        Console.WriteLine($"(demo took {clock.Elapsed.TotalSeconds:F1} s)");
        return 0;
    }
}
