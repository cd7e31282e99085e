using System.Text.Json;

namespace HeadLens.Cli.Commands;

internal sealed class LogitsCommand : ICommand
{
    public string Name => "logits";

    public string Usage => "logits   --model MODEL (--text TEXT | --ids 1,2,3) --json";

    public int Run(CommandArgs args)
    {
        var (model, tokenizer, path) = ModelInput.LoadModel(args);
        int[] ids = ModelInput.ReadIds(args, model, tokenizer);
        args.Flag("json"); // the output is always the contract's JSON
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

        Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object> { ["ids"] = ids, ["logits"] = rows }));
        return 0;
    }
}
