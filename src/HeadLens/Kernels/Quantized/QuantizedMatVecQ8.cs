using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace HeadLens.Kernels.Quantized;

// Y[M, R] = X[M, K] · Wᵀ with W [R, K] in Q8_0, Q4_K, Q5_K or Q6_K and X quantized to 8 bits per block first (opt-in:
// `--activations q8`; llama.cpp's way of multiplying these formats):
//   X̂ = Q8Activations(X)  (per block of 32 or 256 values: one float scale, int8 values, run sums of 16)
//   Y[m, r] = IntegerDot(W[r], X̂[m])
// M = vectors (1 when decoding, the prompt's tokens otherwise), R = rows, K = columns (a multiple of the block).
// This changes the numbers: X̂ differs from X by up to amax/254 per value (amax: the largest |x| of its block), so the
// logits move by about as much as an 8-bit rounding of the weights would move them (the tests state the measured
// figure). The default products (QuantizedMatVec, QuantizedMatMul) multiply X in fp32 and equal the
// dequantize-then-fp32 reference to float rounding; this path is its own contract (Reference below).
// Work split: X is quantized once on the calling thread (M·K values, small next to the R·K weights), then rows of W are
// shared between the threads as in QuantizedMatVec; each row is multiplied with all M vectors while it sits in L1,
// so W streams from memory once per call. From IntegerMatMul.FromVectors vectors on (prompts), Q4_K, Q5_K and Q6_K rows go
// through the blocked integer product instead (IntegerMatMul: W decoded per super-block into byte panels that every
// token reuses; the reference's numbers bit for bit; AVX-512BW or AVX2); Q8_0 rows beyond QuantizedMatMul.FewVectors
// vectors through the fp32 panel product (MultiplyDequantized: the same numbers to float rounding, faster there).
// Without AVX2 (Arm, older x86) every vector count takes the row path with DecodedRow (each row unpacked once, then
// integer sums per vector with Vector128): the reference's bits, so a prompt's logits are its decode steps' exactly.
// The fp32 product of the dequantized x̂ is not used there: it equals the integer dots only to float rounding, which
// the next layer's 8-bit rounding turns into whole steps now and then (with it, the test model's prompt pass differed
// from its decoding by a third of what the 8-bit activations themselves move the logits). It would be faster with
// Vector128's Gemm (a 1.1B Q4_K_M 16-token prompt: 13.2 tokens/s in fp32, 7.1 with q8 through DecodedRow), but there
// the option is no speed-up anyway (decoding 3.2 against fp32's 3.5 tokens/s): its point there is llama.cpp's numbers.
// Implementations: Reference (scalar quantization and IntegerDot.Reference), Forward (vectorised quantization and
// IntegerDot.Dot512, with AVX2 only IntegerDot.Dot256, else DecodedRow on the same threads; prompts with AVX:
// IntegerMatMul or MultiplyDequantized).
public static class QuantizedMatVecQ8
{
    /// <summary>Whether <paramref name="type"/> has the 8-bit-activation product (Q8_0, Q4_K, Q5_K, Q6_K).</summary>
    public static bool Supports(GgmlType type) => IntegerDot.Supports(type);

    /// <summary>The contract: scalar quantization of each vector, then the scalar integer dot of every row with it.</summary>
    public static void Reference(GgmlType type, ReadOnlySpan<byte> weights, int rows, int columns, ReadOnlySpan<float> x, int vectors, Span<float> y)
    {
        CheckShapes(type, weights, rows, columns, x, vectors, y);
        var activations = new Q8Activations();
        activations.Quantize(x, vectors, columns, Q8Activations.BlockFor(type), reference: true);
        int rowBytes = (int)GgmlTypes.RowBytes(type, columns), blocks = columns / activations.BlockValues;
        for (int v = 0; v < vectors; v++)
        {
            var q = activations.Values.Slice(v * columns, columns);
            var scales = activations.Scales.Slice(v * blocks, blocks);
            var sums = activations.BlockValues == 256 ? activations.Sums.Slice(v * columns / 16, columns / 16) : [];
            for (int r = 0; r < rows; r++)
            {
                y[(v * rows) + r] = IntegerDot.Reference(type, weights.Slice(r * rowBytes, rowBytes), columns, q, scales, sums);
            }
        }
    }

