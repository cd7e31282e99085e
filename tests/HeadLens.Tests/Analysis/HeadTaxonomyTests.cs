using HeadLens.Analysis;
using HeadLens.Tests.Tokenization;
using HeadLens.Tokenization;

namespace HeadLens.Tests.Analysis;

/// <summary>The probes' policy: BOS iff the tokenizer adds one, stop tokens kept out, delimiters from decoded text.</summary>
public class HeadTaxonomyTests
{
    [Fact]
    public void DelimitersAreReadFromDecodedTokensNotDisplayLabels()
    {
        // GPT-2 shows a space as "Ġ" and a newline as "Ċ": the decoded token decides, so both are delimiters, and a
        // word with its space is not.
        var gpt2 = Gpt2TokenizerTests.Load();
        int[] ids = gpt2.Encode(" the cat,\n");
        var probe = HeadTaxonomy.Probe(HeadProbe.TextName, ids, gpt2);
        Assert.Equal(ids.Select(id => gpt2.Decode([id]) is "," or "\n" or " "), probe.Delimiters);
        Assert.Contains(true, probe.Delimiters);
        // Byte tokens: a space and a period are delimiters; half of "é" (U+FFFD alone) and a letter are not; the
        // display labels themselves are just symbols a tokenizer might really produce.
        var bytes = new ByteTokenizer();
        Assert.Equal([true, true, false, false, false, true], HeadTaxonomy.Probe("t", bytes.Encode(" .éa\n"), bytes).Delimiters);
        Assert.False(HeadTaxonomy.IsDelimiter("\uFFFD"));
        Assert.False(HeadTaxonomy.IsDelimiter(""));
        Assert.Empty(HeadTaxonomy.Probe("t", ids, tokenizer: null).Delimiters);
    }

    [Fact]
    public void TheRepeatedBlockStartsWithBosExactlyWhenTheTokenizerAddsOne()
    {
        var sentencePiece = new SentencePieceTokenizer(SentencePieceTokenizerTests.Vocabulary());
        int[] withBos = HeadTaxonomy.RepeatedIds(sentencePiece.VocabSize, 33, sentencePiece, seed: 2);
        Assert.Equal(1, withBos[0]);
        Assert.Equal(33, withBos.Length);
        Assert.Equal(withBos[1..17], withBos[17..]);
        Assert.DoesNotContain(1, withBos[1..]);
        Assert.DoesNotContain(2, withBos);
        int[] without = HeadTaxonomy.RepeatedIds(256, 33, new ByteTokenizer(), seed: 2);
        Assert.Equal(32, without.Length);
        Assert.Equal(without[..16], without[16..]);
    }

    [Fact]
    public void TheTokenizerOwnsBosAndTheStopTokens()
    {
        ITokenizer sentencePiece = new SentencePieceTokenizer(SentencePieceTokenizerTests.Vocabulary());
        Assert.Equal([1, .. sentencePiece.Encode("hello")], sentencePiece.EncodeForModel("hello"));
        Assert.Equal(new HashSet<int> { 1, 2 }, sentencePiece.StopIds);
        ITokenizer gpt2 = Gpt2TokenizerTests.Load();
        Assert.Equal(gpt2.Encode("hello"), gpt2.EncodeForModel("hello"));
        Assert.Equal(new HashSet<int> { 50256 }, gpt2.StopIds);
        ITokenizer bytes = new ByteTokenizer();
        Assert.Equal(bytes.Encode("hi"), bytes.EncodeForModel("hi"));
        Assert.Empty(bytes.StopIds);
    }
}
