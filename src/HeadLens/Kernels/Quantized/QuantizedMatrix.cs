namespace HeadLens.Kernels.Quantized;

/// <summary>
/// A matrix [Rows, Columns] kept in a ggml type (blocks along each row), usually straight in a memory-mapped file:
/// the bytes are never copied. The owner is whatever keeps the memory alive (the open file); the
/// matrix holds it for as long as the matrix is reachable.
/// </summary>
public sealed unsafe class QuantizedMatrix
{
    private readonly byte* start;
#pragma warning disable IDE0052 // held, not read: it keeps the mapping that start points into alive
    private readonly object owner;
#pragma warning restore IDE0052

    public QuantizedMatrix(string name, GgmlType type, int rows, int columns, byte* start, long length, object owner)
    {
        if (rows < 0 || columns <= 0 || columns % GgmlTypes.BlockValues(type) != 0 || length != rows * GgmlTypes.RowBytes(type, columns) || length > int.MaxValue)
        {
            throw new ArgumentException($"tensor '{name}': {length} bytes do not hold [{rows}, {columns}] in {type}");
        }

        Name = name;
        Type = type;
        Rows = rows;
        Columns = columns;
        this.start = start;
        Length = length;
        this.owner = owner;
    }

    public string Name { get; }

    public GgmlType Type { get; }

    public int Rows { get; }

    public int Columns { get; }

    /// <summary>Bytes of the whole matrix.</summary>
    public long Length { get; }

    public int RowBytes => (int)GgmlTypes.RowBytes(Type, Columns);

    public ReadOnlySpan<byte> Bytes => new(start, (int)Length);

    /// <summary>The first byte: memory that never moves (a mapping or native memory), valid while the matrix is reachable.</summary>
    internal byte* Start => start;

    private HalfExceptions? halfExceptions;

    /// <summary>
    /// For an F16 matrix on a CPU that runs <see cref="HalfDot"/>: its zero, subnormal, infinite and NaN halves,
    /// found on first use (one pass over the matrix) so that the products need not test for them; else null.
    /// </summary>
    internal HalfExceptions? HalfExceptions => Type != GgmlType.F16 || !HalfDot.IsSupported || !HalfDot.Enabled ? null
        : Volatile.Read(ref halfExceptions) ?? Interlocked.CompareExchange(ref halfExceptions, HalfDot.FindExceptions(start, Rows, Columns), null) ?? halfExceptions;

    /// <summary>Rows [first, first + count) as a matrix of their own (GPT-2's fused Q/K/V is three row blocks).</summary>
    public QuantizedMatrix RowBlock(string name, int first, int count) =>
        first < 0 || count < 0 || first + count > Rows ? throw new ArgumentOutOfRangeException(nameof(first))
            : new QuantizedMatrix(name, Type, count, Columns, start + ((long)first * RowBytes), (long)count * RowBytes, owner);
}
