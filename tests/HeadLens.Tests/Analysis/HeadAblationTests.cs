using System.Text.Json;
using HeadLens.Analysis;
using HeadLens.Checkpoints;

namespace HeadLens.Tests.Analysis;

public class HeadAblationTests
{
    private static readonly string Fixtures = Path.Combine(AppContext.BaseDirectory, "Fixtures");

    public static TheoryData<string> GoldenModels => ["tiny-gpt2", "tiny-llama-gqa", "tiny-bert"];

    private static JsonElement Golden(string model) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures, "ablation", "golden.json"))).RootElement
            .EnumerateArray().Single(entry => entry.GetProperty("model").GetString() == model);

    private static double[] Doubles(JsonElement array) => [.. array.EnumerateArray().Select(value => value.GetDouble())];

    [Theory]
    [MemberData(nameof(GoldenModels))]
    public void EveryHeadsEffectMatchesPyTorch(string name)
    {
        // tests/reference/ablation_golden.py: the fixture run in float64 by its own forward, each head's z replaced by
        // zeros or by its mean over the text. Float32 here against float64 there: the mean losses agree to ~1e-6
        // relative, the drifts (1 − cosine, computed from float32 hidden states) to a few 1e-7 absolute.
        var golden = Golden(name);
        var (model, _) = ModelFiles.Load(Path.Combine(Fixtures, "models", name));
        int[] ids = [.. golden.GetProperty("ids").EnumerateArray().Select(value => value.GetInt32())];
        bool decoder = model.Config.HasOutputHead;
        foreach (var method in new[] { AblationMethod.Zero, AblationMethod.Mean })
        {
            var result = HeadAblation.Run(model, ids, method);
            string key = method == AblationMethod.Zero ? "zero" : "mean";
            Assert.Equal(decoder ? AblationMeasure.NextTokenLoss : AblationMeasure.EmbeddingDrift, result.Measure);
            double clean = decoder ? golden.GetProperty("clean_loss").GetDouble() : 0;
            Assert.True(Math.Abs(result.Clean - clean) <= 1e-5 * Math.Max(1, clean), $"clean {result.Clean} vs {clean}");
            var expectedHeads = golden.GetProperty("heads").EnumerateArray().ToList();
            Assert.Equal(expectedHeads.Count, result.Heads.Count);
            foreach (var (effect, expected) in result.Heads.Zip(expectedHeads))
            {
                Assert.Equal((expected.GetProperty("layer").GetInt32(), expected.GetProperty("head").GetInt32()), (effect.Layer, effect.Head));
                var values = expected.GetProperty(key);
                string where = $"{name} {key} head {effect.Layer}.{effect.Head}";
                if (decoder)
                {
                    double loss = values.GetProperty("loss").GetDouble();
                    Assert.True(Math.Abs(effect.Measure - loss) <= 1e-5 * loss, $"{where}: loss {effect.Measure} vs {loss}");
                    Assert.True(Math.Abs(effect.Change - (loss - clean)) <= 2e-5 * loss, $"{where}: change {effect.Change}");

                    // The position named is where the actual next token lost most probability.
                    double[] before = Doubles(golden.GetProperty("clean_probabilities"));
                    double[] after = Doubles(values.GetProperty("probabilities"));
                    double drop = before.Zip(after, (b, a) => b - a).Max();
                    Assert.True(Math.Abs(effect.PositionChange - drop) <= 1e-5, $"{where}: drop {effect.PositionChange} vs {drop}");
                    Assert.True(before[effect.Position] - after[effect.Position] >= drop - 1e-5, $"{where}: position {effect.Position}");
                    Assert.True(Math.Abs(effect.CleanProbability!.Value - before[effect.Position]) <= 1e-5);
                    Assert.True(Math.Abs(effect.AblatedProbability!.Value - after[effect.Position]) <= 1e-5);
                }
                else
                {
                    double drift = values.GetProperty("drift").GetDouble();
                    Assert.True(Math.Abs(effect.Measure - drift) <= 1e-6, $"{where}: drift {effect.Measure} vs {drift}");
                    Assert.Equal(effect.Measure, effect.Change);
                    double[] tokens = Doubles(values.GetProperty("token_drift"));
                    Assert.True(Math.Abs(effect.PositionChange - tokens.Max()) <= 1e-6, $"{where}: token drift {effect.PositionChange} vs {tokens.Max()}");
                    Assert.True(tokens[effect.Position] >= tokens.Max() - 1e-6);
                    Assert.Null(effect.CleanProbability);
                }
            }
        }
    }

    [Theory]
    [InlineData("tiny-gpt2")]
    [InlineData("tiny-llama-gqa")]
    public void ATargetsEffectsMatchPyTorch(string name)
    {
        // The same golden runs: −log p(target) of the last position's prediction, intact and without each head.
        var golden = Golden(name);
        var (model, _) = ModelFiles.Load(Path.Combine(Fixtures, "models", name));
        int[] ids = [.. golden.GetProperty("ids").EnumerateArray().Select(value => value.GetInt32())];
        int target = golden.GetProperty("target").GetInt32();
        double clean = golden.GetProperty("clean_target_loss").GetDouble();
        foreach (var method in new[] { AblationMethod.Zero, AblationMethod.Mean })
        {
            var result = HeadAblation.Run(model, ids, method, target: target);
            Assert.Equal(AblationMeasure.TargetLoss, result.Measure);
            Assert.True(Math.Abs(result.Clean - clean) <= 1e-5 * Math.Max(1, clean), $"clean {result.Clean} vs {clean}");
            string key = method == AblationMethod.Zero ? "zero" : "mean";
            foreach (var (effect, expected) in result.Heads.Zip(golden.GetProperty("heads").EnumerateArray()))
            {
                double loss = expected.GetProperty(key).GetProperty("target_loss").GetDouble();
                Assert.True(Math.Abs(effect.Measure - loss) <= 1e-5 * Math.Max(1, loss), $"{name} {key} head {effect.Layer}.{effect.Head}: {effect.Measure} vs {loss}");
                Assert.Equal(ids.Length - 1, effect.Position);
                Assert.True(Math.Abs(effect.CleanProbability!.Value - Math.Exp(-clean)) <= 1e-5);
                Assert.True(Math.Abs(effect.AblatedProbability!.Value - Math.Exp(-loss)) <= 1e-5);
            }
        }

        // One token is enough with a target; an encoder has no target to predict.
        Assert.Single(HeadAblation.Run(model, [ids[0]], AblationMethod.Zero, [(0, 0)], target: target).Heads);
        Assert.Throws<HeadLensException>(() => HeadAblation.Run(model, ids, AblationMethod.Zero, target: model.Config.VocabSize));
        var (encoder, _) = ModelFiles.Load(Path.Combine(Fixtures, "models", "tiny-bert"));
        Assert.Contains("output head", Assert.Throws<HeadLensException>(() => HeadAblation.Run(encoder, [1, 2], AblationMethod.Zero, target: 3)).Message);
    }

    [Fact]
    public void TheGoldenEffectsAreNotAllAlike()
    {
        // Guards the comparison above against a fixture where ablation changes nothing: the heads must differ.
        foreach (string name in new[] { "tiny-gpt2", "tiny-llama-gqa" })
        {
            var losses = Golden(name).GetProperty("heads").EnumerateArray().Select(e => e.GetProperty("zero").GetProperty("loss").GetDouble()).ToList();
            Assert.True(losses.Max() - losses.Min() > 1e-3, name);
        }

        var drifts = Golden("tiny-bert").GetProperty("heads").EnumerateArray().Select(e => e.GetProperty("zero").GetProperty("drift").GetDouble()).ToList();
        Assert.True(drifts.Min() > 1e-4, "every encoder head moves the embedding");
    }

    public static TheoryData<string, string, int> BatchCases => new()
    {
        { "gpt2", "zero", 1 }, { "gpt2", "mean", 2 }, { "llama", "zero", 3 }, { "llama", "mean", 100 },
    };

    [Theory]
    [MemberData(nameof(BatchCases))]
    public void TheBatchedSweepEqualsOneWholeRunPerHead(string family, string method, int maxBatch)
    {
        // The plain path: one whole hooked run per head with the library's own intervention, the loss in float64 here.
        // The sweep runs several heads as one batch from their block; batches of other sizes give other product
        // blockings, so the two agree to float rounding, not to the bit.
        var config = family == "gpt2" ? TinyModels.Gpt2 : TinyModels.Llama;
        var model = TinyModels.Random(config, seed: 3);
        var ids = TinyModels.Ids(config, 12, seed: 4);
        var ablation = method == "mean" ? AblationMethod.Mean : AblationMethod.Zero;
        var meanZ = Interventions.MeanZ(model, [ids]);
        var result = HeadAblation.Sweep(model, ids, ablation, null, null, maxBatch);
        Assert.Equal(config.Layers * config.Heads, result.Heads.Count);
        foreach (var effect in result.Heads)
        {
            var forward = new HookedForward(model);
            forward = ablation == AblationMethod.Zero ? forward.ZeroAblateHead(effect.Layer, effect.Head)
                : forward.MeanAblateHead(effect.Layer, effect.Head, meanZ[effect.Layer].AsSpan(effect.Head * config.HeadDim, config.HeadDim).ToArray());
            double loss = MeanLoss(forward.Run(ids).Logits, ids, config.VocabSize);
            Assert.True(Math.Abs(effect.Measure - loss) <= 1e-5 * loss, $"head {effect.Layer}.{effect.Head}: {effect.Measure} vs {loss}");
        }

        double clean = MeanLoss(new HookedForward(model).Run(ids).Logits, ids, config.VocabSize);
        Assert.True(Math.Abs(result.Clean - clean) <= 1e-5 * clean);
    }

    private static double MeanLoss(float[] logits, int[] ids, int vocab) => EmbeddedModelHeadsTests.MeanLoss(logits, ids, 0, ids.Length - 1, vocab);

    [Fact]
    public void ASubsetOfHeadsGivesTheSameEffectsAsTheWholeSweep()
    {
        var model = TinyModels.Random(TinyModels.Llama, seed: 3);
        var ids = TinyModels.Ids(model.Config, 12, seed: 4);
        var all = HeadAblation.Run(model, ids, AblationMethod.Zero);
        var progress = new List<(int, int)>();
        var some = HeadAblation.Run(model, ids, AblationMethod.Zero, [(1, 2), (0, 3)], (done, total) => progress.Add((done, total)));
        Assert.Equal([(1, 2), (0, 3)], some.Heads.Select(e => (e.Layer, e.Head)));
        foreach (var effect in some.Heads)
        {
            var whole = all.Heads.Single(e => e.Layer == effect.Layer && e.Head == effect.Head);
            Assert.True(Math.Abs(whole.Change - effect.Change) <= 1e-5, $"{whole.Change} vs {effect.Change}");
            Assert.Equal(whole.Position, effect.Position);
        }

        Assert.Equal([(1, 2), (2, 2)], progress);
    }

    [Fact]
    public void BadRequestsAreRefusedWithOneClearLine()
    {
        var model = TinyModels.Random(TinyModels.Gpt2, seed: 3);
        var error = Assert.Throws<HeadLensException>(() => HeadAblation.Run(model, [5], AblationMethod.Zero));
        Assert.Contains("at least 2 tokens", error.Message);
        error = Assert.Throws<HeadLensException>(() => HeadAblation.Run(model, [5, 6, 7], AblationMethod.Zero, [(2, 0)]));
        Assert.Contains("no head 2.0", error.Message);
    }
}
