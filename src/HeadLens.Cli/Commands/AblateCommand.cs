using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using HeadLens.Analysis;

namespace HeadLens.Cli.Commands;

/// <summary>
/// What breaks without each head: every head removed in turn (<see cref="HeadAblation"/>) and the model's loss (or,
/// for an encoder, its sentence embedding) compared with the clean run; the heads ranked by the damage, with their kind.
/// </summary>
internal sealed class AblateCommand : ICommand
{
    public string Name => "ablate";

    public CommandSpec Spec { get; } = new(
        "What breaks without each head: every head removed in turn (its output zeroed, or set to its mean) and the "
        + "next-token loss (encoders: the sentence embedding) compared with the intact model; a grid per layer and "
        + "the heads that matter most, with their kind.",
        [
            SharedOptions.Model,
            SharedOptions.Tokenizer,
            .. SharedOptions.Input(required: false),
            CliOption.Valued("method", "zero|mean", "remove a head by setting its output (pattern · V) to zero, or to its mean over the text's positions", "zero")
                with { Choices = ["zero", "mean"] },
            CliOption.Valued("target", "TOKEN", "measure only how well the model predicts this token right after the text (its first token, e.g. \" Mary\"; a token id for a model without a tokenizer), not the whole text's loss", "every next token of the text"),
            CliOption.Valued("layer", "L", "ablate only this layer's heads", "every layer"),
            CliOption.Valued("top", "N", "how many heads the ranking lists", "10"),
            CliOption.Valued("seed", "S", "random seed of the probe sequences that name each head's kind (and, for a model without a tokenizer and no --ids, of the repeated block ablated)", "0"),
            SharedOptions.Json,
        ],
        "headlens ablate --text \"the cat sat on the mat. the cat sat on the mat.\" --top 5");

    public int Run(CommandArgs args)
    {
        var clock = Stopwatch.StartNew();
        var (model, tokenizer, path) = ModelInput.LoadModel(args);
        var config = model.Config;
        bool json = args.Flag("json");
        int[]? textIds = args.Has("text") || args.Has("ids") ? ModelInput.ReadIds(args, model, tokenizer) : null;
        var method = string.Equals(args.Get("method"), "mean", StringComparison.OrdinalIgnoreCase) ? AblationMethod.Mean : AblationMethod.Zero;
        int? layer = args.Has("layer") ? args.GetInt("layer", 0, 0, config.Layers - 1) : null;
        int top = args.GetInt("top", 10, 1, 100_000);
        string? targetText = args.Get("target");
        int seed = args.GetInt("seed", 0);
        args.RejectUnknown();

        int[] ids = HeadTaxonomy.TextOrSample(model, tokenizer, textIds, seed);
        var heads = Enumerable.Range(0, config.Layers).Where(l => layer is null || l == layer)
            .SelectMany(l => Enumerable.Range(0, config.Heads).Select(h => (l, h))).ToList();
        int? target = targetText is null ? null : ModelInput.OneToken(targetText, tokenizer, "target");
        ModelInput.PackForRepeatedInference(model);
        var progress = new SweepProgress(heads.Count, "ablated", "heads");
        var result = HeadAblation.Run(model, ids, method, heads, progress.Report, target);
        var kinds = HeadTaxonomy.Analyse(model, tokenizer, textIds, seed).ToDictionary(s => (s.Layer, s.Head), s => s.Kind);

        if (json)
        {
            var document = new Dictionary<string, object>
            {
                ["ids"] = ids,
                ["method"] = method == AblationMethod.Mean ? "mean" : "zero",
                ["measure"] = MeasureName(result.Measure),
                ["clean"] = Math.Round(result.Clean, 6),
                ["heads"] = result.Heads.OrderByDescending(e => e.Change).Select(e =>
                {
                    var entry = new Dictionary<string, object>
                    {
                        ["layer"] = e.Layer,
                        ["head"] = e.Head,
                        ["kind"] = kinds[(e.Layer, e.Head)],
                        ["measure"] = Math.Round(e.Measure, 6),
                        ["change"] = Math.Round(e.Change, 6),
                        ["position"] = e.Position,
                        ["position_change"] = Math.Round(e.PositionChange, 6),
                    };
                    if (e.CleanProbability is { } before && e.AblatedProbability is { } after)
                    {
                        entry["clean_probability"] = Math.Round(before, 6);
                        entry["ablated_probability"] = Math.Round(after, 6);
                    }

                    return entry;
                }),
            };
            if (ModelInput.TokenTexts(tokenizer, ids) is { } tokens)
            {
                document["tokens"] = tokens;
            }

            if (target is { } id)
            {
                document["target"] = id;
                if (tokenizer is not null)
                {
                    document["target_token"] = tokenizer.TokenText(id);
                }
            }

            Console.WriteLine(JsonSerializer.Serialize(document));
            return 0;
        }

        Print(result, path, tokenizer, kinds, config.Heads, top, target);
        Console.WriteLine();
        Console.WriteLine($"({clock.Elapsed.TotalSeconds:F1} s)");
        return 0;
    }

