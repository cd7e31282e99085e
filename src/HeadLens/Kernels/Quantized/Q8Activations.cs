using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace HeadLens.Kernels.Quantized;

// The input vectors of a product, quantized to 8 bits per block so that the weights' blocks multiply them with integer
// instructions (llama.cpp's scheme: its Q8_0 and Q8_K activation blocks). Per block of B values (B = 32 for Q8_0
// weights, 256 for the K-quants) of a vector x:
//   amax = max |x_i|,  d = amax / 127,  q_i = round-half-to-even(x_i · (127 / amax)) ∈ [−127, 127]  (d = 0, q = 0 if amax = 0)
//   and, for B = 256, sums[j] = Σ q_i over each run of 16 (the K-quants' mins and Q6_K's offset use them).
// x_i ≈ d · q_i: the rounding moves each value by at most d/2 = amax/254. −128 never occurs, so the Q8_0 product
// may move a weight's sign onto q (|q| stays ≤ 127). The scale is kept as float32 (llama.cpp keeps Q8_0's as fp16).
// Layout, for V vectors of K values: Values [V·K] sbyte, Scales [V·K/B] float, Sums [V·K/16] short and Paired [V·K]
// (Values reordered for Q4_K) for B = 256 only.
// Implementations: QuantizeReference (scalar, the contract) and Quantize (AVX-512BW, else AVX2: the same values bit for
// bit — the same float product per value, and vcvtps2dq rounds half to even as MathF.Round(…, ToEven) does).
internal sealed class Q8Activations
{
    private sbyte[] values = [];
    private sbyte[] paired = [];
    private int valuesOffset;
    private int pairedOffset;
    private float[] scales = [];
    private short[] sums = [];

    /// <summary>Values per block: 32 or 256.</summary>
    public int BlockValues { get; private set; }

    public int Vectors { get; private set; }

    public int Columns { get; private set; }

    public ReadOnlySpan<sbyte> Values => values.AsSpan(valuesOffset, Vectors * Columns);

    /// <summary>
    /// For blocks of 256, the values again with each 128 reordered as runs of 32 [0, 2, 1, 3]: the order in which a
    /// Q4_K block's nibbles meet them (bytes 0-31 of its 64-byte loads hold runs 0 and 1, bytes 32-63 runs 2 and 3),
    /// so that its product loads 64 activations at once instead of joining two halves. Empty for blocks of 32.
    /// </summary>
    public ReadOnlySpan<sbyte> Paired => paired.AsSpan(pairedOffset, BlockValues == 256 ? Vectors * Columns : 0);

    public ReadOnlySpan<float> Scales => scales.AsSpan(0, Vectors * Columns / BlockValues);

    public ReadOnlySpan<short> Sums => sums.AsSpan(0, BlockValues == 256 ? Vectors * Columns / 16 : 0);

    // One set of buffers per calling thread, grown as needed: a product quantizes its input on the calling thread
    // before the rows are shared out, so the buffers live as long as that thread and no product allocates.
    [ThreadStatic]
    private static Q8Activations? shared;

    /// <summary>This thread's reusable buffers (valid until this thread's next product).</summary>
    public static Q8Activations ForThisThread() => shared ??= new Q8Activations();

    /// <summary>The block of the activations that <paramref name="type"/>'s integer product reads (32 or 256 values).</summary>
    public static int BlockFor(GgmlType type) => type == GgmlType.Q8_0 ? 32 : GgmlTypes.SuperBlock;

    /// <summary>Quantizes <paramref name="vectors"/> vectors of <paramref name="columns"/> values (a multiple of the block).</summary>
    public void Quantize(ReadOnlySpan<float> x, int vectors, int columns, int blockValues, bool reference = false)
    {
        if (blockValues is not (32 or 256) || columns % blockValues != 0 || vectors < 1 || x.Length < (long)vectors * columns)
        {
            throw new ArgumentException($"8-bit activations: {vectors} vectors of {columns} values in blocks of {blockValues}, x has {x.Length}");
        }

        Reserve(vectors, columns, blockValues);
        int blocks = vectors * columns / blockValues;
        bool wide = !reference && Avx512BW.IsSupported, avx2 = !reference && !wide && Vector256.IsHardwareAccelerated && Avx2.IsSupported;
        for (int b = 0; b < blocks; b++)
        {
            var from = x.Slice(b * blockValues, blockValues);
            var to = values.AsSpan(valuesOffset + (b * blockValues), blockValues);
            scales[b] = wide ? Block512(from, to) : avx2 ? Block256(from, to) : BlockReference(from, to);
        }

        if (blockValues == 256)
        {
            for (int j = 0; j < vectors * columns / 16; j++)
            {
                int sum = 0;
                foreach (sbyte q in values.AsSpan(valuesOffset + (j * 16), 16))
                {
                    sum += q;
                }

                sums[j] = (short)sum;
            }

            for (int run = 0; run < vectors * columns / 32; run++)
            {
                int target = (run & ~3) | ((run & 1) << 1) | ((run >> 1) & 1); // runs 0, 1, 2, 3 → 0, 2, 1, 3
                values.AsSpan(valuesOffset + (run * 32), 32).CopyTo(paired.AsSpan(pairedOffset + (target * 32), 32));
            }
        }
    }

