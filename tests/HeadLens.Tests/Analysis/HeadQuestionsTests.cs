using HeadLens.Analysis;
using HeadLens.Tokenization;

namespace HeadLens.Tests.Analysis;

public class HeadQuestionsTests
{
    private static readonly ByteTokenizer Bytes = new();

    [Fact]
    public void WordsMapToTheirTokens()
    {
        const string Text = "the cat sat on the mat because it was tired";
        int[] ids = Bytes.Encode(Text);
        // Byte tokens: one per character, so a word's tokens are its character positions.
        Assert.Equal([31, 32], HeadQuestions.WordPositions(Bytes, ids, "it"));
        Assert.Equal([4, 5, 6], HeadQuestions.WordPositions(Bytes, ids, "cat"));
        // "the" before the token of "mat": the nearest one (position 15), not the first.
        Assert.Equal([15, 16, 17], HeadQuestions.WordPositions(Bytes, ids, "the", before: 19));
        // Whole words only: "at" occurs inside "cat", "sat" and "mat" but never alone.
        Assert.Throws<HeadLensException>(() => HeadQuestions.WordPositions(Bytes, ids, "at"));
        Assert.Throws<HeadLensException>(() => HeadQuestions.WordPositions(Bytes, ids, "tired", before: 5));
    }

    [Fact]
    public void PairsRankHeadsByAttentionToTheTargetWord()
    {
        const int T = 4;
        // Head 0 sends query 3 to keys 1 and 2 (0.3 + 0.3), head 1 to key 0 only, head 2 to key 2 (0.9).
        float[] layer =
        [
            1, 0, 0, 0, .5f, .5f, 0, 0, .3f, .3f, .4f, 0, .1f, .3f, .3f, .3f,
            1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0,
            1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, .9f, .1f,
        ];
        var ranked = HeadQuestions.RankPair([layer], heads: 3, T, from: 3, to: [1, 2]);
        Assert.Equal([2, 0, 1], ranked.Select(pair => pair.Head));
        Assert.Equal(0.9, ranked[0].Weight, 6);
        Assert.Equal(0.6, ranked[1].Weight, 6);
        Assert.Equal(0.0, ranked[2].Weight, 6);
    }

    [Fact]
    public void LayerSummaryAveragesAndCountsKinds()
    {
        HeadSummary Head(int layer, string kind, double distance, double broad) =>
            new(layer, 0, kind, new Dictionary<string, double> { ["broad"] = broad }, distance, new Dictionary<string, string>());
        var layers = HeadQuestions.Layers([Head(0, "local", 1, 0.2), Head(0, "local", 3, 0.4), Head(1, "broad", 20, 0.9), Head(1, "sink", 10, 0.1)]);
        Assert.Equal(2.0, layers[0].MeanDistance, 12);
        Assert.Equal(0.3, layers[0].Entropy, 12);
        Assert.Equal(1.0, layers[0].KindShares["local"], 12);
        Assert.Equal(0.5, layers[1].KindShares["broad"], 12);
        Assert.Equal(0.5, layers[1].KindShares["sink"], 12);
        Assert.Equal(0.0, layers[1].KindShares["mixed"], 12);
    }
}
