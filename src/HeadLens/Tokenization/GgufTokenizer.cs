using System.Text;

namespace HeadLens.Tokenization;

/// <summary>
/// A tokenizer as GGUF metadata stores it (tokenizer.ggml.*): the model kind ("llama" = SentencePiece BPE with
/// scores and byte fallback, "gpt2" = byte-level BPE with merges), the pre-tokenizer name, the tokens (SentencePiece
/// spaces written '▁'), their scores and types, the merges ("left right"), and the special ids.
/// </summary>
public sealed record GgufVocabulary(string Model, IReadOnlyList<string> Tokens)
{
    /// <summary>llama.cpp's token types (tokenizer.ggml.token_type).</summary>
    public const int Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6;

    public string? Pre { get; init; }

    public IReadOnlyList<float>? Scores { get; init; }

    public IReadOnlyList<int>? TokenTypes { get; init; }

    public IReadOnlyList<string>? Merges { get; init; }

    public int? BosId { get; init; }

    public int? EosId { get; init; }

    public int? UnknownId { get; init; }

    public bool? AddBos { get; init; }
}

/// <summary>
/// The tokenizer a GGUF file carries, run by HeadLens's own tokenizers: "llama" vocabularies by
/// <see cref="SentencePieceTokenizer"/> (which needs llama's id layout: &lt;unk&gt;, BOS, EOS at 0, 1, 2 and the 256
/// byte tokens &lt;0x00&gt;..&lt;0xFF&gt; at 3..258), "gpt2" vocabularies by <see cref="Gpt2Tokenizer"/> (GPT-2's
/// pre-tokenizers "gpt-2", "llama-bpe" and "qwen2" by tokenizer.ggml.pre). Anything else is refused in one line naming the
/// key. BOS, EOS and add_bos_token come from the metadata (llama.cpp's defaults when absent: a llama vocabulary adds
/// BOS, a gpt2 one does not).
/// </summary>
public sealed class GgufTokenizer : ITokenizer
{
    private readonly ITokenizer inner;

    private GgufTokenizer(GgufVocabulary vocabulary, ITokenizer inner, int? bos, int? eos, bool addBos)
    {
        Vocabulary = vocabulary;
        this.inner = inner;
        BosId = addBos ? bos : null;
        DeclaredBosId = bos;
        EosId = eos;
        AddsBos = addBos && bos is not null;
    }

    public GgufVocabulary Vocabulary { get; }

    public int VocabSize => Vocabulary.Tokens.Count;

    /// <summary>The BOS id when the model expects it before every text (ITokenizer's contract); see <see cref="DeclaredBosId"/>.</summary>
    public int? BosId { get; }

    /// <summary>tokenizer.ggml.bos_token_id, whether or not add_bos_token is set.</summary>
    public int? DeclaredBosId { get; }

    public bool AddsBos { get; }

    public int? EosId { get; }

    public static GgufTokenizer Create(GgufVocabulary vocabulary, string source = "gguf")
    {
        var tokens = vocabulary.Tokens;
        void Check(bool condition, string message)
        {
            if (!condition)
            {
                throw new HeadLensException($"{source}: {message}");
            }
        }

        Check(vocabulary.Scores is null || vocabulary.Scores.Count == tokens.Count, $"tokenizer.ggml.scores has {vocabulary.Scores?.Count} entries for {tokens.Count} tokens");
        Check(vocabulary.TokenTypes is null || vocabulary.TokenTypes.Count == tokens.Count, $"tokenizer.ggml.token_type has {vocabulary.TokenTypes?.Count} entries for {tokens.Count} tokens");
        foreach (var (key, id) in new[] { ("bos", vocabulary.BosId), ("eos", vocabulary.EosId), ("unknown", vocabulary.UnknownId) })
        {
            Check(id is null || (uint)id < (uint)tokens.Count, $"tokenizer.ggml.{key}_token_id {id} is outside the vocabulary of {tokens.Count}");
        }

        switch (vocabulary.Model)
        {
            case "llama":
                {
                    Check(tokens.Count >= 259, $"a llama (SentencePiece) vocabulary needs <unk>, BOS, EOS and 256 byte tokens (got {tokens.Count} tokens)");
                    for (int b = 0; b < 256; b++)
                    {
                        Check(tokens[3 + b] == $"<0x{b:X2}>", $"tokenizer.ggml.tokens[{3 + b}] is '{tokens[3 + b]}', expected the byte token <0x{b:X2}> (llama's id layout)");
                    }

                    Check(vocabulary.BosId is null or 1 && vocabulary.EosId is null or 2,
                        $"tokenizer.ggml.bos_token_id {vocabulary.BosId} / eos_token_id {vocabulary.EosId}: only llama's layout (1, 2) is implemented");
                    var pieces = tokens.Select((token, id) => (Encoding.UTF8.GetBytes(token.Replace('\u2581', ' ')), vocabulary.Scores?[id] ?? 0f)).ToList();
                    return new GgufTokenizer(vocabulary, new SentencePieceTokenizer(pieces), vocabulary.BosId ?? 1, vocabulary.EosId ?? 2, vocabulary.AddBos ?? true);
                }

            case "gpt2":
                {
                    // llama.cpp's names: "gpt-2" (and HeadLens's older "default"/"gpt2"), "llama-bpe" (Llama 3), "qwen2".
                    var pre = vocabulary.Pre switch
                    {
                        null or "default" or "gpt-2" or "gpt2" => BytePreTokenizer.Gpt2,
                        "llama-bpe" or "llama3" or "llama-v3" => BytePreTokenizer.Llama3,
                        "qwen2" => BytePreTokenizer.Qwen2,
                        _ => throw new HeadLensException($"{source}: tokenizer.ggml.pre '{vocabulary.Pre}' is not implemented (gpt-2, llama-bpe, qwen2)"),
                    };
                    Check(vocabulary.Merges is not null, "a gpt2 vocabulary needs tokenizer.ggml.merges");
                    var ids = new Dictionary<string, int>(tokens.Count, StringComparer.Ordinal);
                    for (int id = 0; id < tokens.Count; id++)
                    {
                        ids.TryAdd(tokens[id], id);
                    }

                    var merges = new List<(string, string)>(vocabulary.Merges!.Count);
                    foreach (string merge in vocabulary.Merges)
                    {
                        int space = merge.IndexOf(' ', StringComparison.Ordinal);
                        Check(space > 0 && space < merge.Length - 1, $"tokenizer.ggml.merges entry '{merge}' is not 'left right'");
                        merges.Add((merge[..space], merge[(space + 1)..]));
                    }

                    var inner = new Gpt2Tokenizer(ids, merges, pre);
                    // llama.cpp's default: Llama 3's vocabulary adds BOS, GPT-2's and Qwen2's do not (the metadata decides when present).
                    return new GgufTokenizer(vocabulary, inner, vocabulary.BosId, vocabulary.EosId ?? inner.EosId, vocabulary.AddBos ?? pre == BytePreTokenizer.Llama3);
                }

            default:
                throw new HeadLensException($"{source}: tokenizer.ggml.model '{vocabulary.Model}' is not implemented (llama, gpt2)");
        }
    }

