using System.Buffers;
using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace HeadLens.Checkpoints;

/// <summary>How <see cref="SafeTensorsWriter"/> stores values: float32, or rounded to 16 bits.</summary>
public enum SafeTensorsDType
{
    F32,
    F16,
    BF16,
}

/// <summary>
/// Writes safetensors files atomically: a temporary file beside the target, renamed over it only once complete, so
/// a crash leaves either the old file or the new one. Tensors are sorted by name (as the safetensors library does),
/// the JSON header is padded with spaces so that the data starts 8-byte aligned, and the data is streamed tensor by
/// tensor (16-bit formats through a small conversion buffer), never gathered into one big copy.
/// </summary>
public static class SafeTensorsWriter
{
    private const int ConversionChunk = 1 << 16;

    public static void Write(string path, IEnumerable<(string Name, int[] Shape, ReadOnlyMemory<float> Data)> tensors, IReadOnlyDictionary<string, string>? metadata = null) =>
        Write(path, tensors, metadata, SafeTensorsDType.F32);

    public static void Write(string path, IEnumerable<(string Name, int[] Shape, ReadOnlyMemory<float> Data)> tensors, IReadOnlyDictionary<string, string>? metadata, SafeTensorsDType dtype)
    {
        string file = Path.GetFileName(path);
        var list = tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        int size = dtype == SafeTensorsDType.F32 ? 4 : 2;
        var header = new Dictionary<string, object>();
        if (metadata is not null)
        {
            header["__metadata__"] = metadata;
        }

        long offset = 0;
        foreach (var (name, shape, data) in list)
        {
            if (name == "__metadata__" || header.ContainsKey(name))
            {
                throw new HeadLensException($"{file}: tensor name '{name}' is used twice (or is reserved)");
            }

            long elements = shape.Aggregate(1L, (product, dim) => product * dim);
            if (shape.Any(dim => dim < 0) || elements != data.Length)
            {
                throw new HeadLensException($"{file}: tensor '{name}' has shape [{string.Join(", ", shape)}] but {data.Length} values");
            }

            long bytes = elements * size;
            header[name] = new Dictionary<string, object> { ["dtype"] = dtype.ToString(), ["shape"] = shape, ["data_offsets"] = new[] { offset, offset + bytes } };
            offset += bytes;
        }

        byte[] json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int padded = (json.Length + 7) / 8 * 8; // data starts 8-byte aligned; the header is padded with spaces
        string temporary = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, $".{file}.tmp-{Guid.NewGuid():N}");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
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
                    WriteData(stream, data.Span, dtype);
                }

                stream.Flush(flushToDisk: true);
            }

            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }

    private static void WriteData(FileStream stream, ReadOnlySpan<float> data, SafeTensorsDType dtype)
    {
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("big-endian hosts are not supported");
        }

        if (dtype == SafeTensorsDType.F32)
        {
            stream.Write(MemoryMarshal.AsBytes(data));
            return;
        }

        var chunk = ArrayPool<ushort>.Shared.Rent(ConversionChunk);
        try
        {
            for (int done = 0; done < data.Length; done += ConversionChunk)
            {
                var values = data.Slice(done, Math.Min(ConversionChunk, data.Length - done));
                var halves = chunk.AsSpan(0, values.Length);
                if (dtype == SafeTensorsDType.F16)
                {
                    TensorPrimitives.ConvertToHalf(values, MemoryMarshal.Cast<ushort, Half>(halves));
                }
                else
                {
                    for (int i = 0; i < values.Length; i++)
                    {
                        halves[i] = HalfPrecision.SingleToBFloat16(values[i]);
                    }
                }

                stream.Write(MemoryMarshal.AsBytes(halves));
            }
        }
        finally
        {
            ArrayPool<ushort>.Shared.Return(chunk);
        }
    }
}
