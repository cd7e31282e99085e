using System.Globalization;
using HeadLens.Attention;
using HeadLens.Checkpoints;
using HeadLens.Model;

namespace HeadLens.Cli.Commands;

internal sealed class DescribeCommand : ICommand
{
    public string Name => "describe";

    public string Usage => "describe (--model MODEL | --preset NAME) [--context N]";

    public int Run(CommandArgs args)
    {
        string? preset = args.Get("preset");
        string? modelPath = args.Get("model");
        if ((preset is null) == (modelPath is null))
        {
            throw new UsageException("describe: give exactly one of --model MODEL or --preset NAME");
        }

        var config = preset is not null ? ModelPresets.Get(preset)
            : File.Exists(modelPath) || !Directory.Exists(modelPath) ? ModelInput.Load(modelPath!).Model.Config   // a file (llama2.c, ONNX) or a built-in name
            : HuggingFaceFormat.ParseConfig(Path.Combine(modelPath!, "config.json"));
        int context = args.GetInt("context", config.ContextLength, 1, int.MaxValue);
        args.RejectUnknown();

        var (embeddings, attention, mlp, norms, head) = config.ParameterCounts();
        long total = config.ParameterCount;
        string Count(long n) => n >= 1_000_000_000 ? $"{n / 1e9:F2} B" : n >= 1_000_000 ? $"{n / 1e6:F2} M" : n.ToString("N0", CultureInfo.InvariantCulture);
        string Bytes(double b) => b >= 1 << 30 ? $"{b / (1 << 30):F2} GiB" : b >= 1 << 20 ? $"{b / (1 << 20):F1} MiB" : $"{b / 1024:F1} KiB";
        double kvBytes = 2.0 * config.Layers * config.KvHeads * config.HeadDim * context * sizeof(float);
        double scores = (double)context * context;
        Console.WriteLine($"{preset ?? modelPath}: {(config.Attention == MaskKind.Causal ? "decoder" : "encoder")}, {config.Layers} layers × {config.Heads} heads" +
            (config.KvHeads != config.Heads ? $" ({config.KvHeads} key/value heads: grouped-query attention)" : "") +
            $", head size {config.HeadDim}, {config.Channels} channels, MLP {(config.HasMlp ? config.HiddenChannels.ToString(CultureInfo.InvariantCulture) : "none (attention-only)")}, vocabulary {config.VocabSize:N0}, context {config.ContextLength:N0}");
        Console.WriteLine($"features: {config.DescribeFeatures()}");
        Console.WriteLine($"parameters       {Count(total),12}");
        Console.WriteLine($"  embeddings     {Count(embeddings),12}");
        Console.WriteLine($"  attention      {Count(attention),12}");
        Console.WriteLine($"  MLP            {Count(mlp),12}");
        Console.WriteLine($"  norms          {Count(norms),12}");
        Console.WriteLine($"  output head    {(head == 0 ? "tied to the embeddings" : Count(head)),12}");
        Console.WriteLine($"weights          {Bytes(total * 4.0),12} fp32, {Bytes(total * 2.0)} bf16");
        Console.WriteLine($"at context {context:N0}:");
        Console.WriteLine($"  KV cache       {Bytes(kvBytes),12} fp32 (2 × layers × kv heads × head size × tokens)");
        Console.WriteLine($"  scores / head  {scores,12:E2} (T² = {scores:N0}; causal: {scores / 2:N0} visible) — {scores * config.Layers * config.Heads:E2} for the whole model");
        Console.WriteLine($"  a naive T×T matrix per head: {Bytes(scores * 4)} fp32; the fused kernel never stores it");
        Console.WriteLine($"  FLOPs / token  {2.0 * (total - embeddings) + 4.0 * config.Layers * config.Channels * context:E2} (2·params + attention at full context)");
        if (File.Exists(modelPath) && modelPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
        {
            GgufSummary.Print(modelPath, Console.Out);
        }

        return 0;
    }
}
