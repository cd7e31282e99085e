using HeadLens.Embeddings;
using HeadLens.Kernels.Quantized;
using HeadLens.Model;
using HeadLens.Tokenization;

namespace HeadLens.Checkpoints.Gguf;

/// <summary>
/// Builds a HeadLens model from a GGUF file. This is the REFERENCE path: every tensor, whatever its type, is
/// dequantized (<see cref="Dequantize.Reference"/>) into the model's fp32 arena — memory-heavy (4 bytes per weight)
/// but exact, and the contract a quantized-in-memory model must match.
/// </summary>
public static class GgufModel
{
    /// <summary>Reads the model and its tokenizer (null when the file carries no vocabulary), every tensor as fp32.</summary>
    public static (Transformer Model, ITokenizer? Tokenizer) Load(string path)
    {
        using var file = GgufFile.Open(path);
        var (config, entries) = Plan(file);
        var model = new Transformer(config);
        var consumed = new HashSet<string>(StringComparer.Ordinal) { GgufFormat.RopeFrequencies };
        float[] fused = [];
        string? fusedName = null;
        foreach (var entry in entries)
        {
            var tensor = file.Tensor(entry.Theirs);
            consumed.Add(entry.Theirs);
            var destination = model.Parameters.Arena.Get(entry.Ours).Span;
            if (entry.Parts == 1)
            {
                file.ReadFloat32(tensor, destination);
                continue;
            }

            if (fusedName != entry.Theirs)
            {
                fused = GC.AllocateUninitializedArray<float>((int)tensor.ElementCount);
                file.ReadFloat32(tensor, fused);
                fusedName = entry.Theirs;
            }

            fused.AsSpan(entry.Part * destination.Length, destination.Length).CopyTo(destination);
        }

        CheckEveryTensorUsed(file, config, consumed);
        return (model, ReadTokenizer(file));
    }

    /// <summary>
    /// Opens the model for inference with its weight matrices (projections, MLP, embeddings, output head) kept in
    /// the file's types — Q4_K, Q6_K, Q8_0, F16, F32 … — straight in the memory-mapped file: they are decoded in
    /// registers as each product runs (<see cref="LinearWeight"/>), so a 0.7 GB Q4_K_M file costs about 0.7 GB, not
    /// 4.4 GB of fp32. The matrices are copied once onto 2 MiB pages where the system has them and they fit in half
    /// the available memory (the same bytes; see <c>CopyToLargePages</c>: 10–25% faster decoding, at the copy's cost
    /// when opening). Norms, biases and position tables (small) are decoded into the model's arena. The file stays
    /// open (mapped) for as long as the model is reachable. The model runs every inference and analysis pass; it
    /// does not train. Logits match <see cref="Load"/>'s to float rounding (the products sum in another order).
    /// </summary>
    public static (Transformer Model, ITokenizer? Tokenizer) Open(string path) => Open(path, largePages: true);

    /// <summary>
    /// As <see cref="Open(string)"/>; <paramref name="largePages"/> false leaves every matrix in the mapping (no copy:
    /// for looking at a file rather than running it, and for comparing the two).
    /// </summary>
    public static (Transformer Model, ITokenizer? Tokenizer) Open(string path, bool largePages) =>
        Open(path, largePages ? LargePageMinBytes : long.MaxValue);

