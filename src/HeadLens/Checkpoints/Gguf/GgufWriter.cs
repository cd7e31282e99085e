using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text;
using HeadLens.Embeddings;
using HeadLens.Kernels.Quantized;
using HeadLens.Model;
using HeadLens.Tokenization;

namespace HeadLens.Checkpoints.Gguf;

/// <summary>The element type of a written GGUF file's matrices (vectors — norms, biases — stay F32, as llama.cpp writes them).</summary>
public enum GgufWriteType
{
    F32,
    F16,
    Q8_0,
}

/// <summary>
/// Writes a gpt2-, llama- or qwen2-shaped model as a GGUF v3 file llama.cpp runs: the metadata its loader reads,
/// the tensors under <see cref="GgufFormat"/>'s names (GPT-2's Q, K, V fused into attn_qkv; Llama's Q and K rows in
/// interleaved order; output.weight always present for GPT-2, which llama.cpp requires), the tokenizer, and Llama
/// 3 rope scaling as llama.cpp's rope_freqs table. Matrices whose rows are not whole Q8_0 blocks fall back to F16
/// (as llama.cpp's quantizer does). Written to a temporary file beside the target, then renamed.
/// </summary>
public static class GgufWriter
{
    private const int Alignment = GgufFile.DefaultAlignment;

    private sealed record Tensor(string Name, long[] Dimensions, GgmlType Type, float[] Values)
    {
        public long Bytes => GgmlTypes.RowBytes(Type, Dimensions[0]) * (Values.Length / Dimensions[0]);
    }

    public static void Write(string path, Transformer model, ITokenizer? tokenizer, GgufWriteType type = GgufWriteType.F32)
    {
        var config = model.Config;
        if (config.NormPlacement != NormPlacement.Pre || !config.HasOutputHead || config.Attention != Attention.MaskKind.Causal
            || config.AttentionWindow != 0 || config.TokenTypes != 0 || !config.HasMlp || config.AttentionForm != AttentionForm.Softmax)
        {
            throw new HeadLensException($"GGUF: only decoder models with pre-norm blocks, softmax attention and an MLP can be written (this one: {config.DescribeFeatures()})");
        }

        string architecture = GgufFormat.ArchitectureOf(config.Layout);
        bool gpt2 = config.Layout == CheckpointLayout.Gpt2;
        var expected = gpt2
            ? (config.Norm, config.Positions, config.Mlp) == (NormKind.LayerNorm, PositionKind.Learned, MlpKind.GeluTanh)
            : (config.Norm, config.Positions, config.Mlp) == (NormKind.RmsNorm, PositionKind.Rotary, MlpKind.SwiGlu);
        if (!expected)
        {
            throw new HeadLensException($"GGUF: a {architecture} file cannot hold a model with {config.DescribeFeatures()}");
        }

        var metadata = Metadata(config, architecture, type);
        AddTokenizer(metadata, tokenizer);
        var tensors = Tensors(model, type);
        WriteFile(path, metadata, tensors);
    }

    private static List<(string Key, GgufValueType Type, object Value)> Metadata(ModelConfig config, string architecture, GgufWriteType type)
    {
        string a = architecture + ".";
        var metadata = new List<(string, GgufValueType, object)>
        {
            ("general.architecture", GgufValueType.String, architecture),
            ("general.name", GgufValueType.String, "headlens"),
            ("general.file_type", GgufValueType.UInt32, (uint)(type switch { GgufWriteType.F32 => 0, GgufWriteType.F16 => 1, _ => 7 })),
            ("general.alignment", GgufValueType.UInt32, (uint)Alignment),
            (a + "context_length", GgufValueType.UInt32, (uint)config.ContextLength),
            (a + "embedding_length", GgufValueType.UInt32, (uint)config.Channels),
            (a + "block_count", GgufValueType.UInt32, (uint)config.Layers),
            (a + "feed_forward_length", GgufValueType.UInt32, (uint)config.HiddenChannels),
            (a + "attention.head_count", GgufValueType.UInt32, (uint)config.Heads),
            (a + "vocab_size", GgufValueType.UInt32, (uint)config.VocabSize),
        };
        if (config.Layout == CheckpointLayout.Gpt2)
        {
            metadata.Add((a + "attention.layer_norm_epsilon", GgufValueType.Float32, config.NormEpsilon));
            return metadata;
        }

        metadata.Add((a + "attention.head_count_kv", GgufValueType.UInt32, (uint)config.KvHeads));
        metadata.Add((a + "attention.layer_norm_rms_epsilon", GgufValueType.Float32, config.NormEpsilon));
        metadata.Add((a + "rope.freq_base", GgufValueType.Float32, config.Rope.Theta));
        metadata.Add((a + "rope.dimension_count", GgufValueType.UInt32, (uint)config.HeadDim));
        switch (config.Rope.Scaling)
        {
            case RopeScaling.None:
                break;
            case RopeScaling.Linear:
                metadata.Add((a + "rope.scaling.type", GgufValueType.String, "linear"));
                metadata.Add((a + "rope.scaling.factor", GgufValueType.Float32, config.Rope.ScalingFactor));
                break;
            case RopeScaling.Llama3 when config.Layout == CheckpointLayout.Llama
                && config.Rope.LowFrequencyFactor == 1 && config.Rope.HighFrequencyFactor == 4:
                metadata.Add((a + "rope.scaling.original_context_length", GgufValueType.UInt32, (uint)config.Rope.OriginalContext));
                break;
            default:
                throw new HeadLensException($"GGUF: {config.Rope.Scaling} rope scaling (low {config.Rope.LowFrequencyFactor}, high {config.Rope.HighFrequencyFactor}) cannot be written for {architecture}");
        }

        return metadata;
    }

