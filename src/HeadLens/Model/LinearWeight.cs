using HeadLens.Kernels;
using HeadLens.Kernels.Quantized;
using HeadLens.Tensors;

namespace HeadLens.Model;

/// <summary>
/// The weight matrix W [out, in] of a linear layer (or the token-embedding table, [V, C]) as inference reads it:
/// either an fp32 view into the model's arena (what training updates), or a <see cref="QuantizedMatrix"/> kept in
/// the type a GGUF file stores it in (Q8_0, Q4_K, Q6_K, F16, …), decoded only in registers or small scratch panels.
/// Every pass multiplies through <see cref="Forward"/>, so how a matrix is stored is decided here and nowhere else.
/// An fp32 matrix may also carry inference-only copies, made once and valid while the weights stay as they are:
/// packed panels (<see cref="Pack"/>: for short texts, packing the weights on every product cost more than the
/// product) and bfloat16 values for decoding (<see cref="MakeBf16Copy"/>: half the bytes per token).
/// </summary>
public sealed class LinearWeight
{
    public LinearWeight(Tensor dense)
    {
        ArgumentNullException.ThrowIfNull(dense);
        if (dense.Rank != 2)
        {
            throw new ArgumentException($"tensor '{dense.Name}' is not a matrix");
        }

        Dense = dense;
        Name = dense.Name;
        Rows = dense.Shape[0];
        Columns = dense.Shape[1];
    }

    public LinearWeight(QuantizedMatrix stored)
    {
        ArgumentNullException.ThrowIfNull(stored);
        Stored = stored;
        Name = stored.Name;
        Rows = stored.Rows;
        Columns = stored.Columns;
    }

    public string Name { get; }

    /// <summary>Output features (rows of W).</summary>
    public int Rows { get; }

    /// <summary>Input features (columns of W).</summary>
    public int Columns { get; }

    /// <summary>The fp32 matrix in the model's arena; null when the matrix is kept in its file's type.</summary>
    public Tensor? Dense { get; }

    /// <summary>The matrix in its file's type; null for fp32 weights in the arena.</summary>
    public QuantizedMatrix? Stored { get; }

    public GgmlType Type => Stored?.Type ?? GgmlType.F32;

    /// <summary>Bytes the matrix occupies (in the arena, or in the mapped file).</summary>
    public long Bytes => Stored?.Length ?? (long)Rows * Columns * sizeof(float);

    /// <summary>
    /// The fp32 values, writable: what training and weight edits need. A matrix kept in its file's type has none:
    /// one line says so (use <see cref="ToFloat32"/> to read a dequantized copy).
    /// </summary>
    public Span<float> Span => Dense is { } dense ? dense.Span
        : throw new HeadLensException($"weight '{Name}' is kept as {Type} (from a GGUF file): this needs fp32 weights; convert the model with --type f32 first");

    /// <summary>
    /// Whether products with this matrix quantize their input to 8 bits per block first and multiply in integers
    /// (<see cref="QuantizedMatVecQ8"/>; llama.cpp's arithmetic). Only Q8_0, Q4_K, Q5_K and Q6_K matrices have that
    /// product; the others ignore the setting. Off by default: it moves the results by the activations' rounding.
    /// </summary>
    public bool QuantizesActivations { get; set; }

    /// <summary>The packed panels of <see cref="Pack"/>, if made.</summary>
    public PackedWeights? Panels { get; private set; }

    /// <summary>The bfloat16 copy of <see cref="MakeBf16Copy"/>, if made.</summary>
    public bool HasBf16Copy => bf16 is not null;

    /// <summary>Bytes of the inference copies (panels and bf16 values).</summary>
    public long CopyBytes => (Panels?.Bytes ?? 0) + ((long)(bf16?.Length ?? 0) * sizeof(ushort));

    private ushort[]? bf16;

    /// <summary>Packs an fp32 matrix into the product's panels once (Gemm.Pack); a matrix in its file's type is left as it is.</summary>
    public void Pack()
    {
        if (Dense is { } dense && Panels is null)
        {
            Panels = Gemm.Pack(dense.Memory, Rows, Columns);
        }
    }

    /// <summary>Makes a bfloat16 copy of an fp32 matrix (round to nearest even), read when decoding a few rows.</summary>
    public void MakeBf16Copy()
    {
        if (Dense is { } dense && bf16 is null)
        {
            // On 4 KiB pages, as the fp32 weights are: asking for 2 MiB pages gave the GPT-2 124M bf16 decode only ~3%
            // (median of five alternations, 73.7 against 71.6 tokens/s), and on fragmented memory the first touch of
            // such pages waits for the kernel to compact memory (see Arena's constructor), which a one-shot generate
            // would pay when the copy is made.
            var values = GC.AllocateUninitializedArray<ushort>(dense.Length);
            Gemv.ToBf16(dense.Span, values);
            bf16 = values;
        }
    }