    private void Reserve(int vectors, int columns, int blockValues)
    {
        int count = vectors * columns;
        if (values.Length < count + 64)
        {
            (values, valuesOffset) = Aligned(count);
            (paired, pairedOffset) = Aligned(count);
            scales = new float[count / 32];
            sums = new short[count / 16];
        }

        Vectors = vectors;
        Columns = columns;
        BlockValues = blockValues;
    }

    // The values start on a cache line: the products load them 64 bytes at a time, and a load that straddles two
    // lines costs two (an unaligned array made the same product run at half speed in some runs and not others).
    private static unsafe (sbyte[] Array, int Offset) Aligned(int count)
    {
        var array = GC.AllocateUninitializedArray<sbyte>(count + 64, pinned: true);
        fixed (sbyte* start = array)
        {
            return (array, (int)((64 - ((nint)start & 63)) & 63));
        }
    }

    /// <summary>One block, scalar: the contract.</summary>
    private static float BlockReference(ReadOnlySpan<float> x, Span<sbyte> q)
    {
        float amax = 0;
        foreach (float value in x)
        {
            amax = MathF.Max(amax, MathF.Abs(value));
        }

        if (amax == 0)
        {
            q.Clear();
            return 0;
        }

        float inverse = 127f / amax;
        for (int i = 0; i < x.Length; i++)
        {
            q[i] = (sbyte)MathF.Round(x[i] * inverse, MidpointRounding.ToEven);
        }

        return amax / 127f;
    }

    /// <summary>One block, 16 values per step: the reference's values exactly.</summary>
    private static unsafe float Block512(ReadOnlySpan<float> x, Span<sbyte> q)
    {
        fixed (float* xp = x)
        fixed (sbyte* qp = q)
        {
            var amax = Vector512<float>.Zero;
            for (int i = 0; i < x.Length; i += 16)
            {
                amax = Vector512.Max(amax, Vector512.Abs(Vector512.Load(xp + i)));
            }

            var four = Vector128.Max(Vector256.Max(amax.GetLower(), amax.GetUpper()).GetLower(), Vector256.Max(amax.GetLower(), amax.GetUpper()).GetUpper());
            float max = MathF.Max(MathF.Max(four.GetElement(0), four.GetElement(1)), MathF.Max(four.GetElement(2), four.GetElement(3)));

            if (max == 0)
            {
                q.Clear();
                return 0;
            }

            var inverse = Vector512.Create(127f / max);
            for (int i = 0; i < x.Length; i += 16)
            {
                // vcvtps2dq rounds to nearest, half to even (the default MXCSR mode .NET runs under).
                var rounded = Avx512F.ConvertToVector512Int32(Vector512.Load(xp + i) * inverse);
                Avx512F.ConvertToVector128SByteWithSaturation(rounded).Store(qp + i);
            }

            return max / 127f;
        }
    }

    /// <summary>One block, 8 values per step (AVX2): the reference's values exactly.</summary>
    private static unsafe float Block256(ReadOnlySpan<float> x, Span<sbyte> q)
    {
        fixed (float* xp = x)
        fixed (sbyte* qp = q)
        {
            var amax = Vector256<float>.Zero;
            for (int i = 0; i < x.Length; i += 8)
            {
                amax = Vector256.Max(amax, Vector256.Abs(Vector256.Load(xp + i)));
            }

            var four = Vector128.Max(amax.GetLower(), amax.GetUpper());
            float max = MathF.Max(MathF.Max(four.GetElement(0), four.GetElement(1)), MathF.Max(four.GetElement(2), four.GetElement(3)));
            if (max == 0)
            {
                q.Clear();
                return 0;
            }

            // vcvtps2dq rounds to nearest, half to even; |x · 127 / max| ≤ 127, so narrowing keeps every value.
            var inverse = Vector256.Create(127f / max);
            for (int i = 0; i < x.Length; i += 32)
            {
                var first = Vector256.Narrow(Avx.ConvertToVector256Int32(Vector256.Load(xp + i) * inverse), Avx.ConvertToVector256Int32(Vector256.Load(xp + i + 8) * inverse));
                var second = Vector256.Narrow(Avx.ConvertToVector256Int32(Vector256.Load(xp + i + 16) * inverse), Avx.ConvertToVector256Int32(Vector256.Load(xp + i + 24) * inverse));
                Vector256.Narrow(first, second).AsSByte().Store(qp + i);
            }

            return max / 127f;
        }
    }
}
