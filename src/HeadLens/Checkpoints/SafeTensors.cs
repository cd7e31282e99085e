using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace HeadLens.Checkpoints;

/// <summary>One tensor's entry in a safetensors header.</summary>
public sealed record SafeTensorInfo(string Name, string DType, int[] Shape, long Offset, long Length)
{
    public long ElementCount => Shape.Aggregate(1L, (product, dim) => product * dim);
}

/// <summary>
/// A safetensors file (8-byte little-endian header length, a JSON header of name → {dtype, shape, data_offsets},
/// then the raw data), validated before anything is read: the header length is bounded by the file, the JSON is
/// well formed, every dtype is F32/F16/BF16, every shape matches its byte range, and ranges lie inside the data
/// section without overlapping. Errors name the file and the tensor.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    private const long MaxHeaderBytes = 100L << 20;
    private readonly FileStream stream;
    private readonly MemoryMappedFile map;
    private readonly MemoryMappedViewAccessor view;

    private SafeTensorsFile(string path, FileStream stream, Dictionary<string, SafeTensorInfo> entries, long dataStart)
    {
        Path = path;
        this.stream = stream;
        Entries = entries;
        DataStart = dataStart;
        // The data section is memory-mapped: tensors are copied (or converted) straight from the page cache.
        map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
        view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
    }

    public string Path { get; }

    public IReadOnlyDictionary<string, SafeTensorInfo> Entries { get; }

    private long DataStart { get; }

    public static SafeTensorsFile Open(string path)
    {
        string name = System.IO.Path.GetFileName(path);
        if (!File.Exists(path))
        {
            throw new HeadLensException($"{path}: file not found");
        }

        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.RandomAccess);
        try
        {
            long fileLength = stream.Length;
            if (fileLength < 8)
            {
                throw new HeadLensException($"{name}: truncated file ({fileLength} bytes; a safetensors file starts with an 8-byte header length)");
            }

            Span<byte> lengthBytes = stackalloc byte[8];
            stream.ReadExactly(lengthBytes);
            long headerLength = BinaryPrimitives.ReadInt64LittleEndian(lengthBytes);
            if (headerLength <= 0 || headerLength > fileLength - 8 || headerLength > MaxHeaderBytes)
            {
                throw new HeadLensException($"{name}: header length {headerLength} is past the end of the file ({fileLength} bytes)");
            }

            var header = new byte[headerLength];
            stream.ReadExactly(header);
            var entries = ParseHeader(name, header, fileLength - 8 - headerLength);
            return new SafeTensorsFile(path, stream, entries, 8 + headerLength);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Reads a tensor as float32 (converting F16 and BF16) into <paramref name="destination"/>.</summary>
    public void ReadFloat32(string tensorName, Span<float> destination)
    {
        if (!Entries.TryGetValue(tensorName, out var info))
        {
            throw new HeadLensException($"{System.IO.Path.GetFileName(Path)}: no tensor '{tensorName}'");
        }

        if (destination.Length != info.ElementCount)
        {
            throw new HeadLensException($"{System.IO.Path.GetFileName(Path)}: tensor '{tensorName}' has {info.ElementCount} elements, expected {destination.Length}");
        }

        unsafe
        {
            byte* start = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref start);
            try
            {
                var bytes = new ReadOnlySpan<byte>(start + view.PointerOffset + DataStart + info.Offset, checked((int)info.Length));
                if (info.DType == "F32")
                {
                    MemoryMarshal.Cast<byte, float>(bytes).CopyTo(destination);
                    return;
                }

                var halves = MemoryMarshal.Cast<byte, ushort>(bytes);
                for (int i = 0; i < destination.Length; i++)
                {
                    destination[i] = info.DType == "BF16"
                        ? BitConverter.Int32BitsToSingle(halves[i] << 16)
                        : (float)BitConverter.UInt16BitsToHalf(halves[i]);
                }
            }
            finally
            {
                view.SafeMemoryMappedViewHandle.ReleasePointer();
            }
        }
    }

    /// <summary>Throws naming the file and tensor when a tensor holds NaN or infinity.</summary>
    public void ValidateFinite(string tensorName, ReadOnlySpan<float> values)
    {
        // A vectorised sum is finite exactly when no element is NaN or ±∞ (barring an overflow of huge finite values,
        // which the exact scan below then clears): the scan runs only when something is wrong.
        if (float.IsFinite(System.Numerics.Tensors.TensorPrimitives.Sum(values)))
        {
            return;
        }

        for (int i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
            {
                throw new HeadLensException($"{System.IO.Path.GetFileName(Path)}: tensor '{tensorName}' holds {values[i]} at element {i}");
            }
        }
    }

    public void Dispose()
    {
        view.Dispose();
        map.Dispose();
        stream.Dispose();
    }

    private static Dictionary<string, SafeTensorInfo> ParseHeader(string file, byte[] header, long dataLength)
    {
        try
        {
            _ = new UTF8Encoding(false, throwOnInvalidBytes: true).GetCharCount(header);
        }
        catch (DecoderFallbackException error)
        {
            throw new HeadLensException($"{file}: the header is not valid UTF-8 (at byte {error.Index})");
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header);
        }
        catch (JsonException error)
        {
            throw new HeadLensException($"{file}: malformed JSON header ({error.Message.Split('.')[0]})");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new HeadLensException($"{file}: the header is not a JSON object");
            }

            var entries = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__")
                {
                    continue;
                }

                entries[property.Name] = ParseEntry(file, property.Name, property.Value, dataLength);
            }

            long previousEnd = 0;
            string? previous = null;
            foreach (var entry in entries.Values.OrderBy(e => e.Offset).ThenBy(e => e.Length))
            {
                if (entry.Offset < previousEnd)
                {
                    throw new HeadLensException($"{file}: tensor '{entry.Name}' overlaps tensor '{previous}'");
                }

                previousEnd = entry.Offset + entry.Length;
                previous = entry.Name;
            }

            return entries;
        }
    }

    private static SafeTensorInfo ParseEntry(string file, string name, JsonElement value, long dataLength)
    {
        try
        {
            string dtype = value.GetProperty("dtype").GetString() ?? "";
            int size = dtype switch
            {
                "F32" => 4,
                "F16" or "BF16" => 2,
                _ => throw new HeadLensException($"{file}: tensor '{name}' has unsupported dtype '{dtype}' (F32, F16 and BF16 are read)"),
            };
            int[] shape = value.GetProperty("shape").EnumerateArray().Select(dim => dim.GetInt32()).ToArray();
            var offsets = value.GetProperty("data_offsets").EnumerateArray().Select(offset => offset.GetInt64()).ToArray();
            if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0] || offsets[1] > dataLength)
            {
                throw new HeadLensException($"{file}: tensor '{name}' has data offsets [{string.Join(", ", offsets)}] outside the data section ({dataLength} bytes)");
            }

            if (shape.Any(dim => dim < 0))
            {
                throw new HeadLensException($"{file}: tensor '{name}' has a negative dimension");
            }

            var info = new SafeTensorInfo(name, dtype, shape, offsets[0], offsets[1] - offsets[0]);
            if (info.ElementCount * size != info.Length || info.ElementCount > Array.MaxLength)
            {
                throw new HeadLensException($"{file}: tensor '{name}' of shape [{string.Join(", ", shape)}] and dtype {dtype} does not match its {info.Length} bytes");
            }

            return info;
        }
        catch (Exception error) when (error is KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new HeadLensException($"{file}: tensor '{name}' has a malformed entry (needs dtype, shape, data_offsets)");
        }
    }
}

