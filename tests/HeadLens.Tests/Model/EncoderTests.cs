using System.Text.Json;
using HeadLens.Analysis;
using HeadLens.Checkpoints;
using HeadLens.Model;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Model;

/// <summary>
/// A BERT-family encoder (tests/reference/bert_golden.py: post-norm blocks, normalised embeddings with token types,
/// exact erf GELU, bidirectional attention with a padding mask), loaded from the Hugging Face layout and run by the
/// same block as every decoder. Hidden states within 1e-4 of PyTorch's float64 (fp32 here; LayerNorm with ε = 1e-12
/// amplifies rounding slightly), attention probabilities within 1e-5.
/// </summary>
public class EncoderTests
{
    private static readonly string Directory = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", "tiny-bert");

    [Fact]
    public void APaddedBatchMatchesPyTorchAtEveryRealToken()
    {
        var (model, golden) = Load();
        Assert.Equal(CheckpointLayout.Bert, model.Config.Layout);
        Assert.False(model.Config.HasOutputHead);
        int[] ids = Ints(golden, "ids"), types = Ints(golden, "token_types"), lengths = Ints(golden, "lengths");
        int batch = golden.GetProperty("batch").GetInt32(), tokens = golden.GetProperty("tokens").GetInt32(), c = model.Config.Channels;
        double[] expected = Doubles(golden, "hidden");
        var hidden = model.Infer(ids, batch, tokens, tokenTypes: types, lengths: lengths).FinalNormed;
        for (int b = 0; b < batch; b++)
        {
            int rows = lengths[b] * c, start = b * tokens * c;
            double error = Float64.MaxRelativeError(hidden.Slice(start, rows), expected.AsSpan(start, rows).ToArray());
            Assert.True(error <= 1e-4, $"sequence {b}: error {error:E2}");
        }

        // The shorter sequence alone (no padding at all) gives the same hidden states as inside the padded batch.
        var alone = model.Infer(ids.AsSpan(tokens, lengths[1]), 1, lengths[1], tokenTypes: types.AsSpan(tokens, lengths[1])).FinalNormed.ToArray();
        var padded = model.Infer(ids, batch, tokens, tokenTypes: types, lengths: lengths).FinalNormed.Slice(tokens * c, lengths[1] * c).ToArray();
        Assert.True(Float64.MaxRelativeError(alone, FiniteDifference.ToDouble(padded)) <= 1e-6);
    }

    [Fact]
    public void PatternsAreFullMatrices()
    {
        var (model, golden) = Load();
        int tokens = golden.GetProperty("tokens").GetInt32();
        var patterns = AttentionRecorder.Record(model, Ints(golden, "ids").AsSpan(0, tokens));
        double upper = 0;
        for (int h = 0; h < model.Config.Heads; h++)
        {
            for (int i = 0; i < tokens; i++)
            {
                var row = patterns[1].AsSpan(((h * tokens) + i) * tokens, tokens).ToArray();
                Assert.Equal(1.0, row.Sum(p => (double)p), 5);
                upper += row[(i + 1)..].Sum();
            }
        }

        Assert.True(upper > model.Config.Heads, $"a bidirectional layer attends above the diagonal (mass {upper:F2})");
    }

    [Fact]
    public void TheHookedRunSeesTheSamePatternsAsPyTorch()
    {
        var (model, golden) = Load();
        int tokens = golden.GetProperty("tokens").GetInt32();
        int[] ids = Ints(golden, "ids")[..tokens];
        // Sequence 0's token types are 0 for its first six tokens, then 1: set them through the embeddings hook.
        int[] types = Ints(golden, "token_types")[..tokens];
        var table = model.Parameters.TokenTypeEmbedding!.Span.ToArray();
        int c = model.Config.Channels;
        var hooked = new HookedForward(model).AddHook(HookNames.Embed, (_, x, _) =>
        {
            for (int i = 0; i < tokens; i++)
            {
                for (int k = 0; k < c; k++)
                {
                    x[(i * c) + k] += table[(types[i] * c) + k] - table[k];
                }
            }
        });
        var pattern = hooked.Run(ids, name => name == HookNames.Pattern(0))[HookNames.Pattern(0)];
        double error = Float64.MaxRelativeError(pattern, Doubles(golden, "layer0_probabilities_first"));
        Assert.True(error <= 1e-5, $"error {error:E2}");
    }

    [Fact]
    public void SavedAndLoadedTheEncoderIsUnchanged()
    {
        var (model, _) = Load();
        string target = Path.Combine(Path.GetTempPath(), "headlens-bert-" + Guid.NewGuid().ToString("N"));
        try
        {
            ModelFiles.Save(model, null, target);
            var (loaded, _) = ModelFiles.Load(target);
            Assert.Equal(model.Config, loaded.Config);
            Assert.Equal(model.Parameters.Arena.All.ToArray(), loaded.Parameters.Arena.All.ToArray());
        }
        finally
        {
            System.IO.Directory.Delete(target, recursive: true);
        }
    }

    [Fact]
    public void AnEncoderRefusesWhatOnlyDecodersDo()
    {
        var (model, _) = Load();
        var decode = Assert.Throws<HeadLensException>(() => model.DecodeStep([1, 2], model.NewCache(8), new float[model.Config.VocabSize]));
        Assert.Contains("causal", decode.Message, StringComparison.Ordinal);
        var train = Assert.Throws<HeadLensException>(() => model.Forward([1, 2], [2, 3], 1, 2));
        Assert.Contains("output head", train.Message, StringComparison.Ordinal);
    }

    private static (Transformer Model, JsonElement Golden) Load()
    {
        var (model, _) = ModelFiles.Load(Directory);
        var golden = JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, "golden.json"))).RootElement;
        return (model, golden);
    }

    private static int[] Ints(JsonElement element, string key) => element.GetProperty(key).EnumerateArray().Select(v => v.GetInt32()).ToArray();

    private static double[] Doubles(JsonElement element, string key) => element.GetProperty(key).EnumerateArray().Select(v => v.GetDouble()).ToArray();
}