    /// <summary>The measure's name in the JSON (the viewer's /api/ablate uses the same).</summary>
    internal static string MeasureName(AblationMeasure measure) => measure switch
    {
        AblationMeasure.NextTokenLoss => "next_token_loss",
        AblationMeasure.TargetLoss => "target_loss",
        _ => "embedding_drift",
    };

    private static void Print(HeadAblationResult result, string path, Tokenization.ITokenizer? tokenizer,
        Dictionary<(int, int), string> kinds, int headsPerLayer, int top, int? target)
    {
        var invariant = CultureInfo.InvariantCulture;
        int[] ids = result.Ids;
        string Token(int position) => ModelInput.Show(tokenizer?.TokenText(ids[position]), ids[position]);
        // The text up to a position (its last 20 characters), so that a prediction reads in its context.
        string Before(int position)
        {
            if (tokenizer is null)
            {
                return Token(position);
            }

            string text = tokenizer.Decode(ids.AsSpan(Math.Max(0, position - 15)..(position + 1)));
            string shown = ModelInput.Show(text.Length <= 20 ? text : text[^20..], ids[position], width: 24);
            return text.Length <= 20 ? shown : "…" + shown;
        }

        bool loss = result.Measure != AblationMeasure.EmbeddingDrift;
        string targetShown = target is { } id ? ModelInput.Show(tokenizer?.TokenText(id), id) : "";
        string removed = result.Method == AblationMethod.Mean ? "set to its mean over the text" : "set to zero";
        Console.WriteLine($"What breaks without each head of {path}: each head's output (pattern · V) {removed} in turn, on {ids.Length} tokens.");
        Console.WriteLine(result.Measure switch
        {
            AblationMeasure.NextTokenLoss => $"Measure: the mean next-token loss over {ids.Length - 1} predictions, {result.Clean.ToString("F4", invariant)} nats/token with every head; "
                + "each cell is the rise without that head.",
            AblationMeasure.TargetLoss => $"Measure: −log p({targetShown}) right after the text, {result.Clean.ToString("F4", invariant)} nats "
                + $"(p {Math.Exp(-result.Clean).ToString("F3", invariant)}) with every head; each cell is the rise without that head.",
            _ => "Measure: 1 − cosine between the sentence embedding (mean-pooled, as `embed`) with every head and without that head.",
        });
        Console.WriteLine();

        string header = string.Concat(Enumerable.Range(0, headsPerLayer).Select(h => $"{"H" + h.ToString(invariant),8}"));
        Console.WriteLine($"layer{header}");
        foreach (var row in result.Heads.GroupBy(e => e.Layer))
        {
            var cells = Enumerable.Range(0, headsPerLayer).Select(h => row.FirstOrDefault(e => e.Head == h) is { } e ? Signed(e.Change) : "");
            Console.WriteLine($"{row.Key,5}{string.Concat(cells.Select(cell => $"{cell,8}"))}");
        }

        Console.WriteLine();
        var ranked = result.Heads.OrderByDescending(e => e.Change).Take(top).ToList();
        Console.WriteLine($"The {ranked.Count} heads whose removal costs most:");
        foreach (var e in ranked)
        {
            string where = result.Measure == AblationMeasure.TargetLoss
                ? $"p({targetShown}) {e.CleanProbability!.Value.ToString("F3", invariant)} → {e.AblatedProbability!.Value.ToString("F3", invariant)}"
                : loss
                ? $"most predicting {Token(e.Position + 1)} after {Before(e.Position)} (position {e.Position + 1}): p {e.CleanProbability!.Value.ToString("F3", invariant)} → {e.AblatedProbability!.Value.ToString("F3", invariant)}"
                : $"turns {Token(e.Position)} (position {e.Position}) most: 1 − cos {e.PositionChange.ToString("F4", invariant)}";
            Console.WriteLine($"  layer {e.Layer,2} head {e.Head,2}  {Signed(e.Change)}  {kinds[(e.Layer, e.Head)],-15} {where}");
        }

        int helpful = result.Heads.Count(e => e.Change < 0);
        if (loss && helpful > 0)
        {
            var best = result.Heads.MinBy(e => e.Change)!;
            Console.WriteLine($"{helpful} of {result.Heads.Count} heads lower the loss when removed on this text (most: layer {best.Layer} head {best.Head}, {Signed(best.Change)}).");
        }
    }

    private static string Signed(double value) => value.ToString("+0.0000;-0.0000;0.0000", CultureInfo.InvariantCulture);
}
