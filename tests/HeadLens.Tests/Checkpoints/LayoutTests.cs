using System.Text.Json;
using HeadLens.Checkpoints;
using HeadLens.Inference;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Checkpoints;

/// <summary>
/// The layouts checkpoints come in (tests/reference/model_golden.py writes each with PyTorch's logits and greedy
/// ids): GPT-2 names without the "transformer." prefix, three shards behind model.safetensors.index.json, F16 and
/// BF16 weights (PyTorch computed from the same rounded values), and a Llama with tied embeddings. Logits within
/// 1e-4 relative (fp32 here, float64 there), greedy ids exactly.
/// </summary>
public class LayoutTests
{
    public static TheoryData<string> Variants() => new("tiny-gpt2-no-prefix", "tiny-gpt2-sharded", "tiny-gpt2-f16", "tiny-gpt2-bf16", "tiny-llama-tied");

    [Theory]
    [MemberData(nameof(Variants))]
    public void LoadsAndMatchesPyTorch(string name)
    {
        string directory = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", name);
        var (model, _) = ModelFiles.Load(directory);
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "golden.json")));
        var golden = document.RootElement;
        int[] ids = golden.GetProperty("ids").EnumerateArray().Select(v => v.GetInt32()).ToArray();
        model.Forward(ids, [], 1, ids.Length);
        double[] expected = golden.GetProperty("logits").EnumerateArray().Select(v => v.GetDouble()).ToArray();
        Assert.True(Float64.MaxRelativeError(model.Logits, expected) <= 1e-4);
        int[] greedy = golden.GetProperty("greedy").EnumerateArray().Select(v => v.GetInt32()).ToArray();
        var generated = Generator.Generate(model, ids, greedy.Length, new Sampler(new SamplingSettings { Temperature = 0f })).ToArray();
        Assert.Equal(greedy, generated);
    }
}
