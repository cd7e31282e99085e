using HeadLens.Analysis;
using HeadLens.Checkpoints;
using HeadLens.Tokenization;

namespace HeadLens.Tests.Analysis;

/// <summary>
/// The embedded default model is what a new user sees first (the demo's table of what every head does), so it must
/// have heads worth showing: induction heads, classified by the same thresholds as any model's (README "Head kinds"),
/// and the previous-token heads they are built on (score ≥ 0.5; such a head may be classed `local` when its local
/// score is stronger still).
/// </summary>
public class EmbeddedModelHeadsTests
{
    private static readonly string EmbeddedModel = Path.Combine(AppContext.BaseDirectory, "Data", "kjv-model");

    [Fact]
    public void TheDemoTableShowsInductionHeadsAndThePreviousTokenHeadsBeforeThem()
    {
        var (model, loaded) = ModelFiles.Load(EmbeddedModel);
        var tokenizer = Assert.IsAssignableFrom<ITokenizer>(loaded);
        var ids = tokenizer.EncodeForModel("In the beginning God created the heaven and the earth.");
        var summaries = HeadTaxonomy.Analyse(model, tokenizer, ids);
        string table = string.Join("; ", summaries.Select(s => $"L{s.Layer}H{s.Head} {s.Kind}"));
        Assert.Contains(summaries, s => s.Scores[HeadKinds.PreviousTokenScore] >= 0.5 && s.Layer < model.Config.Layers - 1);
        Assert.Contains(summaries, s => s.Kind == HeadKinds.Induction);
        Assert.True(summaries.Count(s => s.Kind == HeadKinds.Mixed) < summaries.Count / 2, table);
    }

    [Fact]
    public void ItsInductionHeadsCopyTheSecondHalfOfARepeatedRandomBlock()
    {
        // The induction score says where the head looks; this says the model uses it: on a random block written
        // twice, the second copy's tokens are far more predictable than the first's.
        var (model, loaded) = ModelFiles.Load(EmbeddedModel);
        var tokenizer = Assert.IsAssignableFrom<ITokenizer>(loaded);
        int[] ids = HeadTaxonomy.RepeatedIds(model.Config.VocabSize, model.Config.ContextLength, tokenizer, seed: 7);
        int period = (ids.Length - (tokenizer.AddsBos ? 1 : 0)) / 2, start = ids.Length - 2 * period;
        float[] logits = model.Run(ids).Logits; // [T, V]
        double first = MeanLoss(logits, ids, start + 1, start + period - 1, model.Config.VocabSize);
        double second = MeanLoss(logits, ids, start + period, ids.Length - 1, model.Config.VocabSize);
        Assert.True(second < 0.25 * first, $"loss on the first copy {first:F2}, on the second {second:F2} nats per token");
    }

    /// <summary>Mean cross-entropy of predicting ids[i + 1] from position i, for i in [from, to).</summary>
    internal static double MeanLoss(float[] logits, int[] ids, int from, int to, int vocab)
    {
        double total = 0;
        for (int i = from; i < to; i++)
        {
            var row = logits.AsSpan(i * vocab, vocab);
            double max = double.NegativeInfinity;
            foreach (float value in row)
            {
                max = Math.Max(max, value);
            }

            double sum = 0;
            foreach (float value in row)
            {
                sum += Math.Exp(value - max);
            }

            total += max + Math.Log(sum) - row[ids[i + 1]];
        }

        return total / (to - from);
    }
}
