using System.Text.Json;
using HeadLens.Analysis;

namespace HeadLens.Cli.Commands;

internal sealed class AttentionCommand : ICommand
{
    public string Name => "attention";

    public string Usage => "attention --model MODEL (--text TEXT | --ids 1,2,3) [--layer L] [--head H] --json";

    public int Run(CommandArgs args)
    {
        var (model, tokenizer, _) = ModelInput.LoadModel(args);
        int[] ids = ModelInput.ReadIds(args, model, tokenizer);
        int? layer = args.Has("layer") ? args.GetInt("layer", 0, 0, model.Config.Layers - 1) : null;
        int? head = args.Has("head") ? args.GetInt("head", 0, 0, model.Config.Heads - 1) : null;
        args.Flag("json");
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
        var document = new Dictionary<string, object>
        {
            ["ids"] = ids,
            ["layers"] = layer is null ? model.Config.Layers : 1,
            ["heads"] = head is null ? model.Config.Heads : 1,
            ["patterns"] = body,
        };
        Console.WriteLine(JsonSerializer.Serialize(document));
        return 0;
    }
}