    /// <summary>As <see cref="Open(string)"/>, copying onto large pages from this many bytes of matrices on (tests: 0).</summary>
    internal static (Transformer Model, ITokenizer? Tokenizer) Open(string path, long largePageMinBytes)
    {
        var file = GgufFile.Open(path);
        try
        {
            var (config, entries) = Plan(file);
            var consumed = new HashSet<string>(StringComparer.Ordinal) { GgufFormat.RopeFrequencies };
            var stored = new Dictionary<string, QuantizedMatrix>(StringComparer.Ordinal);
            var matrices = entries.Where(entry => IsMatrix(entry.Ours)).ToList();
            // An embedding apart from the output head is read one row per token: it stays in the mapping.
            var streamed = matrices.Where(entry => config.TiedEmbeddings || entry.Ours != "token_embedding.weight");
            var copies = CopyToLargePages(file, streamed.Select(entry => entry.Theirs), largePageMinBytes);
            foreach (var entry in matrices)
            {
                var tensor = file.Tensor(entry.Theirs);
                int rows = (int)(tensor.Rows / entry.Parts);
                var whole = copies.TryGetValue(entry.Theirs, out var copy) ? copy : file.Matrix(tensor);
                stored[entry.Ours] = whole.RowBlock(entry.Ours, entry.Part * rows, rows);
            }

            var model = new Transformer(config, stored);
            foreach (var group in entries.Where(entry => !IsMatrix(entry.Ours)).GroupBy(entry => entry.Theirs))
            {
                var tensor = file.Tensor(group.Key);
                var values = GC.AllocateUninitializedArray<float>((int)tensor.ElementCount);
                if (copies.Count > 0)
                {
                    // Read, not through the mapping: touching it would map the page cache around each small tensor
                    // (measured: ~300 MB of GPT-2 F32's file resident for its norms) beside the copy.
                    file.ReadFloat32(tensor, ReadBytes(file, tensor.Offset, tensor.ByteCount), values);
                }
                else
                {
                    file.ReadFloat32(tensor, values);
                }

                foreach (var entry in group)
                {
                    var destination = model.Parameters.Arena.Get(entry.Ours).Span;
                    values.AsSpan(entry.Part * destination.Length, destination.Length).CopyTo(destination);
                }
            }

            consumed.UnionWith(entries.Select(entry => entry.Theirs));
            CheckEveryTensorUsed(file, config, consumed);
            var tokenizer = ReadTokenizer(file);
            if (copies.Count > 0 && matrices.All(entry => copies.ContainsKey(entry.Theirs)))
            {
                // Nothing points into the mapping any more (every matrix is in the copy, the rest was decoded into the
                // arena): unmapped now, rather than holding the pages the header and the small tensors were read from.
                file.Dispose();
            }

            return (model, tokenizer);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    // Below this many bytes of matrices the copy is not made: too few 2 MiB pages to matter.
    private const long LargePageMinBytes = 16L << 20;

    // Bytes per piece of the copy handed to a thread.
    private const int CopyPieceBytes = 8 << 20;

    /// <summary>
    /// The matrices among <paramref name="tensorNames"/>, copied byte for byte (file order, each on a cache line) into
    /// one block of 2 MiB pages; empty where the system has no such pages, the matrices are small, or they would take
    /// more than half the memory the system has available (a file larger than memory keeps streaming from the mapping).
    /// Why: a decode step streams every weight once, and on 4 KiB pages (the mapping's page cache) every 4 KiB costs a
    /// TLB miss and a page walk — under virtualisation a two-level one — and the hardware prefetchers stop at each page.
    /// Measured: on the Ice Lake Xeon (a VM, 2 threads, GPT-2 124M F32, all 73 products of a step, interleaved medians)
    /// 25.5 → 23.0 ms and 26.4 → 23.9 ms per step (19 → 21 GB/s); on Zen 4 (2 threads, the 1.1B Q4_K_M file's 156
    /// products with 8-bit activations, three alternations) 24.8–25.9 → 20.4–20.5 ms (26 → 32.6 GB/s, the machine's
    /// read bandwidth). Quantized files were left in the mapping until their row dots ran at memory speed. Resident
    /// memory is the same either way: the bytes are read from the file (not through the mapping, which stays untouched),
    /// and the values are the file's, bit for bit.
    /// </summary>
    private static unsafe Dictionary<string, QuantizedMatrix> CopyToLargePages(GgufFile file, IEnumerable<string> tensorNames, long minBytes)
    {
        var tensors = tensorNames.Distinct(StringComparer.Ordinal).Select(file.Tensor).OrderBy(tensor => tensor.Offset).ToList();
        var places = new long[tensors.Count];
        long total = 0;
        for (int i = 0; i < tensors.Count; i++)
        {
            places[i] = total;
            total += (tensors[i].ByteCount + 63) & ~63L;
        }

        var copies = new Dictionary<string, QuantizedMatrix>(StringComparer.Ordinal);
        if (total == 0 || total < minBytes || !Tensors.HugePages.Available || total > Tensors.HugePages.AvailableMemory() / 2)
        {
            return copies;
        }

        var block = Tensors.HugePages.AllocateBlock(total);
        var pieces = new List<(int Tensor, long From, int Bytes)>();
        for (int i = 0; i < tensors.Count; i++)
        {
            for (long from = 0; from < tensors[i].ByteCount; from += CopyPieceBytes)
            {
                pieces.Add((i, from, (int)Math.Min(CopyPieceBytes, tensors[i].ByteCount - from)));
            }
        }

        using (var handle = File.OpenHandle(file.Path))
        {
            // Over the threads: each piece's first write faults in (and the kernel zeroes) its 2 MiB pages.
            Kernels.ComputeThreads.Run(pieces.Count, index =>
            {
                var (i, from, bytes) = pieces[index];
                ReadAt(file, handle, tensors[i].Offset + from, new Span<byte>(block.Start + places[i] + from, bytes));
            });
        }

        for (int i = 0; i < tensors.Count; i++)
        {
            var mapped = file.Matrix(tensors[i]); // the checks on its shape; its bytes are not touched
            copies[tensors[i].Name] = new QuantizedMatrix(mapped.Name, mapped.Type, mapped.Rows, mapped.Columns, block.Start + places[i], mapped.Length, block);
        }

        return copies;
    }

    // A small tensor's bytes read from the file (offset within the data section).
    private static byte[] ReadBytes(GgufFile file, long offset, long count)
    {
        var bytes = new byte[checked((int)count)];
        using var handle = File.OpenHandle(file.Path);
        ReadAt(file, handle, offset, bytes);
        return bytes;
    }

    // destination.Length bytes from the data section at offset, read from the file (not through the mapping).
    private static void ReadAt(GgufFile file, Microsoft.Win32.SafeHandles.SafeFileHandle handle, long offset, Span<byte> destination)
    {
        long at = file.DataOffset + offset;
        while (!destination.IsEmpty)
        {
            int read = RandomAccess.Read(handle, destination, at);
            if (read <= 0)
            {
                throw new HeadLensException($"{Path.GetFileName(file.Path)}: a tensor ends past the end of the file (it was truncated while open)");
            }

            destination = destination[read..];
            at += read;
        }
    }

    // The tensors products read (kept in the file's type by Open); everything else is a vector or a small table.
    private static bool IsMatrix(string ours) => ours is "token_embedding.weight" or "output_head.weight"
        || (ours.StartsWith("layers.", StringComparison.Ordinal) && ours.EndsWith(".weight", StringComparison.Ordinal)
            && (ours.Contains(".attention.", StringComparison.Ordinal) || ours.Contains(".mlp.", StringComparison.Ordinal))
            && !ours.Contains("_norm.", StringComparison.Ordinal));

    // The config, and the tensor map with every shape checked against the metadata before anything is allocated: a
    // lying metadata number (layers, widths) must not cost more memory than the file's own tensors.
    private static (ModelConfig Config, List<GgufFormat.Entry> Entries) Plan(GgufFile file)
    {
        var config = ReadConfig(file);
        string name = Path.GetFileName(file.Path);
        var layout = ModelWeights.Layout(config).ToDictionary(entry => entry.Name, entry => entry.Shape);
        var entries = GgufFormat.Map(config).ToList();
        foreach (var entry in entries)
        {
            var tensor = file.Tensor(entry.Theirs);
            int[] ours = layout[entry.Ours];
            int[] expected = [ours[0] * entry.Parts, .. ours[1..]];
            if (!tensor.Shape.SequenceEqual(expected))
            {
                throw new HeadLensException($"{name}: tensor '{entry.Theirs}' has shape [{string.Join(", ", tensor.Shape)}] (outermost first), the metadata implies [{string.Join(", ", expected)}]");
            }
        }

        return (config, entries);
    }

    private static void CheckEveryTensorUsed(GgufFile file, ModelConfig config, HashSet<string> consumed)
    {
        foreach (var tensor in file.Tensors)
        {
            if (consumed.Contains(tensor.Name))
            {
                continue;
            }

            // llama.cpp's GPT-2 files carry output.weight even when it is the embedding matrix (ReadConfig has checked).
            if (tensor.Name == "output.weight" && config.TiedEmbeddings)
            {
                continue;
            }

            throw new HeadLensException($"{Path.GetFileName(file.Path)}: tensor '{GgufFile.Printable(tensor.Name)}' is not used by the model the metadata describes " +
                $"({file.String("general.architecture")}, {config.Layers} layers, {config.DescribeFeatures()})");
        }
    }

    /// <summary>The model a GGUF file's metadata and tensor shapes describe; unsupported features refused by key.</summary>
    public static ModelConfig ReadConfig(GgufFile file)
    {
        string name = Path.GetFileName(file.Path);
        string architecture = file.String("general.architecture") ?? throw new HeadLensException($"{name}: missing metadata 'general.architecture'");
        var layout = GgufFormat.LayoutOf(architecture, name);
        string a = architecture + ".";
        foreach (string key in new[] { "expert_count", "attention.clamp_kqv", "attention.sliding_window", "logit_scale", "attention.causal" })
        {
            if (file.Has(a + key) && !(key == "expert_count" && file.Int(a + key) == 0) && !(key == "attention.causal" && file.Bool(a + key) == true))
            {
                throw new HeadLensException($"{name}: metadata '{a + key}' is not implemented");
            }
        }

        var embedding = file.Tensor("token_embd.weight");
        if (embedding.Dimensions.Length != 2)
        {
            throw new HeadLensException($"{name}: tensor 'token_embd.weight' must be a matrix");
        }

        int vocab = (int)embedding.Rows, channels = file.RequireInt(a + "embedding_length");
        int heads = file.RequireInt(a + "attention.head_count"), layers = file.RequireInt(a + "block_count");
        int context = file.RequireInt(a + "context_length"), hidden = file.RequireInt(a + "feed_forward_length");
        if (layers <= 0 || layers > file.Tensors.Count)
        {
            throw new HeadLensException($"{name}: {a}block_count {layers} does not match the file's {file.Tensors.Count} tensors");
        }

        if (heads <= 0 || channels % heads != 0)
        {
            throw new HeadLensException($"{name}: {a}attention.head_count {heads} does not divide {a}embedding_length {channels}");
        }

        int headDim = channels / heads;
        foreach (string key in new[] { "attention.key_length", "attention.value_length" })
        {
            if (file.Int(a + key) is { } length && length != headDim)
            {
                throw new HeadLensException($"{name}: {a}{key} {length} differs from embedding_length / head_count ({headDim}): not supported");
            }
        }

        bool hasOutput = file.TensorsByName.ContainsKey("output.weight");
        ModelConfig config;
        if (layout == CheckpointLayout.Gpt2)
        {
            config = ModelPresets.Gpt2(vocab, context, layers, heads, channels) with
            {
                HiddenChannels = hidden,
                NormEpsilon = file.Float(a + "attention.layer_norm_epsilon") ?? 1e-5f,
                TiedEmbeddings = !hasOutput || SameBytes(file, "output.weight", "token_embd.weight"),
            };
        }
        else
        {
            int kvHeads = file.Int(a + "attention.head_count_kv") ?? heads;
            var preset = layout == CheckpointLayout.Qwen2
                ? ModelPresets.Qwen2(vocab, context, layers, heads, kvHeads, channels, hidden)
                : ModelPresets.Llama(vocab, context, layers, heads, kvHeads, channels, hidden);
            var biases = preset.Biases;
            if (layout == CheckpointLayout.Llama && file.TensorsByName.ContainsKey("blk.0.attn_q.bias"))
            {
                biases = Biases.QueryKeyValue | (file.TensorsByName.ContainsKey("blk.0.attn_output.bias") ? Biases.Output : Biases.None);
            }

            if (file.Int(a + "rope.dimension_count") is { } rotary && rotary != headDim)
            {
                throw new HeadLensException($"{name}: {a}rope.dimension_count {rotary} differs from the head size {headDim} (partial rotary is not implemented)");
            }

            config = preset with
            {
                NormEpsilon = file.Float(a + "attention.layer_norm_rms_epsilon") ?? 1e-5f,
                TiedEmbeddings = !hasOutput,
                Biases = biases,
                Rope = ReadRope(file, a, headDim, layout),
            };
        }

        return config.Validated(name);
    }

    private static RopeSettings ReadRope(GgufFile file, string a, int headDim, CheckpointLayout layout)
    {
        string name = Path.GetFileName(file.Path);
        var rope = new RopeSettings(file.Float(a + "rope.freq_base") ?? 10000f, GgufFormat.RopeLayoutOf(layout));
        string scaling = file.String(a + "rope.scaling.type") ?? "none";
        float factor = file.Float(a + "rope.scaling.factor") ?? 1f;
        rope = scaling switch
        {
            "none" => rope,
            "linear" => rope with { Scaling = RopeScaling.Linear, ScalingFactor = factor },
            _ => throw new HeadLensException($"{name}: {a}rope.scaling.type '{scaling}' is not implemented (none, linear)"),
        };
        if (!file.TensorsByName.TryGetValue(GgufFormat.RopeFrequencies, out var tensor))
        {
            return rope;
        }

        // Llama 3.1's scaling comes as per-pair frequency divisors (llama.cpp's rope_freqs). HeadLens computes them
        // from Llama 3's four numbers; they are recovered here (factor = the largest divisor, the original context
        // and the low/high factors from the metadata or Llama 3.1's values) and the whole table must then match.
        if (tensor.ElementCount != headDim / 2)
        {
            throw new HeadLensException($"{name}: tensor '{tensor.Name}' has {tensor.ElementCount} values, the head size implies {headDim / 2}");
        }

        var divisors = new float[headDim / 2];
        file.ReadFloat32(tensor, divisors);
        var llama3 = rope with
        {
            Scaling = RopeScaling.Llama3,
            ScalingFactor = divisors.Max(),
            LowFrequencyFactor = 1,
            HighFrequencyFactor = 4,
            OriginalContext = file.Int(a + "rope.scaling.original_context_length") ?? 8192,
        };
        for (int i = 0; i < divisors.Length; i++)
        {
            double expected = Rope.Frequency(i, headDim, rope) / Rope.Frequency(i, headDim, llama3);
            if (Math.Abs(expected - divisors[i]) > 1e-3 * expected)
            {
                throw new HeadLensException($"{name}: tensor '{tensor.Name}' holds divisor {divisors[i]} for pair {i}, Llama 3 scaling " +
                    $"(factor {llama3.ScalingFactor}, low 1, high 4, original context {llama3.OriginalContext}) gives {expected:G6}: other rope scalings are not implemented");
            }
        }

        return llama3;
    }

    // Compared by reading the file, a piece at a time, not through the mapping: touching the mapping kept both
    // tensors' pages resident in this process (GPT-2: 2 × 154 MB, most of it never read again).
    private static bool SameBytes(GgufFile file, string first, string second)
    {
        var a = file.Tensor(first);
        var b = file.Tensor(second);
        if (a.Type != b.Type || !a.Dimensions.SequenceEqual(b.Dimensions) || a.ByteCount != b.ByteCount)
        {
            return false;
        }

        using var handle = File.OpenHandle(file.Path);
        var mine = new byte[1 << 20];
        var theirs = new byte[1 << 20];
        for (long at = 0; at < a.ByteCount; at += mine.Length)
        {
            int count = (int)Math.Min(mine.Length, a.ByteCount - at);
            ReadAt(file, handle, a.Offset + at, mine.AsSpan(0, count));
            ReadAt(file, handle, b.Offset + at, theirs.AsSpan(0, count));
            if (!mine.AsSpan(0, count).SequenceEqual(theirs.AsSpan(0, count)))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The tokenizer the metadata describes, or null when the file has no tokenizer.ggml.tokens.</summary>
    public static GgufTokenizer? ReadTokenizer(GgufFile file)
    {
        string name = Path.GetFileName(file.Path);
        string? model = file.String("tokenizer.ggml.model");
        var tokens = file.Array<string>("tokenizer.ggml.tokens");
        if (model is null or "none" or "no_vocab" || tokens is null)
        {
            return null;
        }

        var types = file.Metadata.TryGetValue("tokenizer.ggml.token_type", out var typeValue)
            ? typeValue.Value switch
            {
                long[] signed => signed.Select(t => (int)t).ToArray(),
                ulong[] unsigned => unsigned.Select(t => (int)t).ToArray(),
                _ => throw new HeadLensException($"{name}: metadata 'tokenizer.ggml.token_type' is not an integer array"),
            }
            : null;
        var vocabulary = new GgufVocabulary(model, tokens)
        {
            Pre = file.String("tokenizer.ggml.pre"),
            Scores = file.Array<float>("tokenizer.ggml.scores"),
            TokenTypes = types,
            Merges = file.Array<string>("tokenizer.ggml.merges"),
            BosId = file.Int("tokenizer.ggml.bos_token_id"),
            EosId = file.Int("tokenizer.ggml.eos_token_id"),
            UnknownId = file.Int("tokenizer.ggml.unknown_token_id"),
            AddBos = file.Bool("tokenizer.ggml.add_bos_token"),
        };
        try
        {
            return GgufTokenizer.Create(vocabulary, name);
        }
        catch (HeadLensException error)
        {
            throw new HeadLensException(GgufFile.Printable(error.Message));
        }
    }
}
