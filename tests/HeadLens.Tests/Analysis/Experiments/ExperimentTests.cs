using HeadLens.Analysis.Experiments;
using HeadLens.Model;

namespace HeadLens.Tests.Analysis.Experiments;

public class ExperimentTests
{
    [Fact]
    public void HandcraftedHeadFindsArticlesButCannotTellWhichOne()
    {
        var (name, beta, _) = HandcraftedHead.Variants[0];
        var plain = HandcraftedHead.Run(HandcraftedHead.Sentence, name, beta, 0f);
        var mat = plain.Nouns.Single(noun => noun.Word == "mat");
        var cat = plain.Nouns.Single(noun => noun.Word == "cat");
        // cat@2 has one article before it; mat@6 sees two equal "the"s: scores β each, so exactly half each up to
        // the e^{−β} leak to the other words.
        Assert.Equal(0, cat.Target);
        Assert.True(cat.TargetWeight > 0.99);
        Assert.Equal(mat.Articles[0].Weight, mat.Articles[1].Weight, 6);
        Assert.InRange(mat.Articles[0].Weight, 0.49, 0.5);

        // With the recency term the nearer "the" (position 5) wins by e^{γ·5}, and the farther one still gets some.
        var recency = HandcraftedHead.Run(HandcraftedHead.Sentence, "recency", beta, 1f);
        var recentMat = recency.Nouns.Single(noun => noun.Word == "mat");
        Assert.Equal(5, recentMat.Target);
        double ratio = recentMat.Articles[1].Weight / recentMat.Articles[0].Weight;
        Assert.Equal(Math.Exp(5), ratio, 2);
        Assert.True(recentMat.Articles[0].Weight > 0.001, "the farther article still gets attention");

        // Non-nouns have a zero query: a uniform row.
        Assert.Equal(1f / 4, recency.Pattern[(3 * 7) + 1], 6);
        Assert.Throws<HeadLensException>(() => HandcraftedHead.Run("the zebra", name, beta, 0f));
    }

    [Fact]
    public void CopyDataHasOneCopiedSegmentAtARandomPlace()
    {
        var settings = InductionExperiment.Settings.Default;
        var random = new Random(3);
        var sequence = new int[settings.Context + 1];
        var lengths = new HashSet<int>();
        var offsets = new HashSet<int>();
        for (int trial = 0; trial < 200; trial++)
        {
            InductionExperiment.Sample(random, settings, sequence);
            Assert.All(sequence, id => Assert.InRange(id, 0, settings.Vocab - 1));
            // The longest repeated run of ≥ MinSegment tokens: where it starts twice gives the copy's offset.
            int best = 0, offset = 0;
            for (int shift = settings.MinSegment; shift < sequence.Length; shift++)
            {
                int run = 0;
                for (int i = shift; i < sequence.Length; i++)
                {
                    run = sequence[i] == sequence[i - shift] ? run + 1 : 0;
                    if (run > best)
                    {
                        (best, offset) = (run, shift);
                    }
                }
            }

            Assert.True(best >= settings.MinSegment, $"trial {trial}: no copied segment");
            lengths.Add(best);
            offsets.Add(offset);
        }

        // Random lengths and random offsets: no fixed period for a positional head to learn.
        Assert.True(lengths.Count >= 10, $"only {lengths.Count} distinct segment lengths");
        Assert.True(offsets.Count >= 20, $"only {offsets.Count} distinct copy offsets");
    }

    [Fact]
    public void TheInductionExperimentTrainsLinearAttentionWhenAsked()
    {
        var settings = InductionExperiment.Settings.Default with { Steps = 12, LayerCounts = [2], Heads = 2, Probes = 2, Attention = AttentionForm.Linear };
        Assert.Equal(AttentionForm.Linear, InductionExperiment.ModelFor(settings, 2).AttentionForm);
        Assert.Equal(AttentionForm.Softmax, InductionExperiment.ModelFor(InductionExperiment.Settings.Default, 2).AttentionForm);
        var log = new List<string>();
        string report = InductionExperiment.Run(settings, log.Add);
        Assert.Contains("2 linear-attention heads", report, StringComparison.Ordinal);
        Assert.Contains(log, line => line.Contains("2-layer step    12/12: loss", StringComparison.Ordinal));
        Assert.Contains("| 2-layer |", report, StringComparison.Ordinal);
    }

    [Fact]
    public void CopyLossesSplitTheTwoHalves()
    {
        // Logits that put all the mass on the right next token in the second half only.
        const int Period = 4, Vocab = 6;
        int[] ids = [1, 2, 3, 4, 1, 2, 3, 4];
        var logits = new float[ids.Length * Vocab];
        for (int i = Period; i < ids.Length - 1; i++)
        {
            logits[(i * Vocab) + ids[i + 1]] = 50;
        }

        var (first, second) = InductionExperiment.CopyLosses(logits, ids, Period, Vocab);
        Assert.Equal(Math.Log(Vocab), first, 5);
        Assert.True(second < 1e-6);
    }
}
