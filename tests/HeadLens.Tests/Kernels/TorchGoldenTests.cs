using System.Globalization;
using System.Text.Json;
using HeadLens.Kernels;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Kernels;

/// <summary>
/// The kernels against real PyTorch: Fixtures/kernels/*.json, written by tests/reference/kernels_golden.py (torch in
/// float32, fixed small random inputs, every value stored exactly). Fast and Reference paths are both checked.
/// One tolerance, 1e-5 relative, for everything: both sides compute the same formulas in float32 and differ only in
/// summation order and exp/tanh/sqrt implementations, a few ulp (~1e-7 relative) over these few-dozen-element rows,
/// while a convention difference (variance ÷(C−1), ε outside the square root, the erf GELU, AdamW without bias
/// correction or with coupled decay, a mean over all rows instead of the non-ignored ones) moves results by 1e-3 or
/// more. What 1e-5 is relative to depends on the quantity, and each comparison below says which floor it uses.
/// </summary>
public class TorchGoldenTests
{
    private const double Tolerance = 1e-5;

    [Fact]
    public void LayerNormMatchesTorchAndAccumulatesItsGradients()
    {
        using var json = Load("layer_norm");
        var root = json.RootElement;
        int rows = root.GetProperty("rows").GetInt32(), cols = root.GetProperty("cols").GetInt32();
        float epsilon = (float)root.GetProperty("epsilon").GetDouble();
        float[] x = Floats(root, "x"), w = Floats(root, "weight"), b = Floats(root, "bias"), dy = Floats(root, "yGrad");
        foreach (bool fast in new[] { true, false })
        {
            float[] y = new float[rows * cols], mean = new float[rows], rstd = new float[rows];
            float[] dx = new float[rows * cols], dw = new float[cols], db = new float[cols];
            // Main's LayerNorm.Backward adds into dx, dw, db (dx because the input is the residual stream; dw, db over
            // rows and micro-batches), where torch's .grad on fresh leaves is the plain gradient. Two calls into
            // zeroed buffers must give exactly twice torch's values, which checks both the value and the convention.
            for (int call = 1; call <= 2; call++)
            {
                if (fast)
                {
                    LayerNorm.Forward(x, w, b, rows, cols, epsilon, y, mean, rstd);
                    LayerNorm.Backward(dy, x, w, mean, rstd, rows, cols, dx, dw, db);
                }
                else
                {
                    LayerNorm.ForwardReference(x, w, b, rows, cols, epsilon, y, mean, rstd);
                    LayerNorm.BackwardReference(dy, x, w, mean, rstd, rows, cols, dx, dw, db);
                }

                string what = $"layer_norm fast={fast} call={call}";
                AssertOutput(y, root, "y", what);
                AssertGradient(dx, root, "xGrad", what, call);
                AssertGradient(dw, root, "weightGrad", what, call);
                AssertGradient(db, root, "biasGrad", what, call);
            }
        }
    }

    [Fact]
    public void RmsNormMatchesLlamaFormulaInTorchAndAccumulatesItsGradients()
    {
        using var json = Load("rms_norm");
        var root = json.RootElement;
        int rows = root.GetProperty("rows").GetInt32(), cols = root.GetProperty("cols").GetInt32();
        float epsilon = (float)root.GetProperty("epsilon").GetDouble();
        float[] x = Floats(root, "x"), w = Floats(root, "weight"), dy = Floats(root, "yGrad");
        foreach (bool fast in new[] { true, false })
        {
            float[] y = new float[rows * cols], rstd = new float[rows], dx = new float[rows * cols], dw = new float[cols];
            // Accumulating gradients, as for LayerNorm: the second call must give twice torch's values.
            for (int call = 1; call <= 2; call++)
            {
                if (fast)
                {
                    RmsNorm.Forward(x, w, rows, cols, epsilon, y, rstd);
                    RmsNorm.Backward(dy, x, w, rstd, rows, cols, dx, dw);
                }
                else
                {
                    RmsNorm.ForwardReference(x, w, rows, cols, epsilon, y, rstd);
                    RmsNorm.BackwardReference(dy, x, w, rstd, rows, cols, dx, dw);
                }

                string what = $"rms_norm fast={fast} call={call}";
                AssertOutput(y, root, "y", what);
                AssertGradient(dx, root, "xGrad", what, call);
                AssertGradient(dw, root, "weightGrad", what, call);
            }
        }
    }

