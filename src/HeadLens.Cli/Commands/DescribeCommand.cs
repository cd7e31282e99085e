using System.Globalization;
using HeadLens.Attention;
using HeadLens.Checkpoints;
using HeadLens.Model;

namespace HeadLens.Cli.Commands;

internal sealed class DescribeCommand : ICommand
{
    public string Name => "describe";

    public CommandSpec Spec { get; } = new(
        "What a model's shape costs: parameters by part, weight bytes, KV cache, attention scores and FLOPs per token at a context length.",
        [
            SharedOptions.Model with { Group = "what", Required = true, Default = null },
            SharedOptions.Preset with { Group = "what", Required = true },
            CliOption.Valued("context", "N", "the context length the costs are computed at", "the model's context"),
        ],
        "headlens describe --preset gpt2 --context 4096");

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
        double kvBytes = 2.0 * config.Layers * config.KvHeads * config.HeadDim * context * sizeof(float);
        double scores = (double)context * context;
        // Per token, every weight matrix is one multiply-add per weight: 2 FLOPs. The embedding tables are looked up, not
        // multiplied; the unembedding (vocabulary × channels) is multiplied whether or not it is tied to the embeddings.
        long unembedding = head > 0 ? head : config.HasOutputHead ? (long)config.VocabSize * config.Channels : 0;
        long used = attention + mlp + norms + unembedding;
        double attentionFlops = 4.0 * config.Layers * config.Channels * context;
        Console.WriteLine($"{preset ?? modelPath}: {(config.Attention == MaskKind.Causal ? "decoder" : "encoder")}, {config.Layers} layers × {config.Heads} heads" +
            (config.KvHeads != config.Heads ? $" ({config.KvHeads} key/value heads: grouped-query attention)" : "") +
            $", head size {config.HeadDim}, {config.Channels} channels, MLP {(config.HasMlp ? config.HiddenChannels.ToString(CultureInfo.InvariantCulture) : "none (attention-only)")}, vocabulary {config.VocabSize:N0}, context {config.ContextLength:N0}");
        Console.WriteLine($"features: {config.DescribeFeatures()}");
        Console.WriteLine($"parameters       {Numbers.Count(total),12}");
        Console.WriteLine($"  embeddings     {Numbers.Count(embeddings),12}");
        Console.WriteLine($"  attention      {Numbers.Count(attention),12}");
        Console.WriteLine($"  MLP            {Numbers.Count(mlp),12}");
        Console.WriteLine($"  norms          {Numbers.Count(norms),12}");
        Console.WriteLine($"  output head    {(head > 0 ? Numbers.Count(head) : config.HasOutputHead ? "tied to the embeddings" : "none"),12}");
        Console.WriteLine($"weights          {Numbers.Bytes(total * 4.0),12} fp32, {Numbers.Bytes(total * 2.0)} bf16");
        Console.WriteLine($"at context {context:N0}:");
        Console.WriteLine($"  KV cache       {Numbers.Bytes(kvBytes),12} fp32 (2 × layers × kv heads × head size × tokens)");
        Console.WriteLine($"  scores / head  {Numbers.Count(scores),12} (T² = {scores:N0}; causal: {scores / 2:N0} visible) — {Numbers.Count(scores * config.Layers * config.Heads)} for the whole model");
        Console.WriteLine($"  a naive T×T matrix per head: {Numbers.Bytes(scores * 4)} fp32; the fused kernel never stores it");
        Console.WriteLine($"  FLOPs / token  {Numbers.Flops((2.0 * used) + attentionFlops),12} = 2 × {Numbers.Count(used)} weights used per token (the unembedding included" +
            $"{(head == 0 && config.HasOutputHead ? ", though tied" : "")}) + {Numbers.Flops(attentionFlops)} attention at full context (4 × layers × channels × tokens)");
        if (config.AttentionForm == AttentionForm.Linear)
        {
            // S = Σ φ(k)·vᵀ [D, D] and z = Σ φ(k) [D] per head; per token φ(q)·S, φ(q)·z and the update of both.
            double state = (double)config.Heads * config.HeadDim * (config.HeadDim + 1);
            double runningFlops = 4.0 * config.Layers * config.Channels * config.HeadDim;
            Console.WriteLine($"  linear attention: running sums, a state of {Numbers.Count(state)} floats per layer instead of T² scores, " +
                $"and {Numbers.Flops(runningFlops)} per token at any length (4 × layers × channels × head size), in training, prompts and decoding " +
                "(the KV cache is kept beside the sums for a window's eviction)");
        }

        if (File.Exists(modelPath) && modelPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
        {
            GgufSummary.Print(modelPath, Console.Out);
        }

        return 0;
    }
}
