namespace HeadLens.Tensors;

/// <summary>
/// A named view of floats with a shape, living inside an <see cref="Arena"/> (or owning a small array of its own).
/// The memory is pinned, so kernels may take its address for the lifetime of the arena.
/// </summary>
public sealed class Tensor
{
    private readonly float[] buffer;
    private readonly int offset;

    public Tensor(string name, int[] shape, float[] buffer, int offset)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(buffer);
        Name = name;
        Shape = (int[])shape.Clone();
        Length = ElementCount(shape);
        if (offset < 0 || (long)offset + Length > buffer.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"tensor '{name}' does not fit its buffer");
        }

        this.buffer = buffer;
        this.offset = offset;
    }

    /// <summary>A standalone tensor with its own pinned, zeroed storage (for small things and tests).</summary>
    public static Tensor Create(string name, params int[] shape)
    {
        var data = GC.AllocateArray<float>(ElementCount(shape), pinned: true);
        return new Tensor(name, shape, data, 0);
    }

    public string Name { get; }

    public int[] Shape { get; }

    public int Rank => Shape.Length;

    public int Length { get; }

    public Span<float> Span => buffer.AsSpan(offset, Length);

    public Memory<float> Memory => buffer.AsMemory(offset, Length);

    public float this[int index]
    {
        get => Span[index];
        set => Span[index] = value;
    }

    /// <summary>Rows [first, first + count) of the outermost dimension, as a tensor of the same rank.</summary>
    public Tensor Rows(int first, int count)
    {
        int rowLength = Shape.Length == 0 ? 1 : Length / Math.Max(1, Shape[0]);
        var shape = (int[])Shape.Clone();
        shape[0] = count;
        if (first < 0 || count < 0 || first + count > Shape[0])
        {
            throw new ArgumentOutOfRangeException(nameof(first), $"rows {first}..{first + count} of '{Name}' [{Shape[0]}]");
        }

        return new Tensor(Name, shape, buffer, offset + first * rowLength);
    }

    /// <summary>Slice <paramref name="index"/> of the outermost dimension, one rank lower.</summary>
    public Tensor Slice(int index)
    {
        var inner = Shape[1..];
        int innerLength = ElementCount(inner);
        if (index < 0 || index >= Shape[0])
        {
            throw new ArgumentOutOfRangeException(nameof(index), $"slice {index} of '{Name}' [{Shape[0]}]");
        }

        return new Tensor($"{Name}[{index}]", inner, buffer, offset + index * innerLength);
    }

    /// <summary>The same floats under another shape with the same element count.</summary>
    public Tensor Reshape(params int[] shape)
    {
        if (ElementCount(shape) != Length)
        {
            throw new ArgumentException($"cannot view '{Name}' {ShapeText(Shape)} as {ShapeText(shape)}");
        }

        return new Tensor(Name, shape, buffer, offset);
    }

    public void Clear() => Span.Clear();

    public static int ElementCount(ReadOnlySpan<int> shape)
    {
        long count = 1;
        foreach (int dim in shape)
        {
            if (dim < 0)
            {
                throw new ArgumentException("negative dimension in shape");
            }

            count *= dim;
            if (count > Array.MaxLength)
            {
                throw new ArgumentException($"a tensor of shape {ShapeText(shape)} is too large for one buffer");
            }
        }

        return (int)count;
    }

    public static string ShapeText(ReadOnlySpan<int> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";

    public override string ToString() => $"{Name} {ShapeText(Shape)}";
}