    /// <summary>
    /// y [M, Rows] = x [M, Columns] · Wᵀ + bias (bias empty: none). <paramref name="decoding"/>: the rows are decode
    /// steps, which read the bf16 copy where there is one.
    /// </summary>
    public void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> bias, int m, Span<float> y, bool decoding = false)
    {
        if (Stored is { } stored)
        {
            if (QuantizesActivations && QuantizedMatVecQ8.Supports(stored.Type))
            {
                QuantizedMatVecQ8.Forward(stored.Type, stored.Bytes, Rows, Columns, x, m, y);
            }
            else
            {
                QuantizedMatMul.Forward(stored, x, m, y);
            }

            MatMul.AddBias(bias, m, Rows, y);
        }
        else if (decoding && bf16 is not null && m <= MatMul.MatrixVectorRows)
        {
            for (int i = 0; i < m; i++)
            {
                var row = y.Slice(i * Rows, Rows);
                Gemv.ForwardBf16(bf16, x.Slice(i * Columns, Columns), Rows, Columns, row);
            }

            MatMul.AddBias(bias, m, Rows, y);
        }
        else if (Panels is { } panels)
        {
            MatMul.Forward(x, panels, bias, m, y);
        }
        else
        {
            MatMul.Forward(x, Dense!.Span, bias, m, Rows, Columns, y);
        }
    }

    /// <summary>
    /// y_i [M, Rows_i] = x [M, Columns] · W_iᵀ + b_i for two or three weights that read the same x (a layer's query,
    /// key and value; gate and up). Decoding a few rows through matrices kept in one file type, it is one product over
    /// all of them (<see cref="QuantizedMatVec"/>'s parts: one hand-off to the threads and one end-of-product wait
    /// instead of one each — GPT-2's three [768, 768] projections are short products, ~0.1 ms each); otherwise each
    /// weight's own <see cref="Forward"/>. The values are the same either way, bit for bit.
    /// </summary>
    internal static unsafe void ForwardShared(ReadOnlySpan<float> x, int m, bool decoding,
        LinearWeight first, ReadOnlySpan<float> firstBias, Span<float> firstY,
        LinearWeight second, ReadOnlySpan<float> secondBias, Span<float> secondY,
        LinearWeight? third = null, ReadOnlySpan<float> thirdBias = default, Span<float> thirdY = default)
    {
        bool together = decoding && m <= QuantizedMatMul.FewVectorsFor(first.Type) && first.SharesProductWith(second) && (third is null || first.SharesProductWith(third))
            && x.Length >= (long)m * first.Columns && firstY.Length >= (long)m * first.Rows && secondY.Length >= (long)m * second.Rows
            && (third is null || thirdY.Length >= (long)m * third.Rows);
        if (!together)
        {
            first.Forward(x, firstBias, m, firstY, decoding);
            second.Forward(x, secondBias, m, secondY, decoding);
            third?.Forward(x, thirdBias, m, thirdY, decoding);
            return;
        }

        fixed (float* y0 = firstY, y1 = secondY, y2 = thirdY)
        {
            QuantizedMatVec.Forward(first.Type, first.Columns, x, m,
                third is null ? [first.Part(y0), second.Part(y1)] : [first.Part(y0), second.Part(y1), third.Part(y2)]);
        }

        MatMul.AddBias(firstBias, m, first.Rows, firstY);
        MatMul.AddBias(secondBias, m, second.Rows, secondY);
        if (third is not null)
        {
            MatMul.AddBias(thirdBias, m, third.Rows, thirdY);
        }
    }

    // Whether both matrices go through the same matrix-vector product as this one: kept in one type, same width,
    // and neither multiplying through 8-bit activations (that product has no parts).
    private bool SharesProductWith(LinearWeight other) => Stored is { } mine && other.Stored is { } theirs
        && mine.Type == theirs.Type && mine.Columns == theirs.Columns
        && !(QuantizesActivations && QuantizedMatVecQ8.Supports(mine.Type)) && !(other.QuantizesActivations && QuantizedMatVecQ8.Supports(theirs.Type));

    private unsafe QuantizedMatVec.Part Part(float* y) => new(Stored!.Start, Rows, y, Stored.HalfExceptions);

    /// <summary>Row <paramref name="row"/> of W as fp32 (an embedding lookup).</summary>
    public void Row(int row, Span<float> destination)
    {
        if ((uint)row >= (uint)Rows)
        {
            throw new ArgumentOutOfRangeException(nameof(row), row, $"'{Name}' has {Rows} rows");
        }

        if (Stored is { } stored)
        {
            QuantizedMatMul.DequantizeRows(stored.Type, stored.Bytes.Slice(row * stored.RowBytes, stored.RowBytes), 1, Columns, destination);
        }
        else
        {
            Dense!.Span.Slice(row * Columns, Columns).CopyTo(destination);
        }
    }

    /// <summary>The fp32 values: the arena's own for dense weights, a freshly dequantized copy otherwise (analysis of weights).</summary>
    public ReadOnlySpan<float> ToFloat32()
    {
        if (Stored is not { } stored)
        {
            return Dense!.Span;
        }

        var values = GC.AllocateUninitializedArray<float>(checked(Rows * Columns));
        QuantizedMatMul.DequantizeRows(stored.Type, stored.Bytes, Rows, Columns, values);
        return values;
    }
}
