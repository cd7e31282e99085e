using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace HeadLens.Tokenization;

/// <summary>
/// GPT-2's byte-level BPE (Radford et al. 2019): text → UTF-8 bytes, each byte mapped to a printable character
/// (so the vocabulary never needs an unknown token), split into words by GPT-2's pattern (contractions, letters,
/// numbers, other symbols, whitespace), then each word's characters merged pairwise, lowest merge rank first, until
/// no known pair remains; the resulting pieces are looked up in vocab.json. Special tokens such as &lt;|endoftext|&gt;
/// in the input are encoded as plain text, as the gpt-3-encoder reference implementation does.
/// The same byte-level BPE serves later models with their own word patterns (<see cref="BytePreTokenizer"/>):
/// Llama 3 (letters may take one leading symbol, digits in runs of up to three, and a word that is itself a token is
/// not merged further — llama.cpp's ignore_merges) and Qwen2 (the same, with digits one at a time).
/// </summary>
public sealed partial class Gpt2Tokenizer : ITokenizer
{
    private const string EndOfText = "<|endoftext|>";
    private static readonly char[] ByteToChar = BuildByteMap();
    private static readonly Dictionary<char, byte> CharToByte = ByteToChar.Select((c, b) => (c, (byte)b)).ToDictionary(p => p.c, p => p.Item2);

    private readonly Dictionary<string, int> encoder;
    private readonly string[] decoder;
    private readonly Dictionary<(string, string), int> ranks;
    private readonly List<(string, string)> merges;
    private readonly Dictionary<string, int[]> cache = new(StringComparer.Ordinal);
    private readonly Regex pattern;
    private readonly string source;

    /// <param name="source">Names the vocabulary's file in errors.</param>
    /// <param name="mergesSource">Names the merges' file in errors (the vocabulary's when null).</param>
    public Gpt2Tokenizer(Dictionary<string, int> vocabulary, List<(string Left, string Right)> merges, string source = "vocabulary", string? mergesSource = null)
        : this(vocabulary, merges, BytePreTokenizer.Gpt2, source, mergesSource)
    {
    }

    /// <param name="preTokenizer">How text is split into the words merges never cross.</param>
    /// <param name="source">Names the vocabulary's file in errors.</param>
    /// <param name="mergesSource">Names the merges' file in errors (the vocabulary's when null).</param>
    public Gpt2Tokenizer(Dictionary<string, int> vocabulary, List<(string Left, string Right)> merges, BytePreTokenizer preTokenizer,
        string source = "vocabulary", string? mergesSource = null)
    {
        PreTokenizer = preTokenizer;
        pattern = preTokenizer switch
        {
            BytePreTokenizer.Gpt2 => WordPattern(),
            BytePreTokenizer.Llama3 => Llama3Pattern(),
            BytePreTokenizer.Qwen2 => Qwen2Pattern(),
            _ => throw new ArgumentOutOfRangeException(nameof(preTokenizer)),
        };
        encoder = vocabulary;
        // The id → token table is as long as the largest id: ids far beyond the number of tokens would make one
        // line of JSON allocate gigabytes, and no real vocabulary leaves most of its ids unused.
        long limit = 2L * vocabulary.Count + 256;
        foreach (var (token, id) in vocabulary)
        {
            if (id < 0 || id >= limit)
            {
                throw new HeadLensException($"{source}: token '{Escape(token)}' has id {id}, outside 0..{limit - 1} " +
                    $"(the vocabulary has {vocabulary.Count} tokens)");
            }
        }

        decoder = new string[vocabulary.Count == 0 ? 0 : vocabulary.Values.Max() + 1];
        foreach (var (token, id) in vocabulary)
        {
            decoder[id] = token;
        }

        // Encoding looks up every merge's result: a merge whose result the vocabulary lacks would fail on some text much
        // later, so it is refused here. (A missing byte symbol is named, with the file, when text needs it: small
        // hand-made vocabularies leave most bytes out on purpose.)
        this.source = source;
        this.merges = merges;
        ranks = new Dictionary<(string, string), int>();
        for (int i = 0; i < merges.Count; i++)
        {
            if (!vocabulary.ContainsKey(merges[i].Left + merges[i].Right))
            {
                throw new HeadLensException($"{mergesSource ?? source}: merge {i + 1} '{Escape(merges[i].Left)} {Escape(merges[i].Right)}' makes a token {source} lacks");
            }

            ranks.TryAdd(merges[i], i);
        }

        EosId = vocabulary.TryGetValue(EndOfText, out int eos) ? eos : null;
    }

    public int VocabSize => decoder.Length;

    /// <summary>How text is split into the words merges never cross.</summary>
    public BytePreTokenizer PreTokenizer { get; }

    public int? BosId => null;

    public bool AddsBos => false;

    public int? EosId { get; }

    public static Gpt2Tokenizer FromFiles(string vocabJson, string mergesTxt) =>
        FromText(ReadFile(vocabJson), ReadFile(mergesTxt), Path.GetFileName(vocabJson), Path.GetFileName(mergesTxt));

