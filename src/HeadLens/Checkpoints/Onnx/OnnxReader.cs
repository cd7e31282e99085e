namespace HeadLens.Checkpoints.Onnx;

/// <summary>
/// Parses an ONNX file (a ModelProto) with <see cref="ProtoReader"/>: the opset, the graph's nodes, initializers,
/// inputs and outputs. Tensor data is not copied: each initializer keeps a slice of the file's bytes and is checked
/// against its dims when it is read (<see cref="OnnxTensor.ToFloats"/>). External data (weights in a side file)
/// is refused. Nothing is allocated beyond the file's size: every length is checked against the bytes left first.
/// </summary>
internal static class OnnxReader
{
    private const int MaxRank = 32;

    /// <summary>Reads an ONNX file from disk.</summary>
    public static OnnxModel Read(string path)
    {
        // A regular file only: a FIFO under this name would block the open forever.
        _ = InputFile.Check(path);

        long length = new FileInfo(path).Length;
        if (length > int.MaxValue)
        {
            throw new HeadLensException($"{Path.GetFileName(path)}: {length} bytes; ONNX files over 2 GB keep their weights as external data, which HeadLens does not read");
        }

        return Parse(File.ReadAllBytes(path), Path.GetFileName(path));
    }

    /// <summary>Reads an ONNX model from a stream (an embedded resource, for instance) of at most 2 GB.</summary>
    public static OnnxModel Read(Stream stream, string source)
    {
        using var buffer = stream.CanSeek ? new MemoryStream(checked((int)Math.Min(stream.Length, int.MaxValue))) : new MemoryStream();
        stream.CopyTo(buffer);
        return Parse(buffer.Length == buffer.Capacity ? buffer.GetBuffer() : buffer.ToArray(), source);
    }

