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

    // The golden answer and wrong tokens a metric reads: both for a logit difference, the answer for log p, none for the encoder.
    private static (int? Answer, int? Wrong) GoldenTokens(JsonElement golden, string metric) =>
        (metric == "similarity" ? null : golden.GetProperty("answer").GetInt32(),
         metric == "logit_difference" ? golden.GetProperty("wrong").GetInt32() : null);

    // The path tests' models: four layers deep (three attention-only, BERT's fixture two), so that whole layers lie
    // between a sender and a receiver.
    private static Transformer DeepModel(string family) => family switch
    {
        "gpt2" => TinyModels.Random(TinyModels.Gpt2 with { Layers = 4 }, seed: 5),
        "llama" => TinyModels.Random(TinyModels.Llama with { Layers = 4 }, seed: 5),
        "attention-only" => TinyModels.Random(TinyModels.AttentionOnly, seed: 5),
        _ => ModelFiles.Load(Path.Combine(Fixtures, "models", "tiny-bert")).Model,
    };

    private static PatchSite Site(string name) => name switch
    {
        "heads" => PatchSite.Heads,
        "stream" => PatchSite.Stream,
        "attention" => PatchSite.Attention,
        "mlp" => PatchSite.Mlp,
        "head_positions" => PatchSite.HeadPositions,
        "queries" => PatchSite.Queries,
        "keys" => PatchSite.Keys,
        "values" => PatchSite.Values,
        _ => PatchSite.Patterns,
    };

    // The sites whose patches are heads (the golden entries name a head, not a position).
    private static bool PerHead(string site) => site is "heads" or "queries" or "keys" or "values" or "patterns";

    public static TheoryData<string, string, string> GoldenCases()
    {
        var cases = new TheoryData<string, string, string>();
        foreach (string site in new[] { "heads", "stream", "attention", "mlp", "head_positions", "queries", "keys", "values", "patterns" })
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
        // per patch with one head's z (every position, or one), or at one position the stream entering one block, its
        // attention's output or its MLP's, or one head's queries, keys, values (key/value heads under GQA) or
        // pattern, taken from the clean run. Float32 here: the logits' differences agree to a few 1e-6, the cosines to ~1e-7.
        var golden = Golden(name);
        var (model, _) = ModelFiles.Load(Path.Combine(Fixtures, "models", name));
        int[] clean = Ints(golden.GetProperty("clean_ids")), corrupted = Ints(golden.GetProperty("corrupted_ids"));
        var (answer, wrong) = GoldenTokens(golden, metric);
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
            int index = entry.GetProperty(site == "head_positions" || PerHead(site) ? "head" : "position").GetInt32();
            Assert.Equal((entry.GetProperty("layer").GetInt32(), index), (effect.Layer, effect.Index));
            Assert.Equal(site == "head_positions" ? entry.GetProperty("position").GetInt32() : -1, effect.Position);
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
        { "gpt2", "head_positions", 7 }, { "llama", "head_positions", 100 }, { "bert", "head_positions", 1 },
        { "gpt2", "queries", 2 }, { "llama", "queries", 3 }, { "llama", "keys", 1 }, { "llama", "values", 100 }, { "bert", "keys", 3 },
        { "gpt2", "patterns", 2 }, { "llama", "patterns", 100 }, { "bert", "patterns", 1 }, { "qwen2", "queries", 2 }, { "qwen2", "keys", 100 },
    };

    [Theory]
    [MemberData(nameof(BatchCases))]
    public void TheBatchedSweepEqualsOneWholePatchedRunEach(string family, string site, int maxBatch)
    {
        // The plain path: one whole run of the corrupted ids per patch, with the library's own Patch intervention at
        // the site's capture point (one head, one head at one position, or one position). The sweep starts each batch at its block; the two agree
        // to float rounding.
        var model = family switch
        {
            "gpt2" => TinyModels.Random(TinyModels.Gpt2, seed: 3),
            "llama" => TinyModels.Random(TinyModels.Llama, seed: 3),
            "qwen2" => TinyModels.Random(TinyModels.Qwen2Llama3Rope, seed: 3),
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
        int perLayer = site switch
        {
            "keys" or "values" => config.KvHeads,
            "head_positions" => config.Heads * clean.Length,
            _ => PerHead(site) ? config.Heads : clean.Length,
        };
        Assert.Equal(config.Layers * perLayer, result.Effects.Count);
        Assert.Equal(perLayer, ActivationPatching.PatchesPerLayer(config, patchSite, clean.Length));

        var names = Enumerable.Range(0, config.Layers).Select(l => ActivationPatching.Point(patchSite, l)).ToHashSet();
        var cleanRun = new HookedForward(model).Run(clean, names.Contains);
        string last = model.Parameters.HasFinalNorm ? HookNames.FinalNormalized : HookNames.ResidPost(config.Layers - 1);
        double[] reference = config.HasOutputHead ? [] : Sentence(new HookedForward(model).Run(clean, name => name == last)[last], config.Channels);
        foreach (var effect in result.Effects)
        {
            string point = ActivationPatching.Point(patchSite, effect.Layer);
            var forward = site == "head_positions"
                ? new HookedForward(model).Patch(point, cleanRun[point], head: effect.Index, position: effect.Position)
                : PerHead(site)
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

    public static TheoryData<string, int, string> PathCases()
    {
        var cases = new TheoryData<string, int, string>();
        foreach (int receivers in new[] { 0, 1, 2 })
        {
            cases.Add("tiny-gpt2", receivers, "logit_difference");
            cases.Add("tiny-llama-gqa", receivers, "logit_difference");
            cases.Add("tiny-llama-gqa", receivers, "log_probability");
            cases.Add("tiny-bert", receivers, "similarity");
        }

        return cases;
    }

    [Theory]
    [MemberData(nameof(PathCases))]
    public void EveryPathMatchesPyTorch(string name, int receiverSet, string metric)
    {
        // tests/reference/patching_golden.py: per sending head of layer 0, the corrupted text with that head's z clean
        // and every other head's z held at its corrupted value, the receivers' q, k and v read there; then the corrupted
        // text with the receivers' q (k, v) replaced by those. Receiver sets: [] (the output), [1.1], [1.0, 1.(H−1)].
        var golden = Golden(name);
        var set = golden.GetProperty("paths")[receiverSet];
        (int, int)[] receivers = [.. set.GetProperty("receivers").EnumerateArray().Select(r => (r[0].GetInt32(), r[1].GetInt32()))];
        var (model, _) = ModelFiles.Load(Path.Combine(Fixtures, "models", name));
        int[] clean = Ints(golden.GetProperty("clean_ids")), corrupted = Ints(golden.GetProperty("corrupted_ids"));
        var (answer, wrong) = GoldenTokens(golden, metric);
        var result = ActivationPatching.Paths(model, clean, corrupted, receivers, answer, wrong, senderLayers: [0]);
        Assert.Equal(PatchSite.Paths, result.Site);
        Assert.Equal(receivers, result.Receivers);

        var expected = set.GetProperty("effects").EnumerateArray().ToList();
        Assert.Equal(expected.Count, result.Effects.Count);
        Assert.Equal(receivers.Length == 0 ? model.Config.Heads : 3 * model.Config.Heads, expected.Count);
        foreach (var (effect, entry) in result.Effects.Zip(expected))
        {
            Assert.Equal((entry.GetProperty("layer").GetInt32(), entry.GetProperty("head").GetInt32()), (effect.Layer, effect.Index));
            HeadInput? input = entry.GetProperty("input").GetString() switch
            {
                "q" => HeadInput.Query,
                "k" => HeadInput.Key,
                "v" => HeadInput.Value,
                _ => null,
            };
            Assert.Equal(input, effect.Input);
            double value = entry.GetProperty(metric).GetDouble();
            Assert.True(Math.Abs(effect.Value - value) <= 2e-5, $"{name} path {effect.Layer}.{effect.Index} → {effect.Input}: {effect.Value} vs {value}");
        }
    }

    [Fact]
    public void TheGoldenPathsAreNotAllAlike()
    {
        // Guards the comparison above: the senders differ, and each input of the receivers carries something.
        foreach (var (name, metric) in new[] { ("tiny-gpt2", "logit_difference"), ("tiny-llama-gqa", "logit_difference"), ("tiny-bert", "similarity") })
        {
            foreach (var set in Golden(name).GetProperty("paths").EnumerateArray())
            {
                var values = set.GetProperty("effects").EnumerateArray().Select(e => e.GetProperty(metric).GetDouble()).ToList();
                Assert.True(values.Max() - values.Min() > 1e-3, $"{name} {set.GetProperty("receivers")}: {values.Max() - values.Min()}");
            }
        }
    }

    public static TheoryData<string, int> PathBatchCases => new() { { "gpt2", 1 }, { "gpt2", 100 }, { "llama", 2 }, { "bert", 3 }, { "attention-only", 1 }, { "attention-only", 5 } };

    [Theory]
    [MemberData(nameof(PathBatchCases))]
    public void TheBatchedPathSweepEqualsTwoPlainRunsPerPath(string family, int maxBatch)
    {
        // The plain path: for each sender and input, one whole run of the corrupted ids with Patch interventions at
        // every head's z of the layers up to the last receiver's (held at the corrupted run's, the sender's from the
        // clean run), reading the receivers' inputs; then one whole run with those patched in. Four layers deep
        // (three for the attention-only model, two for BERT), so that whole layers between sender and receiver are held.
        var model = DeepModel(family);
        var config = model.Config;
        int[] clean = TinyModels.Ids(config, 9, seed: 6);
        int[] corrupted = [.. clean];
        corrupted[2] = (clean[2] + 4) % config.VocabSize;
        corrupted[6] = (clean[6] + 1) % config.VocabSize;
        int? answer = config.HasOutputHead ? 1 : null, wrong = config.HasOutputHead ? 2 : null;
        string last = model.Parameters.HasFinalNorm ? HookNames.FinalNormalized : HookNames.ResidPost(config.Layers - 1);
        double[] reference = config.HasOutputHead ? [] : Sentence(new HookedForward(model).Run(clean, name => name == last)[last], config.Channels);
        var cleanRun = new HookedForward(model).Run(clean, name => name.EndsWith("hook_z", StringComparison.Ordinal));
        var corruptedRun = new HookedForward(model).Run(corrupted, name => name.EndsWith("hook_z", StringComparison.Ordinal));
        int top = config.Layers - 1;
        foreach (var receivers in new (int Layer, int Head)[][] { [], [(top, 1)], [(top - 1, 0), (top, config.Heads - 1)] })
        {
            if (receivers.Any(r => r.Layer == 0))
            {
                continue; // two-layer BERT: no receivers in two layers
            }

            var result = ActivationPatching.SweepPaths(model, clean, corrupted, receivers, answer, wrong, null, null, maxBatch);
            int firstReceiver = receivers.Length == 0 ? config.Layers : receivers.Min(r => r.Layer);
            int lastHeld = receivers.Length == 0 ? config.Layers - 1 : receivers.Max(r => r.Layer) - 1;
            Assert.Equal(firstReceiver * config.Heads * (receivers.Length == 0 ? 1 : 3), result.Effects.Count);
            foreach (var effect in result.Effects)
            {
                var sending = new HookedForward(model);
                for (int l = effect.Layer; l <= lastHeld; l++)
                {
                    sending.Patch(HookNames.Z(l), corruptedRun[HookNames.Z(l)]);
                }

                sending.Patch(HookNames.Z(effect.Layer), cleanRun[HookNames.Z(effect.Layer)], head: effect.Index);
                var sent = sending.Run(corrupted, name => name == last || name.Contains(".attn.hook_", StringComparison.Ordinal));
                double value;
                if (effect.Input is not { } input)
                {
                    value = Metric(model, sent, last, reference);
                }
                else
                {
                    var receiving = new HookedForward(model);
                    foreach (var (layer, head) in receivers)
                    {
                        string point = input switch { HeadInput.Query => HookNames.Q(layer), HeadInput.Key => HookNames.K(layer), _ => HookNames.V(layer) };
                        receiving.Patch(point, sent[point], head: input == HeadInput.Query ? head : head / (config.Heads / config.KvHeads));
                    }

                    value = Metric(model, receiving.Run(corrupted, name => name == last), last, reference);
                }

                Assert.True(Math.Abs(effect.Value - value) <= 2e-5, $"{family} {effect.Layer}.{effect.Index} → {effect.Input}: {effect.Value} vs {value}");
            }
        }
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public void TheLastLayersPathsToTheOutputAreItsHeadPatches(string family)
    {
        // Nothing lies between the last layer's heads and the output but that layer's MLP, which both recompute: the path
        // from such a head to the output is patching the head itself.
        var model = TinyModels.Random(family == "gpt2" ? TinyModels.Gpt2 : TinyModels.Llama, seed: 8);
        int[] clean = TinyModels.Ids(model.Config, 8, seed: 9);
        int[] corrupted = [.. clean];
        corrupted[1] = (clean[1] + 2) % model.Config.VocabSize;
        int top = model.Config.Layers - 1;
        var paths = ActivationPatching.Paths(model, clean, corrupted, [], 1, 2, [top]);
        var heads = ActivationPatching.Run(model, clean, corrupted, PatchSite.Heads, 1, 2, [top]);
        Assert.Equal(heads.Effects.Select(e => (e.Layer, e.Index)), paths.Effects.Select(e => (e.Layer, e.Index)));
        foreach (var (path, head) in paths.Effects.Zip(heads.Effects))
        {
            Assert.Null(path.Input);
            Assert.True(Math.Abs(path.Value - head.Value) <= 1e-5, $"{path.Layer}.{path.Index}: {path.Value} vs {head.Value}");
        }
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    [InlineData("bert")]
    [InlineData("attention-only")]
    public void FromOneSenderEachPathIsThePathIntoThatReceiver(string family)
    {
        // PathsFrom sweeps the receivers of one head; Paths (the PyTorch-checked sweep) the senders into one head. The
        // same path from either side: equal to float rounding (other batches, so other blockings of the products).
        var model = DeepModel(family);
        var config = model.Config;
        int[] clean = TinyModels.Ids(config, 9, seed: 6);
        int[] corrupted = [.. clean];
        corrupted[2] = (clean[2] + 4) % config.VocabSize;
        int? answer = config.HasOutputHead ? 1 : null, wrong = config.HasOutputHead ? 2 : null;
        var progress = new List<(int, int)>();
        var from = ActivationPatching.PathsFrom(model, clean, corrupted, (0, 1), answer, wrong, progress: (done, total) => progress.Add((done, total)));
        Assert.Equal((0, 1), from.Sender);
        Assert.Equal((config.Layers - 1) * config.Heads * 3, from.Effects.Count);
        Assert.Equal((from.Effects.Count, from.Effects.Count), progress[^1]);
        foreach (var receiver in from.Effects.GroupBy(e => (e.Layer, e.Index)))
        {
            var into = ActivationPatching.Paths(model, clean, corrupted, [receiver.Key], answer, wrong, senderLayers: [0]);
            foreach (var effect in receiver)
            {
                var same = into.Effects.Single(e => e.Index == 1 && e.Input == effect.Input);
                Assert.True(Math.Abs(effect.Value - same.Value) <= 2e-5, $"{family} 0.1 → {receiver.Key} {effect.Input}: {effect.Value} vs {same.Value}");
            }
        }

        var values = ActivationPatching.PathsFrom(model, clean, corrupted, (0, 1), answer, wrong, [config.Layers - 1], inputs: [HeadInput.Value]);
        Assert.Equal(from.Effects.Where(e => e.Layer == config.Layers - 1 && e.Input == HeadInput.Value).Select(e => (e.Layer, e.Index)),
            values.Effects.Select(e => (e.Layer, e.Index)));
    }

    [Fact]
    public void OneInputsPathsAreThoseOfTheWholeSweep()
    {
        // The same runs, a third of them: each path into the keys alone equals the key paths of the full sweep, bit for bit.
        var model = TinyModels.Random(TinyModels.Llama with { Layers = 3 }, seed: 5);
        int[] clean = TinyModels.Ids(model.Config, 9, seed: 6);
        int[] corrupted = [.. clean];
        corrupted[4] = (clean[4] + 2) % model.Config.VocabSize;
        var all = ActivationPatching.Paths(model, clean, corrupted, [(2, 1)], 1, 2);
        var keys = ActivationPatching.Paths(model, clean, corrupted, [(2, 1)], 1, 2, inputs: [HeadInput.Key]);
        Assert.Equal(2 * model.Config.Heads, keys.Effects.Count);
        Assert.Equal(all.Effects.Where(e => e.Input == HeadInput.Key), keys.Effects);
        var two = ActivationPatching.Paths(model, clean, corrupted, [(2, 1)], 1, 2, inputs: [HeadInput.Value, HeadInput.Query]);
        Assert.Equal(all.Effects.Where(e => e.Input != HeadInput.Key), two.Effects);
    }

    [Fact]
    public void BadPathsAreRefusedWithOneClearLine()
    {
        var model = TinyModels.Random(TinyModels.Gpt2, seed: 3);
        int[] clean = [5, 6, 7], corrupted = [5, 8, 7];
        string Refusal(Action action) => Assert.Throws<HeadLensException>(action).Message;
        Assert.Contains("layer 0 has no heads before it", Refusal(() => ActivationPatching.Paths(model, clean, corrupted, [(0, 1)], 1, 2)));
        Assert.Contains("no head 1.3: layer 1 has 3 heads", Refusal(() => ActivationPatching.Paths(model, clean, corrupted, [(1, 3)], 1, 2)));
        Assert.Contains("no layer 2", Refusal(() => ActivationPatching.Paths(model, clean, corrupted, [(2, 0)], 1, 2)));
        Assert.Contains("layer 1 does not come before", Refusal(() => ActivationPatching.Paths(model, clean, corrupted, [(1, 0)], 1, 2, [1])));
        Assert.Throws<ArgumentException>(() => ActivationPatching.Run(model, clean, corrupted, PatchSite.Paths, 1, 2));
        Assert.Contains("the output has no queries, keys or values", Refusal(() => ActivationPatching.Paths(model, clean, corrupted, [], 1, 2, inputs: [HeadInput.Key])));
        Assert.Contains("layer 1 is the last: no head comes after 1.0", Refusal(() => ActivationPatching.PathsFrom(model, clean, corrupted, (1, 0), 1, 2)));
        Assert.Contains("no head 0.3: layer 0 has 3 heads", Refusal(() => ActivationPatching.PathsFrom(model, clean, corrupted, (0, 3), 1, 2)));
        Assert.Contains("layer 0 does not come after the sending head's layer (0)", Refusal(() => ActivationPatching.PathsFrom(model, clean, corrupted, (0, 0), 1, 2, [0])));
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
