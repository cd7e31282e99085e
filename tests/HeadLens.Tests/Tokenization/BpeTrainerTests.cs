using HeadLens.Tokenization;

namespace HeadLens.Tests.Tokenization;

public class BpeTrainerTests
{
    private const string Text = "the cat sat on the mat; the cat ate the rat. That hat? The cat's hat! 123 1234";

    [Fact]
    public void LearnsTheMostFrequentPairsFirstAndRoundTrips()
    {
        // A short text runs out of pairs seen twice before 280: the vocabulary stays smaller, never padded.
        var tokenizer = BpeTrainer.Train(Text, 280);
        Assert.InRange(tokenizer.VocabSize, 258, 280);
        Assert.Equal(tokenizer.VocabSize - 1, tokenizer.EosId);
        // "at" occurs in cat, sat, mat, ate, rat, That, hat, cat's: the most frequent pair of the text.
        Assert.True(tokenizer.Encode("at").Length == 1);
        Assert.True(tokenizer.Encode(" the cat").Length < " the cat".Length);
        foreach (string sample in new[] { Text, "unseen words: zebra, 😀, naïve\t\tend" })
        {
            Assert.Equal(sample, tokenizer.Decode(tokenizer.Encode(sample)));
        }
    }

    [Fact]
    public void IsDeterministicAndSavesAsGpt2Files()
    {
        var a = BpeTrainer.Train(Text, 300);
        var b = BpeTrainer.Train(Text, 300);
        Assert.Equal(a.Encode(Text), b.Encode(Text));
        string directory = Path.Combine(Path.GetTempPath(), "headlens-bpe-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
        try
        {
            a.Save(directory);
            Assert.Equal(a.Encode(Text), TokenizerLoader.FromDirectory(directory)!.Encode(Text));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void ReachesTheRequestedSizeOnARealCorpus()
    {
        string corpus = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Data", "kjv-excerpt.txt"))[..100_000];
        var tokenizer = BpeTrainer.Train(corpus, 600);
        Assert.Equal(600, tokenizer.VocabSize);
        int[] ids = tokenizer.Encode(corpus[..2000]);
        Assert.True(ids.Length < 2000 / 2.5, $"{ids.Length} tokens for 2000 characters: BPE should compress English well");
        Assert.Equal(corpus[..2000], tokenizer.Decode(ids));
    }

    [Fact]
    public void TooSmallAVocabularyIsRefused() =>
        Assert.Throws<HeadLensException>(() => BpeTrainer.Train(Text, 100));
}