    /// <summary>Parses a ModelProto's bytes; <paramref name="source"/> names the file in errors.</summary>
    public static OnnxModel Parse(byte[] file, string source)
    {
        var reader = new ProtoReader(file, 0, $"{source}: model");
        long irVersion = 0, opset = 0;
        string producer = "";
        OnnxGraph? graph = null;
        while (!reader.AtEnd)
        {
            var (field, wire) = reader.ReadKey();
            switch (field)
            {
                case 1:
                    reader.Expect(field, wire, 0);
                    irVersion = reader.ReadInt64();
                    break;
                case 2:
                    reader.Expect(field, wire, 2);
                    producer = reader.ReadString();
                    break;
                case 7:
                    reader.Expect(field, wire, 2);
                    {
                        var bytes = reader.ReadBytes(out int offset);
                        if (graph is not null)
                        {
                            throw reader.Fail("more than one graph");
                        }

                        graph = ReadGraph(file, bytes, offset, source);
                    }

                    break;
                case 8:
                    reader.Expect(field, wire, 2);
                    {
                        var (domain, version) = ReadOpset(reader.ReadBytes(out int offset), offset, source);
                        if (domain is "" or "ai.onnx")
                        {
                            opset = version;
                        }
                    }

                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }

        if (graph is null)
        {
            throw new HeadLensException($"{source}: no graph (not an ONNX model, or truncated)");
        }

        return new OnnxModel(source, irVersion, opset, producer, graph);
    }

    private static (string Domain, long Version) ReadOpset(ReadOnlySpan<byte> bytes, int offset, string source)
    {
        var reader = new ProtoReader(bytes, offset, $"{source}: opset_import");
        string domain = "";
        long version = 0;
        while (!reader.AtEnd)
        {
            var (field, wire) = reader.ReadKey();
            if (field == 1 && wire == 2)
            {
                domain = reader.ReadString();
            }
            else if (field == 2 && wire == 0)
            {
                version = reader.ReadInt64();
            }
            else
            {
                reader.Skip(wire);
            }
        }

        return (domain, version);
    }

    private static OnnxGraph ReadGraph(byte[] file, ReadOnlySpan<byte> bytes, int offset, string source)
    {
        var reader = new ProtoReader(bytes, offset, $"{source}: graph");
        string name = "";
        var nodes = new List<OnnxNode>();
        var initializers = new Dictionary<string, OnnxTensor>(StringComparer.Ordinal);
        var inputs = new List<string>();
        var outputs = new List<string>();
        while (!reader.AtEnd)
        {
            var (field, wire) = reader.ReadKey();
            switch (field)
            {
                case 1:
                    reader.Expect(field, wire, 2);
                    {
                        var nodeBytes = reader.ReadBytes(out int at);
                        nodes.Add(ReadNode(file, nodeBytes, at, source, nodes.Count));
                    }

                    break;
                case 2:
                    reader.Expect(field, wire, 2);
                    name = reader.ReadString();
                    break;
                case 5:
                    reader.Expect(field, wire, 2);
                    {
                        var tensorBytes = reader.ReadBytes(out int at);
                        var tensor = ReadTensor(file, tensorBytes, at, $"{source}: initializer {initializers.Count}");
                        if (!initializers.TryAdd(tensor.Name, tensor))
                        {
                            throw reader.Fail($"two initializers named '{tensor.Name}'");
                        }
                    }

                    break;
                case 11:
                case 12:
                    reader.Expect(field, wire, 2);
                    {
                        var infoBytes = reader.ReadBytes(out int at);
                        (field == 11 ? inputs : outputs).Add(ReadValueInfoName(infoBytes, at, source));
                    }

                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }

        return new OnnxGraph(name, nodes, initializers, inputs, outputs);
    }

    private static string ReadValueInfoName(ReadOnlySpan<byte> bytes, int offset, string source)
    {
        var reader = new ProtoReader(bytes, offset, $"{source}: graph input/output");
        string name = "";
        while (!reader.AtEnd)
        {
            var (field, wire) = reader.ReadKey();
            if (field == 1 && wire == 2)
            {
                name = reader.ReadString();
            }
            else
            {
                reader.Skip(wire);
            }
        }

        return name;
    }

    private static OnnxNode ReadNode(byte[] file, ReadOnlySpan<byte> bytes, int offset, string source, int index)
    {
        var reader = new ProtoReader(bytes, offset, $"{source}: node {index}");
        var inputs = new List<string>();
        var outputs = new List<string>();
        string name = "", opType = "", domain = "";
        var attributes = new Dictionary<string, OnnxAttr>(StringComparer.Ordinal);
        while (!reader.AtEnd)
        {
            var (field, wire) = reader.ReadKey();
            switch (field)
            {
                case 1:
                    reader.Expect(field, wire, 2);
                    inputs.Add(reader.ReadString());
                    break;
                case 2:
                    reader.Expect(field, wire, 2);
                    outputs.Add(reader.ReadString());
                    break;
                case 3:
                    reader.Expect(field, wire, 2);
                    name = reader.ReadString();
                    break;
                case 4:
                    reader.Expect(field, wire, 2);
                    opType = reader.ReadString();
                    break;
                case 5:
                    reader.Expect(field, wire, 2);
                    {
                        var attributeBytes = reader.ReadBytes(out int at);
                        var attribute = ReadAttribute(file, attributeBytes, at, $"{source}: node {index} '{name}' attribute {attributes.Count}");
                        attributes[attribute.Name] = attribute;
                    }

                    break;
                case 7:
                    reader.Expect(field, wire, 2);
                    domain = reader.ReadString();
                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }

        return new OnnxNode(index, name, opType, domain, inputs, outputs, attributes);
    }

    private static OnnxAttr ReadAttribute(byte[] file, ReadOnlySpan<byte> bytes, int offset, string what)
    {
        var reader = new ProtoReader(bytes, offset, what);
        string name = "", s = "";
        float f = 0;
        long i = 0;
        OnnxTensor? t = null;
        var floats = new List<float>();
        var ints = new List<long>();
        while (!reader.AtEnd)
        {
            var (field, wire) = reader.ReadKey();
            switch (field)
            {
                case 1:
                    reader.Expect(field, wire, 2);
                    name = reader.ReadString();
                    break;
                case 2:
                    reader.Expect(field, wire, 5);
                    f = reader.ReadFixed32Float();
                    break;
                case 3:
                    reader.Expect(field, wire, 0);
                    i = reader.ReadInt64();
                    break;
                case 4:
                    reader.Expect(field, wire, 2);
                    s = reader.ReadString();
                    break;
                case 5:
                    reader.Expect(field, wire, 2);
                    {
                        var tensorBytes = reader.ReadBytes(out int at);
                        t = ReadTensor(file, tensorBytes, at, $"{what} '{name}'");
                    }

                    break;
                case 7:
                    reader.ReadRepeatedFloat(wire, floats);
                    break;
                case 8:
                    reader.ReadRepeatedInt64(wire, ints, int.MaxValue);
                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }

        return new OnnxAttr(name, f, i, s, t, floats, ints);
    }

    private static OnnxTensor ReadTensor(byte[] file, ReadOnlySpan<byte> bytes, int offset, string what)
    {
        var reader = new ProtoReader(bytes, offset, what);
        var dims = new List<long>();
        int dataType = 0, rawOffset = 0, rawLength = 0;
        string name = "";
        var floatData = new List<float>();
        var int64Data = new List<long>();
        var int32Data = new List<long>();
        bool external = false;
        while (!reader.AtEnd)
        {
            var (field, wire) = reader.ReadKey();
            switch (field)
            {
                case 1:
                    reader.ReadRepeatedInt64(wire, dims, MaxRank);
                    break;
                case 2:
                    reader.Expect(field, wire, 0);
                    dataType = reader.ReadInt32();
                    break;
                case 4:
                    reader.ReadRepeatedFloat(wire, floatData);
                    break;
                case 5:
                    reader.ReadRepeatedInt64(wire, int32Data, int.MaxValue);
                    break;
                case 7:
                    reader.ReadRepeatedInt64(wire, int64Data, int.MaxValue);
                    break;
                case 8:
                    reader.Expect(field, wire, 2);
                    name = reader.ReadString();
                    break;
                case 9:
                    reader.Expect(field, wire, 2);
                    rawLength = reader.ReadBytes(out rawOffset).Length;
                    break;
                case 13:
                    external = true;
                    reader.Skip(wire);
                    break;
                case 14:
                    reader.Expect(field, wire, 0);
                    external |= reader.ReadInt64() == 1;
                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }

        string label = name.Length > 0 ? $"{what} '{name}'" : what;
        if (external)
        {
            throw new HeadLensException($"{label}: weights in external data files are not supported (save the model with its weights inside)");
        }

        long count = 1;
        foreach (long dim in dims)
        {
            if (dim < 0)
            {
                throw new HeadLensException($"{label}: negative dimension {dim}");
            }

            count *= dim;
            if (count > int.MaxValue)
            {
                throw new HeadLensException($"{label}: shape [{string.Join(", ", dims)}] has more than {int.MaxValue} elements");
            }
        }

        return new OnnxTensor(name, dataType, [.. dims], file, rawOffset, rawLength,
            floatData.Count > 0 ? [.. floatData] : null,
            int64Data.Count > 0 ? [.. int64Data] : null,
            int32Data.Count > 0 ? int32Data.Select(v => unchecked((int)v)).ToArray() : null,
            label);
    }
}
