using HeadLens.Analysis;
using HeadLens.Attention;
using HeadLens.Model;
using HeadLens.Tests.Analysis;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Model;

/// <summary>
/// Features no checkpoint family combines, each through every pass of the one block: the training backward against
/// finite differences, batched inference and the hooked run against the training forward, and incremental decoding
/// against the full forward.
/// </summary>
public class FeatureTests
{
    public static TheoryData<string> Features() => new(Configs.Keys.ToArray());

    private static readonly Dictionary<string, ModelConfig> Configs = new()
    {
        ["sinusoidal"] = TinyModels.Gpt2 with { Positions = PositionKind.Sinusoidal },
        ["alibi"] = TinyModels.Gpt2 with { Positions = PositionKind.Alibi, Heads = 4, KvHeads = 4 },
        ["no-positions"] = TinyModels.Llama with { Positions = PositionKind.None },
        ["window-3"] = TinyModels.Llama with { AttentionWindow = 3 },
        ["rmsnorm-gelu-output-bias"] = TinyModels.Gpt2 with { Norm = NormKind.RmsNorm, Biases = Biases.Output },
        ["erf-gelu"] = TinyModels.Gpt2 with { Mlp = MlpKind.GeluErf },
        ["layernorm-swiglu-mlp-bias"] = TinyModels.Llama with { Norm = NormKind.LayerNorm, Mlp = MlpKind.SwiGlu, Biases = Biases.Mlp | Biases.Value },
        ["qwen2-llama3-rope"] = TinyModels.Qwen2Llama3Rope,
        ["qk-norm"] = TinyModels.Llama with { QkNorm = true },
        ["qk-norm-gpt2"] = TinyModels.Gpt2 with { QkNorm = true },
        ["linear-attention"] = TinyModels.Llama with { AttentionForm = AttentionForm.Linear, KvHeads = 4 },
        ["linear-attention-gpt2"] = TinyModels.Gpt2 with { AttentionForm = AttentionForm.Linear },
    };

    [Theory]
    [MemberData(nameof(Features))]
    public void BackwardMatchesFiniteDifferences(string feature)
    {
        var model = TinyModels.Random(Configs[feature], seed: 11);
        int batch = 2, tokens = 6;
        int[] ids = TinyModels.Ids(model.Config, batch * tokens, seed: 12);
        int[] targets = TinyModels.Ids(model.Config, batch * tokens, seed: 13);
        model.ZeroGradients();
        model.Forward(ids, targets, batch, tokens);
        model.Backward();
        var random = new Random(14);
        foreach (var (name, parameter, gradient, _) in model.NamedParameters())
        {
            // The largest slope of each tensor and one at random: central differences of the fp32 loss with
            // h = 2.5e-3. The loss (~3.4) rounds at ~4e-7, so the numeric slope carries ~8e-5 of noise; truncation
            // h²·f‴/6 stays below ~5e-5 even for QK-norm over 4-channel heads, which is curved enough that h = 1e-2
            // left a 0.4% truncation error. Allowed: 2e-3 relative plus 1e-4 absolute.
            var g = gradient.Span;
            int largest = 0;
            for (int i = 1; i < g.Length; i++)
            {
                largest = Math.Abs(g[i]) > Math.Abs(g[largest]) ? i : largest;
            }

            foreach (int index in new[] { largest, random.Next(g.Length) })
            {
                float saved = parameter.Span[index];
                parameter.Span[index] = saved + 2.5e-3f;
                double plus = model.Forward(ids, targets, batch, tokens);
                parameter.Span[index] = saved - 2.5e-3f;
                double minus = model.Forward(ids, targets, batch, tokens);
                parameter.Span[index] = saved;
                double numeric = (plus - minus) / 5e-3;
                Assert.True(Math.Abs(g[index] - numeric) <= (2e-3 * Math.Abs(numeric)) + 1e-4,
                    $"{feature} {name}[{index}]: analytic {g[index]:G6} vs numeric {numeric:G6}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Features))]
    public void EveryPassAgreesWithTheTrainingForward(string feature)
    {
        var model = TinyModels.Random(Configs[feature], seed: 21);
        int tokens = 9, vocab = model.Config.VocabSize;
        int[] ids = TinyModels.Ids(model.Config, 2 * tokens, seed: 22);
        model.Forward(ids, [], 2, tokens);
        float[] training = model.Logits.ToArray();
        Assert.Equal(training, model.Infer(ids, 2, tokens).Logits.ToArray());

        // The hooked run computes attention the reference way (patterns materialised): equal within fp32 rounding.
        var first = ids.AsSpan(0, tokens);
        var run = new HookedForward(model).Run(first, name => name == HookNames.Pattern(0));
        Assert.True(Float64.MaxRelativeError(run.Logits, FiniteDifference.ToDouble(training[..(tokens * vocab)])) <= 1e-5);
        var pattern = run[HookNames.Pattern(0)];
        for (int row = 0; row < model.Config.Heads * tokens; row++)
        {
            Assert.Equal(1.0, pattern.AsSpan(row * tokens, tokens).ToArray().Sum(p => (double)p), 5);
        }

        // Decoding: the prompt, then one token at a time against the cache.
        var cache = model.NewCache(model.Config.ContextLength);
        var logits = new float[vocab];
        model.DecodeStep(first[..4], cache, logits);
        Assert.True(Float64.MaxRelativeError(logits, FiniteDifference.ToDouble(training[(3 * vocab)..(4 * vocab)])) <= 1e-5);
        for (int t = 4; t < tokens; t++)
        {
            model.DecodeStep(first.Slice(t, 1), cache, logits);
            Assert.True(Float64.MaxRelativeError(logits, FiniteDifference.ToDouble(training[(t * vocab)..((t + 1) * vocab)])) <= 1e-5, $"{feature} token {t}");
        }
    }

    [Fact]
    public void AWindowHidesKeysFartherThanItsWidth()
    {
        var model = TinyModels.Random(Configs["window-3"], seed: 31);
        int[] ids = TinyModels.Ids(model.Config, 8, seed: 32);
        var pattern = new HookedForward(model).Run(ids, name => name == HookNames.Pattern(1))[HookNames.Pattern(1)];
        for (int h = 0; h < model.Config.Heads; h++)
        {
            for (int i = 0; i < 8; i++)
            {
                for (int j = 0; j < 8; j++)
                {
                    bool visible = j <= i && i - j < 3;
                    Assert.True(visible || pattern[(((h * 8) + i) * 8) + j] == 0f, $"head {h}: {i} sees {j}");
                }
            }
        }
    }

    [Fact]
    public void ABidirectionalModelSeesTheFuture()
    {
        var config = TinyModels.Gpt2 with { Attention = MaskKind.Bidirectional };
        var model = TinyModels.Random(config, seed: 41);
        int[] ids = TinyModels.Ids(config, 6, seed: 42);
        var pattern = new HookedForward(model).Run(ids, name => name == HookNames.Pattern(0))[HookNames.Pattern(0)];
        Assert.True(pattern[(0 * 6) + 5] > 0f, "the first query attends to the last key");
    }
}
