using System.Text.Json;
using HeadLens.Analysis;
using HeadLens.Checkpoints;
using HeadLens.Model;

namespace HeadLens.Tests.Analysis;

public class ActivationPatchingTests
{
    private static readonly string Fixtures = Path.Combine(AppContext.BaseDirectory, "Fixtures");

    public static TheoryData<string> GoldenModels => ["tiny-gpt2", "tiny-llama-gqa", "tiny-bert"];

    private static JsonElement Golden(string model) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures, "patching", "golden.json"))).RootElement
            .EnumerateArray().Single(entry => entry.GetProperty("model").GetString() == model);

    private static int[] Ints(JsonElement array) => [.. array.EnumerateArray().Select(value => value.GetInt32())];

    private static PatchSite Site(string name) => name switch
    {
        "heads" => PatchSite.Heads,
        "stream" => PatchSite.Stream,
        "attention" => PatchSite.Attention,
        _ => PatchSite.Mlp,
    };

    public static TheoryData<string, string, string> GoldenCases()
    {
        var cases = new TheoryData<string, string, string>();
        foreach (string site in new[] { "heads", "stream", "attention", "mlp" })
        {
            foreach (string model in new[] { "tiny-gpt2", "tiny-llama-gqa" })
            {
                cases.Add(model, site, "logit_difference");
                cases.Add(model, site, "log_probability");
            }

            cases.Add("tiny-bert", site, "similarity");
        }

        return cases;
    }

    [Theory]
    [MemberData(nameof(GoldenCases))]
    public void EveryPatchMatchesPyTorch(string name, string site, string metric)
    {
        // tests/reference/patching_golden.py: the fixture in float64 by its own forward, the corrupted text run once
        // per patch with one head's z (every position), or at one position the stream entering one block, its
        // attention's output or its MLP's, taken from the clean run. Float32 here: the logits' differences agree to a few 1e-6, the cosines to ~1e-7.
        var golden = Golden(name);
        var (model, _) = ModelFiles.Load(Path.Combine(Fixtures, "models", name));
        int[] clean = Ints(golden.GetProperty("clean_ids")), corrupted = Ints(golden.GetProperty("corrupted_ids"));
        int? answer = metric == "similarity" ? null : golden.GetProperty("answer").GetInt32();
        int? wrong = metric == "logit_difference" ? golden.GetProperty("wrong").GetInt32() : null;
        var result = ActivationPatching.Run(model, clean, corrupted, Site(site), answer, wrong);

        var expectedMetric = metric switch
        {
            "logit_difference" => PatchMetric.LogitDifference,
            "log_probability" => PatchMetric.LogProbability,
            _ => PatchMetric.EmbeddingSimilarity,
        };
        Assert.Equal(expectedMetric, result.Metric);
        double expectedClean = golden.GetProperty("clean").GetProperty(metric).GetDouble();
        double expectedCorrupted = golden.GetProperty("corrupted").GetProperty(metric).GetDouble();
        const double Tolerance = 2e-5;
        Assert.True(Math.Abs(result.Clean - expectedClean) <= Tolerance, $"clean {result.Clean} vs {expectedClean}");
        Assert.True(Math.Abs(result.Corrupted - expectedCorrupted) <= Tolerance, $"corrupted {result.Corrupted} vs {expectedCorrupted}");

        var expected = golden.GetProperty(site).EnumerateArray().ToList();
        Assert.Equal(expected.Count, result.Effects.Count);
        foreach (var (effect, entry) in result.Effects.Zip(expected))
        {
            int index = entry.GetProperty(site == "heads" ? "head" : "position").GetInt32();
            Assert.Equal((entry.GetProperty("layer").GetInt32(), index), (effect.Layer, effect.Index));
            double value = entry.GetProperty(metric).GetDouble();
            string where = $"{name} {site} {effect.Layer}.{effect.Index}";
            Assert.True(Math.Abs(effect.Value - value) <= Tolerance, $"{where}: {effect.Value} vs {value}");
            Assert.Equal((effect.Value - result.Corrupted) / (result.Clean - result.Corrupted), effect.Recovered, 12);
            double recovered = (value - expectedCorrupted) / (expectedClean - expectedCorrupted);
            Assert.True(Math.Abs(effect.Recovered - recovered) <= 2e-3, $"{where}: recovered {effect.Recovered} vs {recovered}");
        }
    }

    [Fact]
    public void TheGoldenPatchesAreNotAllAlike()
    {
        // Guards the comparison above against fixtures where patching changes nothing.
        foreach (var (name, metric) in new[] { ("tiny-gpt2", "logit_difference"), ("tiny-llama-gqa", "logit_difference"), ("tiny-bert", "similarity") })
        {
            var golden = Golden(name);
            double clean = golden.GetProperty("clean").GetProperty(metric).GetDouble();
            double corrupted = golden.GetProperty("corrupted").GetProperty(metric).GetDouble();
            Assert.True(Math.Abs(clean - corrupted) > 0.05, name);
            var heads = golden.GetProperty("heads").EnumerateArray().Select(e => e.GetProperty(metric).GetDouble()).ToList();
            Assert.True(heads.Max() - heads.Min() > 0.01, name);
        }
    }

    [Theory]
    [InlineData("tiny-gpt2")]
    [InlineData("tiny-llama-gqa")]
    public void WithoutAnAnswerTheCleanAndCorruptedTopTokensAreCompared(string name)
    {
        // The golden runs' top tokens: tiny-gpt2's agree (so the metric is log p of the one answer), tiny-llama-gqa's differ.
        var golden = Golden(name);
        var (model, _) = ModelFiles.Load(Path.Combine(Fixtures, "models", name));
        int[] clean = Ints(golden.GetProperty("clean_ids")), corrupted = Ints(golden.GetProperty("corrupted_ids"));
        int cleanTop = golden.GetProperty("clean").GetProperty("top").GetInt32();
        int corruptedTop = golden.GetProperty("corrupted").GetProperty("top").GetInt32();
        var result = ActivationPatching.Run(model, clean, corrupted, PatchSite.Heads);
        Assert.Equal(cleanTop, result.Answer);
        Assert.Equal(cleanTop == corruptedTop ? null : corruptedTop, result.Wrong);
        Assert.Equal(cleanTop == corruptedTop ? PatchMetric.LogProbability : PatchMetric.LogitDifference, result.Metric);
        var explicitTokens = ActivationPatching.Run(model, clean, corrupted, PatchSite.Heads, result.Answer, result.Wrong);
        Assert.Equal(explicitTokens.Effects.Select(e => e.Value), result.Effects.Select(e => e.Value));
        Assert.True(result.Clean > result.Corrupted, "the clean run prefers its own top token");
    }

    public static TheoryData<string, string, int> BatchCases => new()
    {
        { "gpt2", "heads", 1 }, { "gpt2", "stream", 2 }, { "llama", "heads", 3 }, { "llama", "stream", 100 }, { "bert", "heads", 2 }, { "bert", "stream", 1 },
        { "gpt2", "attention", 3 }, { "llama", "mlp", 2 }, { "bert", "attention", 100 }, { "bert", "mlp", 4 },
    };

    [Theory]
    [MemberData(nameof(BatchCases))]
    public void TheBatchedSweepEqualsOneWholePatchedRunEach(string family, string site, int maxBatch)
    {
        // The plain path: one whole run of the corrupted ids per patch, with the library's own Patch intervention at
        // hook_z (one head) or hook_resid_pre (one position). The sweep starts each batch at its block; the two agree
        // to float rounding.
        var model = family switch
        {
            "gpt2" => TinyModels.Random(TinyModels.Gpt2, seed: 3),
            "llama" => TinyModels.Random(TinyModels.Llama, seed: 3),
            _ => ModelFiles.Load(Path.Combine(Fixtures, "models", "tiny-bert")).Model,
        };
        var config = model.Config;
        int[] clean = TinyModels.Ids(config, 10, seed: 4);
        int[] corrupted = [.. clean];
        corrupted[3] = (clean[3] + 1) % config.VocabSize;
        corrupted[7] = (clean[7] + 5) % config.VocabSize;
        var patchSite = Site(site);
        int? answer = config.HasOutputHead ? 1 : null, wrong = config.HasOutputHead ? 2 : null;
        var result = ActivationPatching.Sweep(model, clean, corrupted, patchSite, answer, wrong, null, null, maxBatch);
        Assert.Equal(config.Layers * (site == "heads" ? config.Heads : clean.Length), result.Effects.Count);

        var names = Enumerable.Range(0, config.Layers).Select(l => ActivationPatching.Point(patchSite, l)).ToHashSet();
        var cleanRun = new HookedForward(model).Run(clean, names.Contains);
        string last = model.Parameters.HasFinalNorm ? HookNames.FinalNormalized : HookNames.ResidPost(config.Layers - 1);
        double[] reference = config.HasOutputHead ? [] : Sentence(new HookedForward(model).Run(clean, name => name == last)[last], config.Channels);
        foreach (var effect in result.Effects)
        {
            string point = ActivationPatching.Point(patchSite, effect.Layer);
            var forward = site == "heads"
                ? new HookedForward(model).Patch(point, cleanRun[point], head: effect.Index)
                : new HookedForward(model).Patch(point, cleanRun[point], position: effect.Index);
            double value = Metric(model, forward.Run(corrupted, name => name == last), last, reference);
            Assert.True(Math.Abs(effect.Value - value) <= 2e-5, $"{site} {effect.Layer}.{effect.Index}: {effect.Value} vs {value}");
        }
    }

    // logit[1] − logit[2] at the last position (decoders), or the sentence embedding's cosine to the reference's (encoders).
    private static double Metric(Transformer model, HookedRun run, string last, double[] reference)
    {
        int t = run.Tokens, v = model.Config.VocabSize;
        return model.Config.HasOutputHead
            ? (double)run.Logits[((t - 1) * v) + 1] - run.Logits[((t - 1) * v) + 2]
            : Sentence(run[last], model.Config.Channels).Zip(reference, (a, b) => a * b).Sum();
    }

    // The unit mean of hidden states [T, C], in float64.
    private static double[] Sentence(float[] hidden, int c)
    {
        var sum = new double[c];
        for (int i = 0; i < hidden.Length; i++)
        {
            sum[i % c] += hidden[i];
        }

        double norm = Math.Sqrt(sum.Sum(x => x * x));
        return [.. sum.Select(x => x / norm)];
    }

    [Theory]
    [InlineData("tiny-gpt2")]
    [InlineData("tiny-llama-gqa")]
    [InlineData("tiny-bert")]
    public void TheFirstBlocksStreamAtTheChangedPositionBringsBackTheWholeCleanRun(string name)
    {
        // Before the first block the stream at a position depends on that position's token only: copying it where the
        // texts differ makes the corrupted run the clean one (recovered 1), and anywhere else changes nothing (0).
        var golden = Golden(name);
        var (model, _) = ModelFiles.Load(Path.Combine(Fixtures, "models", name));
        int[] clean = Ints(golden.GetProperty("clean_ids")), corrupted = Ints(golden.GetProperty("corrupted_ids"));
        int changed = Enumerable.Range(0, clean.Length).Single(i => clean[i] != corrupted[i]);
        var result = ActivationPatching.Run(model, clean, corrupted, PatchSite.Stream, layers: [0]);
        foreach (var effect in result.Effects)
        {
            Assert.True(Math.Abs(effect.Recovered - (effect.Index == changed ? 1 : 0)) <= 1e-3, $"position {effect.Index}: {effect.Recovered}");
        }
    }

    [Fact]
    public void ALayerSubsetAndProgressAreReported()
    {
        var model = TinyModels.Random(TinyModels.Llama, seed: 3);
        int[] clean = TinyModels.Ids(model.Config, 12, seed: 4);
        int[] corrupted = [.. clean];
        corrupted[5] = (clean[5] + 3) % model.Config.VocabSize;
        var all = ActivationPatching.Run(model, clean, corrupted, PatchSite.Heads, 1, 2);
        var progress = new List<(int, int)>();
        var some = ActivationPatching.Run(model, clean, corrupted, PatchSite.Heads, 1, 2, [1], (done, total) => progress.Add((done, total)));
        Assert.All(some.Effects, e => Assert.Equal(1, e.Layer));
        Assert.Equal(model.Config.Heads, some.Effects.Count);
        foreach (var effect in some.Effects)
        {
            Assert.True(Math.Abs(all.Effects.Single(e => e.Layer == 1 && e.Index == effect.Index).Value - effect.Value) <= 1e-5);
        }

        Assert.Equal((model.Config.Heads, model.Config.Heads), progress[^1]);
    }

    [Fact]
    public void BadRequestsAreRefusedWithOneClearLine()
    {
        var model = TinyModels.Random(TinyModels.Gpt2, seed: 3);
        var (encoder, _) = ModelFiles.Load(Path.Combine(Fixtures, "models", "tiny-bert"));
        int[] clean = [5, 6, 7], corrupted = [5, 8, 7];
        string Refusal(Action action) => Assert.Throws<HeadLensException>(action).Message;
        Assert.Contains("clean one has 3 tokens, the corrupted one 2", Refusal(() => ActivationPatching.Run(model, clean, [5, 6], PatchSite.Heads)));
        Assert.Contains("give the same logit difference", Refusal(() => ActivationPatching.Run(model, clean, clean, PatchSite.Heads, 1, 2)));
        Assert.Contains("give the answer token too", Refusal(() => ActivationPatching.Run(model, clean, corrupted, PatchSite.Heads, null, 2)));
        Assert.Contains("output head", Refusal(() => ActivationPatching.Run(encoder, clean, corrupted, PatchSite.Heads, 1)));
        Assert.Contains("outside the vocabulary", Refusal(() => ActivationPatching.Run(model, clean, corrupted, PatchSite.Heads, 1, model.Config.VocabSize)));
        Assert.Contains("no layer 2", Refusal(() => ActivationPatching.Run(model, clean, corrupted, PatchSite.Stream, 1, 2, [2])));
        var attentionOnly = TinyModels.Random(TinyModels.AttentionOnly, seed: 3);
        Assert.Contains("no MLP blocks", Refusal(() => ActivationPatching.Run(attentionOnly, clean, corrupted, PatchSite.Mlp, 1, 2)));
    }
}
