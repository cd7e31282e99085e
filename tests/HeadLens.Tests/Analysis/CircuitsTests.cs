using HeadLens.Analysis;

namespace HeadLens.Tests.Analysis;

public class CircuitsTests
{
    private static double[] Dense(ReadOnlySpan<float> x, int rows, int cols, bool transpose)
    {
        var result = new double[rows * cols];
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                result[transpose ? (j * rows) + i : (i * cols) + j] = x[(i * cols) + j];
            }
        }

        return result;
    }

    private static double[] Multiply(double[] a, double[] b, int m, int k, int n)
    {
        var c = new double[m * n];
        for (int i = 0; i < m; i++)
        {
            for (int p = 0; p < k; p++)
            {
                for (int j = 0; j < n; j++)
                {
                    c[(i * n) + j] += a[(i * k) + p] * b[(p * n) + j];
                }
            }
        }

        return c;
    }

    private static double Frobenius(double[] x) => Math.Sqrt(x.Sum(value => value * value));

    private static double[] Diagonal(ReadOnlySpan<float> gamma)
    {
        int n = gamma.Length;
        var result = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            result[(i * n) + i] = gamma[i];
        }

        return result;
    }

    public static TheoryData<string> CopyingShapes => ["gpt2", "llama-gqa", "llama-wide"];

    [Theory]
    [MemberData(nameof(CopyingShapes))]
    public void CopyingScoresFromTheFastProductsEqualTheReference(string shape)
    {
        // The fast path forms each head's [D, D] matrix with float products over whole layers; the reference builds
        // it per head in float64 (OvEigenvalueMatrix). "llama-wide" has enough channels for the products' blocking.
        var config = shape switch
        {
            "gpt2" => TinyModels.Gpt2,
            "llama-gqa" => TinyModels.Llama,
            _ => TinyModels.Llama with { Channels = 256, Heads = 8, KvHeads = 2, HiddenChannels = 64 },
        };
        var model = TinyModels.Random(config, seed: 5);
        var fast = Circuits.CopyingScores(model);
        var embedUnembed = Circuits.EmbedUnembed(model);
        for (int l = 0; l < config.Layers; l++)
        {
            for (int h = 0; h < config.Heads; h++)
            {
                double reference = HeadScores.Copying(Circuits.OvEigenvalueMatrix(model, l, h, embedUnembed), config.HeadDim);
                Assert.True(Math.Abs(fast[l, h] - reference) < 1e-4, $"head {l}.{h}: {fast[l, h]} vs {reference}");
            }
        }
    }

    [Fact]
    public void OvEigenvaluesFromTheSmallMatrixAreThoseOfTheFullCircuit()
    {
        var model = TinyModels.Random(TinyModels.Llama, seed: 21);
        var config = model.Config;
        int v = config.VocabSize, c = config.Channels, d = config.HeadDim;
        const int Layer = 1, Head = 3;
        var small = Circuits.OvEigenvalueMatrix(model, Layer, Head, Circuits.EmbedUnembed(model));
        var fromSmall = Eigenvalues.Compute(small, d).ToList();

        // The full circuit, built densely: W_U [V, C] · diag(γ_f) · W_OV [C, C] · W_Eᵀ [C, V].
        var ov = Circuits.OutputValue(model, Layer, Head).Dense();
        var unembed = Multiply(Dense(model.Parameters.OutputHead.Span, v, c, false), Diagonal(model.Parameters.FinalNorm.Span), v, c, c);
        var full = Multiply(Multiply(unembed, ov, v, c, c), Dense(model.Parameters.TokenEmbedding.Span, v, c, true), v, c, v);
        var fromFull = Eigenvalues.Compute(full, v).OrderByDescending(lambda => lambda.Magnitude).Take(d).ToList();

        // The full matrix has rank ≤ D: its other V − D eigenvalues are 0 (up to rounding, checked here too).
        Assert.True(Eigenvalues.Compute(full, v).OrderByDescending(lambda => lambda.Magnitude).Skip(d).All(lambda => lambda.Magnitude < 1e-8));
        double scale = fromSmall.Max(lambda => lambda.Magnitude);
        foreach (var lambda in fromSmall)
        {
            // The small route forms W_Eᵀ·W_U in float (the fast Gemm: V-term sums, ~1e-7 relative rounding per
            // entry), the dense route in float64: eigenvalues agree to float rounding of the spectrum's scale.
            var nearest = fromFull.MinBy(other => (other - lambda).Magnitude);
            Assert.True((nearest - lambda).Magnitude <= 1e-5 * scale, $"{lambda} vs {nearest}");
            fromFull.Remove(nearest);
        }
    }

    [Fact]
    public void CompositionScoresMatchDenseMatrices()
    {
        var model = TinyModels.Random(TinyModels.AttentionOnly, seed: 22);
        int c = model.Config.Channels;
        var scores = Circuits.Compositions(model);
        Assert.Equal(3 * 4 * 4, scores.Count);  // layer pairs (0,1), (0,2), (1,2) × 4 × 4 heads
        foreach (var score in scores.Where((_, index) => index % 7 == 0))
        {
            // W_QK = diag(γ) W_Qᵀ W_K diag(γ) and W_OV = W_O W_V diag(γ), built from the raw weights here.
            var later = model.Parameters.Layer(score.Layer);
            var earlier = model.Parameters.Layer(score.SourceLayer);
            int d = model.Config.HeadDim, g2 = score.Head / 2, g1 = score.SourceHead / 2;
            double[] Rows(ReadOnlySpan<float> w, int first) => Dense(w.Slice(first * d * c, d * c), d, c, false);
            double[] Transpose(double[] x, int rows, int cols) => [.. Enumerable.Range(0, rows * cols).Select(index => x[((index % rows) * cols) + (index / rows)])];
            var gamma2 = Diagonal(later.AttentionNorm.Span);
            var gamma1 = Diagonal(earlier.AttentionNorm.Span);
            var qk = Multiply(Multiply(gamma2, Multiply(Transpose(Rows(later.Query.Span, score.Head), d, c), Rows(later.Key.Span, g2), c, d, c), c, c, c), gamma2, c, c, c);
            double[] Ov(HeadLens.Model.LayerWeights w, int head, int group, double[] gamma)
            {
                var output = new double[c * d];
                for (int i = 0; i < c; i++)
                {
                    for (int p = 0; p < d; p++)
                    {
                        output[(i * d) + p] = w.Output.Span[(i * model.Config.Heads * d) + (head * d) + p];
                    }
                }

                return Multiply(Multiply(output, Rows(w.Value.Span, group), c, d, c), gamma, c, c, c);
            }

            var ov1 = Ov(earlier, score.SourceHead, g1, gamma1);
            var ov2 = Ov(later, score.Head, g2, gamma2);
            double q = Frobenius(Multiply(Transpose(qk, c, c), ov1, c, c, c)) / (Frobenius(qk) * Frobenius(ov1));
            double k = Frobenius(Multiply(qk, ov1, c, c, c)) / (Frobenius(qk) * Frobenius(ov1));
            double v = Frobenius(Multiply(ov2, ov1, c, c, c)) / (Frobenius(ov2) * Frobenius(ov1));
            // Low-rank and dense routes differ only in float64 summation order.
            Assert.Equal(q, score.Query, 10);
            Assert.Equal(k, score.Key, 10);
            Assert.Equal(v, score.Value, 10);
            Assert.InRange(score.Query, 0, 1);
        }
    }

    [Theory]
    [InlineData(1, 2)]
    [InlineData(2, 0)]
    public void OneReceiversCompositionsAreItsEntriesOfEveryPair(int layer, int head)
    {
        var model = TinyModels.Random(TinyModels.AttentionOnly, seed: 22);
        var all = Circuits.Compositions(model).Where(s => s.Layer == layer && s.Head == head).ToList();
        var into = Circuits.CompositionsInto(model, layer, head);
        Assert.Equal(layer * model.Config.Heads, into.Count);
        Assert.Equal(all, into);
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(1, 3)]
    public void OneSendersCompositionsAreItsEntriesOfEveryPair(int layer, int head)
    {
        var model = TinyModels.Random(TinyModels.AttentionOnly, seed: 22);
        var all = Circuits.Compositions(model).Where(s => s.SourceLayer == layer && s.SourceHead == head).ToList();
        var from = Circuits.CompositionsFrom(model, layer, head);
        Assert.Equal((model.Config.Layers - layer - 1) * model.Config.Heads, from.Count);
        Assert.Equal(all, from);
    }

    [Fact]
    public void RandomCircuitsComposeAtTheBaseline()
    {
        // Independent random weights: the scores scatter around 1/√C, the baseline the output quotes (E‖AB‖² = ‖A‖²‖B‖²/C).
        var config = TinyModels.AttentionOnly with { Channels = 64, Heads = 4, KvHeads = 4 };
        var model = TinyModels.Random(config, seed: 5);
        var scores = Circuits.Compositions(model);
        double baseline = Circuits.RandomBaseline(config);
        Assert.Equal(0.125, baseline, 12);
        double mean = scores.Average(s => (s.Query + s.Key + s.Value) / 3);
        Assert.InRange(mean, 0.7 * baseline, 1.5 * baseline);
    }
}
