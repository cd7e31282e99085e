using HeadLens.Model;
using HeadLens.Tokenization;

namespace HeadLens.Checkpoints;

/// <summary>
/// Models on disk in the Hugging Face layout (config.json + model.safetensors, or shards listed in
/// model.safetensors.index.json, + tokenizer files), so that a model trained here loads in PyTorch and the reverse.
/// </summary>
public static class ModelFiles
{
    public static (Transformer Model, ITokenizer? Tokenizer) Load(string directory)
    {
        var (model, tokenizer) = LoadUnchecked(directory);
        CheckTokenizerFits(model, tokenizer, directory);
        return (model, tokenizer);
    }

    /// <summary>
    /// Refuses a tokenizer that can produce ids the model has no embedding for (a vocabulary larger than the model's):
    /// found at load, not as an out-of-range id in the middle of a run. <paramref name="source"/> names where it came from.
    /// </summary>
    public static void CheckTokenizerFits(Transformer model, ITokenizer? tokenizer, string source)
    {
        if (tokenizer is not null && tokenizer.VocabSize > model.Config.VocabSize)
        {
            throw new HeadLensException($"{source}: the tokenizer has {tokenizer.VocabSize:N0} token ids, " +
                $"more than the model's vocabulary of {model.Config.VocabSize:N0} (config vocab_size)");
        }
    }

