namespace HeadLens.Model;

// Inference-only copies of the fp32 weight matrices, made once, opt-in (LinearWeight holds them):
// - packed panels: for the short texts an encoder embeds, packing the weights on every call cost more than the
//   products (issue 12's profile); packing once leaves only x to pack. A copy of the matrices.
// - bfloat16 copies for decoding: one token reads every weight once, so half the bytes is about twice the speed;
//   the logits differ from fp32 by the weights' rounding (≤ 2⁻⁸ relative each). Half a copy.
// Both are valid only while the weights stay as they are, so the training forward refuses a model that has them.
// Also here, though it copies nothing: the opt-in 8-bit activations for matrices kept in a GGUF file's block types.
public sealed partial class Transformer
{
    /// <summary>Whether <see cref="PackForInference"/> or <see cref="UseBf16ForDecoding"/> has run.</summary>
    public bool IsPackedForInference { get; private set; }

    /// <summary>Whether decoding reads bfloat16 copies of the weights (<see cref="UseBf16ForDecoding"/>).</summary>
    public bool DecodesInBf16 { get; private set; }

    /// <summary>
    /// Packs every layer's fp32 projection matrices for the inference passes (<see cref="Infer"/>, <see cref="Run"/>,
    /// <see cref="DecodeStep"/>'s prompt); returns the bytes of all inference copies (0 where the fast product does
    /// not run). The weights must not change afterwards: the training forward refuses a packed model.
    /// </summary>
    public long PackForInference()
    {
        foreach (var matrix in LayerMatrices())
        {
            matrix.Pack();
        }

        IsPackedForInference = true;
        return InferenceCopyBytes();
    }

    /// <summary>
    /// Makes decoding (a few rows at a time: <see cref="DecodeStep"/>) read bfloat16 copies of every layer's fp32
    /// matrices and of the output head; prompts and analysis keep fp32. Returns the bytes of all inference copies.
    /// The weights must not change afterwards: the training forward refuses such a model.
    /// </summary>
    public long UseBf16ForDecoding()
    {
        foreach (var matrix in DecodingMatrices())
        {
            matrix.MakeBf16Copy();
        }

        IsPackedForInference = true;
        DecodesInBf16 = true;
        return InferenceCopyBytes();
    }

    /// <summary>Whether products with Q8_0, Q4_K, Q5_K and Q6_K matrices quantize their input to 8 bits (<see cref="UseQ8Activations"/>).</summary>
    public bool QuantizesActivations { get; private set; }

    /// <summary>
    /// Opt-in: every product with a matrix kept in Q8_0, Q4_K, Q5_K or Q6_K (GGUF files) first quantizes its input to 8 bits
    /// per block and multiplies in integers (<see cref="Kernels.Quantized.QuantizedMatVecQ8"/>), as llama.cpp does:
    /// several times less arithmetic per weight, at the cost of the activations' rounding in the results. Every pass
    /// (prompt, decoding, analysis) uses it, except where the analysis run hooks each head's share of the output
    /// projection: that split multiplies fp32 weights as before. fp32 and other matrices are unchanged. <paramref name="on"/> false restores the fp32 products.
    /// </summary>
    public void UseQ8Activations(bool on = true)
    {
        foreach (var matrix in DecodingMatrices())
        {
            matrix.QuantizesActivations = on;
        }

        QuantizesActivations = on;
    }

    private IEnumerable<LinearWeight> LayerMatrices() =>
        Enumerable.Range(0, Config.Layers).Select(Parameters.Layer).SelectMany(w =>
            new[] { w.Query, w.Key, w.Value, w.Output, w.Up, w.Gate, w.Down }.OfType<LinearWeight>());

    private IEnumerable<LinearWeight> DecodingMatrices() =>
        Config.HasOutputHead ? LayerMatrices().Append(Parameters.OutputHead) : LayerMatrices();

    private long InferenceCopyBytes() => DecodingMatrices().Distinct().Sum(matrix => matrix.CopyBytes);
}
