using HeadLens.Embeddings;
using HeadLens.Model;

namespace HeadLens.Checkpoints.Gguf;

/// <summary>
/// The one place where GGUF tensor names and metadata meet HeadLens's: a table per architecture, used for loading
/// and writing. GGUF dimensions list the row length first (ggml's ne[0]), so a HeadLens [out, in] matrix is GGUF
/// [in, out] with the same bytes: no transposes. GPT-2 keeps Q, K and V fused as attn_qkv [3C, C] (split into three
/// row blocks here; llama.cpp's converter already transposed Hugging Face's Conv1D weights), and llama.cpp expects
/// output.weight even when tied. Llama's Q and K rows are stored for interleaved rotary pairs (llama.cpp's "norm"
/// RoPE; its converter permutes Hugging Face's split-halves rows): HeadLens loads them as stored and sets
/// <see cref="RopeLayout.Interleaved"/> — the bytes stay as the file has them (quantized rows can be used in place),
/// and the attention patterns are identical; only the order of dimensions inside a head differs from the Hugging
/// Face checkpoint. Qwen2 uses llama.cpp's "neox" RoPE, which is split halves, unpermuted.
/// </summary>
public static class GgufFormat
{
    /// <summary>How one HeadLens tensor is stored: GGUF name, and for fused tensors which of Parts equal row blocks.</summary>
    public sealed record Entry(string Ours, string Theirs, int Part = 0, int Parts = 1);

    /// <summary>The architectures HeadLens reads and writes, with the model layout each maps to.</summary>
    public static CheckpointLayout LayoutOf(string architecture, string file) => architecture switch
    {
        "llama" => CheckpointLayout.Llama,
        "qwen2" => CheckpointLayout.Qwen2,
        "gpt2" => CheckpointLayout.Gpt2,
        _ => throw new HeadLensException($"{file}: general.architecture '{GgufFile.Printable(architecture)}' is not supported (llama, qwen2, gpt2)"),
    };

    public static string ArchitectureOf(CheckpointLayout layout) => layout switch
    {
        CheckpointLayout.Llama => "llama",
        CheckpointLayout.Qwen2 => "qwen2",
        CheckpointLayout.Gpt2 => "gpt2",
        _ => throw new HeadLensException($"{layout} models cannot be written as GGUF (llama, qwen2, gpt2)"),
    };

    /// <summary>The rotary pair layout llama.cpp uses for an architecture (see the class summary).</summary>
    public static RopeLayout RopeLayoutOf(CheckpointLayout layout) => layout == CheckpointLayout.Llama ? RopeLayout.Interleaved : RopeLayout.SplitHalves;

    /// <summary>Tensors a llama.cpp file may carry that are not weights: Llama 3 rope frequency factors.</summary>
    public const string RopeFrequencies = "rope_freqs.weight";

    public static IEnumerable<Entry> Map(ModelConfig config)
    {
        bool gpt2 = config.Layout == CheckpointLayout.Gpt2;
        yield return new("token_embedding.weight", "token_embd.weight");
        if (gpt2)
        {
            yield return new("position_embedding.weight", "position_embd.weight");
        }

        for (int l = 0; l < config.Layers; l++)
        {
            string ours = $"layers.{l}.", theirs = $"blk.{l}.";
            yield return new(ours + "attention_norm.weight", theirs + "attn_norm.weight");
            if (config.NormHasBias)
            {
                yield return new(ours + "attention_norm.bias", theirs + "attn_norm.bias");
            }

            if (gpt2)
            {
                string[] parts = ["query", "key", "value"];
                for (int p = 0; p < 3; p++)
                {
                    yield return new(ours + $"attention.{parts[p]}.weight", theirs + "attn_qkv.weight", p, 3);
                }

                if (config.HasBias(Biases.QueryKeyValue))
                {
                    for (int p = 0; p < 3; p++)
                    {
                        yield return new(ours + $"attention.{parts[p]}.bias", theirs + "attn_qkv.bias", p, 3);
                    }
                }
            }
            else
            {
                foreach (var (which, projection, shortName) in new[] { (Biases.Query, "query", "q"), (Biases.Key, "key", "k"), (Biases.Value, "value", "v") })
                {
                    yield return new(ours + $"attention.{projection}.weight", theirs + $"attn_{shortName}.weight");
                    if (config.HasBias(which))
                    {
                        yield return new(ours + $"attention.{projection}.bias", theirs + $"attn_{shortName}.bias");
                    }
                }
            }

            yield return new(ours + "attention.output.weight", theirs + "attn_output.weight");
            if (config.HasBias(Biases.Output))
            {
                yield return new(ours + "attention.output.bias", theirs + "attn_output.bias");
            }

            if (!config.HasMlp)
            {
                continue;
            }

            yield return new(ours + "mlp_norm.weight", theirs + "ffn_norm.weight");
            if (config.NormHasBias)
            {
                yield return new(ours + "mlp_norm.bias", theirs + "ffn_norm.bias");
            }

            if (config.Mlp == MlpKind.SwiGlu)
            {
                yield return new(ours + "mlp.gate.weight", theirs + "ffn_gate.weight");
            }

            yield return new(ours + "mlp.up.weight", theirs + "ffn_up.weight");
            yield return new(ours + "mlp.down.weight", theirs + "ffn_down.weight");
            if (config.HasBias(Biases.Mlp))
            {
                yield return new(ours + "mlp.up.bias", theirs + "ffn_up.bias");
                yield return new(ours + "mlp.down.bias", theirs + "ffn_down.bias");
            }
        }

        yield return new("final_norm.weight", "output_norm.weight");
        if (config.NormHasBias)
        {
            yield return new("final_norm.bias", "output_norm.bias");
        }

        if (!config.TiedEmbeddings)
        {
            yield return new("output_head.weight", "output.weight");
        }
    }

    /// <summary>
    /// Reorders the rows of a query or key projection (or bias) between rotary layouts, per head of
    /// <paramref name="headDim"/> rows: split halves (i, i + D/2) → interleaved (2i, 2i+1) moves row h·D/2 + i to
    /// 2i + h (llama.cpp's converter's permute), and the reverse when <paramref name="toInterleaved"/> is false.
    /// </summary>
    public static float[] PermuteRows(ReadOnlySpan<float> rows, int rowLength, int headDim, bool toInterleaved)
    {
        var result = new float[rows.Length];
        int heads = rows.Length / rowLength / headDim, half = headDim / 2;
        for (int head = 0; head < heads; head++)
        {
            for (int h = 0; h < 2; h++)
            {
                for (int i = 0; i < half; i++)
                {
                    int split = (head * headDim) + (h * half) + i, interleaved = (head * headDim) + (2 * i) + h;
                    var (from, to) = toInterleaved ? (split, interleaved) : (interleaved, split);
                    rows.Slice(from * rowLength, rowLength).CopyTo(result.AsSpan(to * rowLength, rowLength));
                }
            }
        }

        return result;
    }
}