    /// <summary>Y[M, R] = X̂[M, K] · Wᵀ (overwritten), X quantized to 8 bits per block; rows split between the threads.</summary>
    public static unsafe void Forward(GgmlType type, ReadOnlySpan<byte> weights, int rows, int columns, ReadOnlySpan<float> x, int vectors, Span<float> y)
    {
        CheckShapes(type, weights, rows, columns, x, vectors, y);
        var activations = Q8Activations.ForThisThread();
        activations.Quantize(x, vectors, columns, Q8Activations.BlockFor(type));
        if (vectors >= IntegerMatMul.FromVectors && IntegerMatMul.Supports(type))
        {
            fixed (byte* wp = weights)
            fixed (float* yp = y)
            {
                IntegerMatMul.Multiply(type, wp, rows, activations, yp);
            }

            return;
        }

        bool wide = IntegerDot.Is512, avx2 = IntegerDot.Is256;
        if (vectors > QuantizedMatMul.FewVectors && (wide || avx2))
        {
            MultiplyDequantized(type, weights, rows, columns, activations, y);
            return;
        }

        int rowBytes = (int)GgmlTypes.RowBytes(type, columns), block = activations.BlockValues;
        fixed (byte* wp = weights)
        fixed (sbyte* qp = activations.Values, pp = activations.Paired)
        fixed (float* sp = activations.Scales, yp = y)
        fixed (short* rp = activations.Sums)
        {
            nint wa = (nint)wp, qa = (nint)qp, pa = (nint)pp, sa = (nint)sp, ra = (nint)rp, ya = (nint)yp;
            void Rows(int first, int end)
            {
                var decoded = wide || avx2 ? null : DecodedRow.ForThisThread(type, columns);
                for (int r = first; r < end; r++)
                {
                    byte* row = (byte*)wa + ((long)r * rowBytes);
                    decoded?.Decode(new ReadOnlySpan<byte>(row, rowBytes));
                    for (int v = 0; v < vectors; v++)
                    {
                        sbyte* q = (sbyte*)qa + ((long)v * columns);
                        float* scales = (float*)sa + ((long)v * columns / block);
                        short* sums = (short*)ra + ((long)v * columns / 16);
                        sbyte* paired = (sbyte*)pa + ((long)v * columns);
                        ((float*)ya)[((long)v * rows) + r] = wide ? IntegerDot.Dot512(type, row, columns, q, paired, scales, sums)
                            : avx2 ? IntegerDot.Dot256(type, row, columns, q, scales, sums)
                            : decoded!.Dot(new ReadOnlySpan<sbyte>(q, columns), new ReadOnlySpan<float>(scales, columns / block),
                                block == 256 ? new ReadOnlySpan<short>(sums, columns / 16) : []);
                    }
                }
            }

            int chunk = QuantizedMatVec.RowChunk(rows, (long)rowBytes * rows * vectors);
            if (chunk == 0)
            {
                Rows(0, rows);
                return;
            }

            ComputeThreads.Run((rows + chunk - 1) / chunk, part => Rows(part * chunk, Math.Min(rows, (part + 1) * chunk)));
        }
    }

    // Many vectors (a prompt) of Q8_0 rows: the quantized activations as floats
    // (d·q, exact but for the product's rounding) through the fp32 panel product. One integer dot per row and vector
    // reads the row's blocks once per vector, where the blocked Gemm reuses each decoded panel for all the vectors:
    // measured slower than the fp32 prompt (a 64-token prompt of the 1.1B Q4_K_M model took twice as long). Q8_0 has no
    // blocked integer product: vpmaddubsw needs one unsigned operand, and its signed weights would take either the
    // sign trick per token or two multiplies per 64 values (w + 128 split into nibbles), plus a float step per 32
    // values: an estimated ~1.15× the fp32 kernel on Zen 4 (not built).
    private static void MultiplyDequantized(GgmlType type, ReadOnlySpan<byte> weights, int rows, int columns, Q8Activations activations, Span<float> y)
    {
        int count = activations.Vectors * columns, block = activations.BlockValues;
        var rented = System.Buffers.ArrayPool<float>.Shared.Rent(count);
        try
        {
            ActivationsAsFloats(activations, count, block, rented);

            QuantizedMatMul.Forward(type, weights, rows, columns, rented.AsSpan(0, count), activations.Vectors, y);
        }
        finally
        {
            System.Buffers.ArrayPool<float>.Shared.Return(rented);
        }
    }

    // x̂ = d·q, block by block (8 values per step with AVX2: a division per value made this loop take as long as the
    // quantization itself); the same products either way.
    private static unsafe void ActivationsAsFloats(Q8Activations activations, int count, int block, float[] target)
    {
        var scales = activations.Scales;
        fixed (sbyte* values = activations.Values)
        fixed (float* to = target)
        {
            for (int b = 0; b < count / block; b++)
            {
                float scale = scales[b];
                int i = b * block, end = i + block;
                if (Vector256.IsHardwareAccelerated && Avx2.IsSupported)
                {
                    var d = Vector256.Create(scale);
                    for (; i < end; i += 8)
                    {
                        (Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(values + i)) * d).Store(to + i);
                    }
                }

                for (; i < end; i++)
                {
                    to[i] = scale * values[i];
                }
            }
        }
    }

    private static void CheckShapes(GgmlType type, ReadOnlySpan<byte> weights, int rows, int columns, ReadOnlySpan<float> x, int vectors, Span<float> y)
    {
        if (!Supports(type))
        {
            throw new ArgumentException($"{type} has no product with 8-bit activations (Q8_0, Q4_K, Q5_K and Q6_K have)");
        }

        if (rows < 0 || columns < 1 || vectors < 1 || columns % GgmlTypes.BlockValues(type) != 0 || weights.Length < rows * GgmlTypes.RowBytes(type, columns)
            || x.Length < (long)vectors * columns || y.Length < (long)vectors * rows)
        {
            throw new ArgumentException($"{type} product with 8-bit activations: [{vectors}, {columns}]·[{rows}, {columns}]ᵀ with {weights.Length} bytes, x {x.Length}, y {y.Length}");
        }
    }
}
