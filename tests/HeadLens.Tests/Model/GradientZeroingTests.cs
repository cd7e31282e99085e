using HeadLens.Model;
using HeadLens.Tests.Analysis;

namespace HeadLens.Tests.Model;

/// <summary>
/// ZeroGradients marks the gradients as zero and the next Backward writes the matrices' gradients instead of adding
/// to them (clearing only the rest). Against the plain way — the gradients cleared in memory, then accumulated into
/// — on tied and untied heads, biases, QK-norm, SwiGLU, and a vocabulary long enough for the head's input gradient
/// to be split by depth.
/// </summary>
public class GradientZeroingTests
{
    public static TheoryData<string> Models() => new(Configs.Keys.ToArray());

    private static readonly Dictionary<string, ModelConfig> Configs = new()
    {
        ["gpt2-tied"] = TinyModels.Gpt2,
        ["llama-untied"] = TinyModels.Llama,
        ["swiglu-biases"] = TinyModels.Llama with { Norm = NormKind.LayerNorm, Mlp = MlpKind.SwiGlu, Biases = Biases.Mlp | Biases.Value | Biases.Output },
        ["qk-norm"] = TinyModels.Llama with { QkNorm = true },
        ["gpt2-long-vocabulary"] = ModelPresets.Gpt2(vocab: 4099, context: 32, layers: 2, heads: 4, channels: 64),
    };

    [Theory]
    [MemberData(nameof(Models))]
    public void TheFirstBackwardAfterZeroingEqualsAccumulatingIntoClearedGradients(string name)
    {
        var model = TinyModels.Random(Configs[name], seed: 31);
        int batch = 2, tokens = 12;
        int[] ids = TinyModels.Ids(model.Config, batch * tokens, seed: 32);
        int[] targets = TinyModels.Ids(model.Config, batch * tokens, seed: 33);
        model.Forward(ids, targets, batch, tokens);
        model.Gradients.Arena.All.Clear();
        model.Backward();
        float[] expected = model.Gradients.Arena.All.ToArray();
        Assert.Contains(expected, value => value != 0f);

        // Garbage left in every gradient: ZeroGradients must make it irrelevant.
        model.Gradients.Arena.All.Fill(float.NaN);
        model.ZeroGradients();
        model.Backward();
        Assert.Equal(expected, model.Gradients.Arena.All.ToArray());

        // A second backward (gradient accumulation) adds: twice the gradient, to the rounding of the running sums.
        model.Backward();
        float[] twice = model.Gradients.Arena.All.ToArray();
        float largest = expected.Max(Math.Abs);
        for (int i = 0; i < twice.Length; i++)
        {
            Assert.True(Math.Abs(twice[i] - (2 * expected[i])) <= 1e-5 * largest, $"{name}: entry {i}: {twice[i]} vs 2·{expected[i]}");
        }
    }

    [Fact]
    public void GradientsReadAfterZeroingAreZero()
    {
        var model = TinyModels.Random(TinyModels.Gpt2, seed: 41);
        int[] ids = TinyModels.Ids(model.Config, 8, seed: 42);
        model.Forward(ids, ids, 1, 8);
        model.Backward();
        Assert.Contains(model.Gradients.Arena.All.ToArray(), value => value != 0f);
        model.ZeroGradients();
        Assert.All(model.Gradients.Arena.All.ToArray(), value => Assert.Equal(0f, value));

        // Read, then backward: the gradients were cleared by the read, so this backward accumulates into zeros.
        model.Backward();
        float[] afterRead = model.Gradients.Arena.All.ToArray();
        model.ZeroGradients();
        model.Backward();
        Assert.Equal(afterRead, model.Gradients.Arena.All.ToArray());
    }
}
