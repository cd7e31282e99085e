using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace HeadLens.Kernels.Quantized;

// y = W·x with W [R, K] stored row-major in a ggml block format (R = rows, K = columns, a multiple of the block).
//   y[r] = Σ_k W[r, k] · x[k]
// Every block format decodes to value = s · u + c, with u a small unsigned integer (a nibble, 5 or 6 bits, or a
// signed byte for Q8_0), s a scale per 16 or 32 values and c a constant per sub-block (Q4_0: −8d, K-quants: −dmin·m,
// Q6_K: −32·d·scale). So a row's dot product is
//   Σ_sub s · Σ_i u_i x_i   +   Σ_sub c · Σ_i x_i
// where Σ_i x_i per 16 values is computed once per call and shared by every row. The first sum is done in registers:
// the quantized bytes are loaded, unpacked with byte-wise AND/shift/OR, widened to int32, converted to float and
// multiplied into the accumulator; no dequantized row is ever written to memory.
// Implementations: Reference (dequantize each row with Dequantize.Reference, then a plain dot), Vector512 (16 lanes)
// and Vector256 (8 lanes) fast paths sharing one body per format through ILanes, and the reference's row loop when no
// vector hardware is accelerated. Forward takes one vector or a few (X [M, K] → Y [M, R]) and splits W's rows
// between the threads; QuantizedMatMul uses it for short inputs. F32 uses TensorPrimitives.Dot; F16 and BF16 are widened to float32 in registers.
public static class QuantizedMatVec
{
    /// <summary>The contract: dequantize each row (scalar), then a sequential dot product with x.</summary>
    public static void Reference(GgmlType type, ReadOnlySpan<byte> weights, int rows, int columns, ReadOnlySpan<float> x, Span<float> y)
    {
        CheckShapes(type, weights, rows, columns, x, y);
        int rowBytes = (int)GgmlTypes.RowBytes(type, columns);
        var row = new float[columns];
        for (int r = 0; r < rows; r++)
        {
            Dequantize.Reference(type, weights.Slice(r * rowBytes, rowBytes), row);
            float sum = 0;
            for (int k = 0; k < columns; k++)
            {
                sum += row[k] * x[k];
            }

            y[r] = sum;
        }
    }

    /// <summary>y = W·x, reading the blocks of W and dequantizing in registers; rows split between the threads.</summary>
    public static void Forward(GgmlType type, ReadOnlySpan<byte> weights, int rows, int columns, ReadOnlySpan<float> x, Span<float> y) =>
        Forward(type, weights, rows, columns, x, 1, y);

    /// <summary>
    /// Y[M, R] = X[M, K] · Wᵀ for a few vectors (decoding, or a short prompt): each row of W is decoded from the
    /// bytes once per vector while it sits in L1, so W streams from memory once for all M vectors. Rows of W are split
    /// between the threads (<see cref="ComputeThreads"/>) in chunks handed out dynamically.
    /// </summary>
    public static unsafe void Forward(GgmlType type, ReadOnlySpan<byte> weights, int rows, int columns, ReadOnlySpan<float> x, int vectors, Span<float> y)
    {
        if (vectors < 1 || x.Length < (long)vectors * columns || y.Length < (long)vectors * rows)
        {
            throw new ArgumentException($"{type} matrix-vector product: {vectors} vectors of {columns} need x {(long)vectors * columns} and y {(long)vectors * rows}, got {x.Length} and {y.Length}");
        }

        CheckShapes(type, weights, rows, columns, x, y);
        int rowBytes = (int)GgmlTypes.RowBytes(type, columns);

        // Σ x over every 16 columns of every vector: the constant part of each sub-block multiplies these.
        int groups = columns / 16;
        var rented = ArrayPool<float>.Shared.Rent(Math.Max(1, vectors * groups));
        try
        {
            for (int v = 0; v < vectors; v++)
            {
                for (int g = 0; g < groups; g++)
                {
                    rented[(v * groups) + g] = TensorPrimitives.Sum(x.Slice((v * columns) + (g * 16), 16));
                }
            }

            fixed (byte* wp = weights)
            fixed (float* xp = x, yp = y, sp = rented)
            {
                nint wa = (nint)wp, xa = (nint)xp, ya = (nint)yp, sa = (nint)sp;
                void Rows(int first, int end)
                {
                    for (int r = first; r < end; r++)
                    {
                        var row = new ReadOnlySpan<byte>((byte*)wa + ((long)r * rowBytes), rowBytes);
                        for (int v = 0; v < vectors; v++)
                        {
                            var vector = new ReadOnlySpan<float>((float*)xa + ((long)v * columns), columns);
                            var sums16 = new ReadOnlySpan<float>((float*)sa + ((long)v * groups), groups);
                            ((float*)ya)[((long)v * rows) + r] = Dot(type, row, vector, sums16);
                        }
                    }
                }

                // Small products stay on the calling thread (handing out work costs microseconds); large ones go in
                // about eight chunks per thread so that an interrupted core simply takes fewer.
                int threads = ComputeThreads.Count;
                if (threads == 1 || (long)rowBytes * rows * vectors < ParallelBytes)
                {
                    Rows(0, rows);
                    return;
                }

                int chunk = Math.Max(1, (rows + (threads * 8) - 1) / (threads * 8));
                ComputeThreads.Run((rows + chunk - 1) / chunk, part => Rows(part * chunk, Math.Min(rows, (part + 1) * chunk)));
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rented);
        }
    }

