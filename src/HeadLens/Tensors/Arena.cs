using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace HeadLens.Tensors;

/// <summary>
/// One pinned block of floats from which named tensors are carved, allocated once per model (weights, gradients,
/// optimiser state) or per batch shape (activations). Why: on this machine first-touch page faults from fresh
/// allocations every step doubled a training step's time, so big buffers are made once and reused.
/// </summary>
public sealed class Arena
{
    // Each tensor starts on a 64-byte boundary (16 floats) so that Vector512 loads of a row start aligned: offsets are
    // multiples of 16 floats from the first aligned float of the buffer (`shift` floats in; a .NET array's data starts
    // 8-byte aligned only). Why it matters: a matrix product's 12×32 register tile is stored and reloaded a row of 32
    // floats at a time, which on a misaligned C spans three cache lines instead of two; 2048³ on two threads of an
    // Emerald Rapids Xeon measured 1–7% slower with its operands 24 bytes past a line than aligned (BENCHMARKS.md).
    private const int Alignment = 16;

    private readonly List<(string Name, int[] Shape, int Offset)> layout = [];
    private readonly Dictionary<string, Tensor> byName = new(StringComparer.Ordinal);

    // Names reserved so far: a set, because a list scan made building a model quadratic in its layers.
    private readonly HashSet<string> reserved = new(StringComparer.Ordinal);
    private float[]? storage;
    private int used;
    private int shift;

    /// <param name="name">What the arena holds, for messages.</param>
    /// <param name="largePages">
    /// Back it with 2 MiB pages where Linux grants them (HugePages): for the tensors matrix products write a row at a
    /// time (training activations and gradients). Not for every arena: on a machine whose memory is fragmented the
    /// first touch of a 2 MiB page waits for the kernel to compact memory (measured: 2.1 s to touch 512 MB, against
    /// 0.43 s on small pages), a cost a training run pays once and a one-shot `generate` should not pay for its weights.
    /// </param>
    public Arena(string name, bool largePages = false)
    {
        Name = name;
        LargePages = largePages;
    }

    public string Name { get; }

    /// <summary>Whether the buffer is asked for on 2 MiB pages (see the constructor).</summary>
    public bool LargePages { get; }

    /// <summary>Total floats reserved so far (including alignment padding).</summary>
    public int FloatCount => used;

    public long Bytes => (long)used * sizeof(float);

    public IReadOnlyCollection<Tensor> Tensors => byName.Values;

    /// <summary>
    /// Reserves a tensor; its memory exists once <see cref="Allocate"/> has run (tensors reserved before that are
    /// usable afterwards through <see cref="Get"/> or the returned handle's later lookup).
    /// </summary>
    public void Reserve(string name, params int[] shape)
    {
        if (storage is not null)
        {
            throw new InvalidOperationException($"arena '{Name}' is already allocated; cannot add '{name}'");
        }

        if (!reserved.Add(name))
        {
            throw new ArgumentException($"arena '{Name}' already has a tensor named '{name}'");
        }

        long length = Tensor.ElementCount(shape);
        long start = (used + Alignment - 1) / Alignment * Alignment;
        if (start + length + Alignment - 1 > Array.MaxLength)
        {
            // Reached by real input (a checkpoint with more weights than one .NET array holds): a user error, not a bug.
            throw new HeadLensException($"the model's {Name} need more than {Array.MaxLength:N0} floats, the most one buffer holds (at '{name}')");
        }

        layout.Add((name, (int[])shape.Clone(), (int)start));
        used = (int)(start + length);
    }

    /// <summary>Allocates the single pinned buffer (zeroed) for every reserved tensor.</summary>
    public void Allocate()
    {
        if (storage is not null)
        {
            return;
        }

        // Pinned, so the address read here holds for the buffer's life.
        int length = Math.Max(used, 1) + Alignment - 1;
        storage = LargePages ? HugePages.AllocateZeroed(length) : GC.AllocateArray<float>(length, pinned: true);
        shift = FloatsToAlignment(storage);
        foreach (var (name, shape, offset) in layout)
        {
            byName[name] = new Tensor(name, shape, storage, shift + offset);
        }
    }

    public Tensor Get(string name)
    {
        if (storage is null)
        {
            throw new InvalidOperationException($"arena '{Name}' is not allocated yet");
        }

        return byName.TryGetValue(name, out var tensor)
            ? tensor
            : throw new KeyNotFoundException($"arena '{Name}' has no tensor '{name}'");
    }

    public bool Contains(string name) => reserved.Contains(name);

    /// <summary>Where <paramref name="tensor"/>, one of this arena's, lies in <see cref="All"/>: its first index and length.</summary>
    public (int Offset, int Length) RangeOf(Tensor tensor)
    {
        if (storage is null)
        {
            throw new InvalidOperationException($"arena '{Name}' is not allocated");
        }

        if (!byName.TryGetValue(tensor.Name, out var found) || !ReferenceEquals(found, tensor))
        {
            throw new ArgumentException($"tensor '{tensor.Name}' is not arena '{Name}'s own", nameof(tensor));
        }

        var (_, _, offset) = layout.Find(entry => entry.Name == tensor.Name);
        return (offset, tensor.Length);
    }

    /// <summary>The whole buffer as one span: for operations over every tensor at once (zeroing gradients, AdamW).</summary>
    public Span<float> All => (storage ?? throw new InvalidOperationException($"arena '{Name}' is not allocated")).AsSpan(shift, used);

    // Floats from the start of a pinned array's data to its first 64-byte boundary.
    private static unsafe int FloatsToAlignment(float[] pinned)
    {
        long address = (long)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned));
        return (int)((-address & ((Alignment * sizeof(float)) - 1)) / sizeof(float));
    }
}