    private static void AddTokenizer(List<(string Key, GgufValueType Type, object Value)> metadata, ITokenizer? tokenizer)
    {
        if (tokenizer is null)
        {
            metadata.Add(("tokenizer.ggml.model", GgufValueType.String, "none"));
            return;
        }

        var vocabulary = GgufTokenizer.ToVocabulary(tokenizer);
        metadata.Add(("tokenizer.ggml.model", GgufValueType.String, vocabulary.Model));
        metadata.Add(("tokenizer.ggml.pre", GgufValueType.String, vocabulary.Pre ?? "default"));
        metadata.Add(("tokenizer.ggml.tokens", GgufValueType.Array, vocabulary.Tokens.ToArray()));
        if (vocabulary.Scores is not null)
        {
            metadata.Add(("tokenizer.ggml.scores", GgufValueType.Array, vocabulary.Scores.ToArray()));
        }

        if (vocabulary.TokenTypes is not null)
        {
            metadata.Add(("tokenizer.ggml.token_type", GgufValueType.Array, vocabulary.TokenTypes.ToArray()));
        }

        if (vocabulary.Merges is not null)
        {
            metadata.Add(("tokenizer.ggml.merges", GgufValueType.Array, vocabulary.Merges.ToArray()));
        }

        foreach (var (key, id) in new[] { ("bos", vocabulary.BosId), ("eos", vocabulary.EosId), ("unknown", vocabulary.UnknownId) })
        {
            if (id is { } value)
            {
                metadata.Add(($"tokenizer.ggml.{key}_token_id", GgufValueType.UInt32, (uint)value));
            }
        }

        if (vocabulary.AddBos is { } addBos)
        {
            metadata.Add(("tokenizer.ggml.add_bos_token", GgufValueType.Bool, addBos));
        }
    }

    private static List<Tensor> Tensors(Transformer model, GgufWriteType type)
    {
        var config = model.Config;
        var arena = model.Parameters.Arena;
        var tensors = new List<Tensor>();
        var target = GgufFormat.RopeLayoutOf(config.Layout);
        bool permute = config.Positions == PositionKind.Rotary && config.Rope.Layout != target;
        foreach (var group in GgufFormat.Map(config).GroupBy(entry => entry.Theirs))
        {
            var parts = group.OrderBy(entry => entry.Part).ToList();
            var first = arena.Get(parts[0].Ours);
            var values = new float[first.Length * parts.Count];
            for (int i = 0; i < parts.Count; i++)
            {
                var part = arena.Get(parts[i].Ours).Span;
                if (permute && (parts[i].Ours.Contains(".attention.query.", StringComparison.Ordinal) || parts[i].Ours.Contains(".attention.key.", StringComparison.Ordinal)))
                {
                    int rowLength = first.Rank > 1 ? first.Shape[1] : 1;
                    part = GgufFormat.PermuteRows(part, rowLength, config.HeadDim, toInterleaved: target == RopeLayout.Interleaved);
                }

                part.CopyTo(values.AsSpan(i * first.Length));
            }

            long columns = first.Rank > 1 ? first.Shape[1] : first.Shape[0];
            long[] dimensions = first.Rank > 1 ? [columns, first.Shape[0] * parts.Count] : [first.Shape[0] * parts.Count];
            tensors.Add(new Tensor(group.Key, dimensions, MatrixType(type, first.Rank, columns), values));
        }

        if (config.Layout == CheckpointLayout.Gpt2 && config.TiedEmbeddings)
        {
            // llama.cpp's GPT-2 loader requires output.weight; a copy of the embeddings (the loader recognises it as tied).
            var embedding = tensors[0];
            tensors.Add(embedding with { Name = "output.weight" });
        }

        if (config.Positions == PositionKind.Rotary && config.Rope.Scaling == RopeScaling.Llama3)
        {
            var unscaled = config.Rope with { Scaling = RopeScaling.None };
            var divisors = new float[config.HeadDim / 2];
            for (int i = 0; i < divisors.Length; i++)
            {
                divisors[i] = (float)(Rope.Frequency(i, config.HeadDim, unscaled) / Rope.Frequency(i, config.HeadDim, config.Rope));
            }

            tensors.Add(new Tensor(GgufFormat.RopeFrequencies, [divisors.Length], GgmlType.F32, divisors));
        }

        return tensors;
    }

