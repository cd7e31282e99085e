using HeadLens.Analysis;
using HeadLens.Model;

namespace HeadLens.Tests.Analysis;

public class HookedForwardTests
{
    public static TheoryData<string> Families => ["gpt2", "llama", "attention-only"];

    private static ModelConfig Config(string family) => family switch
    {
        "gpt2" => TinyModels.Gpt2,
        "llama" => TinyModels.Llama,
        _ => TinyModels.AttentionOnly,
    };

    private static float[] ModelLogits(Transformer model, int[] ids)
    {
        model.Forward(ids, [], 1, ids.Length);
        return model.Logits.ToArray();
    }

    // Tolerance for comparing with Transformer.Forward: the same kernels except attention, which the model computes
    // fused (online softmax in tiles) and the hooked pass materialises (scores, softmax, pattern·V). Float rounding
    // of the two orders differs by ~1e-6 relative per layer; 1e-4 is the bound the hooked pass promises.
    private const double SameModel = 1e-4;

    [Theory]
    [MemberData(nameof(Families))]
    public void WithoutHooksItReproducesTheModel(string family)
    {
        var model = TinyModels.Random(Config(family), seed: 1);
        var ids = TinyModels.Ids(model.Config, 13, seed: 2);
        var expected = ModelLogits(model, ids);
        var plain = new HookedForward(model).Run(ids);
        Assert.True(TinyModels.RelativeError(plain.Logits, expected) <= SameModel, $"plain: {TinyModels.RelativeError(plain.Logits, expected)}");

        // Capturing everything switches the output projection to per-head results (then summed): same logits.
        var captured = new HookedForward(model).Run(ids, _ => true);
        Assert.True(TinyModels.RelativeError(captured.Logits, expected) <= SameModel);
        Assert.Equal(HookNames.All(model.Config).ToHashSet(), captured.Cache.Keys.ToHashSet());
        foreach (var (name, value) in captured.Cache)
        {
            Assert.Equal(captured.Shapes[name].Aggregate(1, (a, b) => a * b), value.Length);
        }
    }

    public static TheoryData<string> FamiliesAndEncoder => ["gpt2", "llama", "attention-only", "bert"];

