using System.Text;
using Microsoft.ML.Tokenizers;

namespace HeadLens.Tokenization;

/// <summary>
/// WordPiece for BERT-family encoders: Microsoft.ML.Tokenizers' <see cref="BertTokenizer"/>, set up as Hugging Face
/// sets up an uncased model (<c>do_lower_case</c>: lower-case, then strip accents, so "naïvely" → "naively"; split on
/// punctuation; each CJK character its own word; words over 100 characters → [UNK]). A well-kept library serves
/// here as well as own code would, so HeadLens wraps it; the tests check it against an independent WordPiece.
/// <see cref="Encode"/> gives the text's tokens only (as <see cref="ITokenizer"/> requires); a model's input is
/// <see cref="EncodeForModel"/> ([CLS] text [SEP]) or <see cref="EncodePair"/> ([CLS] a [SEP] b [SEP] with token types).
/// </summary>
public sealed class BertWordPieceTokenizer : ITokenizer
{
    public const string VocabularyFile = "vocab.txt";
    private readonly BertTokenizer tokenizer;
    private readonly string[] vocabulary;

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
        var text = new MemoryStream(Encoding.UTF8.GetBytes(string.Join('\n', vocabulary) + "\n"));
        tokenizer = BertTokenizer.Create(text, new BertOptions
        {
            LowerCaseBeforeTokenization = lowerCase,
            RemoveNonSpacingMarks = lowerCase, // Hugging Face strips accents exactly when it lower-cases (strip_accents=None)
            ApplyBasicTokenization = true,
            IndividuallyTokenizeCjk = true,
            SplitOnSpecialTokens = true,
        });
    }

    /// <summary>Whether text is lower-cased and stripped of accents first (an uncased model).</summary>
    public bool LowerCase { get; }

    public int VocabSize => vocabulary.Length;

    /// <summary>Not set: an encoder's input is framed by [CLS] and [SEP] (<see cref="EncodeForModel"/>), not a BOS.</summary>
    public int? BosId => null;

    public bool AddsBos => false;

    public int? EosId => null;

    public int ClsId => tokenizer.ClassificationTokenId;

    public int SepId => tokenizer.SeparatorTokenId;

    public int PadId => tokenizer.PaddingTokenId;

    public int UnknownId => tokenizer.UnknownTokenId;

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

        foreach (string special in new[] { "[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]" })
        {
            if (!lines.Contains(special))
            {
                throw new HeadLensException($"{source}: the vocabulary has no {special} token");
            }
        }

        return new BertWordPieceTokenizer(lines, lowerCase);
    }

    /// <summary>The text's WordPiece ids, without [CLS]/[SEP].</summary>
    public int[] Encode(string text) => [.. tokenizer.EncodeToIds(Prepare(text), addSpecialTokens: false)];

    /// <summary>[CLS] text [SEP]: what a BERT model is fed for one text (its token types are all 0).</summary>
    public int[] EncodeForModel(string text) => [.. tokenizer.EncodeToIds(Prepare(text), addSpecialTokens: true)];

    /// <summary>[CLS] a [SEP] b [SEP] with token types 0 for [CLS] a [SEP] and 1 for b [SEP].</summary>
    public (int[] Ids, int[] TokenTypes) EncodePair(string first, string second)
    {
        int[] a = Encode(first), b = Encode(second);
        return ([.. tokenizer.BuildInputsWithSpecialTokens(a, b)], [.. tokenizer.CreateTokenTypeIdsFromSequences(a, b)]);
    }

    /// <summary>The text the ids stand for: continuation pieces (##) joined to their word, special tokens kept.</summary>
    public string Decode(ReadOnlySpan<int> ids)
    {
        foreach (int id in ids)
        {
            CheckId(id);
        }

        return tokenizer.Decode(ids.ToArray(), skipSpecialTokens: false);
    }

    /// <summary>The vocabulary entry, as the viewer shows it ("##ing" keeps its continuation mark).</summary>
    public string TokenText(int id)
    {
        CheckId(id);
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

    // Two differences from Hugging Face that the differential test found in BertTokenizer 2.0.1, fixed before it sees
    // the text: (1) Hugging Face turns every whitespace character into a space; BertTokenizer drops tabs and newlines
    // as control characters, gluing "a\tb" into one word "ab"; (2) an uncased model decomposes the text (NFD), which
    // splits Hangul syllables into jamo ("한" → "ᄒ", "ᅡ", "ᆫ"); BertTokenizer only strips marks and gives [UNK].
    private string Prepare(string text)
    {
        if (LowerCase)
        {
            text = text.Normalize(NormalizationForm.FormD);
        }

        if (!text.Any(c => c != ' ' && char.IsWhiteSpace(c)))
        {
            return text;
        }

        return string.Create(text.Length, text, (span, source) =>
        {
            for (int i = 0; i < span.Length; i++)
            {
                span[i] = char.IsWhiteSpace(source[i]) ? ' ' : source[i];
            }
        });
    }

    private void CheckId(int id)
    {
        if ((uint)id >= (uint)vocabulary.Length)
        {
            throw new HeadLensException($"token id {id} is outside the vocabulary (0..{vocabulary.Length - 1})");
        }
    }
}
