using System.Globalization;
using System.Text;

namespace HeadLens.Tests.Oracles;

/// <summary>
/// An independent WordPiece, written from Hugging Face's BasicTokenizer and WordpieceTokenizer (transformers'
/// tokenization_bert.py) for an uncased model: drop NUL, U+FFFD and control characters, whitespace to spaces, spaces
/// around CJK characters (special tokens written in the text kept whole), split on whitespace, lower-case, NFD and drop non-spacing marks, split on punctuation,
/// then greedy longest-match WordPiece with "##" continuations, [UNK] for a word of over 100 characters or one
/// that cannot be covered.
/// </summary>
internal sealed class ReferenceWordPiece(IReadOnlyList<string> vocabulary)
{
    private readonly Dictionary<string, int> ids = vocabulary.Select((token, id) => (token, id)).ToDictionary(p => p.token, p => p.id);

    private static readonly string[] Specials = ["[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]"];

    /// <summary>Special tokens written in the text are kept whole (Hugging Face splits added tokens out first).</summary>
    public List<int> Encode(string text)
    {
        var result = new List<int>();
        int start = 0;
        while (true)
        {
            var next = Specials.Select(t => (Token: t, At: text.IndexOf(t, start, StringComparison.Ordinal))).Where(p => p.At >= 0)
                .OrderBy(p => p.At).FirstOrDefault();
            if (next.Token is null)
            {
                result.AddRange(EncodePlain(text[start..]));
                return result;
            }

            result.AddRange(EncodePlain(text[start..next.At]));
            result.Add(ids[next.Token]);
            start = next.At + next.Token.Length;
        }
    }

    private List<int> EncodePlain(string text)
    {
        var cleaned = new StringBuilder();
        foreach (var rune in text.EnumerateRunes())
        {
            int cp = rune.Value;
            if (cp == 0 || cp == 0xFFFD || IsControl(rune))
            {
                continue;
            }

            if (IsWhitespace(rune))
            {
                cleaned.Append(' ');
            }
            else if (IsCjk(cp))
            {
                cleaned.Append(' ').Append(rune.ToString()).Append(' ');
            }
            else
            {
                cleaned.Append(rune.ToString());
            }
        }

        var result = new List<int>();
        foreach (string token in cleaned.ToString().Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            string lowered = token.ToLowerInvariant().Normalize(NormalizationForm.FormD);
            var stripped = new StringBuilder();
            foreach (var rune in lowered.EnumerateRunes())
            {
                if (Rune.GetUnicodeCategory(rune) != UnicodeCategory.NonSpacingMark)
                {
                    stripped.Append(rune.ToString());
                }
            }

            var word = new StringBuilder();
            foreach (var rune in stripped.ToString().EnumerateRunes())
            {
                if (IsPunctuation(rune))
                {
                    Flush(word, result);
                    Flush(new StringBuilder(rune.ToString()), result);
                }
                else
                {
                    word.Append(rune.ToString());
                }
            }

            Flush(word, result);
        }

        return result;
    }

    private void Flush(StringBuilder word, List<int> into)
    {
        if (word.Length == 0)
        {
            return;
        }

        string text = word.ToString();
        word.Clear();
        var runes = text.EnumerateRunes().Select(r => r.ToString()).ToArray();
        if (runes.Length > 100)
        {
            into.Add(ids["[UNK]"]);
            return;
        }

        var pieces = new List<int>();
        int start = 0;
        while (start < runes.Length)
        {
            int end = runes.Length, found = -1;
            while (start < end)
            {
                string piece = (start > 0 ? "##" : "") + string.Concat(runes[start..end]);
                if (ids.TryGetValue(piece, out int id))
                {
                    found = id;
                    break;
                }

                end--;
            }

            if (found < 0)
            {
                into.Add(ids["[UNK]"]);
                return;
            }

            pieces.Add(found);
            start = end;
        }

        into.AddRange(pieces);
    }

    private static bool IsWhitespace(Rune r) => r.Value is ' ' or '\t' or '\n' or '\r' || Rune.GetUnicodeCategory(r) == UnicodeCategory.SpaceSeparator;

    private static bool IsControl(Rune r) => r.Value is not ('\t' or '\n' or '\r')
        && Rune.GetUnicodeCategory(r) is UnicodeCategory.Control or UnicodeCategory.Format;

    private static bool IsPunctuation(Rune r) => r.Value is >= 33 and <= 47 or >= 58 and <= 64 or >= 91 and <= 96 or >= 123 and <= 126
        || Rune.GetUnicodeCategory(r) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;

    private static bool IsCjk(int cp) => cp is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF or >= 0x20000 and <= 0x2A6DF
        or >= 0x2A700 and <= 0x2B73F or >= 0x2B740 and <= 0x2B81F or >= 0x2B820 and <= 0x2CEAF or >= 0xF900 and <= 0xFAFF
        or >= 0x2F800 and <= 0x2FA1F;
}