    /// <summary>
    /// The GGUF vocabulary of one of HeadLens's tokenizers: a GGUF tokenizer's own, or a SentencePiece or GPT-2
    /// tokenizer read back through its saved files (their vocabularies are private to them).
    /// </summary>
    public static GgufVocabulary ToVocabulary(ITokenizer tokenizer)
    {
        if (tokenizer is GgufTokenizer gguf)
        {
            return gguf.Vocabulary;
        }

        string directory = Path.Combine(Path.GetTempPath(), "headlens-vocab-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
        try
        {
            tokenizer.Save(directory);
            switch (tokenizer)
            {
                case SentencePieceTokenizer:
                    {
                        // llama2.c's tokenizer.bin: max length, then (score, length, bytes) per token.
                        using var reader = new BinaryReader(File.OpenRead(Path.Combine(directory, SentencePieceTokenizer.FileName)));
                        reader.ReadInt32();
                        var tokens = new List<string>(tokenizer.VocabSize);
                        var scores = new List<float>(tokenizer.VocabSize);
                        var types = new List<int>(tokenizer.VocabSize);
                        for (int id = 0; id < tokenizer.VocabSize; id++)
                        {
                            scores.Add(reader.ReadSingle());
                            string piece = Encoding.UTF8.GetString(reader.ReadBytes(reader.ReadInt32()));
                            bool isByte = id is >= 3 and < 259 && piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal);
                            types.Add(id == 0 ? Unknown : id is 1 or 2 ? Control : isByte ? Byte : Normal);
                            tokens.Add(isByte ? piece : piece.Replace(' ', '\u2581'));
                        }

                        return new GgufVocabulary("llama", tokens) { Scores = scores, TokenTypes = types, BosId = 1, EosId = 2, UnknownId = 0, AddBos = true };
                    }

                case Gpt2Tokenizer:
                    {
                        var vocabulary = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(Path.Combine(directory, "vocab.json")))!;
                        var tokens = new string[vocabulary.Values.Max() + 1];
                        foreach (var (token, id) in vocabulary)
                        {
                            tokens[id] = token;
                        }

                        for (int id = 0; id < tokens.Length; id++)
                        {
                            tokens[id] ??= $"[PAD{id}]";
                        }

                        var merges = File.ReadAllLines(Path.Combine(directory, "merges.txt")).Where(line => line.Length > 0 && !line.StartsWith("#version", StringComparison.Ordinal)).ToList();
                        return new GgufVocabulary("gpt2", tokens) { Pre = "gpt-2", Merges = merges, EosId = tokenizer.EosId, BosId = tokenizer.EosId, AddBos = false };
                    }

                case ByteTokenizer:
                    // Byte-level tokens are a byte-level BPE without merges: id b is byte b, written as GPT-2's
                    // printable stand-in for that byte, so llama.cpp and HeadLens's GPT-2 tokenizer read the same ids.
                    return new GgufVocabulary("gpt2", Gpt2Tokenizer.AllByteSymbols.ToList()) { Pre = "gpt-2", Merges = [], AddBos = false };

                default:
                    throw new HeadLensException($"a {tokenizer.GetType().Name} cannot be written as a GGUF vocabulary (llama SentencePiece, GPT-2 BPE and byte-level tokens can)");
            }
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private const int Unknown = GgufVocabulary.Unknown, Control = GgufVocabulary.Control, Byte = GgufVocabulary.Byte, Normal = GgufVocabulary.Normal;

    public int[] Encode(string text) => inner.Encode(text);

    public string Decode(ReadOnlySpan<int> ids) => inner.Decode(ids);

    public string TokenText(int id) => inner.TokenText(id);

    public void Save(string directory) => inner.Save(directory);
}
