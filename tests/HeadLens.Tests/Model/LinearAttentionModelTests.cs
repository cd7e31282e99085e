using HeadLens.Analysis;
using HeadLens.Attention;
using HeadLens.Checkpoints;
using HeadLens.Checkpoints.Gguf;
using HeadLens.Model;
using HeadLens.Tests.Analysis;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Model;

/// <summary>
/// A model whose heads use linear attention (ModelConfig.AttentionForm): what its patterns are, that every entry to
/// them agrees, decoding chunks against the cache, padded batches, and how it is saved. FeatureTests runs it through
/// finite differences, batched inference and one-token decoding like every other feature.
/// </summary>
public class LinearAttentionModelTests
{
    private static readonly ModelConfig Linear = TinyModels.Llama with { AttentionForm = AttentionForm.Linear, KvHeads = 4 };

    [Fact]
    public void ThePatternIsTheFeatureMapsKernelNormalisedAndNotASoftmax()
    {
        var model = TinyModels.Random(Linear, seed: 51);
        int t = 10, heads = Linear.Heads, d = Linear.HeadDim;
        int[] ids = TinyModels.Ids(Linear, t, seed: 52);
        var run = new HookedForward(model).Run(ids, name => name == HookNames.RotQ(1) || name == HookNames.RotK(1) || name == HookNames.Pattern(1));
        float[] q = run[HookNames.RotQ(1)], k = run[HookNames.RotK(1)], pattern = run[HookNames.Pattern(1)];

        // In float64 with the exact exponential: p_ij = φ(q_i)·φ(k_j) / Σ_{j'≤i} φ(q_i)·φ(k_j'), φ(x) = elu(x) + 1.
        static double Phi(float x) => x > 0 ? x + 1.0 : Math.Exp(x);
        double largestGap = 0;
        var softmax = new float[heads * t * t];
        ScaledDotProductAttention.Patterns(model.AttentionOptions, t, t, 0, q, k, [.. Enumerable.Range(0, heads)], softmax);
        for (int h = 0; h < heads; h++)
        {
            for (int i = 0; i < t; i++)
            {
                var affinities = new double[i + 1];
                for (int j = 0; j <= i; j++)
                {
                    for (int c = 0; c < d; c++)
                    {
                        affinities[j] += Phi(q[(((i * heads) + h) * d) + c]) * Phi(k[(((j * heads) + h) * d) + c]);
                    }
                }

                double sum = affinities.Sum();
                for (int j = 0; j < t; j++)
                {
                    float got = pattern[(((h * t) + i) * t) + j];
                    if (j > i)
                    {
                        Assert.Equal(0f, got);
                        continue;
                    }

                    Assert.True(Math.Abs(got - (affinities[j] / sum)) <= 2e-6, $"head {h} [{i},{j}]: {got} vs {affinities[j] / sum}");
                    largestGap = Math.Max(largestGap, Math.Abs(got - softmax[(((h * t) + i) * t) + j]));
                }
            }
        }

        Assert.True(largestGap > 1e-2, $"the linear pattern is within {largestGap:E2} of a softmax over the same q and k");
    }

    [Theory]
    [InlineData(AttentionForm.Linear)]
    [InlineData(AttentionForm.Softmax)]
    public void ThePublicPatternsAreTheHooksBits(AttentionForm form)
    {
        // The viewer asks Transformer.Patterns for some heads and some query rows; the heads view reads the hook.
        var model = TinyModels.Random(Linear with { AttentionForm = form }, seed: 53);
        int t = 9, heads = Linear.Heads, qRow = heads * Linear.HeadDim;
        int[] ids = TinyModels.Ids(Linear, t, seed: 54);
        var run = new HookedForward(model).Run(ids, name => name == HookNames.RotQ(0) || name == HookNames.RotK(0) || name == HookNames.Pattern(0));
        float[] hooked = run[HookNames.Pattern(0)];
        int firstQuery = 3, queries = 5;
        int[] selected = [2, 0];
        var patterns = new float[selected.Length * queries * t];
        model.Patterns(queries, t, firstQuery, run[HookNames.RotQ(0)].AsSpan(firstQuery * qRow, queries * qRow), run[HookNames.RotK(0)], selected, patterns);
        for (int index = 0; index < selected.Length; index++)
        {
            for (int i = 0; i < queries; i++)
            {
                Assert.Equal(
                    hooked.AsSpan((((selected[index] * t) + firstQuery + i) * t), t).ToArray(),
                    patterns.AsSpan(((index * queries) + i) * t, t).ToArray());
            }
        }
    }

    [Fact]
    public void ChunksDecodedAgainstTheCacheMatchTheFullForward()
    {
        var model = TinyModels.Random(Linear, seed: 55);
        int tokens = 12, vocab = Linear.VocabSize;
        int[] ids = TinyModels.Ids(Linear, tokens, seed: 56);
        model.Forward(ids, [], 1, tokens);
        float[] full = model.Logits.ToArray();

        // Three tokens, then chunks of four and five against what the cache holds (several queries at an offset).
        var cache = model.NewCache(Linear.ContextLength);
        var logits = new float[vocab];
        int done = 0;
        foreach (int chunk in new[] { 3, 4, 5 })
        {
            model.DecodeStep(ids.AsSpan(done, chunk), cache, logits);
            done += chunk;
            double error = Float64.MaxRelativeError(logits, FiniteDifference.ToDouble(full[((done - 1) * vocab)..(done * vocab)]));
            Assert.True(error <= 1e-5, $"after {done} tokens: error {error:E2}");
        }
    }

