using System.Text.Json.Nodes;
using HeadLens.Checkpoints;
using HeadLens.Model;

namespace HeadLens.Tests.Checkpoints;

/// <summary>
/// A loader refuses what the engine does not implement: config.json keys that change the math, and tensors the
/// model would not read. Each refusal is one line naming the key or the tensor.
/// </summary>
public sealed class StrictLoadingTests : IDisposable
{
    private static readonly string Models = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models");
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-strict-" + Guid.NewGuid().ToString("N"));

    public StrictLoadingTests() => Directory.CreateDirectory(directory);

    public void Dispose() => Directory.Delete(directory, recursive: true);

    [Theory]
    [InlineData("tiny-llama-gqa", "rope_scaling", """{"rope_type": "dynamic", "factor": 2.0}""", "rope_scaling: type 'dynamic' is not implemented")]
    [InlineData("tiny-llama-gqa", "rope_scaling", """{"rope_type": "yarn", "factor": 4.0}""", "rope_scaling: type 'yarn'")]
    [InlineData("tiny-llama-gqa", "rope_scaling", """{"rope_type": "llama3", "factor": 8.0}""", "missing number 'low_freq_factor'")]
    [InlineData("tiny-llama-gqa", "hidden_act", "\"gelu\"", "hidden_act 'gelu' is not implemented")]
    [InlineData("tiny-llama-gqa", "mlp_bias", "true", "mlp_bias = true is not implemented")]
    [InlineData("tiny-llama-gqa", "head_dim", "4", "head_dim 4")]
    [InlineData("tiny-llama-gqa", "attention_bias", "true", "self_attn.q_proj.bias")]
    [InlineData("tiny-qwen2", "use_sliding_window", "true", "use_sliding_window = true is not implemented")]
    [InlineData("tiny-gpt2", "activation_function", "\"gelu\"", "activation_function 'gelu' is not implemented")]
    [InlineData("tiny-gpt2", "scale_attn_by_inverse_layer_idx", "true", "scale_attn_by_inverse_layer_idx")]
    [InlineData("tiny-gpt2", "n_layer", "1", "tensor 'transformer.h.1.")]
    [InlineData("tiny-gpt2", "n_layer", "1000000", "missing tensor 'transformer.h.2.ln_1.weight'")]
    [InlineData("tiny-gpt2", "headlens_attention_only", "true", "tensor 'transformer.h.0.ln_2.bias' is not used")]
    [InlineData("tiny-gpt2", "layer_norm_epsilon", "-1000", "norm epsilon must be positive")]
    [InlineData("tiny-gpt2", "headlens_attention_form", "\"quadratic\"", "headlens_attention_form 'quadratic' is not implemented (softmax, linear)")]
    [InlineData("tiny-llama-gqa", "headlens_attention_form", "\"linear\"", "linear attention is causal, with one key/value head per query head")]
    [InlineData("tiny-qwen2", "model_type", "\"llama\"", "self_attn.k_proj.bias' is not used")]
    public void ConfigKeysThatChangeTheMathAreImplementedOrRefused(string model, string key, string json, string expected)
    {
        string copy = Copy(model);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(copy, "config.json")))!.AsObject();
        config[key] = JsonNode.Parse(json);
        File.WriteAllText(Path.Combine(copy, "config.json"), config.ToJsonString());
        // Refused before anything is allocated: a config claiming a million layers fails at the first missing tensor.
        long before = GC.GetAllocatedBytesForCurrentThread();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var error = Assert.Throws<HeadLensException>(() => ModelFiles.Load(copy));
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error.Message);
        Assert.True(clock.Elapsed.TotalSeconds < 5, $"refusing took {clock.Elapsed.TotalSeconds:F1} s");
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64 << 20, "refusing allocated more than 64 MB");
    }

    [Fact]
    public void ATensorTheModelDoesNotReadIsRefusedByName()
    {
        string copy = Copy("tiny-llama-gqa");
        Rewrite(copy, tensors => tensors["model.layers.0.self_attn.q_norm.weight"] = ([8], new float[8]));
        var error = Assert.Throws<HeadLensException>(() => ModelFiles.Load(copy));
        Assert.Contains("tensor 'model.layers.0.self_attn.q_norm.weight' is not used", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SkippedByRuleCausalMaskBuffersAndRopeFrequencies()
    {
        string gpt2 = Copy("tiny-gpt2");
        Rewrite(gpt2, tensors =>
        {
            tensors["transformer.h.0.attn.bias"] = ([1, 1, 16, 16], new float[256]);
            tensors["transformer.h.0.attn.masked_bias"] = ([1], [-1e4f]);
        });
        var (model, _) = ModelFiles.Load(gpt2);
        var (original, _) = ModelFiles.Load(Path.Combine(Models, "tiny-gpt2"));
        Assert.Equal(original.Parameters.Arena.All.ToArray(), model.Parameters.Arena.All.ToArray());

        string llama = Copy("tiny-llama-gqa");
        Rewrite(llama, tensors => tensors["model.layers.1.self_attn.rotary_emb.inv_freq"] = ([4], [1f, 0.1f, 0.01f, 0.001f]));
        _ = ModelFiles.Load(llama);
    }

    [Fact]
    public void ATiedModelsLmHeadMustEqualItsEmbeddings()
    {
        string copy = Copy("tiny-gpt2");
        Rewrite(copy, tensors => tensors["lm_head.weight"] = tensors["transformer.wte.weight"]);
        _ = ModelFiles.Load(copy);

        Rewrite(copy, tensors =>
        {
            var (shape, data) = tensors["transformer.wte.weight"];
            var changed = (float[])data.Clone();
            changed[5] += 1;
            tensors["lm_head.weight"] = (shape, changed);
        });
        var error = Assert.Throws<HeadLensException>(() => ModelFiles.Load(copy));
        Assert.Contains("'lm_head.weight' differs from the embeddings", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Qwen2AndLlama3RopeScalingAreReadAsFeatures()
    {
        var (qwen2, _) = ModelFiles.Load(Path.Combine(Models, "tiny-qwen2"));
        Assert.Equal(CheckpointLayout.Qwen2, qwen2.Config.Layout);
        Assert.Equal(Biases.QueryKeyValue, qwen2.Config.Biases);
        var (llama3, _) = ModelFiles.Load(Path.Combine(Models, "tiny-llama3-rope"));
        var rope = llama3.Config.Rope;
        Assert.Equal((Embeddings.RopeScaling.Llama3, 8f, 1f, 4f, 64), (rope.Scaling, rope.ScalingFactor, rope.LowFrequencyFactor, rope.HighFrequencyFactor, rope.OriginalContext));
    }

    // The safetensors format requires the tensors to tile the data section exactly: a header that lies about its
    // length (shifting every weight), gaps, trailing bytes and repeated names are all refused in one line.
    [Theory]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, "4 bytes after the last tensor")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "before tensor 'a' belong to no tensor")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "'a' appears twice")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[65536,65536,65536,65536],\"data_offsets\":[0,8]}}", 8, "overflows")]
    public void SafeTensorsWhoseTensorsDoNotTileTheDataAreRefused(string header, int dataBytes, string expected)
    {
        string path = Path.Combine(directory, "bad.safetensors");
        var json = System.Text.Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BitConverter.GetBytes((long)json.Length).CopyTo(bytes, 0);
        json.CopyTo(bytes, 8);
        File.WriteAllBytes(path, bytes);
        var error = Assert.Throws<HeadLensException>(() => SafeTensorsFile.Open(path).Dispose());
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error.Message);
    }

    private string Copy(string model)
    {
        string target = Path.Combine(directory, model + "-" + Guid.NewGuid().ToString("N")[..6]);
        Directory.CreateDirectory(target);
        foreach (string file in Directory.GetFiles(Path.Combine(Models, model)))
        {
            File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
        }

        return target;
    }

    // Reads model.safetensors, lets the test change the tensors, and writes it back.
    private static void Rewrite(string model, Action<Dictionary<string, (int[] Shape, float[] Data)>> change)
    {
        string path = Path.Combine(model, "model.safetensors");
        var tensors = new Dictionary<string, (int[] Shape, float[] Data)>(StringComparer.Ordinal);
        using (var file = SafeTensorsFile.Open(path))
        {
            foreach (var (name, info) in file.Entries)
            {
                var data = new float[info.ElementCount];
                file.ReadFloat32(name, data);
                tensors[name] = (info.Shape.ToArray(), data);
            }
        }

        change(tensors);
        SafeTensorsWriter.Write(path, tensors.Select(entry => (entry.Key, entry.Value.Shape, (ReadOnlyMemory<float>)entry.Value.Data)));
    }
}