    public static Gpt2Tokenizer FromText(string vocabJson, string mergesTxt, string vocabName = "vocab.json", string mergesName = "merges.txt")
    {
        Dictionary<string, int> vocabulary;
        try
        {
            vocabulary = JsonSerializer.Deserialize<Dictionary<string, int>>(vocabJson)
                ?? throw new HeadLensException($"{vocabName}: empty");
        }
        catch (JsonException error)
        {
            throw new HeadLensException($"{vocabName}: malformed JSON ({InputFile.Reason(error)})");
        }

        var merges = new List<(string, string)>();
        foreach (string line in mergesTxt.Split('\n'))
        {
            string trimmed = line.TrimEnd('\r');
            if (trimmed.Length == 0 || trimmed.StartsWith("#version", StringComparison.Ordinal))
            {
                continue;
            }

            int space = trimmed.IndexOf(' ', StringComparison.Ordinal);
            if (space <= 0 || space == trimmed.Length - 1)
            {
                throw new HeadLensException($"{mergesName}: line '{trimmed}' is not a merge 'left right'");
            }

            merges.Add((trimmed[..space], trimmed[(space + 1)..]));
        }

        return new Gpt2Tokenizer(vocabulary, merges, vocabName, mergesName);
    }

    /// <summary>A Hugging Face tokenizer.json with a BPE model (vocab and merges).</summary>
    public static Gpt2Tokenizer FromTokenizerJson(string path)
    {
        try
        {
            using var document = JsonDocument.Parse(ReadFile(path));
            var model = document.RootElement.GetProperty("model");
            RequireByteLevelBpe(path, document.RootElement, model);
            var vocabulary = model.GetProperty("vocab").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt32(), StringComparer.Ordinal);
            var merges = model.GetProperty("merges").EnumerateArray().Select((merge, index) =>
            {
                // A merge is ["left", "right"] (newer files) or "left right"; anything else is refused by position.
                if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2
                    && merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String)
                {
                    return (merge[0].GetString()!, merge[1].GetString()!);
                }

                string text = merge.ValueKind == JsonValueKind.String ? merge.GetString()! : "";
                int space = text.IndexOf(' ', StringComparison.Ordinal);
                if (space <= 0 || space == text.Length - 1)
                {
                    throw new HeadLensException($"{Path.GetFileName(path)}: model.merges[{index}] is {Escape(merge.GetRawText())}, not a pair of tokens");
                }

                return (text[..space], text[(space + 1)..]);
            }).ToList();
            if (document.RootElement.TryGetProperty("added_tokens", out var added))
            {
                foreach (var token in added.EnumerateArray())
                {
                    vocabulary.TryAdd(token.GetProperty("content").GetString()!, token.GetProperty("id").GetInt32());
                }
            }

