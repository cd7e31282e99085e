using System.Text.Json;

namespace HeadLens.Checkpoints;

/// <summary>
/// The safetensors files of a Hugging Face checkpoint directory as one set of tensors: <c>model.safetensors</c>, or
/// the shards that <c>model.safetensors.index.json</c> lists in its <c>weight_map</c> (tensor name → shard file).
/// Checked on open: the index is well-formed JSON, every shard is a plain file name that exists and is a valid
/// safetensors file, every tensor the index maps is in the shard it names, and no tensor is in two shards.
/// </summary>
public sealed class CheckpointDirectory : ITensorSource, IDisposable
{
    public const string SingleFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";

    private readonly Dictionary<string, SafeTensorsFile> fileOf;
    private readonly Dictionary<string, SafeTensorInfo> entries;

    private CheckpointDirectory(string directory, List<SafeTensorsFile> files)
    {
        Directory = directory;
        Files = files;
        fileOf = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        entries = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
        foreach (var file in files)
        {
            foreach (var (name, info) in file.Entries)
            {
                if (fileOf.TryGetValue(name, out var other))
                {
                    throw new HeadLensException($"{System.IO.Path.GetFileName(file.Path)}: tensor '{name}' is also in {System.IO.Path.GetFileName(other.Path)}");
                }

                fileOf[name] = file;
                entries[name] = info;
            }
        }
    }

    public string Directory { get; }

    /// <summary>The open safetensors files: one, or the shards in the order the index first names them.</summary>
    public IReadOnlyList<SafeTensorsFile> Files { get; }

    /// <summary>Every tensor of every shard (offsets are within its own file: see <see cref="FileOf"/>).</summary>
    public IReadOnlyDictionary<string, SafeTensorInfo> Entries => entries;

    public static CheckpointDirectory Open(string directory)
    {
        if (!System.IO.Directory.Exists(directory))
        {
            throw new HeadLensException($"{directory}: no such directory");
        }

        string index = System.IO.Path.Combine(directory, IndexFile);
        string single = System.IO.Path.Combine(directory, SingleFile);
        var files = new List<SafeTensorsFile>();
        try
        {
            if (File.Exists(index))
            {
                var weightMap = ReadWeightMap(index);
                var shards = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
                foreach (var (tensor, shard) in weightMap)
                {
                    if (!shards.TryGetValue(shard, out var file))
                    {
                        string path = System.IO.Path.Combine(directory, shard);
                        if (!File.Exists(path))
                        {
                            throw new HeadLensException($"{IndexFile}: shard '{shard}' (holding tensor '{tensor}') does not exist");
                        }

                        file = SafeTensorsFile.Open(path);
                        shards[shard] = file;
                        files.Add(file);
                    }

                    if (!file.Entries.ContainsKey(tensor))
                    {
                        throw new HeadLensException($"{shard}: missing tensor '{tensor}' (the index {IndexFile} puts it here)");
                    }
                }
            }
            else if (File.Exists(single))
            {
                files.Add(SafeTensorsFile.Open(single));
            }
            else
            {
                throw new HeadLensException($"{directory}: no {SingleFile} (nor {IndexFile})");
            }

            return new CheckpointDirectory(directory, files);
        }
        catch
        {
            foreach (var file in files)
            {
                file.Dispose();
            }

            throw;
        }
    }

    /// <summary>The shard that holds a tensor.</summary>
    public SafeTensorsFile FileOf(string name) =>
        fileOf.TryGetValue(name, out var file) ? file : throw new HeadLensException($"{Where}: missing tensor '{name}'");

    public void ReadFloat32(string tensorName, Span<float> destination) => FileOf(tensorName).ReadFloat32(tensorName, destination);

    /// <summary>Reads a tensor and throws naming its file and the tensor when it holds NaN or infinity.</summary>
    public void ValidateFinite(string name) => FileOf(name).ValidateFinite(name);

    public void Dispose()
    {
        foreach (var file in Files)
        {
            file.Dispose();
        }
    }

    private string Where => Files.Count == 1 ? System.IO.Path.GetFileName(Files[0].Path) : $"{System.IO.Path.GetFileName(Directory)} ({Files.Count} shards)";

    // weight_map: tensor name → shard file name, in the index's order. Shard names must be plain file names, so an
    // index cannot point outside its directory.
    private static List<(string Tensor, string Shard)> ReadWeightMap(string index)
    {
        try
        {
            using var document = JsonDocument.Parse(InputFile.ReadAllBytes(index, InputFile.JsonLimit), new JsonDocumentOptions { AllowDuplicateProperties = false });
            if (!document.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
            {
                throw new HeadLensException($"{IndexFile}: no 'weight_map' object");
            }

            var result = new List<(string, string)>();
            foreach (var entry in map.EnumerateObject())
            {
                string shard = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString()! : "";
                if (shard.Length == 0 || shard != System.IO.Path.GetFileName(shard) || shard.StartsWith('.') || shard.Contains('\\', StringComparison.Ordinal))
                {
                    throw new HeadLensException($"{IndexFile}: tensor '{entry.Name}' maps to '{entry.Value}', not a plain file name");
                }

                result.Add((entry.Name, shard));
            }

            return result;
        }
        catch (JsonException error)
        {
            throw new HeadLensException($"{IndexFile}: malformed JSON ({InputFile.Reason(error)})");
        }
    }
}
