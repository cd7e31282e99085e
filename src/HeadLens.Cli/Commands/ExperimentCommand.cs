using System.Diagnostics;
using System.Globalization;
using System.Text;
using HeadLens.Analysis.Experiments;
using HeadLens.Model;

namespace HeadLens.Cli.Commands;

/// <summary>
/// Experiments that reproduce what the interpretability papers found, each printing its figures and the time it
/// took, and writing a markdown report to --out when given.
/// </summary>
internal sealed class ExperimentCommand : ICommand
{
    public string Name => "experiment";

    public CommandSpec Spec { get; } = new(
        "Experiments that reproduce what the interpretability papers found, each printing its figures and the time it took.",
        [CliOption.Valued("out", "FILE.md", "also write the report as markdown here")],
        "headlens experiment induction --steps 300")
    {
        SubcommandNoun = "experiment",
        Subcommands =
        [
            new("handcrafted", "A hand-written article→noun head: W_Q and W_K set by hand, and what such a head gets right and wrong.", [],
                "headlens experiment handcrafted"),
            new("induction", "Train attention-only models of 1 and 2 layers on repeated random sequences: induction heads form only with 2 layers.",
                [
                    CliOption.Valued("steps", "N", "training steps per model", InductionExperiment.Settings.Default.Steps.ToString(CultureInfo.InvariantCulture)),
                    CliOption.Valued("seed", "S", "random seed", InductionExperiment.Settings.Default.Seed.ToString(CultureInfo.InvariantCulture)),
                    CliOption.Valued("layers", "1,2", "the depths to train", string.Join(',', InductionExperiment.Settings.Default.LayerCounts)),
                    CliOption.Valued("heads", "H", "heads per layer", InductionExperiment.Settings.Default.Heads.ToString(CultureInfo.InvariantCulture)),
                    CliOption.Valued("attention", "FORM", "softmax attention, or linear attention (φ(x) = elu(x) + 1) in its place", "softmax") with { Choices = ["softmax", "linear"] },
                ],
                "headlens experiment induction --steps 300 --layers 1,2"),
            new("sinks", "Perplexity of a windowed KV cache with and without attention-sink tokens, against full attention.",
                [SharedOptions.Model, SharedOptions.Tokenizer], "headlens experiment sinks"),
            new("real-heads", "Measure the heads of a real pretrained encoder (all-MiniLM-L6-v2) on hand-labelled sentences.",
                [SharedOptions.Model with { Default = "minilm" }, SharedOptions.Tokenizer], "headlens experiment real-heads --out real-heads.md"),
        ],
    };

    public int Run(CommandArgs args)
    {
        string? output = args.Get("out");
        var clock = Stopwatch.StartNew();
        string report = args.Positional[0] switch
        {
            "handcrafted" => Handcrafted(args),
            "induction" => Induction(args),
            "sinks" => Sinks(args),
            "real-heads" => RealHeads(args, output),
            var other => throw new InvalidOperationException($"experiment {other} is declared but not run"),
        };
        string timing = $"(experiment {args.Positional[0]} took {clock.Elapsed.TotalSeconds:F1} s)";
        Console.WriteLine(timing);
        if (output is not null)
        {
            WriteAtomically(output, report + Environment.NewLine + timing + Environment.NewLine);
            Console.WriteLine($"Report: {output}");
        }

        return 0;
    }