    [Theory]
    [InlineData("running sums")]
    [InlineData("sums rebuilt from the cache")]
    [InlineData("windowed cache")]
    public void EveryWayOfDecodingMatchesTheFullForward(string way)
    {
        // Running sums (the recurrent form) by default; sums that disagree with the cache's length are rebuilt from its
        // keys and values; a windowed cache (here never full) reads its keys and values through the pattern instead.
        var model = TinyModels.Random(Linear, seed: 61);
        int tokens = 14, vocab = Linear.VocabSize;
        int[] ids = TinyModels.Ids(Linear, tokens, seed: 62);
        model.Forward(ids, [], 1, tokens);
        float[] full = model.Logits.ToArray();
        var cache = way == "windowed cache" ? model.NewCache(Linear.ContextLength, window: 15) : model.NewCache(Linear.ContextLength);
        var logits = new float[vocab];
        model.DecodeStep(ids.AsSpan(0, 5), cache, logits);
        for (int t = 5; t < tokens; t++)
        {
            if (way == "sums rebuilt from the cache")
            {
                for (int l = 0; l < Linear.Layers; l++)
                {
                    cache.SetRunningSums(l, 0);
                    Array.Fill(cache.RunningSums(l, LinearAttention.StateFloats(Linear.Heads, Linear.HeadDim, Linear.HeadDim)).Sums, float.NaN);
                }
            }

            model.DecodeStep(ids.AsSpan(t, 1), cache, logits);
            double error = Float64.MaxRelativeError(logits, FiniteDifference.ToDouble(full[(t * vocab)..((t + 1) * vocab)]));
            Assert.True(error <= 1e-5, $"{way}, token {t}: error {error:E2}");
        }

        int summed = cache.RunningSums(0, LinearAttention.StateFloats(Linear.Heads, Linear.HeadDim, Linear.HeadDim)).Tokens;
        Assert.Equal(way == "windowed cache" ? 0 : tokens, summed);
    }

    [Fact]
    public void APaddedSequenceMatchesItselfAlone()
    {
        var model = TinyModels.Random(Linear, seed: 57);
        int tokens = 8, real = 5, vocab = Linear.VocabSize;
        int[] ids = TinyModels.Ids(Linear, 2 * tokens, seed: 58);
        var padded = model.Infer(ids, 2, tokens, lengths: [tokens, real]).Logits.Slice(tokens * vocab, real * vocab).ToArray();
        var alone = model.Infer(ids.AsSpan(tokens, real), 1, real).Logits.ToArray();
        // The projections run over 16 rows in one call and 5 in the other (other blocking in the product): rounding.
        Assert.True(Float64.MaxRelativeError(alone, FiniteDifference.ToDouble(padded)) <= 1e-6);
    }

    [Fact]
    public void ItIsSavedWithItsFormAndReadBack()
    {
        var model = TinyModels.Random(Linear, seed: 59);
        string directory = Path.Combine(Path.GetTempPath(), $"headlens-linear-{Guid.NewGuid():N}");
        try
        {
            ModelFiles.Save(model, tokenizer: null, directory);
            Assert.Contains("\"headlens_attention_form\": \"linear\"", File.ReadAllText(Path.Combine(directory, "config.json")), StringComparison.Ordinal);
            var (loaded, _) = ModelFiles.Load(directory);
            Assert.Equal(AttentionForm.Linear, loaded.Config.AttentionForm);
            int[] ids = TinyModels.Ids(Linear, 7, seed: 60);
            Assert.Equal(model.Infer(ids, 1, 7).Logits.ToArray(), loaded.Infer(ids, 1, 7).Logits.ToArray());

            // GGUF has no linear attention: llama.cpp would run softmax attention on these weights.
            string gguf = Path.Combine(directory, "model.gguf");
            var error = Assert.Throws<HeadLensException>(() => GgufWriter.Write(gguf, model, tokenizer: null));
            Assert.Contains("softmax attention", error.Message, StringComparison.Ordinal);
            Assert.False(File.Exists(gguf));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void FeaturesItCannotCombineWithAreRefused()
    {
        foreach (var config in new[]
        {
            Linear with { KvHeads = 2 },
            Linear with { AttentionWindow = 4 },
            Linear with { Attention = MaskKind.Bidirectional },
            TinyModels.Gpt2 with { AttentionForm = AttentionForm.Linear, Positions = PositionKind.Alibi },
        })
        {
            var error = Assert.Throws<HeadLensException>(() => config.Validated());
            Assert.Contains("linear attention is causal", error.Message, StringComparison.Ordinal);
        }
    }
}
