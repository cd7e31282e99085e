using HeadLens.Analysis;
using HeadLens.Analysis.Experiments;
using HeadLens.Model;

namespace HeadLens.Tests.Analysis;

/// <summary>
/// A 2-layer attention-only GPT-2-style model whose weights are written by hand, so every head's job is known:
///   layer 0: head 0 previous-token (query position i matches key position i−1; moves the token into a
///            "previous token" subspace), head 1 sink (every query matches position 0), heads 2, 3 uniform (zero W_Q);
///   layer 1: head 0 induction (query token matches the key's previous-token subspace — K-composition with 0.0 —
///            and copies the key's token into the logits), heads 1–3 uniform.
/// The residual stream is built of ± pairs (+1 on a feature, −1 on its mirror), so every vector has mean 0 and the
/// same norm: LayerNorm only rescales it by a constant, and the hand-set weights mean what they say.
/// </summary>
public class HandSetModelTests
{
    private const int V = 8, P = 12, C = 64, D = 16;
    private const int Token = 0, TokenMirror = 8, Position = 16, PositionMirror = 28, Previous = 40, PreviousMirror = 48, Constant = 56, ConstantMirror = 57;
    private const float Sharp = 10f;

    private static Transformer Build()
    {
        var config = ModelPresets.Gpt2(vocab: V, context: P, layers: 2, heads: 4, channels: C) with { Mlp = MlpKind.None };
        var model = new Transformer(config);
        var p = model.Parameters;
        foreach (var (name, _, _) in ModelWeights.Layout(config))
        {
            var values = p.Arena.Get(name).Span;
            values.Fill(name.Contains("norm", StringComparison.Ordinal) && name.EndsWith(".weight", StringComparison.Ordinal) ? 1f : 0f);
        }

        var embedding = p.TokenEmbedding.Span;
        for (int v = 0; v < V; v++)
        {
            embedding[(v * C) + Token + v] = 1;
            embedding[(v * C) + TokenMirror + v] = -1;
            embedding[(v * C) + Constant] = 1;
            embedding[(v * C) + ConstantMirror] = -1;
        }

        var positions = p.PositionEmbedding!.Span;
        for (int i = 0; i < P; i++)
        {
            positions[(i * C) + Position + i] = 1;
            positions[(i * C) + PositionMirror + i] = -1;
        }

        // W[h·D + d, c]: row d of head h's projection. W_O[c, h·D + d].
        static void Set(Span<float> w, int head, int d, int channel, float value) => w[(((head * D) + d) * C) + channel] = value;
        static void SetOutput(Span<float> w, int head, int d, int channel, float value) => w[(channel * 4 * D) + (head * D) + d] = value;

        var l0 = p.Layer(0);
        for (int d = 0; d < P - 1; d++)
        {
            Set(l0.Query.Span, 0, d, Position + d + 1, Sharp);   // query at position d+1 ...
            Set(l0.Key.Span, 0, d, Position + d, 1);             // ... matches key at position d
        }

        for (int v = 0; v < V; v++)
        {
            Set(l0.Value.Span, 0, v, Token + v, 1);                 // moves the key's token ...
            SetOutput(l0.Output.Span, 0, v, Previous + v, 0.5f);     // ... into the previous-token subspace (± pair)
            SetOutput(l0.Output.Span, 0, v, PreviousMirror + v, -0.5f);
        }

        Set(l0.Query.Span, 1, 0, Constant, Sharp);                 // every query ...
        Set(l0.Key.Span, 1, 0, Position, 1);                       // ... matches position 0

        var l1 = p.Layer(1);
        for (int v = 0; v < V; v++)
        {
            Set(l1.Query.Span, 0, v, Token + v, Sharp);              // query: my token ...
            Set(l1.Key.Span, 0, v, Previous + v, 1);                 // ... key: the token before you
            Set(l1.Value.Span, 0, v, Token + v, 1);                  // copy the key's token ...
            SetOutput(l1.Output.Span, 0, v, Token + v, 2f);          // ... into the token subspace the unembedding reads
            SetOutput(l1.Output.Span, 0, v, TokenMirror + v, -2f);
        }

        return model;
    }

    [Fact]
    public void TheTaxonomyNamesEveryHandSetHeadAndRanksItFirst()
    {
        var model = Build();
        var heads = HeadTaxonomy.Analyse(model, tokenizer: null, seed: 4);
        HeadSummary Head(int layer, int head) => heads.Single(s => s.Layer == layer && s.Head == head);
        Assert.Equal("previous-token", Head(0, 0).Kind);
        Assert.Equal("sink", Head(0, 1).Kind);
        Assert.Equal("broad", Head(0, 2).Kind);
        Assert.Equal("induction", Head(1, 0).Kind);
        Assert.Equal(Head(0, 0), heads.MaxBy(s => s.Scores[HeadKinds.PreviousTokenScore]));
        Assert.Equal(Head(0, 1), heads.MaxBy(s => s.Scores[HeadKinds.SinkScore]));
        Assert.Equal(Head(1, 0), heads.MaxBy(s => s.Scores[HeadKinds.InductionScore]));
        // Uniform heads tie on broad; the uniform head is among the best.
        Assert.Equal(heads.Max(s => s.Scores[HeadKinds.BroadScore]), Head(0, 2).Scores[HeadKinds.BroadScore], 9);
        Assert.True(Head(1, 0).Scores[HeadKinds.InductionScore] > 0.9);
        // The induction head copies: its OV circuit maps each token to itself.
        Assert.True(Head(1, 0).Scores[HeadKinds.CopyingScore] > 0.9);
    }

    [Fact]
    public void TheInductionHeadReadsThePreviousTokenHeadThroughItsKeys()
    {
        var compositions = Circuits.Compositions(Build());
        var best = compositions.MaxBy(c => c.Key)!;
        Assert.Equal((0, 0, 1, 0), (best.SourceLayer, best.SourceHead, best.Layer, best.Head));
        // Its queries and values read tokens, not what head 0.0 wrote: K-composition dominates.
        Assert.True(best.Key > 2 * best.Query && best.Key > 2 * best.Value, $"K {best.Key:F3}, Q {best.Query:F3}, V {best.Value:F3}");
    }

    [Fact]
    public void AblatingTheInductionHeadRemovesTheSecondCopyGain()
    {
        var model = Build();
        int[] ids = [3, 1, 4, 7, 5, 2, 3, 1, 4, 7, 5, 2];
        var forward = new HookedForward(model);
        var (first, second) = InductionExperiment.CopyLosses(forward.Run(ids).Logits, ids, 6, V);
        var (ablatedFirst, ablated) = InductionExperiment.CopyLosses(forward.ZeroAblateHead(1, 0).Run(ids).Logits, ids, 6, V);
        Assert.True(second < 0.5 * first, $"second copy {second:F3} vs first {first:F3}");
        // Without the head, nothing tells the two copies apart: equal losses up to the positional differences.
        Assert.True(Math.Abs(ablated - ablatedFirst) < 0.1 * ablatedFirst, $"ablated: second copy {ablated:F3} vs first {ablatedFirst:F3}");
        Assert.True(ablated > 2 * second, $"ablated second copy {ablated:F3} vs intact {second:F3}");
    }
}
