using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace HeadLens.Tokenization;

/// <summary>
/// WordPiece for BERT-family encoders, written to give exactly the ids of Hugging Face's tokenizer for the model
/// (BertNormalizer, BertPreTokenizer, WordPiece), checked against that library's output on 1,291 texts:
///   1. special tokens written in the text ([CLS], [SEP], [UNK], [PAD], [MASK]) are kept whole;
///   2. clean: drop NUL, U+FFFD and every "other" character (control, format, unassigned, private use) except
///      tab/CR/LF; every white-space character becomes a space; each CJK ideograph becomes a word of its own;
///   3. uncased models only: decompose (NFD), drop non-spacing marks ("naïve" → "naive", "한" → "ᄒ", "ᅡ", "ᆫ"), lower-case;
///   4. words: split at spaces, and every punctuation character (ASCII punctuation, including $ + &lt; = &gt; ^ ` | ~,
///      and Unicode P* categories) is a word of its own;
///   5. each word: greedy longest match from the left, continuation pieces prefixed "##"; [UNK] for the whole word
///      when some part cannot be matched or when it has over 100 characters.
/// Own code rather than Microsoft.ML.Tokenizers' BertTokenizer, which differs from Hugging Face here: it drops emoji and
/// ASCII symbols such as '$' (Hugging Face: [UNK] and a token), keeps "a_b" whole, keeps Hangul syllables whole,
/// and glues words separated by a tab.
/// <see cref="Encode"/> gives the text's tokens only (as <see cref="ITokenizer"/> requires); a model's input is
/// <see cref="EncodeForModel"/> ([CLS] text [SEP]) or <see cref="EncodePair"/> ([CLS] a [SEP] b [SEP] with token types).
/// </summary>
public sealed class BertWordPieceTokenizer : ITokenizer
{
    public const string VocabularyFile = "vocab.txt";

    private const string ContinuationPrefix = "##";

    // Hugging Face's max_input_chars_per_word: longer words are one [UNK].
    private const int MaxWordCharacters = 100;

    private static readonly string[] SpecialTokens = ["[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]"];

    private readonly string[] vocabulary;

    // Word-initial pieces, and continuation pieces keyed without their "##", both looked up by span.
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> initialPieces;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> continuationPieces;

    private BertWordPieceTokenizer(string[] vocabulary, bool lowerCase)
    {
        // Accent stripping decomposes text (NFD), which .NET does through ICU; a process run with
        // InvariantGlobalization leaves "ï" whole and "naïvely" becomes [UNK]. Refuse rather than tokenize wrongly.
        if (lowerCase && "\u00EF".Normalize(NormalizationForm.FormD).Length != 2)
        {
            throw new HeadLensException("uncased WordPiece needs Unicode normalization, which this process lacks (it runs with InvariantGlobalization; set it to false)");
        }

        this.vocabulary = vocabulary;
        LowerCase = lowerCase;
        var initial = new Dictionary<string, int>(StringComparer.Ordinal);
        var continuation = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = 0; id < vocabulary.Length; id++)
        {
            string token = vocabulary[id];
            // A token listed twice keeps its first id, as Hugging Face's vocabulary reader does.
            if (token.StartsWith(ContinuationPrefix, StringComparison.Ordinal) && token.Length > ContinuationPrefix.Length)
            {
                continuation.TryAdd(token[ContinuationPrefix.Length..], id);
            }

            initial.TryAdd(token, id);
        }

