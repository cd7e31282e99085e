using System.Text.Json;
using HeadLens.Analysis;
using HeadLens.Checkpoints;

namespace HeadLens.Tests.Analysis;

public class DirectLogitAttributionTests
{
    private static readonly string Fixtures = Path.Combine(AppContext.BaseDirectory, "Fixtures");

    private static JsonElement Golden(string model) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures, "attribution", "golden.json"))).RootElement
            .EnumerateArray().Single(entry => entry.GetProperty("model").GetString() == model);

    private static double[] Doubles(JsonElement array) => [.. array.EnumerateArray().Select(value => value.GetDouble())];

    [Theory]
    [InlineData("tiny-gpt2", false)]
    [InlineData("tiny-gpt2", true)]
    [InlineData("tiny-llama-gqa", false)]
    [InlineData("tiny-llama-gqa", true)]
    public void EveryShareMatchesPyTorch(string name, bool difference)
    {
        // tests/reference/dla_golden.py: each component's output at the position in float64 (each head's z_h · W_O[h]
        // from its own forward), through the final norm at the run's scale, dotted with W_U[token] (or W_U[token] −
        // W_U[wrong]). Float32 activations here: shares agree to ~1e-6.
        var golden = Golden(name);
        var (model, _) = ModelFiles.Load(Path.Combine(Fixtures, "models", name));
        int[] ids = [.. golden.GetProperty("ids").EnumerateArray().Select(value => value.GetInt32())];
        int position = golden.GetProperty("position").GetInt32(), token = golden.GetProperty("token").GetInt32();
        int? wrong = difference ? golden.GetProperty("wrong").GetInt32() : null;
        var attribution = DirectLogitAttribution.Compute(model, ids, position, token, wrong);
        var shares = golden.GetProperty(difference ? "difference_shares" : "token_shares");
        const double Tolerance = 2e-5;
        double logit = golden.GetProperty(difference ? "difference" : "logit").GetDouble();
        Assert.True(Math.Abs(attribution.Logit - logit) <= Tolerance, $"logit {attribution.Logit} vs {logit}");
        Assert.Equal(wrong, attribution.Wrong);
        var heads = shares.GetProperty("heads").EnumerateArray().Select(Doubles).ToList();
        for (int l = 0; l < heads.Count; l++)
        {
            for (int h = 0; h < heads[l].Length; h++)
            {
                Assert.True(Math.Abs(attribution.Heads[l, h] - heads[l][h]) <= Tolerance, $"head {l}.{h}: {attribution.Heads[l, h]} vs {heads[l][h]}");
            }
        }

        double[] mlps = Doubles(shares.GetProperty("mlps")), biases = Doubles(shares.GetProperty("output_biases"));
        for (int l = 0; l < mlps.Length; l++)
        {
            Assert.True(Math.Abs(attribution.Mlps[l] - mlps[l]) <= Tolerance, $"mlp {l}: {attribution.Mlps[l]} vs {mlps[l]}");
            Assert.True(Math.Abs(attribution.OutputBiases[l] - biases[l]) <= Tolerance, $"bias {l}");
        }

        Assert.True(Math.Abs(attribution.Embeddings - shares.GetProperty("embeddings").GetDouble()) <= Tolerance);
        Assert.True(Math.Abs(attribution.FinalBias - shares.GetProperty("final_bias").GetDouble()) <= Tolerance);
        Assert.True(Math.Abs(attribution.Total - attribution.Logit) <= 1e-4 * Math.Max(1, Math.Abs(logit)));
        Assert.Contains(heads.SelectMany(row => row), share => Math.Abs(share) > 1e-3);
    }

    [Fact]
    public void WithoutATokenTheModelsTopPredictionIsSplit()
    {
        var (model, _) = ModelFiles.Load(Path.Combine(Fixtures, "models", "tiny-llama-gqa"));
        int[] ids = [1, 4, 1, 5, 9, 2, 6, 5];
        var logits = new HookedForward(model).Run(ids).Logits;
        int v = model.Config.VocabSize, top = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(logits.AsSpan(5 * v, v));
        var chosen = DirectLogitAttribution.Compute(model, ids, 5, null);
        var named = DirectLogitAttribution.Compute(model, ids, 5, top);
        Assert.Equal(top, chosen.Token);
        Assert.Equal(named.Logit, chosen.Logit);
        Assert.Equal(named.Heads.Cast<double>(), chosen.Heads.Cast<double>());
    }

    [Fact]
    public void BadRequestsAreRefused()
    {
        var (model, _) = ModelFiles.Load(Path.Combine(Fixtures, "models", "tiny-gpt2"));
        var (encoder, _) = ModelFiles.Load(Path.Combine(Fixtures, "models", "tiny-bert"));
        Assert.Contains("outside the text's 3 tokens", Assert.Throws<HeadLensException>(() => DirectLogitAttribution.Compute(model, [1, 2, 3], 3, 0)).Message);
        Assert.Contains("outside the vocabulary", Assert.Throws<HeadLensException>(() => DirectLogitAttribution.Compute(model, [1, 2, 3], 2, 0, model.Config.VocabSize)).Message);
        Assert.Contains("output head", Assert.Throws<HeadLensException>(() => DirectLogitAttribution.Compute(encoder, [1, 2, 3], 2, 0)).Message);
    }
}
