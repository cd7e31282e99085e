using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace HeadLens.Checkpoints;

/// <summary>
/// The seven int32 that open a llama2.c model file. A negative vocab_size in the file means the classifier is not
/// shared with the token embedding (it follows the weights); <see cref="VocabSize"/> is always positive.
/// </summary>
internal sealed record Llama2cHeader(int Dim, int HiddenDim, int Layers, int Heads, int KvHeads, int VocabSize, bool SharedClassifier, int SeqLen)
{
    /// <summary>The header's size in bytes: seven int32.</summary>
    public const int Bytes = 28;

    public int HeadSize => Dim / Heads;

    public int KvDim => KvHeads * HeadSize;

    /// <summary>Floats in each of the two old RoPE tables (freq_cis_real, freq_cis_imag): [seq_len, head_size/2].</summary>
    public long RopeTableLength => (long)SeqLen * (HeadSize / 2);

    /// <summary>The exact file length this header describes.</summary>
    public long FileLength => (long)(Bytes + 4 * FloatCount(this));

    /// <summary>
    /// Reads and checks the header from the start of <paramref name="stream"/>: every field positive, heads a multiple
    /// of kv heads, dim a multiple of heads, an even head size (RoPE rotates pairs), and the sizes it implies equal to
    /// the stream's length exactly — so that a lying header is refused before anything is allocated from it.
    /// </summary>
    public static Llama2cHeader Read(string file, Stream stream)
    {
        long length = stream.Length;
        if (length < Bytes)
        {
            throw new HeadLensException($"{file}: truncated llama2.c file ({length} bytes; the header alone is {Bytes})");
        }

        Span<int> fields = stackalloc int[7];
        stream.ReadExactly(MemoryMarshal.AsBytes(fields));
        if (!BitConverter.IsLittleEndian)
        {
            for (int i = 0; i < fields.Length; i++)
            {
                fields[i] = BinaryPrimitives.ReverseEndianness(fields[i]);
            }
        }

        int dim = fields[0], hidden = fields[1], layers = fields[2], heads = fields[3], kvHeads = fields[4], vocab = fields[5], seqLen = fields[6];
        string described = $"dim {dim}, hidden_dim {hidden}, n_layers {layers}, n_heads {heads}, n_kv_heads {kvHeads}, vocab_size {vocab}, seq_len {seqLen}";
        if (dim <= 0 || hidden <= 0 || layers <= 0 || heads <= 0 || kvHeads <= 0 || vocab == 0 || vocab == int.MinValue || seqLen <= 0)
        {
            throw new HeadLensException($"{file}: implausible llama2.c header: every field must be positive ({described})");
        }

        if (dim % heads != 0 || heads % kvHeads != 0 || (dim / heads) % 2 != 0)
        {
            throw new HeadLensException($"{file}: implausible llama2.c header: n_heads must divide dim into an even head size and n_kv_heads must divide n_heads ({described})");
        }

        var header = new Llama2cHeader(dim, hidden, layers, heads, kvHeads, Math.Abs(vocab), vocab > 0, seqLen);
        Int128 expected = Bytes + 4 * FloatCount(header);
        if (expected != length)
        {
            throw new HeadLensException($"{file}: {length} bytes, but its header describes {expected} ({described})");
        }

        return header;
    }

