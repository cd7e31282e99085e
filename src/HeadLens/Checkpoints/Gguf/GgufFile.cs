using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Text;
using HeadLens.Kernels.Quantized;

namespace HeadLens.Checkpoints.Gguf;

/// <summary>
/// A GGUF file (llama.cpp's format, versions 2 and 3), memory-mapped and validated. Layout, all little-endian:
/// <code>
/// "GGUF"  u32 version  u64 tensor_count  u64 metadata_count
/// metadata × count:  string key, u32 value type, value   (string = u64 length + UTF-8 bytes;
///                    array = u32 element type, u64 count, elements)
/// tensor info × count:  string name, u32 n_dims (1..4), u64 ne[n_dims] (ne[0] = row length), u32 ggml type,
///                       u64 offset (from the data section, a multiple of the alignment)
/// padding to general.alignment (default 32), then the data section.
/// </code>
/// Every count, length and offset is checked against the bytes that remain in the file before anything is
/// allocated for it, so a lying header costs nothing; every failure is one <see cref="HeadLensException"/> line naming
/// the file and the field or tensor. Tensor data stays in the mapping: <see cref="TensorBytes"/> is a view of it.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    /// <summary>general.alignment when the file does not set it.</summary>
    public const int DefaultAlignment = 32;

    private const int MaxDimensions = 4;
    private readonly MemoryMappedFile? map;
    private readonly MemoryMappedViewAccessor? view;
    private readonly byte* start;
    private readonly Dictionary<string, GgufTensorInfo> tensorsByName;

    private GgufFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* start, long length)
    {
        Path = path;
        this.map = map;
        this.view = view;
        this.start = start;
        Length = length;
        var reader = new Reader(System.IO.Path.GetFileName(path), start, length);
        try
        {
            if (length < 24 || reader.UInt32("magic") != 0x46554747)
            {
                throw reader.Fail("not a GGUF file (no 'GGUF' magic)");
            }

            Version = reader.UInt32("version");
            if (Version is not (2 or 3))
            {
                throw reader.Fail(Version is 1 ? "GGUF version 1 is not supported (2, 3)"
                    : $"GGUF version {Version} is not supported (2, 3){(Version > 0xFFFF ? "; a big-endian file?" : "")}");
            }

            long tensorCount = reader.Count("tensor_count", minimumBytesEach: 8 + 4 + 8 + 4 + 8);
            long metadataCount = reader.Count("metadata_kv_count", minimumBytesEach: 8 + 4 + 1);
            var metadata = new Dictionary<string, GgufValue>((int)Math.Min(metadataCount, 1024), StringComparer.Ordinal);
            for (long i = 0; i < metadataCount; i++)
            {
                string key = reader.String($"metadata key #{i}");
                var value = reader.Value(key);
                if (!metadata.TryAdd(key, value))
                {
                    throw reader.Fail($"metadata key '{key}' appears twice");
                }
            }

            Metadata = metadata;
            Alignment = DefaultAlignment;
            if (metadata.TryGetValue("general.alignment", out var alignment))
            {
                if (alignment.Type != GgufValueType.UInt32 || (ulong)alignment.Value is 0 or > (1 << 30) || !ulong.IsPow2((ulong)alignment.Value))
                {
                    throw reader.Fail($"general.alignment must be a power of two stored as uint32 (got {alignment.Type} {alignment.Value})");
                }

                Alignment = (int)(ulong)alignment.Value;
            }

            var tensors = new List<GgufTensorInfo>((int)Math.Min(tensorCount, 4096));
            tensorsByName = new Dictionary<string, GgufTensorInfo>(StringComparer.Ordinal);
            for (long i = 0; i < tensorCount; i++)
            {
                tensors.Add(reader.TensorInfo(i));
            }

            DataOffset = (reader.Position + Alignment - 1) / Alignment * Alignment;
            long dataBytes = length - DataOffset;
            if (dataBytes < 0 && tensorCount > 0)
            {
                throw reader.Fail($"the data section would start at byte {DataOffset}, past the end of the file ({length} bytes)");
            }

            foreach (var tensor in tensors)
            {
                string what = $"tensor '{tensor.Name}'";
                if (!tensorsByName.TryAdd(tensor.Name, tensor))
                {
                    throw reader.Fail($"{what} appears twice");
                }

                if (tensor.Offset % Alignment != 0)
                {
                    throw reader.Fail($"{what}: offset {tensor.Offset} is not a multiple of the alignment {Alignment}");
                }

                if (tensor.Offset > dataBytes || tensor.ByteCount > dataBytes - tensor.Offset)
                {
                    throw reader.Fail($"{what}: bytes {tensor.Offset}..{tensor.Offset + tensor.ByteCount} of the data section lie past the end of the file ({dataBytes} data bytes)");
                }
            }

            // Tensors may come in any order but must not share bytes (a lying offset would alias two weights).
            GgufTensorInfo? previous = null;
            foreach (var tensor in tensors.OrderBy(t => t.Offset))
            {
                if (previous is not null && previous.Offset + previous.ByteCount > tensor.Offset)
                {
                    throw reader.Fail($"tensor '{tensor.Name}' overlaps tensor '{previous.Name}' (offsets {previous.Offset} and {tensor.Offset})");
                }

                previous = tensor;
            }

            Tensors = tensors;
        }
        catch
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
            view.Dispose();
            map.Dispose();
            throw;
        }
    }

    public string Path { get; }

    public long Length { get; }

    public uint Version { get; }

    public int Alignment { get; }

    /// <summary>Where the data section starts in the file.</summary>
    public long DataOffset { get; }

    public IReadOnlyDictionary<string, GgufValue> Metadata { get; }

    /// <summary>Tensors in the order the file lists them.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    public IReadOnlyDictionary<string, GgufTensorInfo> TensorsByName => tensorsByName;

    private string FileName => System.IO.Path.GetFileName(Path);

    public static GgufFile Open(string path)
    {
        string name = System.IO.Path.GetFileName(path);
        // A regular file only: a FIFO under this name would block the open forever.
        _ = InputFile.Check(path);

        long length = new FileInfo(path).Length;
        if (length < 24)
        {
            throw new HeadLensException($"{name}: {length} bytes is too short for a GGUF header (24 bytes)");
        }

        MemoryMappedFile map;
        try
        {
            map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        }
        catch (IOException error)
        {
            throw new HeadLensException($"{name}: cannot map the file ({error.Message})");
        }
        catch (UnauthorizedAccessException error)
        {
            throw new HeadLensException($"{name}: cannot map the file ({error.Message})");
        }

        var view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        return new GgufFile(path, map, view, pointer + view.PointerOffset, length);
    }

    /// <summary>The tensor's bytes, a view of the mapping (valid until the file is disposed).</summary>
    public ReadOnlySpan<byte> TensorBytes(GgufTensorInfo tensor)
    {
        if (tensor.ByteCount > int.MaxValue)
        {
            throw new HeadLensException($"{FileName}: tensor '{Printable(tensor.Name)}' is {tensor.ByteCount} bytes; tensors over 2 GiB are not supported");
        }

        ObjectDisposedException.ThrowIf(view is null, this);
        return new ReadOnlySpan<byte>(start + DataOffset + tensor.Offset, (int)tensor.ByteCount);
    }

    /// <summary>
    /// A matrix tensor [rows, ne[0]] as a <see cref="QuantizedMatrix"/> over the mapping (no copy). The matrix holds
    /// this file, so the mapping lives as long as the matrix is reachable; do not dispose the file while it is used.
    /// </summary>
    public QuantizedMatrix Matrix(GgufTensorInfo tensor)
    {
        var bytes = TensorBytes(tensor);
        if (tensor.Rows > int.MaxValue || tensor.Dimensions[0] > int.MaxValue)
        {
            throw new HeadLensException($"{FileName}: tensor '{Printable(tensor.Name)}' is too large a matrix");
        }

        fixed (byte* pointer = bytes)
        {
            return new QuantizedMatrix(tensor.Name, tensor.Type, (int)tensor.Rows, (int)tensor.Dimensions[0], pointer, bytes.Length, this);
        }
    }

    public GgufTensorInfo Tensor(string name) => tensorsByName.TryGetValue(name, out var tensor)
        ? tensor : throw new HeadLensException($"{FileName}: no tensor '{name}'");

    /// <summary>Decodes a whole tensor to float32 (the reference dequantization) and checks every value is finite.</summary>
    public void ReadFloat32(GgufTensorInfo tensor, Span<float> destination) => ReadFloat32(tensor, TensorBytes(tensor), destination);

    /// <summary>As <see cref="ReadFloat32(GgufTensorInfo, Span{float})"/>, from the tensor's bytes read elsewhere.</summary>
    internal void ReadFloat32(GgufTensorInfo tensor, ReadOnlySpan<byte> bytes, Span<float> destination)
    {
        if (destination.Length != tensor.ElementCount || bytes.Length != tensor.ByteCount)
        {
            throw new HeadLensException($"{FileName}: tensor '{Printable(tensor.Name)}' holds {tensor.ElementCount} values, {destination.Length} expected");
        }

        Dequantize.Reference(tensor.Type, bytes, destination);
        foreach (float value in destination)
        {
            if (!float.IsFinite(value))
            {
                throw new HeadLensException($"{FileName}: tensor '{Printable(tensor.Name)}' holds {value}");
            }
        }
    }

    /// <summary>Text from the file made safe for a one-line message: control characters escaped, at most 200 characters.</summary>
    public static string Printable(string text, int maxLength = 200)
    {
        var builder = new StringBuilder(Math.Min(text.Length, maxLength));
        foreach (char c in text.Length > maxLength ? text[..maxLength] + "…" : text)
        {
            builder.Append(char.IsControl(c) ? $"\\u{(int)c:X4}" : c);
        }

        return builder.ToString();
    }

    public bool Has(string key) => Metadata.ContainsKey(key);

    /// <summary>A string value, or null when the key is absent; a value of another type is an error naming the key.</summary>
    public string? String(string key) => Metadata.TryGetValue(key, out var value)
        ? value.Type == GgufValueType.String ? (string)value.Value : throw WrongType(key, value, "a string")
        : null;

    /// <summary>An integer value of any integer type that fits an int, or null when absent.</summary>
    public int? Int(string key)
    {
        if (!Metadata.TryGetValue(key, out var value))
        {
            return null;
        }

        return value.Value switch
        {
            long number when number is >= int.MinValue and <= int.MaxValue && value.Type != GgufValueType.Bool => (int)number,
            ulong number when number <= int.MaxValue => (int)number,
            _ => throw WrongType(key, value, "an integer that fits 32 bits"),
        };
    }

    public int RequireInt(string key) => Int(key) ?? throw new HeadLensException($"{FileName}: missing metadata '{key}'");

    public float? Float(string key) => Metadata.TryGetValue(key, out var value)
        ? value.Value switch
        {
            double number => (float)number,
            long number when value.Type != GgufValueType.Bool => number,
            ulong number => number,
            _ => throw WrongType(key, value, "a number"),
        }
        : null;

    public bool? Bool(string key) => Metadata.TryGetValue(key, out var value)
        ? value.Type == GgufValueType.Bool ? (bool)value.Value : throw WrongType(key, value, "a bool")
        : null;

    /// <summary>An array of the given .NET element type (string[], float[], long[], ...), or null when absent.</summary>
    public T[]? Array<T>(string key) => Metadata.TryGetValue(key, out var value)
        ? value.IsArray && value.Value is T[] items ? items : throw WrongType(key, value, $"an array of {typeof(T).Name}")
        : null;

    private HeadLensException WrongType(string key, GgufValue value, string expected) =>
        new($"{FileName}: metadata '{key}' is {value.Type}{(value.IsArray ? $" of {value.ElementType}" : "")}, expected {expected}");

    public void Dispose()
    {
        if (view is not null)
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
            view.Dispose();
            map!.Dispose();
        }

        GC.SuppressFinalize(this);
    }

    /// <summary>A bounds-checked cursor over the mapped header.</summary>
    private sealed class Reader(string file, byte* start, long length)
    {
        public long Position { get; private set; }

        private long Remaining => length - Position;

        public HeadLensException Fail(string message) => new($"{file}: {Printable(message, 1000)}");

        private ReadOnlySpan<byte> Take(long bytes, string field)
        {
            if (bytes < 0 || bytes > Remaining)
            {
                throw Fail($"{field}: needs {bytes} bytes at offset {Position}, the file ends at {length} (truncated?)");
            }

            var span = new ReadOnlySpan<byte>(start + Position, (int)bytes);
            Position += bytes;
            return span;
        }

        public uint UInt32(string field) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, field));

        public ulong UInt64(string field) => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, field));

        /// <summary>A count whose items need at least <paramref name="minimumBytesEach"/> bytes each: checked against what remains.</summary>
        public long Count(string field, long minimumBytesEach)
        {
            ulong count = UInt64(field);
            if (count > (ulong)(Remaining / minimumBytesEach))
            {
                throw Fail($"{field} {count} cannot fit in the {Remaining} bytes that remain");
            }

            return (long)count;
        }

        public string String(string field)
        {
            ulong bytes = UInt64(field + " length");
            if (bytes > (ulong)Remaining)
            {
                throw Fail($"{field}: string length {bytes} exceeds the {Remaining} bytes that remain");
            }

            return Encoding.UTF8.GetString(Take((long)bytes, field));
        }

        public GgufValue Value(string key)
        {
            uint type = UInt32($"metadata '{key}' type");
            if (type > (uint)GgufValueType.Float64)
            {
                throw Fail($"metadata '{key}' has unknown value type {type}");
            }

            var valueType = (GgufValueType)type;
            if (valueType != GgufValueType.Array)
            {
                return new GgufValue(valueType, Scalar(valueType, key));
            }

            uint elementType = UInt32($"metadata '{key}' array element type");
            if (elementType > (uint)GgufValueType.Float64)
            {
                throw Fail($"metadata '{key}' is an array of unknown type {elementType}");
            }

            var element = (GgufValueType)elementType;
            if (element == GgufValueType.Array)
            {
                throw Fail($"metadata '{key}' is an array of arrays (not supported)");
            }

            int size = ScalarBytes(element);
            long count = Count($"metadata '{key}' array length", minimumBytesEach: element == GgufValueType.String ? 8 : size);
            return new GgufValue(GgufValueType.Array, Array(element, count, key), element);
        }

        private static int ScalarBytes(GgufValueType type) => type switch
        {
            GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
            GgufValueType.UInt16 or GgufValueType.Int16 => 2,
            GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
            _ => 8, // u64, i64, f64; a string's length prefix
        };

        private object Scalar(GgufValueType type, string key)
        {
            string field = $"metadata '{key}'";
            var bytes = Take(ScalarBytes(type), field);
            return type switch
            {
                GgufValueType.UInt8 => (ulong)bytes[0],
                GgufValueType.Int8 => (long)(sbyte)bytes[0],
                GgufValueType.UInt16 => (ulong)BinaryPrimitives.ReadUInt16LittleEndian(bytes),
                GgufValueType.Int16 => (long)BinaryPrimitives.ReadInt16LittleEndian(bytes),
                GgufValueType.UInt32 => (ulong)BinaryPrimitives.ReadUInt32LittleEndian(bytes),
                GgufValueType.Int32 => (long)BinaryPrimitives.ReadInt32LittleEndian(bytes),
                GgufValueType.Float32 => (double)BinaryPrimitives.ReadSingleLittleEndian(bytes),
                GgufValueType.Bool => bytes[0] switch
                {
                    0 => false,
                    1 => true,
                    _ => throw Fail($"{field}: bool byte {bytes[0]} is neither 0 nor 1"),
                },
                GgufValueType.UInt64 => BinaryPrimitives.ReadUInt64LittleEndian(bytes),
                GgufValueType.Int64 => BinaryPrimitives.ReadInt64LittleEndian(bytes),
                GgufValueType.Float64 => BinaryPrimitives.ReadDoubleLittleEndian(bytes),
                _ => ReadString(bytes, key),
            };
        }

        // A string scalar: its 8-byte length was taken as the "scalar"; the characters follow.
        private string ReadString(ReadOnlySpan<byte> lengthBytes, string key)
        {
            ulong bytes = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
            if (bytes > (ulong)Remaining)
            {
                throw Fail($"metadata '{key}': string length {bytes} exceeds the {Remaining} bytes that remain");
            }

            return Encoding.UTF8.GetString(Take((long)bytes, $"metadata '{key}'"));
        }

        private object Array(GgufValueType element, long count, string key)
        {
            int n = (int)count; // Count() bounded it by the file's length / element size; files over 2 GiB of metadata are refused there
            if (count > int.MaxValue)
            {
                throw Fail($"metadata '{key}' array length {count} is too large");
            }

            switch (element)
            {
                case GgufValueType.String:
                    {
                        var items = new string[n];
                        for (int i = 0; i < n; i++)
                        {
                            items[i] = String($"metadata '{key}'[{i}]");
                        }

                        return items;
                    }

                case GgufValueType.Float32:
                    {
                        var bytes = Take(4L * n, $"metadata '{key}'");
                        var items = new float[n];
                        for (int i = 0; i < n; i++)
                        {
                            items[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes[(4 * i)..]);
                        }

                        return items;
                    }

                case GgufValueType.Float64:
                    {
                        var bytes = Take(8L * n, $"metadata '{key}'");
                        var items = new double[n];
                        for (int i = 0; i < n; i++)
                        {
                            items[i] = BinaryPrimitives.ReadDoubleLittleEndian(bytes[(8 * i)..]);
                        }

                        return items;
                    }

                case GgufValueType.Bool:
                    {
                        var bytes = Take(n, $"metadata '{key}'");
                        var items = new bool[n];
                        for (int i = 0; i < n; i++)
                        {
                            items[i] = bytes[i] switch
                            {
                                0 => false,
                                1 => true,
                                _ => throw Fail($"metadata '{key}'[{i}]: bool byte {bytes[i]} is neither 0 nor 1"),
                            };
                        }

                        return items;
                    }

                default:
                    {
                        // Integers, read straight from the bytes (no boxing: an allocation per element would let a
                        // small file cost many times its size).
                        int size = ScalarBytes(element);
                        var bytes = Take((long)size * n, $"metadata '{key}'");
                        bool signed = element is GgufValueType.Int8 or GgufValueType.Int16 or GgufValueType.Int32 or GgufValueType.Int64;
                        var signedItems = signed ? new long[n] : null;
                        var unsignedItems = signed ? null : new ulong[n];
                        for (int i = 0; i < n; i++)
                        {
                            var at = bytes.Slice(i * size, size);
                            if (signed)
                            {
                                signedItems![i] = element switch
                                {
                                    GgufValueType.Int8 => (sbyte)at[0],
                                    GgufValueType.Int16 => BinaryPrimitives.ReadInt16LittleEndian(at),
                                    GgufValueType.Int32 => BinaryPrimitives.ReadInt32LittleEndian(at),
                                    _ => BinaryPrimitives.ReadInt64LittleEndian(at),
                                };
                            }
                            else
                            {
                                unsignedItems![i] = element switch
                                {
                                    GgufValueType.UInt8 => at[0],
                                    GgufValueType.UInt16 => BinaryPrimitives.ReadUInt16LittleEndian(at),
                                    GgufValueType.UInt32 => BinaryPrimitives.ReadUInt32LittleEndian(at),
                                    _ => BinaryPrimitives.ReadUInt64LittleEndian(at),
                                };
                            }
                        }

                        return signed ? signedItems! : unsignedItems!;
                    }
            }
        }

        public GgufTensorInfo TensorInfo(long index)
        {
            string name = String($"tensor #{index} name");
            string what = $"tensor '{name}'";
            uint rank = UInt32($"{what} n_dims");
            if (rank is 0 or > MaxDimensions)
            {
                throw Fail($"{what}: {rank} dimensions (1..{MaxDimensions} supported)");
            }

            var dimensions = new long[rank];
            long elements = 1;
            for (int d = 0; d < rank; d++)
            {
                ulong dimension = UInt64($"{what} dimension {d}");
                if (dimension is 0 or > int.MaxValue || elements > long.MaxValue / 16 / (long)dimension)
                {
                    throw Fail($"{what}: dimension {d} is {dimension} (must be 1..{int.MaxValue}, and the element count must not overflow)");
                }

                dimensions[d] = (long)dimension;
                elements *= (long)dimension;
            }

            uint type = UInt32($"{what} type");
            if (!GgmlTypes.IsKnown(type))
            {
                throw Fail($"{what}: ggml type {type} is not supported (F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q5_K, Q6_K)");
            }

            var ggml = (GgmlType)type;
            int per = GgmlTypes.BlockValues(ggml);
            if (dimensions[0] % per != 0)
            {
                throw Fail($"{what}: rows of {dimensions[0]} values are not whole {ggml} blocks of {per}");
            }

            ulong offset = UInt64($"{what} offset");
            if (offset > (ulong)length)
            {
                throw Fail($"{what}: offset {offset} lies past the end of the file ({length} bytes)");
            }

            return new GgufTensorInfo(name, dimensions, ggml, (long)offset, elements / per * GgmlTypes.BlockBytes(ggml));
        }
    }
}