    [Fact]
    public void GeluTanhAndSiluMatchTorch()
    {
        using var json = Load("activations");
        foreach (string name in new[] { "gelu", "silu" })
        {
            var record = json.RootElement.GetProperty(name);
            float[] x = Floats(record, "x"), dy = Floats(record, "yGrad");
            foreach (bool fast in new[] { true, false })
            {
                // Activation gradients overwrite: start from garbage so a kernel that added would fail.
                float[] y = new float[x.Length], dx = Enumerable.Repeat(7f, x.Length).ToArray();
                switch (name, fast)
                {
                    case ("gelu", true):
                        Gelu.Forward(x, y);
                        Gelu.Backward(x, dy, dx);
                        break;
                    case ("gelu", false):
                        Gelu.ForwardReference(x, y);
                        Gelu.BackwardReference(x, dy, dx);
                        break;
                    case ("silu", true):
                        Silu.Forward(x, y);
                        Silu.Backward(x, dy, dx);
                        break;
                    default:
                        Silu.ForwardReference(x, y);
                        Silu.BackwardReference(x, dy, dx);
                        break;
                }

                // Elementwise values, no cancellation between entries: each is compared on its own (floor 1).
                AssertOutput(y, record, "y", $"{name} fast={fast}");
                AssertOutput(dx, record, "xGrad", $"{name} fast={fast}");
            }
        }
    }

    [Fact]
    public void SwiGluMatchesTorch()
    {
        using var json = Load("activations");
        var record = json.RootElement.GetProperty("swiglu");
        float[] gate = Floats(record, "gate"), up = Floats(record, "up"), dy = Floats(record, "yGrad");
        foreach (bool fast in new[] { true, false })
        {
            float[] y = new float[gate.Length];
            float[] gateGrad = Enumerable.Repeat(7f, gate.Length).ToArray(), upGrad = Enumerable.Repeat(7f, gate.Length).ToArray();
            if (fast)
            {
                SwiGlu.Forward(gate, up, y);
                SwiGlu.Backward(gate, up, dy, gateGrad, upGrad);
            }
            else
            {
                SwiGlu.ForwardReference(gate, up, y);
                SwiGlu.BackwardReference(gate, up, dy, gateGrad, upGrad);
            }

            // Elementwise, as above (floor 1).
            AssertOutput(y, record, "y", $"swiglu fast={fast}");
            AssertOutput(gateGrad, record, "gateGrad", $"swiglu fast={fast}");
            AssertOutput(upGrad, record, "upGrad", $"swiglu fast={fast}");
        }
    }

