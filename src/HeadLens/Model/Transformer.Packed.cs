using HeadLens.Kernels;
using HeadLens.Tensors;

namespace HeadLens.Model;

// Inference with each layer's matrices packed once into the product's panels (Gemm.Pack): for the short texts an
// encoder embeds, packing the weights on every call cost more than the products (issue 12's profile). The packed
// copy doubles the matrices' memory and is only valid while the weights stay as they are, so it is opt-in, and the
// training forward refuses a packed model.
public sealed partial class Transformer
{
    private PackedLayerWeights[]? packedLayers;

    /// <summary>Whether <see cref="PackForInference"/> has run.</summary>
    public bool IsPackedForInference => packedLayers is not null;

    /// <summary>
    /// Packs every layer's projection matrices for the inference passes (<see cref="Infer"/>, <see cref="Run"/>,
    /// <see cref="DecodeStep"/>'s prompt); returns the bytes the packed copies take (0 where the fast product does not
    /// run). The weights must not change afterwards: the training forward refuses a packed model.
    /// </summary>
    public long PackForInference()
    {
        if (packedLayers is not null)
        {
            return packedLayers.Sum(layer => layer.Bytes);
        }

        var layers = new PackedLayerWeights[Config.Layers];
        for (int l = 0; l < Config.Layers; l++)
        {
            var w = Parameters.Layer(l);
            layers[l] = new PackedLayerWeights(Pack(w.Query), Pack(w.Key), Pack(w.Value), Pack(w.Output),
                Pack(w.Up), Pack(w.Gate), Pack(w.Down));
        }

        packedLayers = layers;
        return layers.Sum(layer => layer.Bytes);
    }

    private static PackedWeights? Pack(Tensor? weight) =>
        weight is null ? null : Gemm.Pack(weight.Memory, weight.Shape[0], weight.Shape[1]);

    private PackedLayerWeights? PackedLayer(int layer) => packedLayers?[layer];

    // y [N, out] = x [N, in] · Wᵀ + b, W [out, in]: through the packed copy where there is one.
    private static void Project(ReadOnlySpan<float> x, Tensor weight, PackedWeights? packed, ReadOnlySpan<float> bias, int n, Span<float> y)
    {
        if (packed is not null)
        {
            MatMul.Forward(x, packed, bias, n, y);
        }
        else
        {
            MatMul.Forward(x, weight.Span, bias, n, weight.Shape[0], weight.Shape[1], y);
        }
    }

    private sealed record PackedLayerWeights(
        PackedWeights? Query, PackedWeights? Key, PackedWeights? Value, PackedWeights? Output,
        PackedWeights? Up, PackedWeights? Gate, PackedWeights? Down)
    {
        public long Bytes => new[] { Query, Key, Value, Output, Up, Gate, Down }.Sum(weight => weight?.Bytes ?? 0);
    }
}
