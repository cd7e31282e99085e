using HeadLens.Analysis;
using HeadLens.Checkpoints;
using HeadLens.Inference;
using HeadLens.Model;
using HeadLens.Tests.Cli;

namespace HeadLens.Tests.Model;

/// <summary>
/// NaN/∞ in a model's outputs stops generation and every analysis pass with one line naming the layer where the first
/// non-finite value appears. The model here has finite weights (so it loads) whose layer-1 queries overflow float32.
/// </summary>
public sealed class NonFiniteOutputTests : IDisposable
{
    private static readonly int[] Ids = [5, 6, 7, 8, 9, 10];
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-nonfinite-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(directory))
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private static Transformer Overflowing()
    {
        var model = Transformer.Create(ModelPresets.Get("tiny"), 3);
        model.Parameters.Layer(1).Query.Span.Fill(3e38f);
        return model;
    }

    private static void AssertNamesLayerOne(Action action)
    {
        var error = Assert.Throws<HeadLensException>(action);
        Assert.Contains("NaN or infinity", error.Message);
        Assert.Contains("layer 1 (blocks.1.attn.hook_q)", error.Message);
    }

    [Fact]
    public void GenerationStopsNamingTheLayer()
    {
        var model = Overflowing();
        AssertNamesLayerOne(() => _ = Generator.Generate(model, Ids, 5, new Sampler(new SamplingSettings { Temperature = 0 })).Count());
        AssertNamesLayerOne(() => _ = Generator.Generate(model, Ids, 5, new Sampler(new SamplingSettings())).Count());
    }

    [Fact]
    public void AnalysisPassesStopNamingTheLayer()
    {
        var model = Overflowing();
        AssertNamesLayerOne(() => model.Run(Ids));
        AssertNamesLayerOne(() => model.Run(Ids, withLogits: false));
        AssertNamesLayerOne(() => model.Infer(Ids, 1, Ids.Length));
        AssertNamesLayerOne(() => AttentionRecorder.Record(model, Ids));
        AssertNamesLayerOne(() => new HookedForward(model).Run(Ids));

        // A batch of two sequences: the first one that overflows is the one diagnosed.
        AssertNamesLayerOne(() => model.Infer([.. Ids, .. Ids], 2, Ids.Length));
    }

    [Fact]
    public void FiniteModelsRunAsBefore()
    {
        var model = Transformer.Create(ModelPresets.Get("tiny"), 3);
        var logits = model.Run(Ids).Logits;
        Assert.True(Transformer.AllFinite(logits));
        Assert.Equal(5, Generator.Generate(model, Ids, 5, new Sampler(new SamplingSettings { Temperature = 0 })).Count());
    }

    [Fact]
    public void AllFiniteAgreesWithAnElementScan()
    {
        // Every length 0..70, a bad or huge value at every position: the fast sum-based test against the plain scan.
        // Huge finite values make the sum overflow without any element being non-finite.
        var random = new Random(4);
        foreach (float special in (float[])[float.NaN, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, -float.MaxValue])
        {
            for (int length = 0; length <= 70; length++)
            {
                var values = Enumerable.Range(0, length).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
                Assert.True(Transformer.AllFinite(values));
                for (int at = 0; at < length; at++)
                {
                    var copy = (float[])values.Clone();
                    copy[at] = special;
                    if (at + 1 < length && float.IsFinite(special))
                    {
                        copy[at + 1] = special; // two huge values: the sum overflows
                    }

                    Assert.Equal(copy.All(float.IsFinite), Transformer.AllFinite(copy));
                }
            }
        }
    }

    [Fact]
    public void CommandsSayWhereInOneLine()
    {
        string model = Path.Combine(directory, "overflowing");
        ModelFiles.Save(Overflowing(), new HeadLens.Tokenization.ByteTokenizer(), model);
        CliTests.AssertOneLineError(CliTests.Run("generate", "--model", model, "--ids", "5,6,7", "--max-tokens", "3"), "layer 1");
        CliTests.AssertOneLineError(CliTests.Run("logits", "--model", model, "--ids", "5,6,7", "--json"), "layer 1");
        CliTests.AssertOneLineError(CliTests.Run("attention", "--model", model, "--ids", "5,6,7", "--json"), "layer 1");
        CliTests.AssertOneLineError(CliTests.Run("heads", "--model", model, "--text", "abcabc"), "layer 1");
    }
}
