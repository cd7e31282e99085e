using HeadLens.Kernels;
using HeadLens.Tensors;

namespace HeadLens.Model;

// Inference-only copies of the weight matrices, made once, opt-in:
// - packed panels (Gemm.Pack): for the short texts an encoder embeds, packing the weights on every call cost more
//   than the products (issue 12's profile); packing once leaves only x to pack. A copy of the matrices.
// - bfloat16 copies for decoding (Gemv.ForwardBf16): one token reads every weight once, so half the bytes is about
//   twice the speed; the logits differ from fp32 by the weights' rounding (≤ 2⁻⁸ relative each). Half a copy.
// Both are valid only while the weights stay as they are, so the training forward refuses a model that has them.
public sealed partial class Transformer
{
    private InferenceLayerMatrices[]? inferenceLayers;
    private InferenceMatrix? inferenceHead;

    /// <summary>Whether <see cref="PackForInference"/> or <see cref="UseBf16ForDecoding"/> has run.</summary>
    public bool IsPackedForInference => inferenceLayers is not null;

    /// <summary>Whether decoding reads bfloat16 copies of the weights (<see cref="UseBf16ForDecoding"/>).</summary>
    public bool DecodesInBf16 { get; private set; }

    /// <summary>
    /// Packs every layer's projection matrices for the inference passes (<see cref="Infer"/>, <see cref="Run"/>,
    /// <see cref="DecodeStep"/>'s prompt); returns the bytes the packed copies take (0 where the fast product does not
    /// run). The weights must not change afterwards: the training forward refuses a packed model.
    /// </summary>
    public long PackForInference()
    {
        foreach (var matrix in AllInferenceMatrices())
        {
            matrix.Panels ??= Gemm.Pack(matrix.Weight.Memory, matrix.Weight.Shape[0], matrix.Weight.Shape[1]);
        }

        return InferenceBytes();
    }

    /// <summary>
    /// Makes decoding (a few rows at a time: <see cref="DecodeStep"/> after the prompt) read bfloat16 copies of every
    /// layer's matrices and of the output head; prompts and analysis keep fp32. Returns the bytes of all inference
    /// copies. The weights must not change afterwards: the training forward refuses such a model.
    /// </summary>
    public long UseBf16ForDecoding()
    {
        var head = inferenceHead ??= Config.HasOutputHead ? new InferenceMatrix(Parameters.OutputHead) : null;
        foreach (var matrix in head is null ? AllInferenceMatrices() : AllInferenceMatrices().Append(head))
        {
            if (matrix.Bf16 is null)
            {
                var bf16 = GC.AllocateUninitializedArray<ushort>(matrix.Weight.Length);
                Gemv.ToBf16(matrix.Weight.Span, bf16);
                matrix.Bf16 = bf16;
            }
        }

        DecodesInBf16 = true;
        return InferenceBytes();
    }

    private IEnumerable<InferenceMatrix> AllInferenceMatrices()
    {
        inferenceLayers ??= [.. Enumerable.Range(0, Config.Layers).Select(l => new InferenceLayerMatrices(Parameters.Layer(l)))];
        return inferenceLayers.SelectMany(layer => layer.All);
    }

    private long InferenceBytes() =>
        (inferenceLayers?.SelectMany(layer => layer.All) ?? []).Append(inferenceHead).Sum(matrix => matrix?.Bytes ?? 0);

    private InferenceLayerMatrices? InferenceLayer(int layer) => inferenceLayers?[layer];

    // y [N, out] = x [N, in] · Wᵀ + b, W [out, in]: from the bf16 copy when decoding a few rows, the packed panels
    // for more, the fp32 weights where there is no copy.
    private static void Project(ReadOnlySpan<float> x, Tensor weight, InferenceMatrix? copies, ReadOnlySpan<float> bias, int n, Span<float> y, bool decoding)
    {
        int rows = weight.Shape[0], columns = weight.Shape[1];
        if (decoding && copies?.Bf16 is { } bf16 && n <= MatMul.MatrixVectorRows)
        {
            for (int i = 0; i < n; i++)
            {
                var row = y.Slice(i * rows, rows);
                Gemv.ForwardBf16(bf16, x.Slice(i * columns, columns), rows, columns, row);
                if (!bias.IsEmpty)
                {
                    System.Numerics.Tensors.TensorPrimitives.Add(row, bias[..rows], row);
                }
            }
        }
        else if (copies?.Panels is { } panels)
        {
            MatMul.Forward(x, panels, bias, n, y);
        }
        else
        {
            MatMul.Forward(x, weight.Span, bias, n, rows, columns, y);
        }
    }

    /// <summary>One weight matrix and its inference copies.</summary>
    private sealed class InferenceMatrix(Tensor weight)
    {
        public Tensor Weight { get; } = weight;

        public PackedWeights? Panels { get; set; }

        public ushort[]? Bf16 { get; set; }

        public long Bytes => (Panels?.Bytes ?? 0) + ((long)(Bf16?.Length ?? 0) * sizeof(ushort));
    }

    /// <summary>A layer's matrices (null where the model has none, e.g. no gate without SwiGLU).</summary>
    private sealed class InferenceLayerMatrices(LayerWeights w)
    {
        public InferenceMatrix Query { get; } = new(w.Query);

        public InferenceMatrix Key { get; } = new(w.Key);

        public InferenceMatrix Value { get; } = new(w.Value);

        public InferenceMatrix Output { get; } = new(w.Output);

        public InferenceMatrix? Up { get; } = w.Up is null ? null : new(w.Up);

        public InferenceMatrix? Gate { get; } = w.Gate is null ? null : new(w.Gate);

        public InferenceMatrix? Down { get; } = w.Down is null ? null : new(w.Down);

        public IEnumerable<InferenceMatrix> All => new[] { Query, Key, Value, Output, Up, Gate, Down }.OfType<InferenceMatrix>();
    }
}