/// <summary>Writes float32 safetensors files atomically (a temporary file, then a rename).</summary>
public static class SafeTensorsWriter
{
    public static void Write(string path, IEnumerable<(string Name, int[] Shape, ReadOnlyMemory<float> Data)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        var header = new Dictionary<string, object>();
        if (metadata is not null)
        {
            header["__metadata__"] = metadata;
        }

        long offset = 0;
        foreach (var (name, shape, data) in list)
        {
            long bytes = (long)data.Length * sizeof(float);
            header[name] = new Dictionary<string, object> { ["dtype"] = "F32", ["shape"] = shape, ["data_offsets"] = new[] { offset, offset + bytes } };
            offset += bytes;
        }

        byte[] json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int padded = (json.Length + 7) / 8 * 8; // data starts 8-byte aligned; the header is padded with spaces
        string temporary = path + ".tmp-" + Environment.ProcessId;
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(length, padded);
            stream.Write(length);
            stream.Write(json);
            for (int i = json.Length; i < padded; i++)
            {
                stream.WriteByte((byte)' ');
            }

            foreach (var (_, _, data) in list)
            {
                stream.Write(MemoryMarshal.AsBytes(data.Span));
            }

            stream.Flush(flushToDisk: true);
        }

        File.Move(temporary, path, overwrite: true);
    }
}
