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

    // The recurrent form: a sequence fed in chunks, each continuing from the running sums the last one left, gives the
    // quadratic reference's outputs, and the sums at the end are S = Σ φ(k)·vᵀ and z = Σ φ(k) over every token
    // (AddToState's plain loops). Chunks of one token (decoding), and chunks that start mid-block and cross blocks.
    [Theory]
    [InlineData(2, 8, 8, new[] { 1, 1, 1, 1, 1 })]
    [InlineData(3, 24, 29, new[] { 7, 1, 64, 1, 60 })]
    [InlineData(4, 16, 16, new[] { 65, 1, 130 })]
    public void LinearAttentionContinuedFromItsStateEqualsTheWholeSequence(int heads, int dqk, int dv, int[] chunks)
    {
        int tokens = chunks.Sum();
        var random = new Random(tokens);
        float[] q = TestData.Uniform(random, tokens * heads * dqk), k = TestData.Uniform(random, tokens * heads * dqk), v = TestData.Uniform(random, tokens * heads * dv);
        float[] reference = new float[tokens * heads * dv], chunked = new float[reference.Length];
        LinearAttention.ForwardReference(heads, dqk, dv, tokens, q, k, v, reference);
        var state = new float[LinearAttention.StateFloats(heads, dqk, dv)];
        int done = 0;
        foreach (int chunk in chunks)
        {
            int keys = heads * dqk, values = heads * dv;
            LinearAttention.Forward(heads, dqk, dv, chunk, q.AsSpan(done * keys), k.AsSpan(done * keys), v.AsSpan(done * values), chunked.AsSpan(done * values), state);
            done += chunk;
        }

        Assert.True(Float64.MaxRelativeError(chunked, FiniteDifference.ToDouble(reference)) <= 1e-5);
        var sums = new float[state.Length];
        LinearAttention.AddToState(heads, dqk, dv, tokens, k, v, sums);
        Assert.True(Float64.MaxRelativeError(state, FiniteDifference.ToDouble(sums)) <= 1e-5);
        Assert.Throws<ArgumentException>(() => LinearAttention.Forward(heads, dqk, dv, 1, q, k, v, chunked, new float[state.Length - 1]));
    }

    // The prefix-sum gradients against the quadratic form's: the same sums grouped differently, both fp32. The
    // gradients are not normalised, so 2e-5 relative with floor 1 (inputs and the output's gradient in [-1, 1]).
    [Theory]
    [InlineData(1, 4, 4, 1)]
    [InlineData(3, 8, 5, 37)]
    [InlineData(3, 24, 29, 65)] // a 16-wide block, an 8-wide one and 5 single columns
    [InlineData(12, 64, 64, 130)] // the benchmark's heads, spread over the threads
    public void LinearAttentionPrefixSumBackwardEqualsQuadraticReference(int heads, int dqk, int dv, int tokens)
    {
        var random = new Random(tokens + 1);
        float[] q = TestData.Uniform(random, tokens * heads * dqk), k = TestData.Uniform(random, tokens * heads * dqk), v = TestData.Uniform(random, tokens * heads * dv);
        float[] outputGrad = TestData.Uniform(random, tokens * heads * dv);
        float[] dq = new float[q.Length], dk = new float[k.Length], dvGrad = new float[v.Length];
        float[] dqReference = new float[q.Length], dkReference = new float[k.Length], dvReference = new float[v.Length];
        LinearAttention.Backward(heads, dqk, dv, tokens, q, k, v, outputGrad, dq, dk, dvGrad);
        LinearAttention.BackwardReference(heads, dqk, dv, tokens, q, k, v, outputGrad, dqReference, dkReference, dvReference);
        Assert.True(Float64.MaxRelativeError(dq, FiniteDifference.ToDouble(dqReference)) <= 2e-5, "dq");
        Assert.True(Float64.MaxRelativeError(dk, FiniteDifference.ToDouble(dkReference)) <= 2e-5, "dk");
        Assert.True(Float64.MaxRelativeError(dvGrad, FiniteDifference.ToDouble(dvReference)) <= 2e-5, "dv");
    }

    [Fact]
    public void LinearAttentionBackwardRejectsShortGradients()
    {
        float[] small = new float[2 * 3 * 4];
        var error = Assert.Throws<ArgumentException>(() => LinearAttention.Backward(3, 4, 4, 2, small, small, small, small, small, small, new float[5]));
        Assert.Contains("2 tokens × 3 heads", error.Message);
    }

    [Theory]
    [InlineData(false, 5)]
    [InlineData(true, 5)]
    [InlineData(false, 70)] // two blocks of the prefix-sum form: the later block's queries reach the earlier keys through R
    public void LinearAttentionBackwardMatchesFiniteDifferences(bool reference, int tokens)
    {
        var random = new Random(30);
        int heads = 2, d = 3, dv = 4;
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
        if (reference)
        {
            LinearAttention.BackwardReference(heads, d, dv, tokens, q, k, v, FiniteDifference.ToFloat(r), dq, dk, dvGrad);
        }
        else
        {
            LinearAttention.Backward(heads, d, dv, tokens, q, k, v, FiniteDifference.ToFloat(r), dq, dk, dvGrad);
        }

        FiniteDifference.AssertClose(dq, FiniteDifference.Gradient(p => Loss(p, kd, vd), qd), 1e-4, "linear dq");
        FiniteDifference.AssertClose(dk, FiniteDifference.Gradient(p => Loss(qd, p, vd), kd), 1e-4, "linear dk");
        FiniteDifference.AssertClose(dvGrad, FiniteDifference.Gradient(p => Loss(qd, kd, p), vd), 1e-4, "linear dv");
    }
}
