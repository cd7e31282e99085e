using HeadLens.Attention;
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
    [InlineData(3, 24, 29, 65)] // a 16-wide block, an 8-wide one and 5 single columns
    [InlineData(12, 64, 64, 130)] // the benchmark's heads, spread over the threads
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
}
