using System.Diagnostics;
using HeadLens.Analysis;
using HeadLens.Analysis.Experiments;
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

    // Two texts that differ in the one letter the model must copy after the second "kq" (an induction task).
    private const string CopyClean = "the word is kqzj; the word is kq";
    private const string CopyCorrupted = "the word is kqvj; the word is kq";

    public string Name => "demo";

    public CommandSpec Spec { get; } = new(
        "The main job on the embedded default model, no arguments needed: what the model is, a generated sample, what "
        + "every head attends to, and a self-contained HTML report of the patterns.",
        [
            SharedOptions.Model with { Description = "a Hugging Face model directory with a tokenizer" },
            CliOption.Valued("out", "FILE.html", "the report", "headlens-demo.html in the current directory"),
            CliOption.Valued("max-tokens", "N", "tokens in the generated sample", "240"),
            CliOption.Valued("seed", "S", "random seed of the sample", "7"),
        ],
        "headlens demo");

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
        Console.WriteLine($"HeadLens demo — a {Numbers.Count(c.ParameterCount)}-parameter {(c.HasMlp ? "" : "attention-only ")}transformer ({c.DescribeFeatures()}): {c.Layers} layers × {c.Heads} heads " +
            $"(head size {c.HeadDim}), context {c.ContextLength} tokens, vocabulary {c.VocabSize} ({(c.VocabSize == 256 ? "bytes" : "tokens")}).");
        Console.WriteLine($"Loaded from {modelPath}.");
        Console.WriteLine();
        Console.WriteLine($"Sample (temperature 0.8, top-p 0.9, seed {seed}, KV cache; past the {c.ContextLength}-token context the window slides, keeping the last half):");
        Console.WriteLine();
        var prompt = tokenizer.EncodeForModel(Prompt);
        Console.Write(Prompt);
        int generated = 0;
        var generation = Stopwatch.StartNew();
        // Top-p: the embedded model was trained with passages of random bytes, so it keeps a thin tail of probability
        // on every byte; sampling from that tail writes bytes that are not text (and then copies them: induction).
        foreach (var token in Generator.Stream(model, tokenizer, prompt, maxTokens, new Sampler(new SamplingSettings { Temperature = 0.8f, TopP = 0.9f, Seed = seed }), slide: true))
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
        Console.WriteLine();
        WhoCopies(model, tokenizer);
        RealModel(reportPath);
        Console.WriteLine($"(demo took {clock.Elapsed.TotalSeconds:F1} s)");
        return 0;
    }

    // From what heads look at to what they do: one copied letter traced by patching (of heads, and of the paths into
    // the one that carries it), the logit lens and direct attribution. Left out for a model whose tokenizer splits the two texts differently or that answers both alike.
    private static void WhoCopies(HeadLens.Model.Transformer model, Tokenization.ITokenizer tokenizer)
    {
        int[] clean = tokenizer.EncodeForModel(CopyClean), corrupted = tokenizer.EncodeForModel(CopyCorrupted);
        if (clean.Length != corrupted.Length)
        {
            return;
        }

        var patching = ActivationPatching.Run(model, clean, corrupted, PatchSite.Heads);
        if (patching.Metric != PatchMetric.LogitDifference)
        {
            return;
        }

        int answer = patching.Answer!.Value, wrong = patching.Wrong!.Value;
        string Token(int id) => ModelInput.Show(tokenizer.TokenText(id), id);
        var kinds = HeadTaxonomy.Analyse(model, tokenizer, clean).ToDictionary(s => (s.Layer, s.Head), s => s.Kind);
        var best = patching.Effects.MaxBy(e => e.Recovered)!;
        var lens = LogitLens.Run(model, clean, top: 1);
        int last = clean.Length - 1, from = lens.Stages.Count - 1;
        while (from > 0 && lens.Stages[from - 1].Top[last][0].Token == answer)
        {
            from--;
        }

        var paths = ActivationPatching.Paths(model, clean, corrupted, [(best.Layer, best.Index)], answer, wrong);
        var feeder = paths.Effects.MaxBy(e => e.Recovered)!;
        var allowed = Circuits.CompositionsInto(model, best.Layer, best.Index).Single(c => (c.SourceLayer, c.SourceHead) == (feeder.Layer, feeder.Index));
        double composition = allowed.Of(feeder.Input!.Value);
        var attribution = DirectLogitAttribution.Compute(model, clean, last, answer, wrong);
        var heads = Enumerable.Range(0, model.Config.Layers).SelectMany(l => Enumerable.Range(0, model.Config.Heads).Select(h => (Layer: l, Head: h)))
            .OrderByDescending(pair => attribution.Heads[pair.Layer, pair.Head]).First();
        int mlp = Array.IndexOf(attribution.Mlps, attribution.Mlps.Max());
        var invariant = System.Globalization.CultureInfo.InvariantCulture;
        string F(double value) => value.ToString("+0.00;-0.00;0.00", invariant);

        Console.WriteLine($"Who copies? \"{CopyClean}\" and \"{CopyCorrupted}\" differ in one letter; the model answers "
            + $"{Token(answer)} and {Token(wrong)} (logit({Token(answer)}) − logit({Token(wrong)}): {F(patching.Clean)} and {F(patching.Corrupted)}).");
        Console.WriteLine($"  Activation patching: layer {best.Layer} head {best.Index} ({kinds[(best.Layer, best.Index)]}) alone brings back "
            + $"{(100 * best.Recovered).ToString("F0", invariant)}% of the difference (headlens patch).");
        Console.WriteLine($"  Path patching: of what earlier heads send to it, layer {feeder.Layer} head {feeder.Index} ({kinds[(feeder.Layer, feeder.Index)]}) "
            + $"into its {PatchCommand.InputName(feeder.Input!.Value)}s brings back the most, {(100 * feeder.Recovered).ToString("F0", invariant)}% "
            + $"(headlens patch --over paths --receiver {best.Layer}.{best.Index}); the weights let that path carry "
            + $"{(composition / Circuits.RandomBaseline(model.Config)).ToString("F1", invariant)}× what random ones would "
            + $"({char.ToUpperInvariant(PatchCommand.InputName(feeder.Input!.Value)[0])}-composition {composition.ToString("F3", invariant)}; headlens circuits).");
        string before = from > 0 ? $"p {lens.Stages[from - 1].AnswerProbabilities[last].ToString("F4", invariant)} after {LensCommand.StageName(lens.Stages[from - 1].Layer)}, " : "p ";
        Console.WriteLine($"  Logit lens: {Token(answer)} leads from {LensCommand.StageName(lens.Stages[from].Layer)} on ({before}"
            + $"{lens.Stages[^1].AnswerProbabilities[last].ToString("F3", invariant)} at the output; headlens lens).");
        Console.WriteLine($"  Direct attribution: of the {F(attribution.Logit)}, layer {mlp}'s MLP writes {F(attribution.Mlps[mlp])}, the largest head "
            + $"(layer {heads.Layer} head {heads.Head}) {F(attribution.Heads[heads.Layer, heads.Head])} (headlens attribute).");
        Console.WriteLine();
    }

    // The same questions of a real pretrained model: all-MiniLM-L6-v2, built in (see `experiment real-heads`).
    private static void RealModel(string reportPath)
    {
        var (model, tokenizer) = Models.MiniLmResources.Load();
        string text = RealHeadsExperiment.ArticleSentence;
        var c = model.Config;
        Console.WriteLine($"A real pretrained model — {Models.MiniLmResources.Name} (all-MiniLM-L6-v2, {Numbers.Count(c.ParameterCount)} parameters, {c.Layers} layers × {c.Heads} heads, an encoder):");
        int[] ids = tokenizer.EncodeForModel(text);
        var from = HeadQuestions.WordPositions(tokenizer, ids, "it");
        var to = HeadQuestions.WordPositions(tokenizer, ids, "animal", before: from[^1]);
        var street = HeadQuestions.WordPositions(tokenizer, ids, "street", before: from[^1]);
        var patterns = AttentionRecorder.Record(model, ids);
        var ranked = HeadQuestions.RankPair(patterns, c.Heads, ids.Length, from[^1], to);
        var toStreet = HeadQuestions.RankPair(patterns, c.Heads, ids.Length, from[^1], street).ToDictionary(pair => (pair.Layer, pair.Head), pair => pair.Weight);
        Console.WriteLine($"  \"{text}\" — the heads that send `it` to `animal`:");
        foreach (var pair in ranked.Take(3))
        {
            Console.WriteLine($"    layer {pair.Layer} head {pair.Head,2}: {pair.Weight:F2} to animal, {toStreet[(pair.Layer, pair.Head)]:F2} to street");
        }

        var summaries = HeadTaxonomy.Analyse(model, tokenizer, ids);
        Console.WriteLine("  Per layer (mean attention distance in tokens, mean normalised entropy, kinds):");
        foreach (var layer in HeadQuestions.Layers(summaries))
        {
            string kinds = string.Join(", ", layer.KindShares.Where(share => share.Value > 0)
                .Select(share => $"{Math.Round(share.Value * c.Heads)} {share.Key}"));
            Console.WriteLine($"    layer {layer.Layer}: distance {layer.MeanDistance,4:F1}, entropy {layer.Entropy:F2}; {kinds}");
        }

        string realReport = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(reportPath)) ?? ".",
            Path.GetFileNameWithoutExtension(reportPath) + "-minilm.html");
        ReportWriter.Write(new ModelSource(model, tokenizer, Models.MiniLmResources.Name), text, realReport);
        Console.WriteLine($"  Report on {Models.MiniLmResources.Name} (full matrices: an encoder attends both ways): {realReport}");
        Console.WriteLine("  More measurements of its heads: headlens experiment real-heads (docs/real-heads.md).");
        Console.WriteLine();
    }
}