    [Fact]
    public void SoftmaxMatchesTorchIncludingMaskedEntries()
    {
        using var json = Load("softmax");
        var root = json.RootElement;
        int rows = root.GetProperty("rows").GetInt32(), cols = root.GetProperty("cols").GetInt32();
        float[] x = Floats(root, "x"), dy = Floats(root, "yGrad");
        double[] expectedY = Doubles(root, "y");
        // The fixture must really exercise masking: partly masked rows, where torch gives exactly 0. (Fully masked rows
        // are left out on purpose: torch gives NaN there, HeadLens zeros by design, see Softmax.cs.)
        Assert.Contains(float.NegativeInfinity, x);
        foreach (bool fast in new[] { true, false })
        {
            float[] y = new float[rows * cols], dx = Enumerable.Repeat(7f, rows * cols).ToArray();
            if (fast)
            {
                Softmax.Forward(x, rows, cols, y);
                Softmax.Backward(y, dy, rows, cols, dx);
            }
            else
            {
                Softmax.ForwardReference(x, rows, cols, y);
                Softmax.BackwardReference(y, dy, rows, cols, dx);
            }

            for (int i = 0; i < x.Length; i++)
            {
                if (float.IsNegativeInfinity(x[i]))
                {
                    Assert.Equal(0f, y[i]);
                    Assert.Equal(0f, dx[i]);
                }
            }

            // Probabilities are exp of a difference over a positive sum, no cancellation: relative per entry (floor
            // 1e-30), so the small probabilities are held to the same relative accuracy as the large ones.
            AssertClose(y, expectedY, 1e-30, $"softmax fast={fast} y");
            // dx = y·(dy − Σ y·dy) cancels inside the bracket: relative to the largest entry.
            AssertGradient(dx, root, "xGrad", $"softmax fast={fast}");
        }
    }

    [Fact]
    public void CrossEntropyMatchesTorchWithIgnoredTargets()
    {
        using var json = Load("cross_entropy");
        var root = json.RootElement;
        int rows = root.GetProperty("rows").GetInt32(), vocab = root.GetProperty("vocab").GetInt32();
        float[] logits = Floats(root, "logits");
        int[] targets = root.GetProperty("targets").EnumerateArray().Select(t => t.GetInt32()).ToArray();
        double loss = root.GetProperty("loss").GetDouble();
        // torch's mean is over the non-ignored rows only (3 of 5 here); a mean over all rows would be 40% low.
        Assert.Contains(-1, targets);
        foreach (bool fast in new[] { true, false })
        {
            float[] losses = new float[rows], grad = Enumerable.Repeat(7f, rows * vocab).ToArray();
            float mean = fast
                ? CrossEntropy.ForwardBackward(logits, targets, rows, vocab, losses, grad)
                : CrossEntropy.ForwardBackwardReference(logits, targets, rows, vocab, losses, grad);
            // The mean loss is a positive O(1) value: relative.
            Assert.True(Math.Abs(mean - loss) <= Tolerance * Math.Abs(loss), $"fast={fast}: loss {mean} vs torch {loss}");
            // Per-row losses are log-sum-exp minus a logit (O(1)); ignored rows are exactly 0 in both: floor 1.
            AssertOutput(losses, root, "losses", $"cross_entropy fast={fast}");
            // (softmax − one-hot)/count: the target entry cancels, so relative to the largest entry. Ignored rows
            // must be exactly zero (torch gives no gradient there).
            AssertGradient(grad, root, "logitsGrad", $"cross_entropy fast={fast}");
            for (int r = 0; r < rows; r++)
            {
                if (targets[r] < 0)
                {
                    Assert.All(grad.Skip(r * vocab).Take(vocab), g => Assert.Equal(0f, g));
                }
            }
        }
    }

    [Fact]
    public void AdamWMatchesTorchOverThreeSteps()
    {
        using var json = Load("adamw");
        var root = json.RootElement;
        var settings = new AdamWSettings(
            (float)root.GetProperty("learningRate").GetDouble(), (float)root.GetProperty("beta1").GetDouble(),
            (float)root.GetProperty("beta2").GetDouble(), (float)root.GetProperty("epsilon").GetDouble(),
            (float)root.GetProperty("weightDecay").GetDouble());
        float[][] gradients = root.GetProperty("gradients").EnumerateArray().Select(FloatArray).ToArray();
        double[][] parameters = root.GetProperty("parameters").EnumerateArray().Select(DoubleArray).ToArray();
        foreach (bool fast in new[] { true, false })
        {
            float[] p = Floats(root, "initial"), m = new float[p.Length], v = new float[p.Length];
            for (int step = 1; step <= gradients.Length; step++)
            {
                if (fast)
                {
                    AdamW.Step(p, gradients[step - 1], m, v, settings, step);
                }
                else
                {
                    AdamW.StepReference(p, gradients[step - 1], m, v, settings, step);
                }

                // Parameters are O(1) and move by ~lr = 1e-2 a step: floor 1, i.e. 1e-5 absolute, a thousandth of a
                // step, while a missing bias correction changes the first step by half and coupled decay by ~3e-3.
                AssertClose(p, parameters[step - 1], 1.0, $"adamw fast={fast} parameters after step {step}");
            }

            // Moments are sums of same-signed (v) or mixed-signed (m) gradient terms: v relative per entry (floor
            // 1e-30), m relative to its largest entry since its entries can nearly cancel.
            AssertClose(v, Doubles(root, "secondMoment"), 1e-30, $"adamw fast={fast} second moment");
            AssertGradient(m, root, "firstMoment", $"adamw fast={fast}");
        }
    }

