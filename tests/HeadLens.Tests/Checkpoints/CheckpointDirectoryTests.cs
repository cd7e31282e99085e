using System.Text.Json;
using HeadLens.Checkpoints;

namespace HeadLens.Tests.Checkpoints;

public sealed class CheckpointDirectoryTests : IDisposable
{
    private static readonly string Models = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models");
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-dir-" + Guid.NewGuid().ToString("N"));

    public CheckpointDirectoryTests() => Directory.CreateDirectory(directory);

    public void Dispose() => Directory.Delete(directory, recursive: true);

    [Fact]
    public void ShardedCheckpointReadsEveryTensorFromTheShardTheIndexNames()
    {
        string sharded = Path.Combine(Models, "tiny-gpt2-sharded");
        using var index = JsonDocument.Parse(File.ReadAllText(Path.Combine(sharded, CheckpointDirectory.IndexFile)));
        var weightMap = index.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
        using var checkpoint = CheckpointDirectory.Open(sharded);
        Assert.Equal(3, checkpoint.Files.Count);
        Assert.Equal(weightMap.Keys.Order(StringComparer.Ordinal), checkpoint.Entries.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, shard) in weightMap)
        {
            Assert.Equal(shard, Path.GetFileName(checkpoint.FileOf(name).Path));
            using var file = SafeTensorsFile.Open(Path.Combine(sharded, shard));
            var direct = new float[file.Entries[name].ElementCount];
            var through = new float[direct.Length];
            file.ReadFloat32(name, direct);
            checkpoint.ReadFloat32(name, through);
            Assert.Equal(direct, through);
            checkpoint.ValidateFinite(name);
        }
    }

    [Fact]
    public void SingleFileCheckpointOpens()
    {
        using var checkpoint = CheckpointDirectory.Open(Path.Combine(Models, "tiny-gpt2"));
        Assert.Single(checkpoint.Files);
        Assert.Contains("transformer.wte.weight", checkpoint.Entries.Keys);
        Assert.Contains("model.safetensors", Assert.Throws<HeadLensException>(() => checkpoint.ReadFloat32("nope", new float[1])).Message);
    }

    public static TheoryData<string, string[]> BrokenIndexes() => new()
    {
        { "missing-shard", ["model.safetensors.index.json", "model-00002-of-00003.safetensors", "does not exist"] },
        { "wrong-shard", ["model-00001-of-00003.safetensors", "missing tensor", "'transformer.wpe.weight'"] },
        { "escaping-shard", ["model.safetensors.index.json", "../model-00001-of-00003.safetensors"] },
        { "malformed", ["model.safetensors.index.json", "malformed JSON"] },
        { "no-weight-map", ["model.safetensors.index.json", "weight_map"] },
        { "duplicate", ["model-00001-of-00003.safetensors", "model-00003-of-00003.safetensors", "'transformer.wpe.weight'", "also in"] },
        { "empty", ["no model.safetensors"] },
    };

    [Theory]
    [MemberData(nameof(BrokenIndexes))]
    public void BrokenCheckpointDirectoriesAreNamed(string kind, string[] expected)
    {
        string source = Path.Combine(Models, "tiny-gpt2-sharded");
        string copy = Path.Combine(directory, kind);
        Directory.CreateDirectory(copy);
        foreach (string file in Directory.GetFiles(source, "*.safetensors"))
        {
            File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        }

        string index = File.ReadAllText(Path.Combine(source, CheckpointDirectory.IndexFile));
        // The position embedding is the tensor these cases move or copy into shard 1 (it lives in shard 3).
        const string Moved = "transformer.wpe.weight", First = "model-00001-of-00003.safetensors", Third = "model-00003-of-00003.safetensors";
        Assert.Equal(Third, JsonDocument.Parse(index).RootElement.GetProperty("weight_map").GetProperty(Moved).GetString());
        switch (kind)
        {
            case "missing-shard":
                File.Delete(Path.Combine(copy, "model-00002-of-00003.safetensors"));
                break;
            case "wrong-shard":
                index = index.Replace($"\"{Moved}\": \"{Third}\"", $"\"{Moved}\": \"{First}\"", StringComparison.Ordinal);
                break;
            case "escaping-shard":
                index = index.Replace("\"model-00001-of-00003.safetensors\"", "\"../model-00001-of-00003.safetensors\"", StringComparison.Ordinal);
                break;
            case "malformed":
                index = index[..(index.Length / 2)];
                break;
            case "no-weight-map":
                index = "{\"metadata\": {}}";
                break;
            case "duplicate":
                // The same tensor in two shards: shard 1 is rewritten with a copy of wpe added.
                {
                    var tensors = new List<(string, int[], ReadOnlyMemory<float>)>();
                    using (var third = SafeTensorsFile.Open(Path.Combine(copy, Third)))
                    using (var first = SafeTensorsFile.Open(Path.Combine(copy, First)))
                    {
                        foreach (var (file, info) in first.Entries.Values.Select(e => (first, e)).Append((third, third.Entries[Moved])))
                        {
                            var values = new float[info.ElementCount];
                            file.ReadFloat32(info.Name, values);
                            tensors.Add((info.Name, info.Shape, values));
                        }
                    }

                    SafeTensorsWriter.Write(Path.Combine(copy, First), tensors);
                    break;
                }

            case "empty":
                foreach (string file in Directory.GetFiles(copy))
                {
                    File.Delete(file);
                }

                break;
        }

        if (kind != "empty")
        {
            File.WriteAllText(Path.Combine(copy, CheckpointDirectory.IndexFile), index);
        }

        string message = Assert.Throws<HeadLensException>(() => CheckpointDirectory.Open(copy).Dispose()).Message;
        foreach (string part in expected)
        {
            Assert.Contains(part, message);
        }
    }
}
