using HeadLens.Training;

namespace HeadLens.Tests.Training;

public class CorpusBatchesTests
{
    // Distinct ids, so that a window's position in the corpus can be read off its first token.
    private static Corpus CountingCorpus() => new(Enumerable.Range(0, 5000).ToArray(), validationShare: 0.1);

    [Fact]
    public void PlainWindowsAreConsecutiveCorpusTokensWithTheNextTokenAsTarget()
    {
        var corpus = CountingCorpus();
        const int batch = 6, context = 17;
        var ids = new int[batch * context];
        var targets = new int[batch * context];
        new CorpusBatches(corpus, 7).Next(ids, targets, batch, context);
        for (int b = 0; b < batch; b++)
        {
            int start = ids[b * context];
            for (int i = 0; i < context; i++)
            {
                Assert.Equal(corpus.Train[start + i], ids[b * context + i]);
                Assert.Equal(corpus.Train[start + i + 1], targets[b * context + i]);
            }
        }
    }

    [Fact]
    public void AShareOfZeroDrawsTheSameWindowsAsNoShare()
    {
        var corpus = CountingCorpus();
        var (plainIds, plainTargets) = (new int[4 * 9], new int[4 * 9]);
        var (zeroIds, zeroTargets) = (new int[4 * 9], new int[4 * 9]);
        new CorpusBatches(corpus, 3).Next(plainIds, plainTargets, 4, 9);
        new CorpusBatches(corpus, 3, repeatedShare: 0).Next(zeroIds, zeroTargets, 4, 9);
        Assert.Equal(plainIds, zeroIds);
        Assert.Equal(plainTargets, zeroTargets);
    }

    [Theory]
    [InlineData(16)]
    [InlineData(17)]
    [InlineData(3)]
    public void RepeatedWindowsWriteOnePassageAgainLaterInTheWindow(int context)
    {
        var corpus = CountingCorpus();
        const int batch = 200;
        var ids = new int[batch * context];
        var targets = new int[batch * context];
        new CorpusBatches(corpus, 11, repeatedShare: 1).Next(ids, targets, batch, context);
        var lengths = new HashSet<int>();
        for (int b = 0; b < batch; b++)
        {
            // The window and its targets are one sequence of context + 1 tokens.
            Assert.Equal(ids.Skip(b * context + 1).Take(context - 1), targets.Skip(b * context).Take(context - 1));
            var sequence = ids.Skip(b * context).Take(context).Append(targets[b * context + context - 1]).ToArray();

            // In a counting corpus the text is start, start + 1, ...: the copy is the one run that breaks the count.
            int start = sequence[0];
            var changed = Enumerable.Range(0, sequence.Length).Where(i => sequence[i] != start + i).ToArray();
            Assert.NotEmpty(changed);
            int copy = changed[0], length = changed.Length;
            Assert.Equal(Enumerable.Range(copy, length), changed);
            int passage = sequence[copy] - start;
            Assert.True(passage + length <= copy, $"window {b}: the copy at {copy} overlaps its passage at {passage}");
            Assert.InRange(length, Math.Min(4, sequence.Length / 2), sequence.Length / 2);
            for (int j = 0; j < length; j++)
            {
                Assert.Equal(sequence[passage + j], sequence[copy + j]);
            }

            lengths.Add(length);
        }

        // Lengths vary (a fixed distance would teach a positional head instead of induction).
        Assert.True(context < 8 || lengths.Count > 3, $"lengths drawn: {string.Join(", ", lengths)}");
    }

    [Fact]
    public void TheShareOfRepeatedWindowsIsAboutTheOneAskedFor()
    {
        var corpus = CountingCorpus();
        const int batch = 2000, context = 8;
        var ids = new int[batch * context];
        var targets = new int[batch * context];
        new CorpusBatches(corpus, 5, repeatedShare: 0.25).Next(ids, targets, batch, context);
        int repeated = Enumerable.Range(0, batch).Count(b =>
            Enumerable.Range(0, context).Any(i => ids[b * context + i] != ids[b * context] + i) || targets[b * context + context - 1] != ids[b * context] + context);
        Assert.InRange(repeated / (double)batch, 0.22, 0.28);
    }

    [Fact]
    public void RandomPassagesAreDrawnFromTheVocabularyAndWrittenTwice()
    {
        // A corpus of ids ≥ 1000, so that a passage drawn from the ids 0..99 stands out from the text.
        var corpus = new Corpus(Enumerable.Range(1000, 5000).ToArray(), validationShare: 0.1);
        const int batch = 300, context = 32, vocabulary = 100;
        var ids = new int[batch * context];
        var targets = new int[batch * context];
        new CorpusBatches(corpus, 13, repeatedShare: 1, randomPassageVocabulary: vocabulary).Next(ids, targets, batch, context);
        var drawn = new HashSet<int>();
        for (int b = 0; b < batch; b++)
        {
            var sequence = ids.Skip(b * context).Take(context).Append(targets[b * context + context - 1]).ToArray();
            var random = Enumerable.Range(0, sequence.Length).Where(i => sequence[i] < vocabulary).ToArray();
            Assert.NotEmpty(random);
            Assert.Equal(0, random.Length % 2);

            // Two runs of equal length, the second a copy of the first; every other token is the corpus's text.
            int length = random.Length / 2, passage = random[0], copy = random[length];
            Assert.Equal(Enumerable.Range(passage, length), random.Take(length));
            Assert.Equal(Enumerable.Range(copy, length), random.Skip(length));
            Assert.Equal(sequence.AsSpan(passage, length).ToArray(), sequence.AsSpan(copy, length).ToArray());
            var text = Enumerable.Range(0, sequence.Length).Except(random).ToArray();
            int start = sequence[text[0]] - text[0];
            Assert.All(text, i => Assert.Equal(start + i, sequence[i]));
            drawn.UnionWith(sequence.Where(id => id < vocabulary));
        }

        Assert.True(drawn.Count > 90, $"only {drawn.Count} of {vocabulary} ids were drawn");
    }
}
