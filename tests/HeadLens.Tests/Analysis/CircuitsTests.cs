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

    // The shapes the fast paths are held to the reference on; "llama-wide" has enough channels and heads for the
    // products' blocking.
    private static HeadLens.Model.ModelConfig Shape(string name) => name switch
    {
        "attention-only" => TinyModels.AttentionOnly,
        "gpt2" => TinyModels.Gpt2,
        "llama-gqa" => TinyModels.Llama,
        _ => TinyModels.Llama with { Channels = 256, Heads = 8, KvHeads = 2, HiddenChannels = 64 },
    };

    [Theory]
    [MemberData(nameof(CopyingShapes))]
    public void CopyingScoresFromTheFastProductsEqualTheReference(string shape)
    {
        // The fast path forms each head's [D, D] matrix with float products over whole layers; the reference builds
        // it per head in float64 (OvEigenvalueMatrix).
        var config = Shape(shape);
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
        var scores = Circuits.CompositionsPairwise(model);
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

    public static TheoryData<string> CompositionShapes => ["attention-only", "gpt2", "llama-gqa", "llama-wide"];

    [Theory]
    [MemberData(nameof(CompositionShapes))]
    public void CompositionsFromTheWhitenedProductEqualThePairwiseOnes(string shape)
    {
        var config = Shape(shape);
        var model = TinyModels.Random(config with { Layers = 3 }, seed: 31);
        var fast = Circuits.Compositions(model);
        var plain = Circuits.CompositionsPairwise(model);
        Assert.Equal(plain.Count, fast.Count);
        for (int i = 0; i < plain.Count; i++)
        {
            Assert.Equal((plain[i].SourceLayer, plain[i].SourceHead, plain[i].Layer, plain[i].Head),
                (fast[i].SourceLayer, fast[i].SourceHead, fast[i].Layer, fast[i].Head));
            // The fast route rounds the whitened factors to float and sums their products in float (C terms), the
            // plain one stays in float64: scores in [0, 1] agree to float rounding.
            Assert.Equal(plain[i].Query, fast[i].Query, 1e-6);
            Assert.Equal(plain[i].Key, fast[i].Key, 1e-6);
            Assert.Equal(plain[i].Value, fast[i].Value, 1e-6);
        }
    }

    [Fact]
    public void TheRealMiniLmsCompositionsFromTheWhitenedProductEqualThePairwiseOnes()
    {
        // Trained weights (all-MiniLM-L6-v2, post-norm: γ from the norm before each block), whose circuits are far
        // from isotropic: the Cholesky factors of their Gram matrices carry condition numbers random weights do not.
        List<Composition> fast, plain;
        lock (Oracles.MiniLm.Engine)
        {
            fast = Circuits.Compositions(Oracles.MiniLm.Engine);
            plain = Circuits.CompositionsPairwise(Oracles.MiniLm.Engine);
        }

        Assert.Equal(12 * 12 * 15, fast.Count);   // 15 layer pairs of 6 layers × 12 × 12 heads
        double worst = fast.Zip(plain).Max(pair => new[] { pair.First.Query - pair.Second.Query, pair.First.Key - pair.Second.Key,
            pair.First.Value - pair.Second.Value }.Max(Math.Abs));
        Assert.True(worst < 1e-6, $"largest difference {worst:E2}");
        // Trained: the strongest K-composition, head 1.1 into 2.9's keys (0.242), is nearly 5× what random weights score.
        var strongest = plain.MaxBy(pair => pair.Key)!;
        Assert.Equal((1, 1, 2, 9), (strongest.SourceLayer, strongest.SourceHead, strongest.Layer, strongest.Head));
        Assert.True(strongest.Key > 4 * Circuits.RandomBaseline(Oracles.MiniLm.Engine.Config), $"K {strongest.Key:F3}");
    }

    [Theory]
    [InlineData(64, 768)]
    [InlineData(7, 30)]
    [InlineData(12, 8)]
    [InlineData(5, 3)]
    public void GramMatricesInBlocksEqualOneDotProductPerEntry(int rows, int width)
    {
        // The blocked kernel (4 × 4 entries at a time, 8 columns per step, rows and columns left over one by one)
        // against the plain dot products; the sums run in a different order, so to float64 rounding.
        var random = new Random(rows * 1000 + width);
        var x = Enumerable.Range(0, rows * width).Select(_ => random.NextDouble() - 0.5).ToArray();
        var fast = LowRank.Gram(x, rows, width);
        var plain = LowRank.GramReference(x, rows, width);
        for (int i = 0; i < rows * rows; i++)
        {
            Assert.Equal(plain[i], fast[i], 1e-12 * Math.Max(1, width));
        }

        Assert.Equal(fast, Enumerable.Range(0, rows * rows).Select(i => fast[(i % rows * rows) + (i / rows)]));   // symmetric
    }

    [Fact]
    public void ProgressCountsTheLayersWhitenedAndThenEachReceivingLayer()
    {
        var model = TinyModels.Random(TinyModels.AttentionOnly, seed: 22);
        var steps = new List<(int Done, int All)>();
        Circuits.Compositions(model, (done, all) => steps.Add((done, all)));
        int layers = model.Config.Layers;
        Assert.Equal(Enumerable.Range(1, 2 * layers - 1).Select(done => (done, 2 * layers - 1)), steps);
    }

    [Fact]
    public void AHeadWithZeroWeightsComposesWithNothing()
    {
        // A zero circuit has a zero Gram matrix: every pivot of its Cholesky factor is at the floor, and its scores
        // are 0 (not NaN), on both routes.
        var model = TinyModels.Random(TinyModels.AttentionOnly, seed: 22);
        int d = model.Config.HeadDim, c = model.Config.Channels;
        model.Parameters.Layer(0).Value.Dense!.Span.Slice(0, d * c).Clear();   // key/value head 0 of layer 0: heads 0 and 1
        foreach (var scores in new[] { Circuits.Compositions(model), Circuits.CompositionsPairwise(model) })
        {
            Assert.All(scores.Where(s => s.SourceLayer == 0 && s.SourceHead < 2), s => Assert.Equal((0.0, 0.0, 0.0), (s.Query, s.Key, s.Value)));
            Assert.All(scores.Where(s => s.SourceLayer == 0 && s.SourceHead >= 2), s => Assert.True(s.Key > 0));
        }
    }

    private static readonly string Fixtures = Path.Combine(AppContext.BaseDirectory, "Fixtures");

    [Theory]
    [InlineData("tiny-gpt2")]
    [InlineData("tiny-llama-gqa")]
    [InlineData("tiny-bert")]
    public void CompositionScoresMatchPyTorch(string name)
    {
        // tests/reference/circuits_golden.py: dense [C, C] circuits from the checkpoint's tensors, in float64; the
        // encoder's γ is the norm that made each block's input (the embeddings' or the previous block's output norm).
        var (model, _) = HeadLens.Checkpoints.ModelFiles.Load(Path.Combine(Fixtures, "models", name));
        var golden = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures, "circuits", "golden.json")))
            .RootElement.GetProperty(name).EnumerateArray().Select(row => row.EnumerateArray().Select(v => v.GetDouble()).ToArray()).ToList();
        foreach (var (scores, digits) in new[] { (Circuits.Compositions(model), 6), (Circuits.CompositionsPairwise(model), 12) })
        {
            Assert.Equal(golden.Count, scores.Count);
            var byPair = scores.ToDictionary(s => (s.SourceLayer, s.SourceHead, s.Layer, s.Head));
            foreach (var row in golden)
            {
                var score = byPair[((int)row[0], (int)row[1], (int)row[2], (int)row[3])];
                Assert.Equal(row[4], score.Query, digits);
                Assert.Equal(row[5], score.Key, digits);
                Assert.Equal(row[6], score.Value, digits);
            }
        }
    }

    [Theory]
    [InlineData(1, 2)]
    [InlineData(2, 0)]
    public void OneReceiversCompositionsAreItsEntriesOfEveryPair(int layer, int head)
    {
        var model = TinyModels.Random(TinyModels.AttentionOnly, seed: 22);
        var all = Circuits.CompositionsPairwise(model).Where(s => s.Layer == layer && s.Head == head).ToList();
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
        var all = Circuits.CompositionsPairwise(model).Where(s => s.SourceLayer == layer && s.SourceHead == head).ToList();
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