    private static GgmlType MatrixType(GgufWriteType type, int rank, long columns) => rank < 2 ? GgmlType.F32 : type switch
    {
        GgufWriteType.F32 => GgmlType.F32,
        GgufWriteType.Q8_0 when columns % 32 == 0 => GgmlType.Q8_0,
        _ => GgmlType.F16,
    };

    private static void WriteFile(string path, List<(string Key, GgufValueType Type, object Value)> metadata, List<Tensor> tensors)
    {
        string file = Path.GetFileName(path);
        string temporary = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, $".{file}.tmp-{Guid.NewGuid():N}");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            using (var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
            {
                writer.Write(0x46554747u); // "GGUF"
                writer.Write(3u);
                writer.Write((ulong)tensors.Count);
                writer.Write((ulong)metadata.Count);
                foreach (var (key, type, value) in metadata)
                {
                    WriteString(writer, key);
                    writer.Write((uint)type);
                    WriteValue(writer, type, value);
                }

                long offset = 0;
                foreach (var tensor in tensors)
                {
                    WriteString(writer, tensor.Name);
                    writer.Write((uint)tensor.Dimensions.Length);
                    foreach (long dimension in tensor.Dimensions)
                    {
                        writer.Write((ulong)dimension);
                    }

                    writer.Write((uint)tensor.Type);
                    writer.Write((ulong)offset);
                    offset = Align(offset + tensor.Bytes);
                }

                Pad(writer);
                foreach (var tensor in tensors)
                {
                    WriteData(writer, tensor);
                    Pad(writer);
                }

                writer.Flush();
                stream.Flush(flushToDisk: true);
            }

            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }

    private static long Align(long offset) => (offset + Alignment - 1) / Alignment * Alignment;

    private static void Pad(BinaryWriter writer)
    {
        long position = writer.BaseStream.Position;
        for (long i = position; i < Align(position); i++)
        {
            writer.Write((byte)0);
        }
    }

    private static void WriteString(BinaryWriter writer, string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        writer.Write((ulong)bytes.Length);
        writer.Write(bytes);
    }

    private static void WriteValue(BinaryWriter writer, GgufValueType type, object value)
    {
        switch (value)
        {
            case string text:
                WriteString(writer, text);
                break;
            case uint number:
                writer.Write(number);
                break;
            case float number:
                writer.Write(number);
                break;
            case bool flag:
                writer.Write(flag);
                break;
            case string[] items:
                writer.Write((uint)GgufValueType.String);
                writer.Write((ulong)items.Length);
                foreach (string item in items)
                {
                    WriteString(writer, item);
                }

                break;
            case float[] items:
                writer.Write((uint)GgufValueType.Float32);
                writer.Write((ulong)items.Length);
                writer.Write(MemoryMarshal.AsBytes(items.AsSpan()));
                break;
            case int[] items:
                writer.Write((uint)GgufValueType.Int32);
                writer.Write((ulong)items.Length);
                writer.Write(MemoryMarshal.AsBytes(items.AsSpan()));
                break;
            default:
                throw new InvalidOperationException($"GGUF writer: no encoding for {type} {value.GetType().Name}");
        }
    }

    private static void WriteData(BinaryWriter writer, Tensor tensor)
    {
        switch (tensor.Type)
        {
            case GgmlType.F32:
                writer.Write(MemoryMarshal.AsBytes(tensor.Values.AsSpan()));
                break;
            case GgmlType.F16:
                {
                    var halves = new Half[tensor.Values.Length];
                    TensorPrimitives.ConvertToHalf(tensor.Values, halves);
                    writer.Write(MemoryMarshal.AsBytes(halves.AsSpan()));
                    break;
                }

            default:
                {
                    var bytes = new byte[tensor.Bytes];
                    Dequantize.QuantizeQ8_0(tensor.Values, bytes);
                    writer.Write(bytes);
                    break;
                }
        }

    }
}
