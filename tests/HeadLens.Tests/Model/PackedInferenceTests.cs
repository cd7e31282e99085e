using HeadLens.Attention;
using HeadLens.Model;

namespace HeadLens.Tests.Model;

/// <summary>A model packed for inference computes exactly what the same weights compute unpacked, in every inference pass.</summary>
public sealed class PackedInferenceTests
{
    public static TheoryData<string> Models() => new() { "minilm-like", "gpt2-like", "llama-like" };

    private static ModelConfig Config(string name) => name switch
    {
        "minilm-like" => ModelPresets.Bert(vocab: 97, context: 64, layers: 2, heads: 4, channels: 64, hidden: 256),
        "gpt2-like" => ModelPresets.Gpt2(vocab: 97, context: 64, layers: 2, heads: 4, channels: 64),
        _ => ModelPresets.Llama(vocab: 97, context: 64, layers: 2, heads: 4, kvHeads: 2, channels: 64, hidden: 160),
    };

    [Theory]
    [MemberData(nameof(Models))]
    public void PackedInferenceEqualsUnpacked(string name)
    {
        var config = Config(name);
        var plain = Transformer.Create(config, seed: 3);
        var packed = Transformer.Create(config, seed: 3);
        Assert.True(packed.PackForInference() > 0 || !System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated);
        Assert.True(packed.IsPackedForInference);
        var random = new Random(1);
        int[] ids = [.. Enumerable.Range(0, 3 * 37).Select(_ => random.Next(config.VocabSize))];

        Assert.Equal(plain.Infer(ids, 3, 37, withLogits: config.HasOutputHead).FinalNormed.ToArray(),
            packed.Infer(ids, 3, 37, withLogits: config.HasOutputHead).FinalNormed.ToArray());
        // Every activation of the analysis run except the per-head outputs (which bypass the packed output matrix).
        var expected = plain.Run(ids.AsSpan(0, 37), capture: point => !point.EndsWith("hook_result", StringComparison.Ordinal));
        var actual = packed.Run(ids.AsSpan(0, 37), capture: point => !point.EndsWith("hook_result", StringComparison.Ordinal));
        Assert.Equal(expected.Logits, actual.Logits);
        Assert.NotEmpty(expected.Cache);
        foreach (var (point, values) in expected.Cache)
        {
            Assert.True(values.AsSpan().SequenceEqual(actual[point]), point);
        }
        if (config.Attention == MaskKind.Causal)
        {
            float[] plainLogits = new float[config.VocabSize], packedLogits = new float[config.VocabSize];
            var plainCache = plain.NewCache(64);
            var packedCache = packed.NewCache(64);
            plain.DecodeStep(ids.AsSpan(0, 20), plainCache, plainLogits);
            packed.DecodeStep(ids.AsSpan(0, 20), packedCache, packedLogits);
            Assert.Equal(plainLogits, packedLogits);
            plain.DecodeStep(ids.AsSpan(20, 1), plainCache, plainLogits);
            packed.DecodeStep(ids.AsSpan(20, 1), packedCache, packedLogits);
            Assert.Equal(plainLogits, packedLogits);
        }
    }

    [Fact]
    public void TrainingRefusesAPackedModel()
    {
        var model = Transformer.Create(Config("gpt2-like"), seed: 1);
        model.PackForInference();
        int[] ids = [1, 2, 3, 4];
        var error = Assert.Throws<HeadLensException>(() => model.Forward(ids, ids, 1, 4));
        Assert.Contains("packed for inference", error.Message);
    }
}