            return new Gpt2Tokenizer(vocabulary, merges, Path.GetFileName(path));
        }
        catch (Exception error) when (error is JsonException or KeyNotFoundException or InvalidOperationException or ArgumentException or FormatException)
        {
            throw new HeadLensException($"{Path.GetFileName(path)}: not a BPE tokenizer.json ({InputFile.Reason(error)})");
        }
    }

    // Llama-style tokenizer.json files are BPE too, but over SentencePiece pieces ("▁" for spaces, byte fallback):
    // reading them as GPT-2's byte-level BPE would give wrong ids without an error, so they are refused by name.
    private static void RequireByteLevelBpe(string path, JsonElement root, JsonElement model)
    {
        string file = Path.GetFileName(path);
        if (model.TryGetProperty("type", out var type) && type.GetString() != "BPE")
        {
            throw new HeadLensException($"{file}: model.type is '{type}', HeadLens reads byte-level BPE tokenizers");
        }

        bool byteFallback = model.TryGetProperty("byte_fallback", out var fallback) && fallback.ValueKind == JsonValueKind.True;
        bool metaspace = root.TryGetProperty("pre_tokenizer", out var pre) && pre.ValueKind == JsonValueKind.Object
            && pre.GetRawText().Contains("\"Metaspace\"", StringComparison.Ordinal);
        if (byteFallback || metaspace)
        {
            throw new HeadLensException($"{file}: a SentencePiece-style BPE (Metaspace / byte_fallback) tokenizer; HeadLens reads GPT-2 byte-level BPE from tokenizer.json, and SentencePiece vocabularies from llama2.c's tokenizer.bin");
        }
    }

    public int[] Encode(string text)
    {
        var ids = new List<int>();
        foreach (Match word in pattern.Matches(text))
        {
            if (!cache.TryGetValue(word.Value, out var pieces))
            {
                pieces = EncodeWord(word.Value);
                cache[word.Value] = pieces;
            }

            ids.AddRange(pieces);
        }

        return [.. ids];
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        var bytes = new List<byte>();
        foreach (int id in ids)
        {
            foreach (char c in TokenString(id))
            {
                if (CharToByte.TryGetValue(c, out byte b))
                {
                    bytes.Add(b);
                }
                else
                {
                    bytes.AddRange(Encoding.UTF8.GetBytes(c.ToString()));
                }
            }
        }

        return Encoding.UTF8.GetString([.. bytes]);
    }

    public string TokenText(int id) => Decode([id]);

    /// <summary>Writes vocab.json and merges.txt as Hugging Face's GPT2Tokenizer reads them (each to a temporary file, then renamed).</summary>
    public void Save(string directory)
    {
        WriteAtomically(Path.Combine(directory, "vocab.json"), JsonSerializer.Serialize(encoder));
        WriteAtomically(Path.Combine(directory, "merges.txt"), "#version: 0.2\n" + string.Concat(merges.Select(m => $"{m.Item1} {m.Item2}\n")));
    }

    private static void WriteAtomically(string path, string text)
    {
        string temporary = path + ".tmp-" + Guid.NewGuid().ToString("N");
        File.WriteAllText(temporary, text);
        File.Move(temporary, path, overwrite: true);
    }

    private string TokenString(int id) =>
        (uint)id < (uint)decoder.Length && decoder[id] is { } token
            ? token
            : throw new HeadLensException($"token id {id} is not in the vocabulary of {decoder.Length}");

    private int[] EncodeWord(string word)
    {
        var symbols = Encoding.UTF8.GetBytes(word).Select(b => ByteToChar[b].ToString()).ToList();
        // Llama 3's tokenizer takes a whole word that is in the vocabulary as it is (Hugging Face's ignore_merges).
        if (PreTokenizer == BytePreTokenizer.Llama3 && encoder.TryGetValue(string.Concat(symbols), out int whole))
        {
            return [whole];
        }

        while (symbols.Count > 1)
        {
            int bestRank = int.MaxValue, best = -1;
            for (int i = 0; i + 1 < symbols.Count; i++)
            {
                if (ranks.TryGetValue((symbols[i], symbols[i + 1]), out int rank) && rank < bestRank)
                {
                    bestRank = rank;
                    best = i;
                }
            }

            if (best < 0)
            {
                break;
            }

            // Merge every occurrence of the best pair, left to right, as GPT-2's reference does.
            var (left, right) = (symbols[best], symbols[best + 1]);
            var merged = new List<string>(symbols.Count);
            for (int i = 0; i < symbols.Count; i++)
            {
                if (i + 1 < symbols.Count && symbols[i] == left && symbols[i + 1] == right)
                {
                    merged.Add(left + right);
                    i++;
                }
                else
                {
                    merged.Add(symbols[i]);
                }
            }

            symbols = merged;
        }

        return symbols.Select(symbol => encoder.TryGetValue(symbol, out int id)
            ? id
            : throw new HeadLensException($"{source}: the piece '{Escape(symbol)}' is not in the vocabulary")).ToArray();
    }

    // GPT-2's map from bytes to printable characters: printable Latin-1 bytes map to themselves, the rest to 256+.
    private static char[] BuildByteMap()
    {
        var map = new char[256];
        int next = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)(256 + next++);
        }

        return map;
    }

    // File text in a one-line message: control characters escaped, at most 40 characters.
    private static string Escape(string text)
    {
        string shown = text.Length > 40 ? text[..40] + "…" : text;
        return string.Concat(shown.Select(c => char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString()));
    }

    private static string ReadFile(string path) =>
        InputFile.ReadAllText(path, InputFile.TokenizerLimit);

    /// <summary>GPT-2's pre-tokenisation: the words BPE merges never cross.</summary>
    internal static IEnumerable<string> Words(string text) => WordPattern().Matches(text).Select(match => match.Value);

    /// <summary>A word's bytes as GPT-2's printable characters, one symbol per byte.</summary>
    internal static List<string> ByteSymbols(string word) => Encoding.UTF8.GetBytes(word).Select(b => ByteToChar[b].ToString()).ToList();

    internal static IEnumerable<string> AllByteSymbols => ByteToChar.Select(c => c.ToString());

    [GeneratedRegex(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", RegexOptions.CultureInvariant)]
    private static partial Regex WordPattern();

    // Llama 3's pattern (tokenizer.json of Meta-Llama-3; llama.cpp's LLAMA3 pre-tokenizer): case-insensitive
    // contractions, letters with at most one leading non-letter, digits by threes, symbols with trailing newlines.
    [GeneratedRegex(@"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+", RegexOptions.CultureInvariant)]
    private static partial Regex Llama3Pattern();

    // Qwen2's: Llama 3's with single digits.
    [GeneratedRegex(@"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+", RegexOptions.CultureInvariant)]
    private static partial Regex Qwen2Pattern();
}

/// <summary>The word patterns byte-level BPE vocabularies are used with (GGUF's tokenizer.ggml.pre).</summary>
public enum BytePreTokenizer
{
    /// <summary>GPT-2's ("gpt-2").</summary>
    Gpt2,

    /// <summary>Llama 3's ("llama-bpe"), with whole-word lookup before merging.</summary>
    Llama3,

    /// <summary>Qwen2's ("qwen2").</summary>
    Qwen2,
}
