using System.Text.Json;
using HeadLens.Analysis;

namespace HeadLens.Cli.Commands;

internal sealed class HeadsCommand : ICommand
{
    private const string DefaultText = "In the beginning God created the heaven and the earth. And the earth was without form, and void.";

    public string Name => "heads";

    public string Usage => "heads    --model MODEL [--text TEXT] [--json]";

    public int Run(CommandArgs args)
    {
        var (model, tokenizer, _) = ModelInput.LoadModel(args);
        bool json = args.Flag("json");
        int[] ids;
        if (args.Has("text") || args.Has("ids"))
        {
            ids = ModelInput.ReadIds(args, model, tokenizer);
        }
        else if (tokenizer is not null)
        {
            ids = tokenizer.Encode(DefaultText)[..Math.Min(tokenizer.Encode(DefaultText).Length, model.Config.ContextLength)];
        }
        else
        {
            // No tokenizer: a random token sequence repeated once, the probe for induction-like behaviour.
            var random = new Random(0);
            var half = Enumerable.Range(0, Math.Min(32, model.Config.ContextLength / 2)).Select(_ => random.Next(model.Config.VocabSize)).ToArray();
            ids = [.. half, .. half];
        }

        args.RejectUnknown();
        var patterns = AttentionRecorder.Record(model, ids);
        var summaries = HeadSummary.Summarise(patterns, model.Config.Heads, ids.Length);
        if (json)
        {
            var heads = summaries.Select(s => new Dictionary<string, object>
            {
                ["layer"] = s.Layer,
                ["head"] = s.Head,
                ["kind"] = s.Kind,
                ["scores"] = s.Scores.ToDictionary(pair => pair.Key, pair => Math.Round(pair.Value, 4)),
            });
            Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object> { ["heads"] = heads }));
            return 0;
        }

        Console.WriteLine("layer head  kind            prev-token  first-token  local  broad  mean distance");
        foreach (var s in summaries)
        {
            Console.WriteLine($"{s.Layer,5} {s.Head,4}  {s.Kind,-14}  {s.Scores["previous_token"],10:F2}  {s.Scores["sink"],11:F2}  {s.Scores["local"],5:F2}  {s.Scores["broad"],5:F2}  {s.MeanDistance,13:F1}");
        }

        return 0;
    }
}
