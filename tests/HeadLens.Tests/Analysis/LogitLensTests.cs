using System.Text.Json;
using HeadLens.Analysis;
using HeadLens.Checkpoints;

namespace HeadLens.Tests.Analysis;

public class LogitLensTests
{
    private static readonly string Fixtures = Path.Combine(AppContext.BaseDirectory, "Fixtures");

    private static JsonElement Golden(string model) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures, "lens", "golden.json"))).RootElement
            .EnumerateArray().Single(entry => entry.GetProperty("model").GetString() == model);

    private static double[] Doubles(JsonElement array) => [.. array.EnumerateArray().Select(value => value.GetDouble())];

    [Theory]
    [InlineData("tiny-gpt2")]
    [InlineData("tiny-llama-gqa")]
    public void EveryStageMatchesPyTorch(string name)
    {
        // tests/reference/lens_golden.py: the stream after the embedding and after each block of the fixture, run in
        // float64 and put through the final norm and the output head. Float32 here: probabilities agree to ~1e-6.
        var golden = Golden(name);
        var (model, _) = ModelFiles.Load(Path.Combine(Fixtures, "models", name));
        int[] ids = [.. golden.GetProperty("ids").EnumerateArray().Select(value => value.GetInt32())];
        var result = LogitLens.Run(model, ids, top: 3);
        var stages = golden.GetProperty("stages").EnumerateArray().ToList();
        Assert.Equal(stages.Count, result.Stages.Count);
        foreach (var (stage, expected) in result.Stages.Zip(stages))
        {
            string where = $"{name} stage {stage.Layer}";
            Assert.Equal(expected.GetProperty("stage").GetInt32(), stage.Layer);
            double loss = expected.GetProperty("loss").GetDouble();
            Assert.True(Math.Abs(stage.Loss - loss) <= 1e-5 * loss, $"{where}: loss {stage.Loss} vs {loss}");
            double[] next = Doubles(expected.GetProperty("next_probabilities"));
            Assert.Equal(next.Length, stage.NextProbabilities.Length);
            for (int i = 0; i < next.Length; i++)
            {
                Assert.True(Math.Abs(stage.NextProbabilities[i] - next[i]) <= 1e-5, $"{where} position {i}: {stage.NextProbabilities[i]} vs {next[i]}");
            }

            var topIds = expected.GetProperty("top_ids").EnumerateArray().ToList();
            var topProbabilities = expected.GetProperty("top_probabilities").EnumerateArray().ToList();
            for (int i = 0; i < ids.Length; i++)
            {
                int[] expectedIds = [.. topIds[i].EnumerateArray().Select(value => value.GetInt32())];
                double[] probabilities = Doubles(topProbabilities[i]);
                Assert.Equal(expectedIds, stage.Top[i].Select(token => token.Token));
                for (int k = 0; k < 3; k++)
                {
                    Assert.True(Math.Abs(stage.Top[i][k].Probability - probabilities[k]) <= 1e-5, $"{where} position {i} rank {k}");
                }
            }
        }
    }

    [Fact]
    public void TheGoldenStagesDiffer()
    {
        // Guards the comparison above: the fixtures' stages predict differently.
        foreach (string name in new[] { "tiny-gpt2", "tiny-llama-gqa" })
        {
            var losses = Golden(name).GetProperty("stages").EnumerateArray().Select(s => s.GetProperty("loss").GetDouble()).ToList();
            Assert.True(losses.Max() - losses.Min() > 0.1, name);
        }
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public void TheLastStageIsTheModelsOwnOutput(string family)
    {
        var config = family == "gpt2" ? TinyModels.Gpt2 : TinyModels.Llama;
        var model = TinyModels.Random(config, seed: 5);
        int[] ids = TinyModels.Ids(config, 11, seed: 6);
        var result = LogitLens.Run(model, ids, top: 4);
        var logits = new HookedForward(model).Run(ids).Logits;
        int v = config.VocabSize;
        var last = result.Stages[^1];
        Assert.Equal(config.Layers - 1, last.Layer);
        Assert.Equal(config.Layers + 1, result.Stages.Count);
        for (int i = 0; i < ids.Length; i++)
        {
            var row = logits.AsSpan(i * v, v);
            double max = row.ToArray().Max(), sum = row.ToArray().Sum(x => Math.Exp(x - max));
            int answer = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(row);
            Assert.Equal(answer, result.Answers[i]);
            Assert.Equal(answer, last.Top[i][0].Token);
            Assert.True(Math.Abs(last.AnswerProbabilities[i] - (1 / sum)) <= 1e-6, $"position {i}");
            double[] ranked = [.. last.Top[i].Select(token => token.Probability)];
            Assert.Equal(ranked.OrderByDescending(p => p), ranked);
            if (i < ids.Length - 1)
            {
                Assert.True(Math.Abs(last.NextProbabilities[i] - Math.Exp(row[ids[i + 1]] - max) / sum) <= 1e-6);
            }
        }
    }

    [Fact]
    public void ReadingInChunksGivesTheSameStages()
    {
        var model = TinyModels.Random(TinyModels.Llama, seed: 5);
        int[] ids = TinyModels.Ids(model.Config, 13, seed: 6);
        var whole = LogitLens.Run(model, ids, top: 3);
        foreach (int chunk in new[] { 1, 4 })
        {
            var chunked = LogitLens.Read(model, ids, 3, chunk);
            // The output head's product on fewer rows blocks differently: equal to float rounding.
            foreach (var (a, b) in whole.Stages.Zip(chunked.Stages))
            {
                Assert.All(a.NextProbabilities.Zip(b.NextProbabilities), pair => Assert.True(Math.Abs(pair.First - pair.Second) <= 1e-6));
                Assert.Equal(a.Top.SelectMany(row => row.Select(token => token.Token)), b.Top.SelectMany(row => row.Select(token => token.Token)));
            }
        }
    }

    [Fact]
    public void AnEncoderAndNoTokensAreRefused()
    {
        var (encoder, _) = ModelFiles.Load(Path.Combine(Fixtures, "models", "tiny-bert"));
        Assert.Contains("output head", Assert.Throws<HeadLensException>(() => LogitLens.Run(encoder, [1, 2, 3])).Message);
        var model = TinyModels.Random(TinyModels.Gpt2, seed: 5);
        Assert.Throws<HeadLensException>(() => LogitLens.Run(model, [1, 2], top: 0));
        Assert.True(double.IsNaN(LogitLens.Run(model, [1]).Stages[0].Loss));
    }
}