    private static string Handcrafted(CommandArgs args)
    {
        args.RejectUnknown();
        var report = new StringBuilder();
        report.AppendLine("# A hand-written article→noun head").AppendLine();
        report.AppendLine("W_Q and W_K written by hand (see `src/HeadLens/Analysis/Experiments/HandcraftedHead.cs`): each word is the");
        report.AppendLine("vector [article, noun, adjective, verb, preposition, position]; q = [β·noun, γ·noun], k = [article, position],");
        report.AppendLine("so score(i, j) = β·noun_i·article_j + γ·noun_i·j: nouns look for articles, and with γ > 0 prefer nearer ones.");
        report.AppendLine("Words that are not nouns have a zero query and attend uniformly.").AppendLine();
        foreach (string sentence in new[] { HandcraftedHead.Sentence, HandcraftedHead.HardSentence })
        {
            foreach (var (name, beta, gamma) in HandcraftedHead.Variants)
            {
                var result = HandcraftedHead.Run(sentence, name, beta, gamma);
                string description = HandcraftedHead.Describe(result);
                Console.Write(description);
                Console.WriteLine();
                report.AppendLine("## " + description.Split('\n')[0].Trim()).AppendLine();
                report.AppendLine("```").Append(string.Join('\n', description.Split('\n').Skip(1))).AppendLine("```").AppendLine();
                report.AppendLine(HandcraftedHead.PatternTable(result));
            }
        }

        const string Lesson = "What it gets right and wrong: with articles only, \"mat\" splits its attention evenly between the two "
            + "\"the\"s — the head cannot tell its own article from a farther one. A recency term picks the nearest article "
            + "but still leaks some attention to the farther \"the\", and it is only a rule of thumb: in \"the dog saw cats on "
            + "the mat\" the bare plural \"cats\" has no article, and the head confidently sends it to the article of \"dog\". "
            + "Non-nouns spread their attention uniformly. A head is a simple pattern matcher; meaning comes from many of them.";
        Console.WriteLine(Lesson);
        report.AppendLine("## What it shows").AppendLine().AppendLine(Lesson);
        return report.ToString();
    }

    private static string Induction(CommandArgs args)
    {
        var settings = InductionExperiment.Settings.Default with
        {
            Steps = args.GetInt("steps", InductionExperiment.Settings.Default.Steps, 1, 1_000_000),
            Seed = args.GetInt("seed", InductionExperiment.Settings.Default.Seed),
            LayerCounts = args.GetIds("layers") ?? [.. InductionExperiment.Settings.Default.LayerCounts],
            Heads = args.GetInt("heads", InductionExperiment.Settings.Default.Heads, 1, 64),
            Attention = string.Equals(args.Get("attention"), "linear", StringComparison.OrdinalIgnoreCase) ? AttentionForm.Linear : AttentionForm.Softmax,
        };
        if (settings.Channels % settings.Heads != 0)
        {
            throw new UsageException($"experiment induction: --heads must divide the model width {settings.Channels}");
        }

        if (settings.LayerCounts.Any(layers => layers is < 1 or > 8))
        {
            throw new UsageException("experiment induction: --layers takes depths from 1 to 8, e.g. --layers 1,2");
        }

        args.RejectUnknown();
        return InductionExperiment.Run(settings, Console.WriteLine);
    }

    private static string Sinks(CommandArgs args)
    {
        var (model, tokenizer, path) = ModelInput.LoadModel(args);
        args.RejectUnknown();
        return SinksExperiment.Run(model, tokenizer, path, Console.WriteLine);
    }

    private static string RealHeads(CommandArgs args, string? output)
    {
        var (model, tokenizer, path) = ModelInput.LoadModel(args.WithDefault("model", Models.MiniLmResources.Name));
        args.RejectUnknown();
        ModelInput.PackForRepeatedInference(model);
        if (tokenizer is not Tokenization.BertWordPieceTokenizer wordPiece || model.Config.Attention != Attention.MaskKind.Bidirectional)
        {
            throw new HeadLensException($"experiment real-heads: {path} is not a BERT-family encoder with a WordPiece vocabulary (try --model minilm)");
        }

        // The figures go beside the report (or into the working directory when the report is only printed).
        string figures = Path.GetDirectoryName(Path.GetFullPath(output ?? "real-heads.md")) ?? ".";
        string report = RealHeadsExperiment.Run(model, wordPiece, path, figures, step => Console.Error.WriteLine($"  {step}"));
        Console.WriteLine(report);
        return report;
    }

    private static void WriteAtomically(string path, string text)
    {
        string full = Path.GetFullPath(path);
        string temporary = full + ".tmp-" + Environment.ProcessId;
        File.WriteAllText(temporary, text);
        File.Move(temporary, full, overwrite: true);
    }
}