        initialPieces = initial.GetAlternateLookup<ReadOnlySpan<char>>();
        continuationPieces = continuation.GetAlternateLookup<ReadOnlySpan<char>>();
        ClsId = initial["[CLS]"];
        SepId = initial["[SEP]"];
        PadId = initial["[PAD]"];
        UnknownId = initial["[UNK]"];
    }

    /// <summary>Whether text is stripped of accents and lower-cased first (an uncased model).</summary>
    public bool LowerCase { get; }

    public int VocabSize => vocabulary.Length;

    /// <summary>Not set: an encoder's input is framed by [CLS] and [SEP] (<see cref="EncodeForModel"/>), not a BOS.</summary>
    public int? BosId => null;

    public bool AddsBos => false;

    public int? EosId => null;

    public int ClsId { get; }

    public int SepId { get; }

    public int PadId { get; }

    public int UnknownId { get; }

    /// <summary>Reads a vocab.txt (one token per line; the line number is the id).</summary>
    public static BertWordPieceTokenizer FromVocabulary(string path, bool lowerCase = true)
    {
        // A regular file only: a FIFO under this name would block the open forever.
        _ = InputFile.Check(path, InputFile.TokenizerLimit);

        using var stream = File.OpenRead(path);
        return FromVocabulary(stream, Path.GetFileName(path), lowerCase);
    }

    /// <summary>Reads a vocab.txt from a stream (an embedded resource); <paramref name="source"/> names it in errors.</summary>
    public static BertWordPieceTokenizer FromVocabulary(Stream stream, string source, bool lowerCase = true)
    {
        using var reader = new StreamReader(stream, new UTF8Encoding(false, throwOnInvalidBytes: true));
        string[] lines;
        try
        {
            lines = reader.ReadToEnd().Split('\n').Select(line => line.TrimEnd('\r')).ToArray();
        }
        catch (DecoderFallbackException)
        {
            throw new HeadLensException($"{source}: not valid UTF-8");
        }

        if (lines.Length > 0 && lines[^1].Length == 0)
        {
            lines = lines[..^1];
        }

        foreach (string special in SpecialTokens)
        {
            if (!lines.Contains(special))
            {
                throw new HeadLensException($"{source}: the vocabulary has no {special} token");
            }
        }

        return new BertWordPieceTokenizer(lines, lowerCase);
    }

    /// <summary>The text's WordPiece ids, without [CLS]/[SEP].</summary>
    public int[] Encode(string text)
    {
        var ids = new List<int>();
        int start = 0;
        while (NextSpecialToken(text, start) is var (at, token) && at >= 0)
        {
            EncodePlain(text.AsSpan(start, at - start), ids);
            ids.Add(initialPieces[token]);
            start = at + token.Length;
        }

        EncodePlain(text.AsSpan(start), ids);
        return [.. ids];
    }

    /// <summary>[CLS] text [SEP]: what a BERT model is fed for one text (its token types are all 0).</summary>
    public int[] EncodeForModel(string text) => [ClsId, .. Encode(text), SepId];

    /// <summary>[CLS] a [SEP] b [SEP] with token types 0 for [CLS] a [SEP] and 1 for b [SEP].</summary>
    public (int[] Ids, int[] TokenTypes) EncodePair(string first, string second)
    {
        int[] a = Encode(first), b = Encode(second);
        int[] ids = [ClsId, .. a, SepId, .. b, SepId];
        int[] types = [.. Enumerable.Repeat(0, a.Length + 2), .. Enumerable.Repeat(1, b.Length + 1)];
        return (ids, types);
    }

    /// <summary>
    /// The text the ids stand for: tokens joined by spaces, continuation pieces (##) joined to their word, then
    /// Hugging Face's clean-up of spaces before punctuation and contractions; special tokens kept.
    /// </summary>
    public string Decode(ReadOnlySpan<int> ids)
    {
        var text = new StringBuilder();
        foreach (int id in ids)
        {
            string token = TokenText(id);
            if (token.StartsWith(ContinuationPrefix, StringComparison.Ordinal) && token.Length > ContinuationPrefix.Length)
            {
                text.Append(token, ContinuationPrefix.Length, token.Length - ContinuationPrefix.Length);
            }
            else
            {
                text.Append(text.Length > 0 ? " " : "").Append(token);
            }
        }

        return text.Replace(" .", ".").Replace(" ?", "?").Replace(" !", "!").Replace(" ,", ",").Replace(" ' ", "'")
            .Replace(" n't", "n't").Replace(" 'm", "'m").Replace(" 's", "'s").Replace(" 've", "'ve").Replace(" 're", "'re")
            .ToString();
    }

    /// <summary>The vocabulary entry, as the viewer shows it ("##ing" keeps its continuation mark).</summary>
    public string TokenText(int id)
    {
        if ((uint)id >= (uint)vocabulary.Length)
        {
            throw new HeadLensException($"token id {id} is outside the vocabulary (0..{vocabulary.Length - 1})");
        }

        return vocabulary[id];
    }

    /// <summary>The token strings for a sequence of ids (for display).</summary>
    public string[] TokenTexts(ReadOnlySpan<int> ids)
    {
        var texts = new string[ids.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            texts[i] = TokenText(ids[i]);
        }

        return texts;
    }

    public void Save(string directory) =>
        File.WriteAllText(Path.Combine(directory, VocabularyFile), string.Join('\n', vocabulary) + "\n");

    // The leftmost special token written in text at or after start (the longest when two begin at one place).
    private static (int At, string Token) NextSpecialToken(string text, int start)
    {
        (int at, string token) best = (-1, "");
        foreach (string special in SpecialTokens)
        {
            int at = text.IndexOf(special, start, StringComparison.Ordinal);
            if (at >= 0 && (best.at < 0 || at < best.at || (at == best.at && special.Length > best.token.Length)))
            {
                best = (at, special);
            }
        }

        return best;
    }

    // Steps 2–5 for text without special tokens.
    private void EncodePlain(ReadOnlySpan<char> text, List<int> ids)
    {
        if (text.IsEmpty)
        {
            return;
        }

        string normalized = Normalize(text);
        int wordStart = 0;
        for (int i = 0; i < normalized.Length;)
        {
            Rune.DecodeFromUtf16(normalized.AsSpan(i), out var rune, out int width);
            if (rune.Value == ' ' || IsPunctuation(rune))
            {
                AddWord(normalized.AsSpan(wordStart, i - wordStart), ids);
                if (rune.Value != ' ')
                {
                    AddWord(normalized.AsSpan(i, width), ids);
                }

                wordStart = i + width;
            }

            i += width;
        }

        AddWord(normalized.AsSpan(wordStart), ids);
    }

    // Steps 2 and 3: cleaned text in which every word boundary that is not punctuation is a space.
    private string Normalize(ReadOnlySpan<char> text)
    {
        var cleaned = new StringBuilder(text.Length + 8);
        foreach (var rune in text.EnumerateRunes())
        {
            int cp = rune.Value;
            if (cp is 0 or 0xFFFD || IsOther(rune))
            {
                continue;
            }

            if (Rune.IsWhiteSpace(rune))
            {
                cleaned.Append(' ');
            }
            else if (IsCjkIdeograph(cp))
            {
                cleaned.Append(' ').Append(rune.ToString()).Append(' ');
            }
            else
            {
                cleaned.Append(rune.ToString());
            }
        }

        if (!LowerCase)
        {
            return cleaned.ToString();
        }

        string decomposed = cleaned.ToString().Normalize(NormalizationForm.FormD);
        var result = new StringBuilder(decomposed.Length);
        foreach (var rune in decomposed.EnumerateRunes())
        {
            if (Rune.GetUnicodeCategory(rune) != UnicodeCategory.NonSpacingMark)
            {
                // Per character, as Hugging Face lower-cases (no context: a final capital sigma becomes σ, not ς).
                result.Append(Rune.ToLowerInvariant(rune).ToString());
            }
        }

        return result.ToString();
    }

    // Step 5: one word's pieces, or one [UNK].
    private void AddWord(ReadOnlySpan<char> word, List<int> ids)
    {
        if (word.IsEmpty)
        {
            return;
        }

        // Match boundaries fall between characters (code points), never inside a surrogate pair.
        Span<int> boundaries = stackalloc int[MaxWordCharacters + 1];
        int characters = 0;
        for (int i = 0; i < word.Length; i += char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1)
        {
            if (characters == MaxWordCharacters)
            {
                ids.Add(UnknownId);
                return;
            }

            boundaries[characters++] = i;
        }

        boundaries[characters] = word.Length;
        int mark = ids.Count;
        for (int start = 0; start < characters;)
        {
            int end = characters;
            int id = -1;
            for (; end > start; end--)
            {
                var piece = word[boundaries[start]..boundaries[end]];
                if ((start == 0 ? initialPieces : continuationPieces).TryGetValue(piece, out id))
                {
                    break;
                }
            }

            if (end == start)
            {
                CollectionsMarshal.SetCount(ids, mark);
                ids.Add(UnknownId);
                return;
            }

            ids.Add(id);
            start = end;
        }
    }

    // Unicode's "other" categories: control, format, surrogate, private use, unassigned — except tab, CR and LF.
    private static bool IsOther(Rune rune) => rune.Value is not ('\t' or '\n' or '\r')
        && Rune.GetUnicodeCategory(rune) is UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate
            or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned;

    // ASCII punctuation (symbols such as $, +, ^ and ` included) and every Unicode punctuation category.
    private static bool IsPunctuation(Rune rune) =>
        rune.Value is >= 33 and <= 47 or >= 58 and <= 64 or >= 91 and <= 96 or >= 123 and <= 126
        || Rune.GetUnicodeCategory(rune) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;

    // The CJK Unified Ideographs blocks (and their extensions and compatibility forms) that BERT splits per character;
    // kana and Hangul are not among them.
    private static bool IsCjkIdeograph(int cp) =>
        cp is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF or >= 0x20000 and <= 0x2A6DF or >= 0x2A700 and <= 0x2B73F
            or >= 0x2B740 and <= 0x2B81F or >= 0x2B820 and <= 0x2CEAF or >= 0xF900 and <= 0xFAFF or >= 0x2F800 and <= 0x2FA1F;
}
