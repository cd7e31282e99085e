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
    public void RepeatedWindowsAreAPassageWrittenTwice(int context)
    {
        var corpus = CountingCorpus();
        const int batch = 5;
        var ids = new int[batch * context];
        var targets = new int[batch * context];
        new CorpusBatches(corpus, 11, repeatedShare: 1).Next(ids, targets, batch, context);
        int half = (context + 2) / 2;
        for (int b = 0; b < batch; b++)
        {
            // The window and its targets are one sequence of context + 1 tokens: passage[0..half), passage[0..).
            var sequence = ids.Skip(b * context).Take(context).Append(targets[b * context + context - 1]).ToArray();
            Assert.Equal(ids.Skip(b * context + 1).Take(context - 1), targets.Skip(b * context).Take(context - 1));
            int start = sequence[0];
            for (int i = 0; i < context + 1; i++)
            {
                Assert.Equal(corpus.Train[start + (i % half)], sequence[i]);
            }
        }
    }

    [Fact]
    public void TheShareOfRepeatedWindowsIsAboutTheOneAskedFor()
    {
        var corpus = CountingCorpus();
        const int batch = 2000, context = 8;
        var ids = new int[batch * context];
        var targets = new int[batch * context];
        new CorpusBatches(corpus, 5, repeatedShare: 0.25).Next(ids, targets, batch, context);
        // A repeated window of 8 tokens restarts its passage at position 5; a plain one keeps counting up.
        int repeated = Enumerable.Range(0, batch).Count(b => ids[b * context + 5] == ids[b * context]);
        Assert.InRange(repeated / (double)batch, 0.22, 0.28);
    }
}