    /// <summary>The tensors in file order: Hugging Face Llama name, shape, and offset of the first float in the file.</summary>
    public IEnumerable<(string Name, int[] Shape, long Offset)> Layout()
    {
        long offset = Bytes;
        (string, int[], long) Next(string name, params int[] shape)
        {
            var entry = (name, shape, offset);
            offset += 4 * shape.Aggregate(1L, (product, size) => product * size);
            return entry;
        }

        IEnumerable<(string, int[], long)> PerLayer(string suffix, params int[] shape)
        {
            for (int l = 0; l < Layers; l++)
            {
                yield return Next($"model.layers.{l}.{suffix}", shape);
            }
        }

        var kinds = new (string Suffix, int[] Shape)[]
        {
            ("input_layernorm.weight", [Dim]),                    // rms_att_weight
            ("self_attn.q_proj.weight", [Dim, Dim]),              // wq
            ("self_attn.k_proj.weight", [KvDim, Dim]),            // wk
            ("self_attn.v_proj.weight", [KvDim, Dim]),            // wv
            ("self_attn.o_proj.weight", [Dim, Dim]),              // wo
            ("post_attention_layernorm.weight", [Dim]),           // rms_ffn_weight
            ("mlp.gate_proj.weight", [HiddenDim, Dim]),           // w1
            ("mlp.down_proj.weight", [Dim, HiddenDim]),           // w2
            ("mlp.up_proj.weight", [HiddenDim, Dim]),             // w3
        };
        yield return Next("model.embed_tokens.weight", VocabSize, Dim);
        foreach (var (suffix, shape) in kinds)
        {
            foreach (var entry in PerLayer(suffix, shape))
            {
                yield return entry;
            }
        }

        yield return Next("model.norm.weight", Dim);
        offset += 2 * 4 * RopeTableLength; // freq_cis_real and freq_cis_imag: skipped
        if (!SharedClassifier)
        {
            yield return Next("lm_head.weight", VocabSize, Dim);
        }
    }

    // Every float the file holds, computed without overflow whatever the header says.
    private static Int128 FloatCount(Llama2cHeader h)
    {
        Int128 dim = h.Dim, layers = h.Layers, vocab = h.VocabSize, hidden = h.HiddenDim, kvDim = h.KvDim;
        Int128 perLayer = 2 * dim + 2 * dim * dim + 2 * kvDim * dim + 3 * hidden * dim;
        return vocab * dim + layers * perLayer + dim + 2 * (Int128)h.RopeTableLength + (h.SharedClassifier ? 0 : vocab * dim);
    }
}

/// <summary>
/// A llama2.c model file opened as named float32 tensors under Hugging Face Llama names (see
/// <see cref="Llama2cHeader.Layout"/>). Matrices are [out, in] as stored; RoPE in these files is interleaved, so a
/// model must use it with <c>RopeLayout.Interleaved</c> and not permute q/k.
/// </summary>
public sealed class Llama2cCheckpoint : ITensorSource, IDisposable
{
    private readonly FileStream stream;
    private readonly Dictionary<string, SafeTensorInfo> entries;

    private Llama2cCheckpoint(string path, FileStream stream, Llama2cHeader header)
    {
        Path = path;
        this.stream = stream;
        Header = header;
        entries = header.Layout().ToDictionary(
            entry => entry.Name,
            entry => new SafeTensorInfo(entry.Name, "F32", entry.Shape, entry.Offset, 4 * entry.Shape.Aggregate(1L, (product, size) => product * size)),
            StringComparer.Ordinal);
    }

    public string Path { get; }

    internal Llama2cHeader Header { get; }

    /// <summary>Every tensor; offsets are from the start of the file.</summary>
    public IReadOnlyDictionary<string, SafeTensorInfo> Entries => entries;

    public static Llama2cCheckpoint Open(string path)
    {
        // A regular file only: a FIFO under this name would block the open forever.
        _ = InputFile.Check(path);

        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 12, FileOptions.RandomAccess);
        try
        {
            return new Llama2cCheckpoint(path, stream, Llama2cHeader.Read(System.IO.Path.GetFileName(path), stream));
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    public void ReadFloat32(string tensorName, Span<float> destination)
    {
        string file = System.IO.Path.GetFileName(Path);
        if (!entries.TryGetValue(tensorName, out var info))
        {
            throw new HeadLensException($"{file}: no tensor '{tensorName}'");
        }

        if (destination.Length != info.ElementCount)
        {
            throw new HeadLensException($"{file}: tensor '{tensorName}' has {info.ElementCount} elements, expected {destination.Length}");
        }

        var bytes = MemoryMarshal.AsBytes(destination);
        long offset = info.Offset;
        while (bytes.Length > 0)
        {
            int read = RandomAccess.Read(stream.SafeFileHandle, bytes, offset);
            if (read == 0)
            {
                throw new HeadLensException($"{file}: tensor '{tensorName}' ends past the end of the file (was it truncated while open?)");
            }

            bytes = bytes[read..];
            offset += read;
        }

        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("big-endian hosts are not supported");
        }
    }

    public void Dispose() => stream.Dispose();
}
