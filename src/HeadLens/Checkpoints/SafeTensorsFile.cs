using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Numerics.Tensors;
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
public sealed class SafeTensorsFile : ITensorSource, IDisposable
{
    private const long MaxHeaderBytes = 100L << 20;
    private const int ConversionChunk = 1 << 20; // elements copied or widened per step
    private const int ValidationChunk = 1 << 16; // elements per step of ValidateFinite(name): a 256 KB buffer
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

    private string FileName => System.IO.Path.GetFileName(Path);

    public static SafeTensorsFile Open(string path)
    {
        string name = System.IO.Path.GetFileName(path);
        // A regular file only: a FIFO under this name would block the open forever.
        _ = InputFile.Check(path);

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
            if (headerLength <= 0 || headerLength > fileLength - 8)
            {
                throw new HeadLensException($"{name}: header length {headerLength} is past the end of the file ({fileLength} bytes)");
            }

            if (headerLength > MaxHeaderBytes)
            {
                throw new HeadLensException($"{name}: header length {headerLength} is over the {MaxHeaderBytes >> 20} MB a safetensors header may take");
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
            throw new HeadLensException($"{FileName}: no tensor '{tensorName}'");
        }

        if (destination.Length != info.ElementCount)
        {
            throw new HeadLensException($"{FileName}: tensor '{tensorName}' has {info.ElementCount} elements, expected {destination.Length}");
        }

        ReadRange(info, 0, destination);
    }

    /// <summary>Reads a whole tensor and throws naming the file and the tensor when it holds NaN or infinity.</summary>
    public void ValidateFinite(string tensorName)
    {
        if (!Entries.TryGetValue(tensorName, out var info))
        {
            throw new HeadLensException($"{FileName}: no tensor '{tensorName}'");
        }

        // Checked in chunks, so that validating a large tensor needs no tensor-sized buffer.
        var values = new float[(int)Math.Min(info.ElementCount, ValidationChunk)];
        for (long done = 0; done < info.ElementCount; done += values.Length)
        {
            var part = values.AsSpan(0, (int)Math.Min(values.Length, info.ElementCount - done));
            ReadRange(info, done, part);
            ValidateFinite(tensorName, part, done);
        }
    }

    /// <summary>Throws naming the file and tensor when <paramref name="values"/> (a tensor just read) hold NaN or infinity.</summary>
    public void ValidateFinite(string tensorName, ReadOnlySpan<float> values) => ValidateFinite(tensorName, values, 0);

    public void Dispose()
    {
        view.Dispose();
        map.Dispose();
        stream.Dispose();
    }

    private void ValidateFinite(string tensorName, ReadOnlySpan<float> values, long firstIndex)
    {
        // A vectorised sum is finite exactly when no element is NaN or ±∞ (barring an overflow of huge finite values,
        // which the exact scan below then clears): the scan runs only when something is wrong.
        if (float.IsFinite(TensorPrimitives.Sum(values)))
        {
            return;
        }

        for (int i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
            {
                throw new HeadLensException($"{FileName}: tensor '{tensorName}' holds {values[i]} at element {firstIndex + i}");
            }
        }
    }

    // Converts destination.Length elements of a tensor, from element firstElement on, straight from the mapped file
    // into float32. The mapped bytes are taken a chunk at a time so that no span exceeds int.MaxValue bytes (a
    // Llama-3-70B embedding in BF16 is 2.1 GB) and nothing tensor-sized is allocated.
    private unsafe void ReadRange(SafeTensorInfo info, long firstElement, Span<float> destination)
    {
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("big-endian hosts are not supported");
        }

        int size = info.DType == "F32" ? 4 : 2;
        byte* start = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref start);
        try
        {
            byte* first = start + view.PointerOffset + DataStart + info.Offset + size * firstElement;
            for (int done = 0; done < destination.Length; done += ConversionChunk)
            {
                int count = Math.Min(ConversionChunk, destination.Length - done);
                var bytes = new ReadOnlySpan<byte>(first + (long)size * done, size * count);
                var target = destination.Slice(done, count);
                switch (info.DType)
                {
                    case "F32":
                        MemoryMarshal.Cast<byte, float>(bytes).CopyTo(target);
                        break;
                    case "BF16":
                        HalfPrecision.BFloat16ToSingle(MemoryMarshal.Cast<byte, ushort>(bytes), target);
                        break;
                    default:
                        TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(bytes), target);
                        break;
                }
            }
        }
        finally
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
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
            throw new HeadLensException($"{file}: malformed JSON header ({InputFile.Reason(error)})");
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

                if (!entries.TryAdd(property.Name, ParseEntry(file, property.Name, property.Value, dataLength)))
                {
                    throw new HeadLensException($"{file}: tensor '{property.Name}' appears twice in the header");
                }
            }

            // As the safetensors format requires: the tensors tile the data section exactly, from byte 0, with no gap,
            // overlap or trailing bytes — so a header that lies about its own length cannot shift every tensor.
            long previousEnd = 0;
            string? previous = null;
            foreach (var entry in entries.Values.OrderBy(e => e.Offset).ThenBy(e => e.Length))
            {
                if (entry.Offset < previousEnd)
                {
                    throw new HeadLensException($"{file}: tensor '{entry.Name}' overlaps tensor '{previous}'");
                }

                if (entry.Offset > previousEnd)
                {
                    throw new HeadLensException($"{file}: {entry.Offset - previousEnd} bytes of the data section before tensor '{entry.Name}' belong to no tensor");
                }

                previousEnd = entry.Offset + entry.Length;
                previous = entry.Name;
            }

            if (previousEnd != dataLength)
            {
                throw new HeadLensException($"{file}: {dataLength - previousEnd} bytes after the last tensor belong to no tensor");
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

            // Overflow-checked: a product of several large dimensions must not wrap around to a small size.
            long elements = 1;
            foreach (int dim in shape)
            {
                elements = checked(elements * dim);
            }

            var info = new SafeTensorInfo(name, dtype, shape, offsets[0], offsets[1] - offsets[0]);
            if (info.ElementCount * size != info.Length || info.ElementCount > Array.MaxLength)
            {
                throw new HeadLensException($"{file}: tensor '{name}' of shape [{string.Join(", ", shape)}] and dtype {dtype} does not match its {info.Length} bytes");
            }

            return info;
        }
        catch (OverflowException)
        {
            throw new HeadLensException($"{file}: tensor '{name}' has a shape whose size overflows");
        }
        catch (Exception error) when (error is KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new HeadLensException($"{file}: tensor '{name}' has a malformed entry (needs dtype, shape, data_offsets)");
        }
    }
}
