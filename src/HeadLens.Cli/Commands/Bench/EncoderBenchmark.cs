using HeadLens.Cli.Models;
using Microsoft.ML.OnnxRuntime;

namespace HeadLens.Cli.Commands.Bench;

/// <summary>
/// `headlens bench encoder`: the built-in all-MiniLM-L6-v2 on HeadLens's engine against ONNX Runtime running the
/// package's own graph in the same process (IntraOpNumThreads = 2, every graph optimisation, the same random ids):
/// batch 1 × T = 16, 128, 512 and batch 32 × T = 128, last_hidden_state only. Medians over blocks of passes taken in turn.
/// </summary>
internal sealed class EncoderBenchmark : IBenchmark
{
    public string Name => "encoder";

    public string Summary => "The built-in MiniLM encoder against ONNX Runtime on the same graph, at several batch sizes and lengths.";

    public IReadOnlyList<CliOption> Options { get; } = [];

    public IReadOnlyList<BenchResult> Run(CommandArgs args, TextWriter progress)
    {
        var (model, _) = MiniLmResources.Load();
        // Constant weights packed once, as ONNX Runtime prepacks them when its session loads.
        model.PackForInference();
        byte[] onnx;
        using (var stream = MiniLmResources.OpenModel())
        using (var copy = new MemoryStream())
        {
            stream.CopyTo(copy);
            onnx = copy.ToArray();
        }

        using var options = new SessionOptions { IntraOpNumThreads = 2, InterOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        using var session = new InferenceSession(onnx, options);
        var results = new List<BenchResult>();
        var random = new Random(1);
        foreach (var (batch, tokens) in new[] { (1, 16), (1, 128), (1, 512), (32, 128) })
        {
            // Random word pieces between [CLS] and [SEP]; no padding, so both engines do the same work.
            int[] ids = new int[batch * tokens];
            for (int b = 0; b < batch; b++)
            {
                for (int i = 0; i < tokens; i++)
                {
                    ids[(b * tokens) + i] = i == 0 ? 101 : i == tokens - 1 ? 102 : random.Next(1000, 30000);
                }
            }

            var inputIds = ids.Select(id => (long)id).ToArray();
            var mask = Enumerable.Repeat(1L, ids.Length).ToArray();
            var types = new long[ids.Length];
            long[] shape = [batch, tokens];
            using var idsValue = OrtValue.CreateTensorValueFromMemory(inputIds, shape);
            using var maskValue = OrtValue.CreateTensorValueFromMemory(mask, shape);
            using var typesValue = OrtValue.CreateTensorValueFromMemory(types, shape);
            var inputs = new Dictionary<string, OrtValue> { ["input_ids"] = idsValue, ["attention_mask"] = maskValue, ["token_type_ids"] = typesValue };
            // Warm-up long enough for .NET's tiered compilation to finish: at T = 16, 60 passes (0.4 s) still left
            // passes 60..80 at 7.3–7.8 ms, where passes from the 200th on took 4.2–5.3 ms. So at least 2 s of calls
            // (both engines alike), as a service that embeds texts all day would see.
            int warmup = batch * tokens >= 4096 ? 3 : 60;
            const double WarmupSeconds = 2;
            // The engines in alternating blocks of at least 0.3 s, three each: at T = 16 twenty passes of each, one
            // engine's block after the other's, gave ratios from 0.61 to 0.99 on one machine within minutes.
            var (ours, theirs) = Timing.AlternatingMedianMilliseconds(
                () => model.Infer(ids, batch, tokens, withLogits: false),
                () =>
                {
                    using var outputs = session.Run(new RunOptions(), inputs, ["last_hidden_state"]);
                },
                warmup, blocks: 3, blockSeconds: 0.3, minWarmupSeconds: WarmupSeconds);
            progress.WriteLine($"encoder batch {batch} × T {tokens}: HeadLens {ours:F2} ms, ONNX Runtime {theirs:F2} ms — {theirs / ours:F2}× ONNX Runtime's speed");
            results.Add(new BenchResult(
                new Dictionary<string, object> { ["batch"] = batch, ["T"] = tokens },
                new Dictionary<string, double> { ["median_ms"] = ours, ["onnxruntime_median_ms"] = theirs, ["speed_ratio"] = theirs / ours }));
        }

        return results;
    }
}
