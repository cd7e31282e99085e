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
    public static Transformer Load(string path)
    {
        string name = Path.GetFileName(path);
        if (!File.Exists(path))
        {
            throw new HeadLensException($"{path}: file not found");
        }

        using var stream = File.OpenRead(path);
        long length = stream.Length;
        if (length < 28)
        {
            throw new HeadLensException($"{name}: truncated llama2.c file ({length} bytes; the header alone is 28)");
        }

        Span<int> header = stackalloc int[7];
        stream.ReadExactly(MemoryMarshal.AsBytes(header));
        int dim = header[0], hidden = header[1], layers = header[2], heads = header[3], kvHeads = header[4], vocab = header[5], context = header[6];
        bool shared = vocab > 0;
        vocab = Math.Abs(vocab);
        if (dim <= 0 || hidden <= 0 || layers <= 0 || heads <= 0 || kvHeads <= 0 || vocab <= 0 || context <= 0
            || dim % heads != 0 || heads % kvHeads != 0 || (dim / heads) % 2 != 0)
        {
            throw new HeadLensException($"{name}: implausible llama2.c header (dim {dim}, hidden_dim {hidden}, n_layers {layers}, n_heads {heads}, n_kv_heads {kvHeads}, vocab_size {header[5]}, seq_len {context})");
        }

        var config = new ModelConfig
        {
            Family = ModelFamily.Llama,
            VocabSize = vocab,
            ContextLength = context,
            Layers = layers,
            Heads = heads,
            KvHeads = kvHeads,
            Channels = dim,
            HiddenChannels = hidden,
            NormEpsilon = 1e-5f,
            RopeLayout = RopeLayout.Interleaved,
            TiedEmbeddings = shared,
        }.Validated(name);

        long headSize = dim / heads, kvDim = kvHeads * headSize;
        long expected = (long)vocab * dim + layers * (2L * dim + 2L * dim * dim + 2L * kvDim * dim + 3L * hidden * dim) + dim
            + (long)context * headSize + (shared ? 0 : (long)vocab * dim);
        if (length != 28 + 4 * expected)
        {
            throw new HeadLensException($"{name}: {length} bytes, but its header describes {28 + 4 * expected} (dim {dim}, {layers} layers, vocab {vocab}, seq_len {context})");
        }

        var model = new Transformer(config);
        var w = model.Parameters;
        void Read(Span<float> destination) => stream.ReadExactly(MemoryMarshal.AsBytes(destination));
        void ForEachLayer(Func<LayerWeights, Span<float>> target)
        {
            for (int l = 0; l < layers; l++)
            {
                Read(target(w.Layer(l)));
            }
        }

        Read(w.TokenEmbedding.Span);
        ForEachLayer(layer => layer.AttentionNorm.Span);
        ForEachLayer(layer => layer.Query.Span);
        ForEachLayer(layer => layer.Key.Span);
        ForEachLayer(layer => layer.Value.Span);
        ForEachLayer(layer => layer.Output.Span);
        ForEachLayer(layer => layer.MlpNorm!.Span);
        ForEachLayer(layer => layer.Gate!.Span);
        ForEachLayer(layer => layer.Down!.Span);
        ForEachLayer(layer => layer.Up!.Span);
        Read(w.FinalNorm.Span);
        stream.Seek((long)context * headSize * sizeof(float), SeekOrigin.Current); // freq_cis_real and freq_cis_imag
        if (!shared)
        {
            Read(w.OutputHead.Span);
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
