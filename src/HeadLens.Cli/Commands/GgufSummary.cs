using System.Globalization;
using HeadLens.Checkpoints.Gguf;

namespace HeadLens.Cli.Commands;

/// <summary>What `describe --model FILE.gguf` adds: the file's tensor types, and the memory the model takes when run.</summary>
internal static class GgufSummary
{
    public static void Print(string path, TextWriter output)
    {
        // Only sizes are read: no copy onto large pages.
        var (model, _) = GgufModel.Open(path, largePages: false);
        using var file = GgufFile.Open(path);
        var types = file.Tensors.GroupBy(tensor => tensor.Type)
            .Select(group => (Type: group.Key, Count: group.Count(), Bytes: group.Sum(tensor => tensor.ByteCount)))
            .OrderByDescending(group => group.Bytes);
        output.WriteLine($"GGUF v{file.Version}, {file.Tensors.Count} tensors, {Bytes(file.Length)}");
        output.WriteLine("tensor types     " + string.Join(", ", types.Select(group =>
            $"{group.Type} × {group.Count.ToString(CultureInfo.InvariantCulture)} ({Bytes(group.Bytes)})")));
        long kept = model.Parameters.Stored.Values.Sum(matrix => matrix.Length);
        long arena = (long)model.Parameters.Arena.All.Length * sizeof(float);
        output.WriteLine($"in memory        {Bytes(kept)} of matrices kept in the file's types (memory-mapped, F32/F16/BF16 ones copied onto 2 MiB pages when run; decoded as they are multiplied) " +
            $"+ {Bytes(arena)} fp32 (norms, biases, positions); all as fp32 it would be {Bytes(model.Config.ParameterCount * 4.0)}");
    }

    private static string Bytes(double b) => b >= 1 << 30 ? $"{b / (1 << 30):F2} GiB" : b >= 1 << 20 ? $"{b / (1 << 20):F1} MiB" : $"{b / 1024:F1} KiB";
}
