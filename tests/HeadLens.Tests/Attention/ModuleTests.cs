using HeadLens.Attention;
using HeadLens.Embeddings;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Attention;

public class ModuleTests
{
    // Linear attention is its own function: the prefix-sum form must equal its quadratic reference. Both fp32; each
    // output is a normalised positive combination of v rows, so 1e-5 relative with floor 1.
    [Theory]
    [InlineData(1, 4, 4, 1)]
    [InlineData(3, 8, 5, 37)]
    [InlineData(2, 16, 16, 100)]
    public void LinearAttentionPrefixSumEqualsQuadraticReference(int heads, int dqk, int dv, int tokens)
    {
        var random = new Random(tokens);
        float[] q = TestData.Uniform(random, tokens * heads * dqk), k = TestData.Uniform(random, tokens * heads * dqk), v = TestData.Uniform(random, tokens * heads * dv);
        float[] fast = new float[tokens * heads * dv], reference = new float[fast.Length];
        LinearAttention.Forward(heads, dqk, dv, tokens, q, k, v, fast);
        LinearAttention.ForwardReference(heads, dqk, dv, tokens, q, k, v, reference);
        Assert.True(Float64.MaxRelativeError(fast, FiniteDifference.ToDouble(reference)) <= 1e-5);
    }

    [Fact]
    public void LinearAttentionBackwardMatchesFiniteDifferences()
    {
        var random = new Random(30);
        int heads = 2, d = 3, dv = 4, tokens = 5;
        float[] q = TestData.Uniform(random, tokens * heads * d), k = TestData.Uniform(random, tokens * heads * d), v = TestData.Uniform(random, tokens * heads * dv);
        double[] r = FiniteDifference.ToDouble(TestData.Uniform(random, tokens * heads * dv));
        double Loss(double[] qv, double[] kv, double[] vv)
        {
            // Quadratic form in float64.
            double Phi(double x) => x > 0 ? x + 1 : Math.Exp(x);
            double sum = 0;
            for (int h = 0; h < heads; h++)
            {
                for (int i = 0; i < tokens; i++)
                {
                    var o = new double[dv];
                    double n = 0;
                    for (int j = 0; j <= i; j++)
                    {
                        double a = 0;
                        for (int c = 0; c < d; c++)
                        {
                            a += Phi(qv[(i * heads + h) * d + c]) * Phi(kv[(j * heads + h) * d + c]);
                        }

                        n += a;
                        for (int c = 0; c < dv; c++)
                        {
                            o[c] += a * vv[(j * heads + h) * dv + c];
                        }
                    }

                    for (int c = 0; c < dv; c++)
                    {
                        sum += o[c] / n * r[(i * heads + h) * dv + c];
                    }
                }
            }

            return sum;
        }

        double[] qd = FiniteDifference.ToDouble(q), kd = FiniteDifference.ToDouble(k), vd = FiniteDifference.ToDouble(v);
        float[] dq = new float[q.Length], dk = new float[k.Length], dvGrad = new float[v.Length];
        LinearAttention.Backward(heads, d, dv, tokens, q, k, v, FiniteDifference.ToFloat(r), dq, dk, dvGrad);
        FiniteDifference.AssertClose(dq, FiniteDifference.Gradient(p => Loss(p, kd, vd), qd), 1e-4, "linear dq");
        FiniteDifference.AssertClose(dk, FiniteDifference.Gradient(p => Loss(qd, p, vd), kd), 1e-4, "linear dk");
        FiniteDifference.AssertClose(dvGrad, FiniteDifference.Gradient(p => Loss(qd, kd, p), vd), 1e-4, "linear dv");
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void MultiHeadAttentionBackwardMatchesFiniteDifferences(bool cross, bool rope)
    {
        var random = new Random(31);
        int channels = 6, contextChannels = cross ? 5 : 6, tq = 4, tk = cross ? 7 : 4;
        var options = new AttentionOptions(2, 1, 4, 3) { Mask = cross ? MaskKind.Bidirectional : MaskKind.Causal };
        var module = new MultiHeadAttention(options, channels, contextChannels, bias: true) { Rope = rope ? new RopeSettings() : null };
        foreach (var weights in new[] { module.QueryWeight, module.KeyWeight, module.ValueWeight, module.OutputWeight, module.QueryBias, module.KeyBias, module.ValueBias, module.OutputBias })
        {
            TestData.Uniform(random, weights.Length).CopyTo(weights, 0);
        }

        float[] x = TestData.Uniform(random, tq * channels), context = cross ? TestData.Uniform(random, tk * contextChannels) : x;
        double[] r = FiniteDifference.ToDouble(TestData.Uniform(random, tq * channels));
        double Loss(float[] xv, float[] cv)
        {
            var y = new float[tq * channels];
            module.Forward(xv, cross ? cv : xv, tq, tk, 0, y, new MultiHeadAttentionState());
            return FiniteDifference.Project(FiniteDifference.ToDouble(y), r);
        }

        var state = new MultiHeadAttentionState();
        module.Forward(x, context, tq, tk, 0, new float[tq * channels], state);
        float[] xGrad = new float[x.Length], contextGrad = cross ? new float[context.Length] : xGrad;
        module.Backward(x, context, FiniteDifference.ToFloat(r), xGrad, contextGrad, state);

        // The float forward is differenced here (the module has no float64 twin), so the numeric slope carries the
        // fp32 rounding of the loss (~1e-6 absolute for |L| ~ 1) divided by 2h = 2e-2: ~5e-5 absolute noise. Each
        // entry must agree within 2e-3 relative plus 2e-4 absolute (4× that noise); the truncation error h²·f'''/6
        // is ~2e-5.
        double[] numeric = FloatGradient(values => Loss(values, context), x, 1e-2);
        AssertNoisyClose(xGrad, numeric, "mha dx");
        if (cross)
        {
            AssertNoisyClose(contextGrad, FloatGradient(values => Loss(x, values), context, 1e-2), "mha dcontext");
        }

        double[] weightNumeric = FloatGradient(values =>
        {
            values.CopyTo(module.QueryWeight, 0);
            return Loss(x, context);
        }, (float[])module.QueryWeight.Clone(), 1e-2);
        AssertNoisyClose(module.QueryWeightGrad, weightNumeric, "mha dWq");
    }

    [Fact]
    public void FusedQkvEqualsSeparateProjections()
    {
        var random = new Random(32);
        var options = new AttentionOptions(2, 2, 4, 4);
        var separate = new MultiHeadAttention(options, 8, 8, bias: true);
        var fused = new MultiHeadAttention(options, 8, 8, bias: true, fusedProjection: true);
        foreach (var (a, b) in new[] { (separate.QueryWeight, fused.QueryWeight), (separate.KeyWeight, fused.KeyWeight), (separate.ValueWeight, fused.ValueWeight), (separate.OutputWeight, fused.OutputWeight), (separate.QueryBias, fused.QueryBias), (separate.KeyBias, fused.KeyBias), (separate.ValueBias, fused.ValueBias), (separate.OutputBias, fused.OutputBias) })
        {
            TestData.Uniform(random, a.Length).CopyTo(a, 0);
            a.CopyTo(b, 0);
        }

        float[] x = TestData.Uniform(random, 5 * 8), dy = TestData.Uniform(random, 5 * 8);
        float[] y1 = new float[40], y2 = new float[40], dx1 = new float[40], dx2 = new float[40];
        var s1 = new MultiHeadAttentionState();
        var s2 = new MultiHeadAttentionState();
        separate.Forward(x, x, 5, 5, 0, y1, s1);
        fused.Forward(x, x, 5, 5, 0, y2, s2);
        Assert.True(Float64.MaxRelativeError(y2, FiniteDifference.ToDouble(y1)) <= 1e-6);
        separate.Backward(x, x, dy, dx1, dx1, s1);
        fused.Backward(x, x, dy, dx2, dx2, s2);
        Assert.True(Float64.MaxRelativeError(dx2, FiniteDifference.ToDouble(dx1)) <= 1e-5);
        Assert.True(Float64.MaxRelativeError(fused.KeyWeightGrad, FiniteDifference.ToDouble(separate.KeyWeightGrad)) <= 1e-5);
    }

    private static double[] FloatGradient(Func<float[], double> loss, float[] point, double step)
    {
        var gradient = new double[point.Length];
        for (int i = 0; i < point.Length; i++)
        {
            float saved = point[i];
            point[i] = (float)(saved + step);
            double plus = loss(point);
            point[i] = (float)(saved - step);
            double minus = loss(point);
            point[i] = saved;
            gradient[i] = (plus - minus) / (2 * step);
        }

        loss(point);
        return gradient;
    }

    private static void AssertNoisyClose(float[] analytic, double[] numeric, string what)
    {
        for (int i = 0; i < numeric.Length; i++)
        {
            double allowed = 2e-3 * Math.Abs(numeric[i]) + 2e-4;
            Assert.True(Math.Abs(analytic[i] - numeric[i]) <= allowed, $"{what}[{i}]: analytic {analytic[i]:G6} vs numeric {numeric[i]:G6}");
        }
    }
}
