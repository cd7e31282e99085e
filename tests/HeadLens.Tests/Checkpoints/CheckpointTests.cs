using System.Buffers.Binary;
using System.Text;
using HeadLens.Checkpoints;
using HeadLens.Inference;

namespace HeadLens.Tests.Checkpoints;

public sealed class CheckpointTests : IDisposable
{
    private static readonly string Fixtures = Path.Combine(AppContext.BaseDirectory, "Fixtures");
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-ckpt-" + Guid.NewGuid().ToString("N"));

    public CheckpointTests() => Directory.CreateDirectory(directory);

    public void Dispose() => Directory.Delete(directory, recursive: true);

    [Fact]
    public void Llama2cModelReproducesRunCsGreedyIds()
    {
        // A real pretrained llama2.c file (GQA 8/4 heads, shared classifier) and the 200 ids llama2.c's run.c
        // generates from BOS at temperature 0 (see tests/HeadLens.Tests/Fixtures/llama2c and ../shared/models).
        var (model, tokenizer) = ModelFiles.Load(Path.Combine(Fixtures, "llama2c", "llama2c-260k.bin"));
        Assert.Null(tokenizer);
        Assert.Equal((64, 5, 8, 4, 512), (model.Config.Channels, model.Config.Layers, model.Config.Heads, model.Config.KvHeads, model.Config.VocabSize));
        int[] expected = File.ReadAllText(Path.Combine(Fixtures, "llama2c", "llama2c-260k.greedy-ids.txt"))
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();
        var ids = Generator.Generate(model, [1], 200, new Sampler(new SamplingSettings { Temperature = 0f })).ToArray();
        Assert.Equal(expected, ids);
    }

    [Fact]
    public void Llama2cHeaderThatLiesAboutTheSizeIsRefusedBeforeAllocating()
    {
        byte[] original = File.ReadAllBytes(Path.Combine(Fixtures, "llama2c", "llama2c-260k.bin"));
        string path = Path.Combine(directory, "lying.bin");
        byte[] lying = (byte[])original.Clone();
        BinaryPrimitives.WriteInt32LittleEndian(lying.AsSpan(8), 5000); // n_layers 5 → 5000
        File.WriteAllBytes(path, lying);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var error = Assert.Throws<HeadLensException>(() => ModelFiles.Load(path));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "no allocation from a lying header");
        Assert.Contains("lying.bin", error.Message);
        File.WriteAllBytes(path, original[..1000]);
        Assert.Contains("lying.bin", Assert.Throws<HeadLensException>(() => ModelFiles.Load(path)).Message);
    }

    [Fact]
    public void BadSafetensorsFilesGetOneLineNamingFileAndTensor()
    {
        string Write(string name, byte[] bytes)
        {
            string path = Path.Combine(directory, name);
            System.IO.File.WriteAllBytes(path, bytes);
            return path;
        }

        byte[] Build(string header, int dataBytes)
        {
            byte[] json = Encoding.UTF8.GetBytes(header);
            var bytes = new byte[8 + json.Length + dataBytes];
            BinaryPrimitives.WriteInt64LittleEndian(bytes, json.Length);
            json.CopyTo(bytes, 8);
            return bytes;
        }

        string Message(string name, byte[] bytes) =>
            Assert.Throws<HeadLensException>(() => SafeTensorsFile.Open(Write(name, bytes)).Dispose()).Message;

        Assert.Contains("truncated", Message("short.safetensors", [1, 2, 3]));
        var pastEnd = new byte[16];
        BinaryPrimitives.WriteInt64LittleEndian(pastEnd, 1000);
        Assert.Contains("past the end", Message("past.safetensors", pastEnd));
        Assert.Contains("malformed JSON", Message("json.safetensors", Build("{\"a\": [", 0)));
        Assert.Contains("'w'", Message("dtype.safetensors", Build("{\"w\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8)));
        Assert.Contains("overlaps", Message("overlap.safetensors", Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12)));
        Assert.Contains("outside the data section", Message("range.safetensors", Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4)));
        Assert.Contains("does not match", Message("shape.safetensors", Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8)));
    }

    [Fact]
    public void F16AndBf16AreConvertedOnLoad()
    {
        string header = "{\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[4,8]}}";
        byte[] json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + 8];
        BinaryPrimitives.WriteInt64LittleEndian(bytes, json.Length);
        json.CopyTo(bytes, 8);
        int data = 8 + json.Length;
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(data), BitConverter.HalfToUInt16Bits((Half)1.5f));
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(data + 2), BitConverter.HalfToUInt16Bits((Half)(-0.25f)));
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(data + 4), (ushort)(BitConverter.SingleToInt32Bits(3.0f) >> 16));
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(data + 6), (ushort)(BitConverter.SingleToInt32Bits(-0.5f) >> 16));
        string path = Path.Combine(directory, "half.safetensors");
        System.IO.File.WriteAllBytes(path, bytes);
        using var file = SafeTensorsFile.Open(path);
        var values = new float[2];
        file.ReadFloat32("h", values);
        Assert.Equal([1.5f, -0.25f], values);
        file.ReadFloat32("b", values);
        Assert.Equal([3f, -0.5f], values);
    }

    [Fact]
    public void MissingTensorAndNanWeightsAreNamed()
    {
        var (model, _) = ModelFiles.Load(Path.Combine(Fixtures, "models", "tiny-gpt2"));
        var tensors = ModelFiles.ToHuggingFace(model.Config, model.Parameters);
        string Save(string name, Func<KeyValuePair<string, (int[] Shape, float[] Data)>, bool> keep)
        {
            string copy = Path.Combine(directory, name);
            Directory.CreateDirectory(copy);
            System.IO.File.Copy(Path.Combine(Fixtures, "models", "tiny-gpt2", "config.json"), Path.Combine(copy, "config.json"));
            SafeTensorsWriter.Write(Path.Combine(copy, "model.safetensors"),
                tensors.Where(keep).Select(t => (t.Key, t.Value.Shape, (ReadOnlyMemory<float>)t.Value.Data)));
            return copy;
        }

        var missing = Assert.Throws<HeadLensException>(() => ModelFiles.Load(Save("missing", t => t.Key != "transformer.h.1.mlp.c_fc.weight")));
        Assert.Contains("missing tensor 'transformer.h.1.mlp.c_fc.weight'", missing.Message);
        tensors["transformer.h.0.ln_2.bias"].Data[3] = float.NaN;
        var nan = Assert.Throws<HeadLensException>(() => ModelFiles.Load(Save("nan", _ => true)));
        Assert.Contains("model.safetensors", nan.Message);
        Assert.Contains("'transformer.h.0.ln_2.bias'", nan.Message);
        Assert.Contains("NaN", nan.Message);
    }

    [Fact]
    public void ModelWithAShapeThatDisagreesWithConfigIsRefused()
    {
        string source = Path.Combine(Fixtures, "models", "tiny-gpt2");
        string copy = Path.Combine(directory, "model");
        Directory.CreateDirectory(copy);
        System.IO.File.Copy(Path.Combine(source, "model.safetensors"), Path.Combine(copy, "model.safetensors"));
        System.IO.File.WriteAllText(Path.Combine(copy, "config.json"),
            System.IO.File.ReadAllText(Path.Combine(source, "config.json")).Replace("\"n_embd\": 24", "\"n_embd\": 48", StringComparison.Ordinal));
        var error = Assert.Throws<HeadLensException>(() => ModelFiles.Load(copy));
        Assert.Contains("model.safetensors", error.Message);
        Assert.Contains("config.json implies", error.Message);
    }
}