    [Theory]
    [MemberData(nameof(FamiliesAndEncoder))]
    public void ARunFromABlockEqualsTheWholeRunBitForBit(string family)
    {
        // RunFrom skips the embedding and the blocks before `layer`, starting from the stream a whole run captured
        // there: the blocks from `layer` on see the same bits, so everything after them is equal, hooks included.
        var config = family == "bert" ? ModelPresets.Bert(vocab: 29, context: 16, layers: 3, heads: 2, channels: 12, hidden: 20) : Config(family);
        var model = TinyModels.Random(config, seed: 7);
        var ids = TinyModels.Ids(config, 11, seed: 8);
        string last = HookNames.ResidPost(config.Layers - 1);
        var whole = new HookedForward(model).Run(ids, name => name == last || name.EndsWith("hook_resid_pre", StringComparison.Ordinal));
        for (int layer = 0; layer < config.Layers; layer++)
        {
            var from = new HookedForward(model).RunFrom(ids, layer, whole[HookNames.ResidPre(layer)], name => name == last);
            Assert.Equal(whole[last], from[last]);
            Assert.Equal(whole.Logits, from.Logits);

            // With an intervention at or after the start, the same as the whole run with it.
            int ablated = config.Layers - 1;
            var expected = new HookedForward(model).ZeroAblateHead(ablated, 1).Run(ids, name => name == last);
            var actual = new HookedForward(model).ZeroAblateHead(ablated, 1).RunFrom(ids, layer, whole[HookNames.ResidPre(layer)], name => name == last);
            Assert.Equal(expected[last], actual[last]);
            Assert.NotEqual(whole[last], actual[last]);
        }

        Assert.Throws<ArgumentException>(() => new HookedForward(model).RunFrom(ids, 1, new float[5]));
        Assert.Throws<ArgumentException>(() => new HookedForward(model).RunFrom(ids, config.Layers, whole[HookNames.ResidPre(0)]));
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public void ARunStoppedAfterABlockCapturesWhatTheWholeRunDoes(string family)
    {
        // Path patching reads the receivers' inputs and stops: the captures up to the last block run are the whole
        // run's, bit for bit (the same blocks on the same rows); nothing after it runs, and there are no logits.
        var config = Config(family) with { Layers = 4 };
        var model = TinyModels.Random(config, seed: 7);
        int t = 7, batch = 2;
        int[] ids = [.. Enumerable.Range(0, batch).SelectMany(b => TinyModels.Ids(config, t, seed: 20 + b))];
        var stream = new float[batch * t * config.Channels];
        for (int b = 0; b < batch; b++)
        {
            new HookedForward(model).Run(ids.AsSpan(b * t, t), name => name == HookNames.ResidPre(1))[HookNames.ResidPre(1)].CopyTo(stream, b * t * config.Channels);
        }

        bool Wanted(string name) => name.StartsWith("blocks.", StringComparison.Ordinal);
        var whole = new HookedForward(model).ZeroAblateHead(1, 0).RunBatchFrom(ids, batch, 1, stream, Wanted);
        var stopped = new HookedForward(model).ZeroAblateHead(1, 0).RunBatchFromThrough(ids, batch, 1, 2, stream, Wanted);
        Assert.Empty(stopped.Logits);
        Assert.Contains(HookNames.Q(2), stopped.Cache.Keys);
        Assert.Contains(HookNames.ResidPost(2), stopped.Cache.Keys);
        Assert.DoesNotContain(stopped.Cache.Keys, name => name.StartsWith("blocks.3.", StringComparison.Ordinal));
        foreach (var (name, values) in stopped.Cache)
        {
            Assert.Equal(whole[name], values);
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => new HookedForward(model).RunBatchFromThrough(ids, batch, 2, 1, stream));
        Assert.Throws<ArgumentOutOfRangeException>(() => new HookedForward(model).RunBatchFromThrough(ids, batch, 1, 4, stream));
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public void ABatchRunForTheLastLogitsGivesEachSequencesLastRow(string family)
    {
        // The output head on each sequence's last row only: the same numbers as those rows of the full [B·T, V]
        // logits (a product of B rows instead of B·T: other blockings, so equal to float rounding).
        var config = Config(family);
        var model = TinyModels.Random(config, seed: 7);
        int t = 9, batch = 3, v = config.VocabSize;
        int[] ids = [.. Enumerable.Range(0, batch).SelectMany(b => TinyModels.Ids(config, t, seed: 10 + b))];
        var stream = new float[batch * t * config.Channels];
        for (int b = 0; b < batch; b++)
        {
            new HookedForward(model).Run(ids.AsSpan(b * t, t), name => name == HookNames.ResidPre(1))[HookNames.ResidPre(1)].CopyTo(stream, b * t * config.Channels);
        }

        var full = new HookedForward(model).ZeroAblateHead(1, 0).RunBatchFrom(ids, batch, 1, stream);
        var last = new HookedForward(model).ZeroAblateHead(1, 0).RunBatchFromForLastLogits(ids, batch, 1, stream);
        Assert.Equal(batch * t * v, full.Logits.Length);
        Assert.Equal(batch * v, last.Logits.Length);
        for (int b = 0; b < batch; b++)
        {
            for (int j = 0; j < v; j++)
            {
                float expected = full.Logits[(((b * t) + t - 1) * v) + j];
                Assert.True(Math.Abs(last.Logits[(b * v) + j] - expected) <= 1e-5f * Math.Max(1, Math.Abs(expected)), $"sequence {b}, logit {j}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void AttentionOneHeadAtATimeIsTheWholeLayersArithmetic(string family)
    {
        // A pass that no hook asks the pattern of runs attention head by head ([T, T] of scratch); one that captures
        // the patterns materialises the layer ([H, T, T]). The same kernels in the same order per head: equal bits.
        var model = TinyModels.Random(Config(family), seed: 5);
        var ids = TinyModels.Ids(model.Config, model.Config.ContextLength - 3, seed: 6);
        string last = HookNames.ResidPost(model.Config.Layers - 1);
        var perHead = new HookedForward(model).Run(ids, name => name == last);
        var whole = new HookedForward(model).Run(ids, name => name == last || name.EndsWith("hook_pattern", StringComparison.Ordinal));
        Assert.Equal(whole[last], perHead[last]);
        Assert.Equal(whole.Logits, perHead.Logits);
        Assert.False(perHead.Cache.ContainsKey(HookNames.Pattern(0)));
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void CapturedPatternsAreTheModelsPatterns(string family)
    {
        var model = TinyModels.Random(Config(family), seed: 3);
        var ids = TinyModels.Ids(model.Config, 11, seed: 4);
        var recorded = AttentionRecorder.Record(model, ids);
        var run = new HookedForward(model).Run(ids, name => name.EndsWith("hook_pattern", StringComparison.Ordinal));
        for (int l = 0; l < model.Config.Layers; l++)
        {
            // Both are softmax of the same scores from q and k computed by the same kernels: float rounding only.
            Assert.True(TinyModels.RelativeError(run[HookNames.Pattern(l)], recorded[l]) <= 1e-5);
        }
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void ZeroAblationEqualsRemovingTheHeadsOutputColumns(string family)
    {
        var model = TinyModels.Random(Config(family), seed: 5);
        var ids = TinyModels.Ids(model.Config, 9, seed: 6);
        const int Layer = 1, Head = 1;
        var ablated = new HookedForward(model).ZeroAblateHead(Layer, Head).Run(ids);

        // The same model with the head's columns of W_O set to 0 writes nothing from that head either.
        var edited = TinyModels.Copy(model);
        var output = edited.Parameters.Layer(Layer).Output.Span;
        int d = model.Config.HeadDim, width = model.Config.Heads * d;
        for (int c = 0; c < model.Config.Channels; c++)
        {
            output.Slice((c * width) + (Head * d), d).Clear();
        }

        var expected = ModelLogits(edited, ids);
        Assert.True(TinyModels.RelativeError(ablated.Logits, expected) <= SameModel);
        Assert.True(TinyModels.RelativeError(ablated.Logits, ModelLogits(model, ids)) > 1e-3, "ablating a head must change the logits");
    }

    [Fact]
    public void MeanAblationWritesTheMean()
    {
        var model = TinyModels.Random(TinyModels.Gpt2, seed: 7);
        var reference = Enumerable.Range(0, 4).Select(seed => TinyModels.Ids(model.Config, 10, seed)).ToList();
        var means = Interventions.MeanZ(model, reference);
        var ids = TinyModels.Ids(model.Config, 8, seed: 99);
        var run = new HookedForward(model).MeanAblateHead(0, 2, means[0][(2 * model.Config.HeadDim)..(3 * model.Config.HeadDim)])
            .Run(ids, name => name == HookNames.Z(0));
        var z = run[HookNames.Z(0)];
        int heads = model.Config.Heads, d = model.Config.HeadDim;
        for (int i = 0; i < ids.Length; i++)
        {
            Assert.Equal(means[0].AsSpan(2 * d, d).ToArray(), z.AsSpan(((i * heads) + 2) * d, d).ToArray());
        }

        // The mean over the reference runs, recomputed here from their captured z.
        double expected = 0;
        foreach (var sequence in reference)
        {
            var zs = new HookedForward(model).Run(sequence, name => name == HookNames.Z(0))[HookNames.Z(0)];
            for (int i = 0; i < sequence.Length; i++)
            {
                expected += zs[((i * heads) + 2) * d];
            }
        }

        Assert.Equal(expected / 40, means[0][2 * d], 5);
    }

    [Fact]
    public void ReplacingAPatternMovesWhatTheHeadReads()
    {
        var model = TinyModels.Random(TinyModels.Llama, seed: 8);
        var ids = TinyModels.Ids(model.Config, 7, seed: 9);
        int t = ids.Length, heads = model.Config.Heads, d = model.Config.HeadDim;
        var own = new HookedForward(model).Run(ids, name => name == HookNames.Pattern(0))[HookNames.Pattern(0)];
        var baseline = new HookedForward(model).Run(ids).Logits;
        var same = new HookedForward(model).ReplacePattern(0, 3, own.AsSpan(3 * t * t, t * t).ToArray()).Run(ids).Logits;
        Assert.Equal(baseline, same);

        // Everyone looks at token 0: head 3's z is v of token 0 (kv head 3 / 2 = 1) at every position.
        var first = new float[t * t];
        for (int i = 0; i < t; i++)
        {
            first[i * t] = 1;
        }

        var run = new HookedForward(model).ReplacePattern(0, 3, first).Run(ids, name => name == HookNames.Z(0) || name == HookNames.V(0));
        var v = run[HookNames.V(0)].AsSpan(1 * d, d).ToArray();
        for (int i = 0; i < t; i++)
        {
            Assert.Equal(v, run[HookNames.Z(0)].AsSpan(((i * heads) + 3) * d, d).ToArray());
        }
    }

    [Fact]
    public void PatchingTheWholeStreamRestoresTheCleanRun()
    {
        var model = TinyModels.Random(TinyModels.Gpt2, seed: 10);
        var clean = TinyModels.Ids(model.Config, 10, seed: 11);
        var corrupted = (int[])clean.Clone();
        corrupted[3] = (corrupted[3] + 1) % model.Config.VocabSize;
        int last = model.Config.Layers - 1, v = model.Config.VocabSize;

        // Capture only what is patched (capturing hook_result would switch the clean run to the per-head output
        // projection, whose float rounding differs): then a patched run repeats the clean computation bit for bit.
        string[] needed = [HookNames.ResidPre(0), HookNames.ResidPost(last), HookNames.Z(1)];
        var cleanRun = new HookedForward(model).Run(clean, needed.Contains);
        var corruptedRun = new HookedForward(model).Run(corrupted);
        Assert.NotEqual(cleanRun.Logits, corruptedRun.Logits);

        // The whole residual stream entering layer 0: everything after it is the clean computation.
        var patched = new HookedForward(model).Patch(HookNames.ResidPre(0), cleanRun[HookNames.ResidPre(0)]).Run(corrupted);
        Assert.Equal(cleanRun.Logits, patched.Logits);

        // One position of the last residual stream: only that position's logits become the clean ones.
        var onePosition = new HookedForward(model).Patch(HookNames.ResidPost(last), cleanRun[HookNames.ResidPost(last)], position: 5).Run(corrupted);
        for (int i = 0; i < clean.Length; i++)
        {
            var expected = (i == 5 ? cleanRun : corruptedRun).Logits.AsSpan(i * v, v).ToArray();
            Assert.Equal(expected, onePosition.Logits.AsSpan(i * v, v).ToArray());
        }

        // One head's z: the captured z of the patched run holds the clean head and the corrupted others.
        var headPatched = new HookedForward(model).Patch(HookNames.Z(1), cleanRun[HookNames.Z(1)], head: 2).Run(corrupted, name => name == HookNames.Z(1));
        var corruptedZ = new HookedForward(model).Run(corrupted, name => name == HookNames.Z(1))[HookNames.Z(1)];
        int d = model.Config.HeadDim, heads = model.Config.Heads;
        for (int i = 0; i < clean.Length; i++)
        {
            for (int h = 0; h < heads; h++)
            {
                var source = h == 2 ? cleanRun[HookNames.Z(1)] : corruptedZ;
                Assert.Equal(source.AsSpan(((i * heads) + h) * d, d).ToArray(), headPatched[HookNames.Z(1)].AsSpan(((i * heads) + h) * d, d).ToArray());
            }
        }
    }

    [Fact]
    public void UnknownHookPointIsAOneLineError()
    {
        var model = TinyModels.Random(TinyModels.AttentionOnly, seed: 12);
        var error = Assert.Throws<HeadLensException>(() => new HookedForward(model).AddHook("blocks.0.hook_mlp_out", (_, _, _) => { }));
        Assert.Contains("blocks.0.hook_mlp_out", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void LogitAttributionAddsUpToTheLogit(string family)
    {
        var model = TinyModels.Random(Config(family), seed: 13);
        var ids = TinyModels.Ids(model.Config, 12, seed: 14);
        var attribution = DirectLogitAttribution.Compute(model, ids, position: 7, token: 5);
        // Shares are computed in float64 from float activations whose sum the model formed in float: the gap is
        // float rounding of the residual sum, ~1e-6 of the logit's scale.
        double scale = Math.Max(1, Math.Abs(attribution.Logit));
        Assert.True(Math.Abs(attribution.Total - attribution.Logit) <= 1e-4 * scale, $"Σ shares {attribution.Total} vs logit {attribution.Logit}");
        Assert.Contains(attribution.Heads.Cast<double>(), share => Math.Abs(share) > 1e-3);
    }
}
