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
