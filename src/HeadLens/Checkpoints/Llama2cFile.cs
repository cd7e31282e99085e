using System.Runtime.InteropServices;
using HeadLens.Embeddings;
using HeadLens.Model;

namespace HeadLens.Checkpoints;

/// <summary>
/// llama2.c's legacy model file: seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
/// a negative vocab_size means an unshared classifier follows the weights), then float32 weights in the order of
/// llama2.c's export — token embedding [V, dim], then per kind for all layers: attention RMSNorm [L, dim], wq
/// [L, dim, dim], wk and wv [L, kv_dim, dim], wo [L, dim, dim], MLP RMSNorm [L, dim], w1 (gate) [L, hidden, dim],
/// w2 (down) [L, dim, hidden], w3 (up) [L, hidden, dim]; the final RMSNorm [dim]; the two old RoPE tables
/// [seq_len, head_size/2] (skipped); and the classifier [V, dim] when unshared. All matrices are [out, in], as
/// HeadLens stores them. RoPE is interleaved (pairs 2i, 2i+1), so q and k are used as stored, without permutation.
/// The header is checked against the file's exact length before anything is allocated.
/// </summary>
public static class Llama2cFile
{
    /// <summary>
    /// Opens a llama2.c model file as named tensors (Hugging Face Llama names, [out, in] matrices as stored) after
    /// checking its header against the file's exact length. Reads are positioned reads of the open file.
    /// </summary>
    public static Llama2cCheckpoint Read(string path) => Llama2cCheckpoint.Open(path);

    /// <summary>Builds the Llama transformer a llama2.c model file describes, with its weights.</summary>
    public static Transformer Load(string path)
    {
        string name = Path.GetFileName(path);
        // A regular file only: a FIFO under this name would block the open forever.
        _ = InputFile.Check(path);

        using var stream = File.OpenRead(path);
        var header = Llama2cHeader.Read(name, stream);
        int layers = header.Layers;
        var config = (ModelPresets.Llama(header.VocabSize, header.SeqLen, layers, header.Heads, header.KvHeads, header.Dim, header.HiddenDim) with
        {
            Rope = new RopeSettings(Layout: RopeLayout.Interleaved),
            TiedEmbeddings = header.SharedClassifier,
        }).Validated(name);

        var model = new Transformer(config);
        var w = model.Parameters;
        void ReadInto(Span<float> destination) => stream.ReadExactly(MemoryMarshal.AsBytes(destination));
        void ForEachLayer(Func<LayerWeights, Span<float>> target)
        {
            for (int l = 0; l < layers; l++)
            {
                ReadInto(target(w.Layer(l)));
            }
        }

        ReadInto(w.TokenEmbedding.Span);
        ForEachLayer(layer => layer.AttentionNorm.Span);
        ForEachLayer(layer => layer.Query.Span);
        ForEachLayer(layer => layer.Key.Span);
        ForEachLayer(layer => layer.Value.Span);
        ForEachLayer(layer => layer.Output.Span);
        ForEachLayer(layer => layer.MlpNorm!.Span);
        ForEachLayer(layer => layer.Gate!.Span);
        ForEachLayer(layer => layer.Down!.Span);
        ForEachLayer(layer => layer.Up!.Span);
        ReadInto(w.FinalNorm.Span);
        stream.Seek(2 * header.RopeTableLength * sizeof(float), SeekOrigin.Current); // freq_cis_real and freq_cis_imag
        if (!header.SharedClassifier)
        {
            ReadInto(w.OutputHead.Span);
        }

        foreach (float value in w.Arena.All)
        {
            if (!float.IsFinite(value))
            {
                throw new HeadLensException($"{name}: the weights hold {value}");
            }
        }

        return model;
    }
}