    private static (Transformer Model, ITokenizer? Tokenizer) LoadUnchecked(string directory)
    {
        if (File.Exists(directory) && directory.EndsWith(".bin", StringComparison.OrdinalIgnoreCase))
        {
            // llama2.c's format carries no tokenizer; its tokenizer.bin comes separately (the CLI's --tokenizer).
            return (Llama2cFile.Load(directory), null);
        }

        if (File.Exists(directory) && directory.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
        {
            return Onnx.OnnxModels.Load(directory);
        }

        if (File.Exists(directory) && directory.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
        {
            return Gguf.GgufModel.Load(directory);
        }

        if (!Directory.Exists(directory) && !File.Exists(directory) && AtomicDirectory.Resolve(directory) is { } interrupted)
        {
            // A save killed between its two fallback moves: the newest complete checkpoint waits beside the name.
            directory = interrupted;
        }

        if (!Directory.Exists(directory))
        {
            throw new HeadLensException(File.Exists(directory)
                ? $"{directory}: not a model directory, a llama2.c .bin file, a GGUF file or an ONNX encoder"
                : $"{directory}: no such model directory");
        }

        string configPath = Path.Combine(directory, "config.json");
        if (!File.Exists(configPath))
        {
            throw new HeadLensException($"{directory}: no config.json");
        }

        var config = HuggingFaceFormat.ParseConfig(configPath);
        using var checkpoint = CheckpointDirectory.Open(directory);
        var model = FromTensors(config, checkpoint, name => Path.GetFileName(checkpoint.FileOf(name).Path));
        return (model, TokenizerLoader.FromDirectory(directory));
    }

    /// <summary>
    /// Builds the model <paramref name="config"/> describes from tensors under Hugging Face names
    /// (<see cref="HuggingFaceFormat.Map"/>): every tensor the model needs is found and its shape checked before
    /// anything is allocated (a config.json that claims a million layers fails at the first missing tensor, not
    /// after allocating them); values are checked finite; every tensor of the source is consumed or skipped by a
    /// stated rule. <paramref name="fileOf"/> names the file a tensor came from, for error messages.
    /// </summary>
    public static Transformer FromTensors(ModelConfig config, ITensorSource source, Func<string, string> fileOf)
    {
        foreach (var entry in HuggingFaceFormat.Map(config))
        {
            _ = Find(source, entry.Theirs, fileOf);
        }

        var layout = ModelWeights.Layout(config).ToDictionary(entry => entry.Name, entry => entry.Shape);
        var plan = HuggingFaceFormat.Map(config).ToList();
        foreach (var entry in plan)
        {
            string name = Find(source, entry.Theirs, fileOf);
            int[] ours = layout[entry.Ours];
            int[] expected = ExpectedShape(entry, ours);
            if (!source.Entries[name].Shape.SequenceEqual(expected))
            {
                throw new HeadLensException(
                    $"{fileOf(name)}: tensor '{name}' has shape [{string.Join(", ", source.Entries[name].Shape)}], config.json implies [{string.Join(", ", expected)}]");
            }
        }

        var model = new Transformer(config);
        string? lastName = null;
        float[] lastRows = [];
        var consumed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in plan)
        {
            string name = Find(source, entry.Theirs, fileOf);
            consumed.Add(name);
            var destination = model.Parameters.Arena.Get(entry.Ours).Span;
            if (!entry.Transpose && entry.Parts == 1)
            {
                // The common case: straight from the file into the model's arena, no intermediate copy.
                source.ReadFloat32(name, destination);
                CheckFinite(fileOf(name), name, destination);
                continue;
            }

            // Fused or transposed tensors (GPT-2's c_attn and Conv1D weights): read once, reuse for every part.
            if (lastName != name)
            {
                var info = source.Entries[name];
                var whole = GC.AllocateUninitializedArray<float>((int)info.ElementCount);
                source.ReadFloat32(name, whole);
                CheckFinite(fileOf(name), name, whole);
                int[] expected = ExpectedShape(entry, layout[entry.Ours]);
                lastRows = entry.Transpose ? Transpose(whole, expected[0], expected[1]) : whole;
                lastName = name;
            }

            int partLength = lastRows.Length / entry.Parts;
            lastRows.AsSpan(entry.Part * partLength, partLength).CopyTo(destination);
        }

        CheckEveryTensorUsed(source, consumed, model, fileOf);
        return model;
    }

    // The stored shape of one mapped tensor: ours [out, in] (or [n]), transposed for Conv1D, stacked for fused parts.
    private static int[] ExpectedShape(HuggingFaceFormat.Entry entry, int[] ours) => entry.Transpose
        ? [ours.Length > 1 ? ours[1] : 1, ours[0] * entry.Parts]
        : [ours[0] * entry.Parts, .. ours[1..]];

    private static void CheckFinite(string file, string name, ReadOnlySpan<float> values)
    {
        // A vectorised sum is finite exactly when no element is NaN or ±∞ (barring an overflow of huge finite values,
        // which the exact scan then clears): the scan runs only when something is wrong.
        if (float.IsFinite(System.Numerics.Tensors.TensorPrimitives.Sum(values)))
        {
            return;
        }

        for (int i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
            {
                throw new HeadLensException($"{file}: tensor '{name}' holds {values[i]} at element {i}");
            }
        }
    }

    /// <summary>
    /// Writes the model into <paramref name="directory"/> as one atomic replacement (<see cref="AtomicDirectory"/>):
    /// a kill at any moment leaves the previous checkpoint or the new one, complete.
    /// </summary>
    public static void Save(Transformer model, ITokenizer? tokenizer, string directory, Action<string>? writeExtras = null) =>
        AtomicDirectory.Replace(directory, temporary =>
        {
            File.WriteAllText(Path.Combine(temporary, "config.json"), HuggingFaceFormat.ConfigJson(model.Config));
            var tensors = ToHuggingFace(model.Config, model.Parameters)
                .Select(tensor => (tensor.Key, tensor.Value.Shape, (ReadOnlyMemory<float>)tensor.Value.Data)).ToList();
            SafeTensorsWriter.Write(Path.Combine(temporary, "model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
            tokenizer?.Save(temporary);
            writeExtras?.Invoke(temporary);
        });

    /// <summary>
    /// Parameters (or gradients: same layout) under Hugging Face names and layouts: fused tensors stacked, Conv1D
    /// weights transposed back to [in, out].
    /// </summary>
    public static Dictionary<string, (int[] Shape, float[] Data)> ToHuggingFace(ModelConfig config, ModelWeights weights)
    {
        var result = new Dictionary<string, (int[], float[])>(StringComparer.Ordinal);
        foreach (var group in HuggingFaceFormat.Map(config).GroupBy(entry => entry.Theirs))
        {
            var parts = group.OrderBy(entry => entry.Part).ToList();
            var first = weights.Arena.Get(parts[0].Ours);
            int rowsPerPart = first.Shape[0];
            int columns = first.Rank > 1 ? first.Shape[1] : 1;
            var stacked = new float[first.Length * parts.Count];
            for (int i = 0; i < parts.Count; i++)
            {
                weights.Arena.Get(parts[i].Ours).Span.CopyTo(stacked.AsSpan(i * first.Length));
            }

            int totalRows = rowsPerPart * parts.Count;
            bool transpose = parts[0].Transpose;
            int[] shape = transpose ? [columns, totalRows] : first.Rank > 1 ? [totalRows, columns] : [totalRows];
            result[group.Key] = (shape, transpose ? Transpose(stacked, totalRows, columns) : stacked);
        }

        return result;
    }

    // [rows, columns] → [columns, rows], in 32×32 blocks so that reads and writes both stay within cache lines.
    private static float[] Transpose(float[] values, int rows, int columns)
    {
        const int block = 32;
        var result = GC.AllocateUninitializedArray<float>(values.Length);
        for (int r0 = 0; r0 < rows; r0 += block)
        {
            for (int c0 = 0; c0 < columns; c0 += block)
            {
                int rEnd = Math.Min(rows, r0 + block), cEnd = Math.Min(columns, c0 + block);
                for (int r = r0; r < rEnd; r++)
                {
                    for (int c = c0; c < cEnd; c++)
                    {
                        result[c * rows + r] = values[r * columns + c];
                    }
                }
            }
        }

        return result;
    }

    // A tensor the model does not read means the config describes another model (more layers, an MLP, a bias the
    // features lack): refuse rather than run something else. Skipped by rule: the causal-mask buffers and RoPE
    // frequencies (HuggingFaceFormat.IsSkipped), and a tied model's lm_head.weight when it equals the embeddings.
    private static void CheckEveryTensorUsed(ITensorSource source, HashSet<string> consumed, Transformer model, Func<string, string> fileOf)
    {
        foreach (string name in source.Entries.Keys.Order(StringComparer.Ordinal))
        {
            if (consumed.Contains(name) || HuggingFaceFormat.IsSkipped(name))
            {
                continue;
            }

            string file = fileOf(name);
            if (name == "lm_head.weight" && model.Config.TiedEmbeddings)
            {
                var embeddings = model.Parameters.TokenEmbedding.Span;
                if (source.Entries[name].ElementCount == embeddings.Length)
                {
                    var head = GC.AllocateUninitializedArray<float>(embeddings.Length);
                    source.ReadFloat32(name, head);
                    if (head.AsSpan().SequenceEqual(embeddings))
                    {
                        continue;
                    }
                }

                throw new HeadLensException($"{file}: tensor 'lm_head.weight' differs from the embeddings, but config.json says tie_word_embeddings");
            }

            throw new HeadLensException($"{file}: tensor '{name}' is not used by the model config.json describes " +
                $"({model.Config.Layout}, {model.Config.Layers} layers, {model.Config.DescribeFeatures()})");
        }
    }

    // Finds a tensor by its Hugging Face name, or under the prefix of a headed model (GPT2LMHeadModel's "transformer.",
    // BertFor...'s "bert."): GPT2Model checkpoints omit "transformer.", BertModel ones have no "bert.".
    private static string Find(ITensorSource source, string name, Func<string, string> fileOf)
    {
        if (source.Entries.ContainsKey(name))
        {
            return name;
        }

        foreach (string alternative in new[] { name.StartsWith("transformer.", StringComparison.Ordinal) ? name["transformer.".Length..] : "bert." + name })
        {
            if (source.Entries.ContainsKey(alternative))
            {
                return alternative;
            }
        }

        // (A checkpoint directory's fileOf names the shard that should hold it, or throws its own "missing tensor" line.)
        throw new HeadLensException($"{fileOf(name)}: missing tensor '{name}'");
    }
}
