using System.Globalization;
using System.Text.Json;
using HeadLens.Analysis;

namespace HeadLens.Cli.Commands;

/// <summary>
/// The logit lens (<see cref="LogitLens"/>): what the stream after each layer would predict if no layer followed — a
/// grid of stages × the text's last positions, the loss per stage, or one position's top tokens at every stage.
/// </summary>
internal sealed class LensCommand : ICommand
{
    // Positions the grid shows (the text's last ones) so that a row fits a terminal.
    private const int GridPositions = 8;

    public string Name => "lens";

    public CommandSpec Spec { get; } = new(
        "The logit lens: the stream after the embedding and after each layer, put through the final norm and the output "
        + "head as if no layer followed, says what the model would predict at that depth — where an answer forms and "
        + "which layers change it. A grid of each stage's top token at the text's last positions, with each stage's "
        + "next-token loss; --position P lists one position's top tokens at every stage.",
        [
            SharedOptions.Model,
            SharedOptions.Tokenizer,
            .. SharedOptions.Input(required: false),
            CliOption.Valued("position", "P", "list the top tokens of this position at every stage (negative counts from the end: -1 is the last)", "a grid of the last 8 positions"),
            CliOption.Valued("top", "K", "how many top tokens each position keeps (--position and --json)", "5"),
            SharedOptions.Json,
        ],
        "headlens lens --text \"the word is kqzj; the word is kq\" --position -1");

    public int Run(CommandArgs args)
    {
        var (model, tokenizer, path) = ModelInput.LoadModel(args);
        var config = model.Config;
        bool json = args.Flag("json");
        int[]? textIds = args.Has("text") || args.Has("ids") ? ModelInput.ReadIds(args, model, tokenizer) : null;
        int? position = args.Has("position") ? args.GetInt("position", 0, -config.ContextLength, config.ContextLength - 1) : null;
        int top = args.GetInt("top", 5, 1, 1000);
        args.RejectUnknown();

        int[] ids = HeadTaxonomy.TextOrSample(model, tokenizer, textIds);
        if (position is { } p && (p >= ids.Length || p < -ids.Length))
        {
            throw new UsageException($"lens: --position {p} is outside the text's {ids.Length} tokens (0..{ids.Length - 1}, or -1..-{ids.Length})");
        }

        var result = LogitLens.Run(model, ids, top);
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(Document(result, tokenizer)));
            return 0;
        }

        if (position is { } chosen)
        {
            PrintPosition(result, path, tokenizer, chosen < 0 ? ids.Length + chosen : chosen);
        }
        else
        {
            PrintGrid(result, path, tokenizer);
        }

        return 0;
    }

    /// <summary>A stage's name: "embed" for the stream before the first block, else the block it comes out of.</summary>
    internal static string StageName(int layer) => layer < 0 ? "embed" : $"L{layer.ToString(CultureInfo.InvariantCulture)}";

    private static Dictionary<string, object> Document(LogitLensResult result, Tokenization.ITokenizer? tokenizer)
    {
        var document = new Dictionary<string, object>
        {
            ["ids"] = result.Ids,
            ["answers"] = result.Answers,
            ["stages"] = result.Stages.Select(stage => new Dictionary<string, object?>
            {
                ["layer"] = stage.Layer,
                ["name"] = StageName(stage.Layer),
                ["loss"] = double.IsNaN(stage.Loss) ? null : Math.Round(stage.Loss, 6),
                ["next_probabilities"] = stage.NextProbabilities.Select(p => Math.Round(p, 6)),
                ["answer_probabilities"] = stage.AnswerProbabilities.Select(p => Math.Round(p, 6)),
                ["top"] = stage.Top.Select(row => row.Select(token => new Dictionary<string, object>
                {
                    ["id"] = token.Token,
                    ["probability"] = Math.Round(token.Probability, 6),
                })),
            }),
        };
        if (ModelInput.TokenTexts(tokenizer, result.Ids) is { } tokens)
        {
            document["tokens"] = tokens;
            document["answer_tokens"] = ModelInput.TokenTexts(tokenizer, result.Answers)!;
        }

        return document;
    }

    private static void PrintGrid(LogitLensResult result, string path, Tokenization.ITokenizer? tokenizer)
    {
        var invariant = CultureInfo.InvariantCulture;
        int t = result.Ids.Length, first = Math.Max(0, t - GridPositions);
        string Token(int id, int width = 10) => ModelInput.Show(tokenizer?.TokenText(id), id, width);
        Console.WriteLine($"Logit lens on {path}: the stream after each layer read by the final norm and the output head, as if no layer followed; {t} tokens.");
        Console.WriteLine($"Each cell: that stage's most likely next token at one of the last {t - first} positions (the input token above it); "
            + $"loss: the stage's mean next-token loss over the text's {t - 1} predictions, in nats.");
        Console.WriteLine();
        string Row(string label, IEnumerable<string> cells, string end) => $"{label,-7}{string.Concat(cells.Select(cell => $"{cell,11}"))}{end,9}";
        Console.WriteLine(Row("input", Enumerable.Range(first, t - first).Select(i => Token(result.Ids[i])), "loss"));
        foreach (var stage in result.Stages)
        {
            string loss = double.IsNaN(stage.Loss) ? "" : stage.Loss.ToString("F3", invariant);
            Console.WriteLine(Row(StageName(stage.Layer), Enumerable.Range(first, t - first).Select(i => Token(stage.Top[i][0].Token)), loss));
        }

        // Where the model's own answer at the last position first leads.
        var last = result.Stages.Select(stage => stage.Top[t - 1][0].Token).ToList();
        int answer = result.Answers[t - 1];
        int settled = last.Count - 1;
        while (settled > 0 && last[settled - 1] == answer)
        {
            settled--;
        }

        Console.WriteLine();
        Console.WriteLine($"The model's answer after the text, {Token(answer)} (p {result.Stages[^1].AnswerProbabilities[t - 1].ToString("F3", invariant)}), "
            + $"leads from {StageName(result.Stages[settled].Layer)} on.");
    }

    private static void PrintPosition(LogitLensResult result, string path, Tokenization.ITokenizer? tokenizer, int position)
    {
        var invariant = CultureInfo.InvariantCulture;
        int t = result.Ids.Length, answer = result.Answers[position];
        string Token(int id) => ModelInput.Show(tokenizer?.TokenText(id), id);
        string context = tokenizer is null ? Token(result.Ids[position])
            : ModelInput.Show(tokenizer.Decode(result.Ids.AsSpan(Math.Max(0, position - 15)..(position + 1))), result.Ids[position], width: 40);
        Console.WriteLine($"Logit lens on {path}, position {position} ({context}): the next token each stage would predict there.");
        bool hasNext = position < t - 1;
        string nextHeader = hasNext ? $"p({Token(result.Ids[position + 1])}, next in the text)" : "";
        Console.WriteLine($"{"stage",-7}{$"p({Token(answer)}, the answer)",-24}{nextHeader,-28}top tokens");
        foreach (var stage in result.Stages)
        {
            string next = hasNext ? stage.NextProbabilities[position].ToString("F4", invariant) : "";
            string tops = string.Join("  ", stage.Top[position].Select(token => $"{Token(token.Token)} {token.Probability.ToString("F3", invariant)}"));
            Console.WriteLine($"{StageName(stage.Layer),-7}{stage.AnswerProbabilities[position].ToString("F4", invariant),-24}{next,-28}{tops}");
        }
    }
}
