using System.Text.Json;
using HeadLens.Checkpoints;
using HeadLens.Kernels;
using HeadLens.Model;
using HeadLens.Tests.Oracles;
using HeadLens.Training;

namespace HeadLens.Tests.Model;

/// <summary>
/// llm.c's test_gpt2, for HeadLens: tiny GPT-2 and Llama models built and run by PyTorch
/// (tests/reference/model_golden.py), saved in the Hugging Face layout, loaded here. Logits within 1e-4 relative
/// (floor 1), every gradient within 1e-3 of its tensor's largest entry, and the losses of 10 AdamW steps within
/// 1e-4 — fp32 here against float64 there.
/// </summary>
public class TorchGoldenModelTests
{
    // tiny-qwen2 (q/k/v biases) and tiny-llama3-rope (Llama 3.1 rope scaling) prove the feature design on two
    // real variants: each is a few lines of config, no new code path.
    public static TheoryData<string> Models() => new("tiny-gpt2", "tiny-llama-gqa", "tiny-qwen2", "tiny-llama3-rope");

    [Theory]
    [MemberData(nameof(Models))]
    public void LogitsLossAndGradientsMatchPyTorch(string name)
    {
        var (model, golden) = Load(name);
        int[] ids = Ints(golden, "ids"), targets = Ints(golden, "targets");
        int batch = golden.GetProperty("batch").GetInt32(), tokens = golden.GetProperty("tokens").GetInt32();
        float loss = model.Forward(ids, targets, batch, tokens);
        Assert.True(Float64.MaxRelativeError(model.Logits, Doubles(golden, "logits")) <= 1e-4, "logits");
        Assert.Equal(golden.GetProperty("loss").GetDouble(), loss, 1e-4);

        model.ZeroGradients();
        model.Backward();
        var ours = ModelFiles.ToHuggingFace(model.Config, model.Gradients);
        foreach (var gradient in golden.GetProperty("grads").EnumerateObject())
        {
            double[] expected = gradient.Value.EnumerateArray().Select(v => v.GetDouble()).ToArray();
            Assert.True(ours.ContainsKey(gradient.Name), $"no gradient for {gradient.Name}");
            double scale = Math.Max(expected.Max(Math.Abs), 1e-12);
            double error = Float64.MaxRelativeError(ours[gradient.Name].Data, expected, scale);
            Assert.True(error <= 1e-3, $"{gradient.Name}: error {error:E2}");
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void TenAdamWStepsGiveTheSameLosses(string name)
    {
        var (model, golden) = Load(name);
        int[] ids = Ints(golden, "ids"), targets = Ints(golden, "targets");
        int batch = golden.GetProperty("batch").GetInt32(), tokens = golden.GetProperty("tokens").GetInt32();
        var optimizer = new AdamWOptimizer(model, new AdamWSettings(LearningRate: 1e-3f, WeightDecay: 0.1f));
        double[] expected = Doubles(golden, "adamw_losses");
        for (int step = 0; step < expected.Length; step++)
        {
            model.ZeroGradients();
            float loss = model.Forward(ids, targets, batch, tokens);
            Assert.True(Math.Abs(loss - expected[step]) <= 1e-4 * Math.Max(1, expected[step]), $"step {step}: {loss} vs {expected[step]}");
            model.Backward();
            optimizer.Step(1e-3f);
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void IncrementalDecodingEqualsTheFullForward(string name)
    {
        var (model, golden) = Load(name);
        int[] ids = Ints(golden, "ids")[..8];
        model.Forward(ids, [], 1, 8);
        float[] full = model.Logits.ToArray();
        var cache = model.NewCache(16);
        int vocab = model.Config.VocabSize;
        var logits = new float[vocab];
        model.DecodeStep(ids.AsSpan(0, 3), cache, logits);
        Assert.True(Float64.MaxRelativeError(logits, FiniteDifference.ToDouble(full[(2 * vocab)..(3 * vocab)])) <= 1e-5);
        for (int t = 3; t < 8; t++)
        {
            model.DecodeStep(ids.AsSpan(t, 1), cache, logits);
            Assert.True(Float64.MaxRelativeError(logits, FiniteDifference.ToDouble(full[(t * vocab)..((t + 1) * vocab)])) <= 1e-5, $"token {t}");
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void BatchedInferenceEqualsTheTrainingForward(string name)
    {
        var (model, golden) = Load(name);
        int[] ids = Ints(golden, "ids");
        int batch = golden.GetProperty("batch").GetInt32(), tokens = golden.GetProperty("tokens").GetInt32();
        model.Forward(ids, [], batch, tokens);
        float[] training = model.Logits.ToArray();
        var inference = model.Infer(ids, batch, tokens);
        // The same blocks and kernels on the same rows: equal to the last bit.
        Assert.Equal(training, inference.Logits.ToArray());
        Assert.Equal(0, inference.Arena.Tensors.Count(tensor => tensor.Name.Contains("grad", StringComparison.Ordinal)));
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void SaveThenLoadGivesTheSameModel(string name)
    {
        var (model, _) = Load(name);
        string directory = Path.Combine(Path.GetTempPath(), "headlens-save-" + Guid.NewGuid().ToString("N"));
        try
        {
            // No tokenizer: the fixtures' vocabularies (41 to 61 ids) are smaller than any tokenizer's, and a
            // tokenizer with more ids than the model is refused at load (UserErrorTests).
            ModelFiles.Save(model, null, directory);
            var (loaded, tokenizer) = ModelFiles.Load(directory);
            Assert.Null(tokenizer);
            Assert.Equal(model.Config, loaded.Config);
            Assert.Equal(model.Parameters.Arena.All.ToArray(), loaded.Parameters.Arena.All.ToArray());
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    internal static (Transformer Model, JsonElement Golden) Load(string name)
    {
        string directory = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", name);
        var (model, _) = ModelFiles.Load(directory);
        var golden = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "golden.json"))).RootElement;
        return (model, golden);
    }

    private static int[] Ints(JsonElement element, string key) => element.GetProperty(key).EnumerateArray().Select(v => v.GetInt32()).ToArray();

    private static double[] Doubles(JsonElement element, string key) => element.GetProperty(key).EnumerateArray().Select(v => v.GetDouble()).ToArray();
}
