using System.Text.Json;
using HeadLens.Analysis;

namespace HeadLens.Cli.Commands;

internal sealed class AttentionCommand : ICommand
{
    public string Name => "attention";

    public CommandSpec Spec { get; } = new(
        "The attention pattern (post-softmax probabilities) of every head, or of one layer or head, on a text: a heat map "
        + "in text per head (rows: the attending token, columns: the attended one), or with --json the numbers.",
        [
            SharedOptions.Model,
            SharedOptions.Tokenizer,
            .. SharedOptions.Input(),
            CliOption.Valued("layer", "L", "only this layer (from 0)", "every layer"),
            CliOption.Valued("head", "H", "only this head (from 0)", "every head"),
            SharedOptions.Json,
        ],
        "headlens attention --text \"the cat sat on the mat\" --layer 1 --head 2");

    public int Run(CommandArgs args)
    {
        var (model, tokenizer, path) = ModelInput.LoadModel(args);
        int[] ids = ModelInput.ReadIds(args, model, tokenizer);
        int? layer = args.Has("layer") ? args.GetInt("layer", 0, 0, model.Config.Layers - 1) : null;
        int? head = args.Has("head") ? args.GetInt("head", 0, 0, model.Config.Heads - 1) : null;
        bool json = args.Flag("json");
        args.RejectUnknown();
        var patterns = AttentionRecorder.Record(model, ids, layer);
        int t = ids.Length;
        float[][] Matrix(int l, int h) =>
            Enumerable.Range(0, t).Select(i => patterns[l].AsSpan((h * t + i) * t, t).ToArray()).ToArray();
        var layers = layer is null ? Enumerable.Range(0, model.Config.Layers) : [layer.Value];
        var heads = head is null ? Enumerable.Range(0, model.Config.Heads).ToArray() : [head.Value];
        // [L][H][T][T]; with --layer/--head only that slice (a single [T][T] when both are given).
        object body = layer is not null && head is not null
            ? Matrix(layer.Value, head.Value)
            : layers.Select(l => heads.Select(h => Matrix(l, h)).ToArray()).ToArray();
        var tokens = ModelInput.TokenTexts(tokenizer, ids);
        if (!json)
        {
            var labels = ids.Select((id, i) => ModelInput.Show(tokens?[i], id)).ToArray();
            Console.WriteLine($"Attention of {path}: row = the token that attends, column = the token it attends to (by position); " +
                $"shade by probability: {Legend}; ' ' is masked (a causal model sees no later token).");
            foreach (int l in layers)
            {
                foreach (int h in heads)
                {
                    Console.WriteLine();
                    Console.WriteLine($"layer {l} head {h}");
                    HeatMap(Matrix(l, h), labels);
                }
            }

            return 0;
        }

        var document = new Dictionary<string, object>
        {
            ["ids"] = ids,
            ["layers"] = layer is null ? model.Config.Layers : 1,
            ["heads"] = head is null ? model.Config.Heads : 1,
            ["patterns"] = body,
        };
        if (tokens is not null)
        {
            document["tokens"] = tokens;
        }

        Console.WriteLine(JsonSerializer.Serialize(document));
        return 0;
    }

    // Nine shades from light to dark, each a ninth of the probability range; exact zeros (masked cells) stay blank.
    private const string Shades = ".:-=+*#%@";

    private static string Legend => string.Join(" ", Shades.Select((c, i) => $"'{c}' {(i == 0 ? "<" : "≥")}{(i == 0 ? 1 : i) / 9.0:F2}"));

    internal static char Shade(float p) => p == 0 ? ' ' : Shades[Math.Min(Shades.Length - 1, (int)(p * Shades.Length))];

    /// <summary>One head's T×T pattern as text: a row per attending token, its label, the shades, and its strongest key.</summary>
    private static void HeatMap(float[][] pattern, string[] labels)
    {
        int t = pattern.Length;
        // Column header: position numbers written vertically would be tall; the last digit of each position is enough
        // to count along the row, with the tens marked above every tenth column.
        if (t > 10)
        {
            Console.WriteLine(new string(' ', 18) + string.Concat(Enumerable.Range(0, t).Select(j => j % 10 == 0 ? (char)('0' + (j / 10 % 10)) : ' ')));
        }

        Console.WriteLine(new string(' ', 18) + string.Concat(Enumerable.Range(0, t).Select(j => (char)('0' + (j % 10)))));
        for (int i = 0; i < t; i++)
        {
            int strongest = Array.IndexOf(pattern[i], pattern[i].Max());
            string row = string.Concat(pattern[i].Select(Shade));
            Console.WriteLine($"{i,4} {labels[i],-12} {row}  → {labels[strongest]} {pattern[i][strongest]:F2}");
        }
    }
}
