using System.Buffers;
using System.Buffers.Binary;
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
    private const int ConversionChunk = 1 << 16; // 16-bit values widened per read
    private readonly FileStream stream;

    private SafeTensorsFile(string path, FileStream stream, Dictionary<string, SafeTensorInfo> entries, long dataStart)
    {
        Path = path;
        this.stream = stream;
        Entries = entries;
        DataStart = dataStart;
    }

    public string Path { get; }

    public IReadOnlyDictionary<string, SafeTensorInfo> Entries { get; }

    private long DataStart { get; }

    private string FileName => System.IO.Path.GetFileName(Path);

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
        var values = new float[(int)Math.Min(info.ElementCount, ConversionChunk)];
        for (long done = 0; done < info.ElementCount; done += values.Length)
        {
            var part = values.AsSpan(0, (int)Math.Min(values.Length, info.ElementCount - done));
            ReadRange(info, done, part);
            ValidateFinite(tensorName, part, done);
        }
    }

    /// <summary>Throws naming the file and tensor when <paramref name="values"/> (a tensor just read) hold NaN or infinity.</summary>
    public void ValidateFinite(string tensorName, ReadOnlySpan<float> values) => ValidateFinite(tensorName, values, 0);

    public void Dispose() => stream.Dispose();

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

    // Reads destination.Length elements of a tensor from element firstElement on, as float32. 16-bit values are
    // read a chunk at a time into a small pooled buffer and widened: no tensor-sized intermediate copy.
    private void ReadRange(SafeTensorInfo info, long firstElement, Span<float> destination)
    {
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("big-endian hosts are not supported");
        }

        if (info.DType == "F32")
        {
            Read(MemoryMarshal.AsBytes(destination), info.Offset + 4 * firstElement, info.Name);
            return;
        }

        var chunk = ArrayPool<ushort>.Shared.Rent(ConversionChunk);
        try
        {
            for (int done = 0; done < destination.Length; done += ConversionChunk)
            {
                int count = Math.Min(ConversionChunk, destination.Length - done);
                var halves = chunk.AsSpan(0, count);
                Read(MemoryMarshal.AsBytes(halves), info.Offset + 2 * (firstElement + done), info.Name);
                if (info.DType == "BF16")
                {
                    HalfPrecision.BFloat16ToSingle(halves, destination.Slice(done, count));
                }
                else
                {
                    TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<ushort, Half>(halves), destination.Slice(done, count));
                }
            }
        }
        finally
        {
            ArrayPool<ushort>.Shared.Return(chunk);
        }
    }

    // Positioned reads of the data section; a file that shrank since it was opened is reported, not read short.
    private void Read(Span<byte> destination, long offset, string tensorName)
    {
        while (destination.Length > 0)
        {
            int read = RandomAccess.Read(stream.SafeFileHandle, destination, DataStart + offset);
            if (read == 0)
            {
                throw new HeadLensException($"{FileName}: tensor '{tensorName}' ends past the end of the file (was it truncated while open?)");
            }

            destination = destination[read..];
            offset += read;
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