    [Fact]
    public void ClipGradNormMatchesTorch()
    {
        using var json = Load("clip_grad_norm");
        var root = json.RootElement;
        float maxNorm = (float)root.GetProperty("maxNorm").GetDouble();
        double norm = root.GetProperty("norm").GetDouble();
        float[] original = Floats(root, "gradients");
        // The fixture clips (norm > maxNorm), so the scaling is exercised, not just the norm.
        Assert.True(norm > maxNorm);

        // The norm is a positive sum of squares: relative, for the reference and the fast norm alike.
        float reference = GradientClipping.GlobalNormReference(original);
        Assert.True(Math.Abs(reference - norm) <= Tolerance * norm, $"reference norm {reference} vs torch {norm}");
        float[] g = (float[])original.Clone();
        float returned = GradientClipping.ClipByGlobalNorm(g, maxNorm);
        Assert.True(Math.Abs(returned - norm) <= Tolerance * norm, $"norm {returned} vs torch {norm}");
        // Each clipped entry is the original times one positive factor: relative per entry (floor 1e-30).
        AssertClose(g, Doubles(root, "clipped"), 1e-30, "clip_grad_norm clipped");
    }

    private static JsonDocument Load(string name) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "kernels", name + ".json")));

    private static float[] Floats(JsonElement record, string property) => FloatArray(record.GetProperty(property));

    private static double[] Doubles(JsonElement record, string property) => DoubleArray(record.GetProperty(property));

    private static float[] FloatArray(JsonElement array) => Array.ConvertAll(DoubleArray(array), v => (float)v);

    // JSON has no infinities: the script writes masked entries as the string "-Infinity".
    private static double[] DoubleArray(JsonElement array) => array.EnumerateArray()
        .Select(e => e.ValueKind == JsonValueKind.String
            ? double.Parse(e.GetString()!, CultureInfo.InvariantCulture)
            : e.GetDouble())
        .ToArray();

    private static void AssertClose(ReadOnlySpan<float> actual, double[] expected, double floor, string what)
    {
        double error = Float64.MaxRelativeError(actual, expected, floor);
        Assert.True(error <= Tolerance, $"{what}: relative error {error:E2} > {Tolerance:E0}");
    }

    // Outputs of size O(1), element by element: relative with a floor of 1 (absolute 1e-5 for small entries).
    private static void AssertOutput(ReadOnlySpan<float> actual, JsonElement record, string property, string what) =>
        AssertClose(actual, Doubles(record, property), 1.0, $"{what} {property}");

    // Gradients that are sums of cancelling terms (normalisations, softmax, cross-entropy, AdamW's m): their float
    // error is set by the size of the terms, not of each result, so the floor is the largest expected entry (a
    // norm-wise relative error). times: how many Backward calls have accumulated into the buffer.
    private static void AssertGradient(ReadOnlySpan<float> actual, JsonElement record, string property, string what, int times = 1)
    {
        double[] expected = Doubles(record, property).Select(v => v * times).ToArray();
        AssertClose(actual, expected, Math.Max(expected.Max(Math.Abs), 1e-30), $"{what} {property}");
    }
}
