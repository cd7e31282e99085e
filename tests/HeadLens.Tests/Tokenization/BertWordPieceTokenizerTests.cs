using System.Text;
using System.Text.Json;
using HeadLens.Tests.Oracles;
using HeadLens.Tokenization;
using Microsoft.ML.Tokenizers;

namespace HeadLens.Tests.Tokenization;

public sealed class BertWordPieceTokenizerTests
{
    private static BertWordPieceTokenizer Tokenizer => MiniLm.Tokenizer;

    /// <summary>Fixed sentences with the ids Hugging Face's tokenizer gives for all-MiniLM-L6-v2 (bert-base-uncased's vocabulary).</summary>
    [Fact]
    public void KnownSentencesGiveHuggingFaceIds()
    {
        Assert.Equal([101, 7592, 1010, 2088, 999, 102], Tokenizer.EncodeForModel("Hello, world!"));
        Assert.Equal(Tokenizer.Encode("naively"), Tokenizer.Encode("naïvely"));
        Assert.Equal(["the", "animal", "didn", "'", "t"], Tokenizer.TokenTexts(Tokenizer.Encode("The animal didn't")));
        Assert.Equal([Tokenizer.UnknownId], Tokenizer.Encode(new string('a', 101)));
        Assert.NotEqual([Tokenizer.UnknownId], Tokenizer.Encode(new string('a', 100)));
    }

    /// <summary>
    /// Where Microsoft.ML.Tokenizers' BertTokenizer 2.0.1 departs from Hugging Face (the reason HeadLens has its own
    /// WordPiece): the ids Hugging Face's tokenizers 0.23.2 gives.
    /// </summary>
    [Fact]
    public void FollowsHuggingFaceWhereBertTokenizerDoesNot()
    {
        Assert.Equal([100], Tokenizer.Encode("😀"));                                            // an emoji word is [UNK], not dropped
        Assert.Equal([7488, 1035, 2553], Tokenizer.Encode("snake_case"));                      // '_' is punctuation
        Assert.Equal([1002, 2531], Tokenizer.Encode("$100"));                                  // '$' is a token
        Assert.Equal([1469, 30006, 30021, 29991, 30014, 30020, 29999, 30008], Tokenizer.Encode("한국어")); // jamo after NFD
        Assert.Equal(Tokenizer.Encode("a b"), Tokenizer.Encode("a\tb"));                       // a tab separates words
        Assert.Equal([1169, 29722, 29730, 29733], Tokenizer.Encode("ΟΔΟΣ"));                   // lower-cased per character: σ
    }

    [Fact]
    public void PairsCarryTokenTypes()
    {
        var (ids, types) = Tokenizer.EncodePair("Where is it?", "Here.");
        int[] a = Tokenizer.Encode("Where is it?"), b = Tokenizer.Encode("Here.");
        Assert.Equal([Tokenizer.ClsId, .. a, Tokenizer.SepId, .. b, Tokenizer.SepId], ids);
        Assert.Equal([.. Enumerable.Repeat(0, a.Length + 2), .. Enumerable.Repeat(1, b.Length + 1)], types);
    }

    [Fact]
    public void DecodesAndShowsTokens()
    {
        int[] ids = Tokenizer.EncodeForModel("Tokenization works");
        Assert.Equal("[CLS] tokenization works [SEP]", Tokenizer.Decode(ids));
        Assert.Contains("##ization", Tokenizer.TokenTexts(ids));
        Assert.Equal("the animal didn't cross, did it?", Tokenizer.Decode(Tokenizer.Encode("The animal didn't cross, did it?")));
        Assert.Throws<HeadLensException>(() => Tokenizer.TokenText(Tokenizer.VocabSize));
    }

    /// <summary>
    /// 1,291 texts (every rule of the normaliser, pre-tokenizer and WordPiece: accents, CJK, Hangul, emoji, symbols,
    /// control and format characters, odd white space, words around the 100-character limit, written special tokens)
    /// with the ids Hugging Face's own tokenizer library gives (tests/reference/wordpiece_ids.js): all equal.
    /// </summary>
    [Fact]
    public void IdsEqualHuggingFaceTokenizersOnGeneratedTexts()
    {
        using var fixture = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "wordpiece", "hf-uncased-ids.json")));
        int compared = 0;
        foreach (var item in fixture.RootElement.GetProperty("cases").EnumerateArray())
        {
            string text = item.GetProperty("text").GetString()!;
            int[] expected = [.. item.GetProperty("ids").EnumerateArray().Select(id => id.GetInt32())];
            int[] actual = Tokenizer.Encode(text);
            Assert.True(expected.SequenceEqual(actual),
                $"{JsonSerializer.Serialize(text)}: Hugging Face [{string.Join(", ", expected)}], HeadLens [{string.Join(", ", actual)}]");
            compared++;
        }

        Assert.Equal(1291, compared);
    }

    /// <summary>
    /// 1,200 generated sentences — accents, CJK, Cyrillic, Greek, Arabic, punctuation runs, very long words, mixed case,
    /// odd spacing — without the characters where BertTokenizer departs from Hugging Face (above): the ids equal
    /// Microsoft.ML.Tokenizers' BertTokenizer set up as Hugging Face sets up an uncased model.
    /// </summary>
    [Fact]
    public void IdsEqualMicrosoftBertTokenizerOnGeneratedSentences()
    {
        var vocabulary = string.Join('\n', Enumerable.Range(0, Tokenizer.VocabSize).Select(Tokenizer.TokenText)) + "\n";
        var bert = BertTokenizer.Create(new MemoryStream(Encoding.UTF8.GetBytes(vocabulary)), new BertOptions
        {
            LowerCaseBeforeTokenization = true,
            RemoveNonSpacingMarks = true,
            ApplyBasicTokenization = true,
            IndividuallyTokenizeCjk = true,
            SplitOnSpecialTokens = true,
        });
        string[] words = ["the", "Bank", "river", "naïve", "Café", "résumé", "Ångström", "über", "façade", "東京", "北京大学", "こんにちは",
            "don't", "U.S.A.", "e-mail", "...", "!!!", "?!", "(x)", "[MASK]", "Привет", "Ελλάδα", "مرحبا",
            "tokenization", "unbelievably", "MiniLM", "42", "3.14159", "#hashtag", "@user", "50%", "«quoted»", "—", "…"];
        var random = new Random(12);
        int compared = 0;
        for (int n = 0; n < 1200; n++)
        {
            var text = new StringBuilder();
            int count = 1 + random.Next(12);
            for (int w = 0; w < count; w++)
            {
                string word = random.Next(10) switch
                {
                    0 => new string((char)('a' + random.Next(26)), 90 + random.Next(20)), // around the 100-character limit
                    1 => string.Concat(Enumerable.Range(0, 1 + random.Next(6)).Select(_ => ".,;:!?-()'\""[random.Next(11)])),
                    2 => words[random.Next(words.Length)].ToUpperInvariant(),
                    _ => words[random.Next(words.Length)],
                };
                text.Append(word).Append(random.Next(6) switch { 0 => "", 1 => "  ", 2 => "\u00A0", _ => " " });
            }

            string sentence = text.ToString();
            int[] expected = [.. bert.EncodeToIds(sentence.Normalize(NormalizationForm.FormD), addSpecialTokens: false)];
            Assert.True(expected.SequenceEqual(Tokenizer.Encode(sentence)),
                $"'{sentence}': BertTokenizer [{string.Join(", ", expected)}], HeadLens [{string.Join(", ", Tokenizer.Encode(sentence))}]");
            compared++;
        }

        Assert.Equal(1200, compared);
    }
}
