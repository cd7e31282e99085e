using System.Numerics.Tensors;
using HeadLens.Model;

namespace HeadLens.Inference;

/// <summary>
/// Sentence embeddings as sentence-transformers defines them for its mean-pooling models (all-MiniLM-L6-v2): the
/// encoder's last hidden states averaged over the sequence's real tokens ([CLS] and [SEP] included, padding not),
/// then scaled to unit length. Texts of different lengths run as one padded batch.
/// </summary>
public static class SentenceEmbeddings
{
    /// <summary>One embedding [C] per sequence of ids (each already framed for the model, e.g. [CLS] … [SEP]).</summary>
    public static float[][] Embed(Transformer model, IReadOnlyList<int[]> sequences)
    {
        if (sequences.Count == 0 || sequences.Any(ids => ids.Length == 0))
        {
            throw new HeadLensException("sentence embeddings need at least one non-empty text");
        }

        int batch = sequences.Count, tokens = sequences.Max(ids => ids.Length), c = model.Config.Channels;
        var padded = new int[batch * tokens];                   // [B, T], padding id 0 (never attended to)
        int[] lengths = sequences.Select(ids => ids.Length).ToArray();
        for (int b = 0; b < batch; b++)
        {
            sequences[b].CopyTo(padded, b * tokens);
        }

        var hidden = model.Infer(padded, batch, tokens, withLogits: false, lengths: lengths).FinalNormed; // [B·T, C]
        var embeddings = new float[batch][];
        for (int b = 0; b < batch; b++)
        {
            var sum = new float[c];
            for (int i = 0; i < lengths[b]; i++)
            {
                TensorPrimitives.Add(sum, hidden.Slice(((b * tokens) + i) * c, c), sum);
            }

            float norm = TensorPrimitives.Norm(sum);
            TensorPrimitives.Divide(sum, norm > 0 ? norm : 1f, sum);
            embeddings[b] = sum;
        }

        return embeddings;
    }

    /// <summary>Cosine similarity of every pair of unit-length embeddings: [n][n].</summary>
    public static float[][] Similarities(float[][] embeddings) =>
        embeddings.Select(a => embeddings.Select(b => TensorPrimitives.Dot(a, b)).ToArray()).ToArray();
}
