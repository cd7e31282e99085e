using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace HeadLens.Checkpoints.Onnx;

// The ONNX messages HeadLens reads, with onnx.proto's field numbers. Fields not listed are skipped (after their
// lengths are checked). Why a hand-written reader and not Google.Protobuf with the ONNX schema: six messages and
// ~25 fields are all a weight loader needs; generated code would be thousands of lines of another project's
// schema; a tensor's raw_data stays a slice of the file's bytes (no ByteString copy of 90 MB); and every length is
// checked here, with errors that name the message and node ("graph.node[57] 'MatMul_12': ...") rather than a
// generic InvalidProtocolBufferException.

/// <summary>ONNX element types (TensorProto.DataType) that HeadLens reads.</summary>
internal enum OnnxDataType
{
    Undefined = 0,
    Float = 1,
    UInt8 = 2,
    Int8 = 3,
    Int32 = 6,
    Int64 = 7,
    Bool = 9,
    Float16 = 10,
    Double = 11,
}

/// <summary>An initializer or constant (TensorProto): name, element type, dims, and its data as a slice of the file.</summary>
internal sealed class OnnxTensor
{
    private readonly byte[] file;
    private readonly int rawOffset;
    private readonly int rawLength;
    private readonly float[]? floatData;
    private readonly long[]? int64Data;
    private readonly int[]? int32Data;
    private readonly string what;

    internal OnnxTensor(string name, int dataType, long[] dims, byte[] file, int rawOffset, int rawLength,
        float[]? floatData, long[]? int64Data, int[]? int32Data, string what)
    {
        Name = name;
        DataType = (OnnxDataType)dataType;
        Dims = dims;
        this.file = file;
        this.rawOffset = rawOffset;
        this.rawLength = rawLength;
        this.floatData = floatData;
        this.int64Data = int64Data;
        this.int32Data = int32Data;
        this.what = what;
    }

    public string Name { get; }

    public OnnxDataType DataType { get; }

    public IReadOnlyList<long> Dims { get; }

    /// <summary>The element count the dims give (checked to be at most int.MaxValue when the tensor was read).</summary>
    public int ElementCount => (int)Dims.Aggregate(1L, (product, dim) => product * dim);

    /// <summary>The dims as ints (they were checked to fit when the tensor was read).</summary>
    public int[] Shape => Dims.Select(d => (int)d).ToArray();

    /// <summary>The data as float32 (FLOAT, or FLOAT16/DOUBLE widened/narrowed), after checking that its size matches the dims.</summary>
    public float[] ToFloats()
    {
        int count = ElementCount;
        switch (DataType)
        {
            case OnnxDataType.Float when floatData is not null:
                return CheckCount(floatData.Length, count) ? (float[])floatData.Clone() : [];
            case OnnxDataType.Float:
                CheckRaw(4, count);
                return MemoryMarshal.Cast<byte, float>(file.AsSpan(rawOffset, rawLength)).ToArray();
            case OnnxDataType.Float16:
                {
                    // FLOAT16 without raw_data keeps each half's bits in int32_data.
                    var result = new float[count];
                    if (int32Data is not null)
                    {
                        CheckCount(int32Data.Length, count);
                        for (int i = 0; i < count; i++)
                        {
                            result[i] = (float)BitConverter.UInt16BitsToHalf((ushort)int32Data[i]);
                        }
                    }
                    else
                    {
                        CheckRaw(2, count);
                        for (int i = 0; i < count; i++)
                        {
                            result[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(file.AsSpan(rawOffset + 2 * i));
                        }
                    }

                    return result;
                }

            case OnnxDataType.Double:
                {
                    CheckRaw(8, count);
                    var result = new float[count];
                    for (int i = 0; i < count; i++)
                    {
                        result[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(file.AsSpan(rawOffset + 8 * i));
                    }

                    return result;
                }

            default:
                throw new HeadLensException($"{what}: element type {DataType} where floats were expected");
        }
    }

    /// <summary>The data as int64 (INT64 or INT32), after checking that its size matches the dims.</summary>
    public long[] ToInt64s()
    {
        int count = ElementCount;
        switch (DataType)
        {
            case OnnxDataType.Int64 when int64Data is not null:
                CheckCount(int64Data.Length, count);
                return (long[])int64Data.Clone();
            case OnnxDataType.Int64:
                CheckRaw(8, count);
                return MemoryMarshal.Cast<byte, long>(file.AsSpan(rawOffset, rawLength)).ToArray();
            case OnnxDataType.Int32 when int32Data is not null:
                CheckCount(int32Data.Length, count);
                return int32Data.Select(v => (long)v).ToArray();
            case OnnxDataType.Int32:
                CheckRaw(4, count);
                return MemoryMarshal.Cast<byte, int>(file.AsSpan(rawOffset, rawLength)).ToArray().Select(v => (long)v).ToArray();
            default:
                throw new HeadLensException($"{what}: element type {DataType} where integers were expected");
        }
    }

    /// <summary>A one-element float tensor's value (a scalar constant such as LayerNorm's epsilon or attention's √d).</summary>
    public float ScalarFloat()
    {
        if (ElementCount != 1)
        {
            throw new HeadLensException($"{what}: expected a scalar, found shape [{string.Join(", ", Dims)}]");
        }

        return ToFloats()[0];
    }

    private bool CheckCount(int found, int count) => found == count
        ? true
        : throw new HeadLensException($"{what}: holds {found} values but its shape [{string.Join(", ", Dims)}] needs {count}");

    private void CheckRaw(int size, int count)
    {
        if (floatData is not null || int64Data is not null || int32Data is not null || (long)size * count != rawLength)
        {
            throw new HeadLensException($"{what}: holds {rawLength} bytes of raw data but its shape [{string.Join(", ", Dims)}] of {DataType} needs {(long)size * count}");
        }
    }
}

/// <summary>A node attribute (AttributeProto): the scalar, list and tensor kinds; subgraphs are not read.</summary>
internal sealed record OnnxAttr(string Name, float F, long I, string S, OnnxTensor? T, IReadOnlyList<float> Floats, IReadOnlyList<long> Ints);

/// <summary>One graph node (NodeProto).</summary>
internal sealed record OnnxNode(int Index, string Name, string OpType, string Domain, IReadOnlyList<string> Inputs,
    IReadOnlyList<string> Outputs, IReadOnlyDictionary<string, OnnxAttr> Attributes)
{
    /// <summary>"graph.node[12] 'MatMul_5' (MatMul)": how errors name a node.</summary>
    public string Label => $"node {Index} '{Name}' ({OpType})";
}

/// <summary>The graph (GraphProto): nodes in file order, initializers by name, input and output names.</summary>
internal sealed record OnnxGraph(string Name, IReadOnlyList<OnnxNode> Nodes, IReadOnlyDictionary<string, OnnxTensor> Initializers,
    IReadOnlyList<string> Inputs, IReadOnlyList<string> Outputs);

/// <summary>A parsed ONNX model (ModelProto): the IR version, the default-domain opset, the producer and the graph.</summary>
internal sealed record OnnxModel(string Source, long IrVersion, long Opset, string ProducerName, OnnxGraph Graph);
