namespace HeadLens.Kernels;

// Token embedding lookup: output[t, :] = table[ids[t], :], table [V, C], output [T, C].
// Backward: tableGrad[ids[t], :] += outputGrad[t, :]  (parameter gradient: accumulates; repeated ids add up).
// Implementations: ForwardReference/BackwardReference (scalar loops), Forward/Backward (span copies and
// vectorised adds).
public static class Embedding
{
    public static void ForwardReference(
        ReadOnlySpan<int> ids, ReadOnlySpan<float> table, int vocab, int channels, Span<float> output)
    {
        for (int t = 0; t < ids.Length; t++)
        {
            int id = CheckId(ids[t], vocab, t);
            for (int c = 0; c < channels; c++)
            {
                output[t * channels + c] = table[id * channels + c];
            }
        }
    }

    public static void BackwardReference(
        ReadOnlySpan<int> ids, ReadOnlySpan<float> outputGrad, int vocab, int channels, Span<float> tableGrad)
    {
        for (int t = 0; t < ids.Length; t++)
        {
            int id = CheckId(ids[t], vocab, t);
            for (int c = 0; c < channels; c++)
            {
                tableGrad[id * channels + c] += outputGrad[t * channels + c];
            }
        }
    }

    public static void Forward(ReadOnlySpan<int> ids, ReadOnlySpan<float> table, int vocab, int channels, Span<float> output)
    {
        for (int t = 0; t < ids.Length; t++)
        {
            int id = CheckId(ids[t], vocab, t);
            table.Slice(id * channels, channels).CopyTo(output.Slice(t * channels, channels));
        }
    }

    public static void Backward(ReadOnlySpan<int> ids, ReadOnlySpan<float> outputGrad, int vocab, int channels, Span<float> tableGrad)
    {
        for (int t = 0; t < ids.Length; t++)
        {
            int id = CheckId(ids[t], vocab, t);
            var row = tableGrad.Slice(id * channels, channels);
            System.Numerics.Tensors.TensorPrimitives.Add(row, outputGrad.Slice(t * channels, channels), row);
        }
    }

    private static int CheckId(int id, int vocab, int position) =>
        (uint)id < (uint)vocab
            ? id
            : throw new HeadLensException($"token id {id} at position {position} is outside the vocabulary [0, {vocab})");
}