    // Below this many weight bytes (times vectors) one thread is faster than waking another.
    private const long ParallelBytes = 1 << 16;

    /// <summary>
    /// One row's dot product with x: F32/F16/BF16 by converting chunks, block formats in registers (Vector512, else
    /// Vector256), or — with no vector hardware — the reference (dequantize the row, then a sequential sum).
    /// <paramref name="sums16"/> holds Σ x per 16 columns.
    /// </summary>
    internal static float Dot(GgmlType type, ReadOnlySpan<byte> row, ReadOnlySpan<float> x, ReadOnlySpan<float> sums16)
    {
        if (type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16)
        {
            return DotPlain(type, row, x);
        }

        if (Vector512.IsHardwareAccelerated)
        {
            return DotRow<Lanes512>(type, row, x, sums16);
        }

        if (Vector256.IsHardwareAccelerated)
        {
            return DotRow<Lanes256>(type, row, x, sums16);
        }

        int columns = (int)(row.Length / GgmlTypes.BlockBytes(type) * GgmlTypes.BlockValues(type));
        var rented = ArrayPool<float>.Shared.Rent(columns);
        try
        {
            var values = rented.AsSpan(0, columns);
            Dequantize.Reference(type, row, values);
            float sum = 0;
            for (int k = 0; k < columns; k++)
            {
                sum += values[k] * x[k];
            }

            return sum;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rented);
        }
    }

    private static void CheckShapes(GgmlType type, ReadOnlySpan<byte> weights, int rows, int columns, ReadOnlySpan<float> x, Span<float> y)
    {
        int per = GgmlTypes.BlockValues(type);
        if (rows < 0 || columns % per != 0 || x.Length < columns || y.Length < rows || weights.Length < rows * GgmlTypes.RowBytes(type, columns))
        {
            throw new ArgumentException($"{type} matrix-vector product: [{rows}, {columns}] with {weights.Length} bytes, x {x.Length}, y {y.Length}");
        }
    }

    private static float DotPlain(GgmlType type, ReadOnlySpan<byte> row, ReadOnlySpan<float> x)
    {
        if (type == GgmlType.F32)
        {
            return TensorPrimitives.Dot(MemoryMarshal.Cast<byte, float>(row), x[..(row.Length / 4)]);
        }

        var halves = MemoryMarshal.Cast<byte, ushort>(row);
        bool f16 = type == GgmlType.F16;
        int i = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            // 32 weights per step: widened to 32-bit lanes and turned into floats in registers (see WidenToSingle).
            var a0 = Vector512<float>.Zero;
            var a1 = Vector512<float>.Zero;
            for (; i <= halves.Length - 32; i += 32)
            {
                var (lower, upper) = Vector512.Widen(Vector512.Create(halves.Slice(i, 32)));
                a0 = Vector512.FusedMultiplyAdd(WidenToSingle(lower, f16), Vector512.Create(x.Slice(i, 16)), a0);
                a1 = Vector512.FusedMultiplyAdd(WidenToSingle(upper, f16), Vector512.Create(x.Slice(i + 16, 16)), a1);
            }

            sum = Vector512.Sum(a0 + a1);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var a0 = Vector256<float>.Zero;
            var a1 = Vector256<float>.Zero;
            for (; i <= halves.Length - 16; i += 16)
            {
                var (lower, upper) = Vector256.Widen(Vector256.Create(halves.Slice(i, 16)));
                a0 = Vector256.FusedMultiplyAdd(WidenToSingle(lower, f16), Vector256.Create(x.Slice(i, 8)), a0);
                a1 = Vector256.FusedMultiplyAdd(WidenToSingle(upper, f16), Vector256.Create(x.Slice(i + 8, 8)), a1);
            }

            sum = Vector256.Sum(a0 + a1);
        }

        for (; i < halves.Length; i++)
        {
            sum += (f16 ? (float)BitConverter.UInt16BitsToHalf(halves[i]) : BitConverter.Int32BitsToSingle(halves[i] << 16)) * x[i];
        }

        return sum;
    }

    private static readonly float TwoToMinus24 = MathF.ScaleB(1f, -24);

    // 16-bit floats in 32-bit lanes to float32, exactly. BF16 is the top half of a float32: a shift. IEEE half, in
    // integer arithmetic only: a normal half's exponent and mantissa bits shifted into float32's place, plus 112 on the
    // exponent (the biases are 15 and 127); a subnormal half (exponent 0, zero included) is its mantissa times 2⁻²⁴,
    // converted from an integer; infinity and NaN (exponent 31) get float32's all-ones exponent; the sign is put back
    // last. (Multiplying the shifted bits by 2¹¹² instead would pass through float32 subnormals for small halves, which
    // cost a microcode assist per multiply on Intel cores.)
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> WidenToSingle(Vector512<uint> bits, bool f16)
    {
        if (!f16)
        {
            return Vector512.ShiftLeft(bits, 16).AsSingle();
        }

        var exponent = bits & Vector512.Create(0x7C00u);
        var magnitude = Vector512.ShiftLeft(bits & Vector512.Create(0x7FFFu), 13);
        var normal = magnitude + Vector512.Create(112u << 23);
        var subnormal = (Vector512.ConvertToSingle((bits & Vector512.Create(0x3FFu)).AsInt32()) * Vector512.Create(TwoToMinus24)).AsUInt32();
        var special = Vector512.Equals(exponent, Vector512.Create(0x7C00u));
        var value = Vector512.ConditionalSelect(special, magnitude | Vector512.Create(0x7F800000u), normal);
        value = Vector512.ConditionalSelect(Vector512.Equals(exponent, Vector512<uint>.Zero), subnormal, value);
        return (value | Vector512.ShiftLeft(bits & Vector512.Create(0x8000u), 16)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> WidenToSingle(Vector256<uint> bits, bool f16)
    {
        if (!f16)
        {
            return Vector256.ShiftLeft(bits, 16).AsSingle();
        }

        var exponent = bits & Vector256.Create(0x7C00u);
        var magnitude = Vector256.ShiftLeft(bits & Vector256.Create(0x7FFFu), 13);
        var normal = magnitude + Vector256.Create(112u << 23);
        var subnormal = (Vector256.ConvertToSingle((bits & Vector256.Create(0x3FFu)).AsInt32()) * Vector256.Create(TwoToMinus24)).AsUInt32();
        var special = Vector256.Equals(exponent, Vector256.Create(0x7C00u));
        var value = Vector256.ConditionalSelect(special, magnitude | Vector256.Create(0x7F800000u), normal);
        value = Vector256.ConditionalSelect(Vector256.Equals(exponent, Vector256<uint>.Zero), subnormal, value);
        return (value | Vector256.ShiftLeft(bits & Vector256.Create(0x8000u), 16)).AsSingle();
    }

    private static float DotRow<TLanes>(GgmlType type, ReadOnlySpan<byte> row, ReadOnlySpan<float> x, ReadOnlySpan<float> sums16)
        where TLanes : struct, ILanes
    {
        var accumulator = default(Accumulator);
        float constant = 0; // Σ c · Σ x
        var low = Vector256.Create((byte)0xF);
        var three = Vector256.Create((byte)3);
        var one = Vector256.Create((byte)1);
        switch (type)
        {
            case GgmlType.Q8_0:
                for (int b = 0; b < row.Length / 34; b++)
                {
                    float d = Dequantize.Half(row, b * 34);
                    TLanes.AddSigned32(ref accumulator, Vector256.Create(row.Slice((b * 34) + 2, 32)).AsSByte(), x.Slice(b * 32, 32), d);
                }

                break;
            case GgmlType.Q4_0:
                for (int b = 0; b < row.Length / 18; b++)
                {
                    float d = Dequantize.Half(row, b * 18);
                    var packed = Vector128.Create(row.Slice((b * 18) + 2, 16));
                    var nibbles = Vector256.Create(packed & Vector128.Create((byte)0xF), Vector128.ShiftRightLogical(packed, 4));
                    TLanes.Add32(ref accumulator, nibbles, x.Slice(b * 32, 32), d, d);
                    constant -= 8 * d * (sums16[2 * b] + sums16[(2 * b) + 1]);
                }

                break;
            case GgmlType.Q4_K:
            case GgmlType.Q5_K:
                {
                    bool five = type == GgmlType.Q5_K;
                    int bytes = five ? 176 : 144, quants = five ? 48 : 16;
                    for (int b = 0; b < row.Length / bytes; b++)
                    {
                        var block = row.Slice(b * bytes, bytes);
                        float d = Dequantize.Half(block, 0), dmin = Dequantize.Half(block, 2);
                        var scales = block.Slice(4, 12);
                        var high = five ? Vector256.Create(block.Slice(16, 32)) : default;
                        for (int group = 0; group < 4; group++)
                        {
                            var packed = Vector256.Create(block.Slice(quants + (32 * group), 32));
                            var u1 = packed & low;
                            var u2 = Vector256.ShiftRightLogical(packed, 4);
                            if (five)
                            {
                                u1 |= Vector256.ShiftLeft(Vector256.ShiftRightLogical(high, 2 * group) & one, 4);
                                u2 |= Vector256.ShiftLeft(Vector256.ShiftRightLogical(high, (2 * group) + 1) & one, 4);
                            }

                            var (s1, m1) = Dequantize.ScaleMin(scales, 2 * group);
                            var (s2, m2) = Dequantize.ScaleMin(scales, (2 * group) + 1);
                            int at = (256 * b) + (64 * group);
                            TLanes.Add32(ref accumulator, u1, x.Slice(at, 32), d * s1, d * s1);
                            TLanes.Add32(ref accumulator, u2, x.Slice(at + 32, 32), d * s2, d * s2);
                            int g16 = at / 16;
                            constant -= (dmin * m1 * (sums16[g16] + sums16[g16 + 1])) + (dmin * m2 * (sums16[g16 + 2] + sums16[g16 + 3]));
                        }
                    }

                    break;
                }

            default: // Q6_K
                for (int b = 0; b < row.Length / 210; b++)
                {
                    var block = row.Slice(b * 210, 210);
                    float d = Dequantize.Half(block, 208);
                    var scales = block.Slice(192, 16);
                    for (int half = 0; half < 2; half++)
                    {
                        var ql0 = Vector256.Create(block.Slice(64 * half, 32));
                        var ql1 = Vector256.Create(block.Slice((64 * half) + 32, 32));
                        var qh = Vector256.Create(block.Slice(128 + (32 * half), 32));
                        // Four runs of 32 values: (ql0 low, ql1 low, ql0 high, ql1 high) nibbles, each with two bits of qh.
                        for (int run = 0; run < 4; run++)
                        {
                            var nibble = run < 2 ? (run == 0 ? ql0 : ql1) & low : Vector256.ShiftRightLogical(run == 2 ? ql0 : ql1, 4);
                            var u = nibble | Vector256.ShiftLeft(Vector256.ShiftRightLogical(qh, 2 * run) & three, 4);
                            int s = (8 * half) + (2 * run);
                            float sLow = d * (sbyte)scales[s], sHigh = d * (sbyte)scales[s + 1];
                            int at = (256 * b) + (128 * half) + (32 * run);
                            TLanes.Add32(ref accumulator, u, x.Slice(at, 32), sLow, sHigh);
                            constant -= 32 * ((sLow * sums16[at / 16]) + (sHigh * sums16[(at / 16) + 1]));
                        }
                    }
                }

                break;
        }

        return TLanes.Sum(ref accumulator) + constant;
    }

    /// <summary>Both widths' accumulators; each width uses one (the JIT specialises DotRow per width).</summary>
    private struct Accumulator
    {
        public Vector512<float> Wide;
        public Vector256<float> Narrow;
    }

    private interface ILanes
    {
        /// <summary>acc += s·u·x over 32 values: the first 16 scaled by <paramref name="scaleLow"/>, the rest by <paramref name="scaleHigh"/>.</summary>
        static abstract void Add32(ref Accumulator accumulator, Vector256<byte> u, ReadOnlySpan<float> x, float scaleLow, float scaleHigh);

        static abstract void AddSigned32(ref Accumulator accumulator, Vector256<sbyte> q, ReadOnlySpan<float> x, float scale);

        static abstract float Sum(ref Accumulator accumulator);
    }

    private readonly struct Lanes512 : ILanes
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Add32(ref Accumulator accumulator, Vector256<byte> u, ReadOnlySpan<float> x, float scaleLow, float scaleHigh)
        {
            var (first, second) = Vector512.Widen(Vector512.WidenLower(u.ToVector512Unsafe()));
            var a = Vector512.ConvertToSingle(first.AsInt32()) * Vector512.Create(x[..16]);
            var b = Vector512.ConvertToSingle(second.AsInt32()) * Vector512.Create(x.Slice(16, 16));
            accumulator.Wide = Vector512.FusedMultiplyAdd(a, Vector512.Create(scaleLow), accumulator.Wide);
            accumulator.Wide = Vector512.FusedMultiplyAdd(b, Vector512.Create(scaleHigh), accumulator.Wide);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void AddSigned32(ref Accumulator accumulator, Vector256<sbyte> q, ReadOnlySpan<float> x, float scale)
        {
            var (first, second) = Vector512.Widen(Vector512.WidenLower(q.ToVector512Unsafe()));
            var sum = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(first), Vector512.Create(x[..16]),
                Vector512.ConvertToSingle(second) * Vector512.Create(x.Slice(16, 16)));
            accumulator.Wide = Vector512.FusedMultiplyAdd(sum, Vector512.Create(scale), accumulator.Wide);
        }

        public static float Sum(ref Accumulator accumulator) => Vector512.Sum(accumulator.Wide);
    }

    private readonly struct Lanes256 : ILanes
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Add32(ref Accumulator accumulator, Vector256<byte> u, ReadOnlySpan<float> x, float scaleLow, float scaleHigh)
        {
            var (lower, upper) = Vector256.Widen(u);
            var (a, b) = Vector256.Widen(lower);
            var (c, e) = Vector256.Widen(upper);
            var low = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(a.AsInt32()), Vector256.Create(x[..8]),
                Vector256.ConvertToSingle(b.AsInt32()) * Vector256.Create(x.Slice(8, 8)));
            var high = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(c.AsInt32()), Vector256.Create(x.Slice(16, 8)),
                Vector256.ConvertToSingle(e.AsInt32()) * Vector256.Create(x.Slice(24, 8)));
            accumulator.Narrow = Vector256.FusedMultiplyAdd(low, Vector256.Create(scaleLow), accumulator.Narrow);
            accumulator.Narrow = Vector256.FusedMultiplyAdd(high, Vector256.Create(scaleHigh), accumulator.Narrow);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void AddSigned32(ref Accumulator accumulator, Vector256<sbyte> q, ReadOnlySpan<float> x, float scale)
        {
            var (lower, upper) = Vector256.Widen(q);
            var (a, b) = Vector256.Widen(lower);
            var (c, e) = Vector256.Widen(upper);
            var sum = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(a), Vector256.Create(x[..8]), Vector256.ConvertToSingle(b) * Vector256.Create(x.Slice(8, 8)));
            sum = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(c), Vector256.Create(x.Slice(16, 8)), sum);
            sum = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(e), Vector256.Create(x.Slice(24, 8)), sum);
            accumulator.Narrow = Vector256.FusedMultiplyAdd(sum, Vector256.Create(scale), accumulator.Narrow);
        }

        public static float Sum(ref Accumulator accumulator) => Vector256.Sum(accumulator.Narrow);
    }
}
