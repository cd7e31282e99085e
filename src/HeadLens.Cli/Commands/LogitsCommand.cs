using System.Globalization;
using System.Text.Json;

namespace HeadLens.Cli.Commands;

internal sealed class LogitsCommand : ICommand
{
    public string Name => "logits";

    public CommandSpec Spec { get; } = new(
        "The model's next-token prediction at every position of a text: a table of the top-k tokens and their "
        + "probabilities per position (like TransformerLens's test_prompt), or with --json every logit.",
        [
            SharedOptions.Model,
            SharedOptions.Tokenizer,
            .. SharedOptions.Input(),
            CliOption.Valued("top-k", "K", "how many next tokens the table shows per position", "5"),
            SharedOptions.Activations,
            SharedOptions.Json,
        ],
        "headlens logits --text \"In the beginning God created\" --top-k 3");

    public int Run(CommandArgs args)
    {
        var (model, tokenizer, path) = ModelInput.LoadModel(args);
        ModelInput.ApplyActivations(args, model);
        int[] ids = ModelInput.ReadIds(args, model, tokenizer);
        bool json = args.Flag("json");
        int topK = args.GetInt("top-k", 5, 1, 100);
        args.RejectUnknown();
        if (!model.Config.HasOutputHead)
        {
            throw new HeadLensException($"{path}: an encoder has no output head, so no logits (its commands: attention, heads, embed)");
        }

        var logits = model.Infer(ids, 1, ids.Length).Logits;
        int vocab = model.Config.VocabSize;
        var rows = new float[ids.Length][];
        for (int t = 0; t < ids.Length; t++)
        {
            rows[t] = logits.Slice(t * vocab, vocab).ToArray();
        }

        var tokens = ModelInput.TokenTexts(tokenizer, ids);
        if (json)
        {
            var document = new Dictionary<string, object> { ["ids"] = ids, ["logits"] = rows };
            if (tokens is not null)
            {
                document["tokens"] = tokens;
            }

            Console.WriteLine(JsonSerializer.Serialize(document));
            return 0;
        }

        string Token(int id) => ModelInput.Show(tokenizer?.TokenText(id), id);
        Console.WriteLine($"Next-token predictions of {path} at each of {ids.Length} positions (softmax probabilities; " +
            "'next' is the token that follows in the input, with its rank among all tokens):");
        Console.WriteLine($"{"pos",4}  {"token",-12}  {"next",-12} {"rank",6} {"p",6}   top {topK}");
        for (int t = 0; t < ids.Length; t++)
        {
            double[] probabilities = Softmax(rows[t]);
            var top = Enumerable.Range(0, vocab).OrderByDescending(v => probabilities[v]).ThenBy(v => v).Take(topK);
            string predictions = string.Join("  ", top.Select(v => $"{Token(v)} {probabilities[v].ToString("F3", CultureInfo.InvariantCulture)}"));
            string next = "", rank = "", p = "";
            if (t + 1 < ids.Length)
            {
                int actual = ids[t + 1];
                next = Token(actual);
                rank = "#" + (1 + probabilities.Count(q => q > probabilities[actual])).ToString(CultureInfo.InvariantCulture);
                p = probabilities[actual].ToString("F3", CultureInfo.InvariantCulture);
            }

            Console.WriteLine($"{t,4}  {Token(ids[t]),-12}  {next,-12} {rank,6} {p,6}   {predictions}");
        }

        return 0;
    }

    // In float64 and shifted by the row's maximum, so that large logits neither overflow nor lose the small probabilities.
    private static double[] Softmax(float[] logits)
    {
        double max = logits.Max();
        double[] result = [.. logits.Select(l => Math.Exp(l - max))];
        double sum = result.Sum();
        for (int i = 0; i < result.Length; i++)
        {
            result[i] /= sum;
        }

        return result;
    }
}
