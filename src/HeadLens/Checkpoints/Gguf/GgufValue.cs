namespace HeadLens.Checkpoints.Gguf;

/// <summary>GGUF metadata value types, numbered as the format does.</summary>
public enum GgufValueType : uint
{
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
}

/// <summary>
/// One metadata value: a number (held as long, ulong or double), a bool, a string, or an array of one of those
/// (held as a typed .NET array: long[], ulong[], double[], bool[], string[]; float32 arrays also as float[]).
/// </summary>
public sealed record GgufValue(GgufValueType Type, object Value, GgufValueType ElementType = GgufValueType.UInt8)
{
    public bool IsArray => Type == GgufValueType.Array;

    public override string ToString() => IsArray ? $"[{ElementType} × {((Array)Value).Length}]" : $"{Value}";
}

/// <summary>One tensor's description: its name, ggml dimensions (ne[0] = values per row first), type and place.</summary>
/// <param name="Dimensions">ggml order: Dimensions[0] is the row length (columns); a [rows, columns] matrix is [columns, rows].</param>
/// <param name="Offset">From the start of the data section (a multiple of the alignment).</param>
public sealed record GgufTensorInfo(string Name, long[] Dimensions, Kernels.Quantized.GgmlType Type, long Offset, long ByteCount)
{
    public long ElementCount => Dimensions.Aggregate(1L, (product, dimension) => product * dimension);

    /// <summary>Values per row (ggml's ne[0]).</summary>
    public long Columns => Dimensions[0];

    /// <summary>Rows: the product of every dimension after the first.</summary>
    public long Rows => ElementCount / Dimensions[0];

    /// <summary>The shape as HeadLens and PyTorch write it: outermost first.</summary>
    public int[] Shape => Dimensions.Reverse().Select(dimension => (int)dimension).ToArray();
}
