using HeadLens.Kernels;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Kernels;

public class OptimizerTests
{
    // Several AdamW steps against a float64 re-implementation of torch.optim.AdamW. Tolerance 1e-5 relative
    // (floor 1e-2 of the parameter scale): each step moves a parameter by ≤ lr, rounding in fp32 adds ~1e-7 per step.
    [Fact]
    public void AdamWStepsMatchFloat64TorchSemantics()
    {
        var random = new Random(15);
        foreach (int n in new[] { 1, 15, 17, 100, 70001 })
        {
            var settings = new AdamWSettings(LearningRate: 3e-3f, WeightDecay: 0.1f);
            float[] p = TestData.Uniform(random, n), fastP = (float[])p.Clone(), referenceP = (float[])p.Clone();
            float[] m1 = new float[n], v1 = new float[n], m2 = new float[n], v2 = new float[n];
            double[] pd = FiniteDifference.ToDouble(p), md = new double[n], vd = new double[n];
            for (int step = 1; step <= 5; step++)
            {
                float[] g = TestData.Uniform(random, n, 0.5);
                AdamW.Step(fastP, g, m1, v1, settings, step);
                AdamW.StepReference(referenceP, g, m2, v2, settings, step);
                for (int i = 0; i < n; i++)
                {
                    double lr = settings.LearningRate, b1 = settings.Beta1, b2 = settings.Beta2;
                    pd[i] *= 1 - lr * settings.WeightDecay;
                    md[i] = b1 * md[i] + (1 - b1) * g[i];
                    vd[i] = b2 * vd[i] + (1 - b2) * g[i] * (double)g[i];
                    double mHat = md[i] / (1 - Math.Pow(b1, step));
                    double vHat = vd[i] / (1 - Math.Pow(b2, step));
                    pd[i] -= lr * mHat / (Math.Sqrt(vHat) + settings.Epsilon);
                }
            }

            Assert.True(Float64.MaxRelativeError(fastP, pd, floor: 1e-2) <= 1e-5, $"fast n={n}");
            Assert.True(Float64.MaxRelativeError(referenceP, pd, floor: 1e-2) <= 1e-5, $"reference n={n}");
        }
    }

    // The first step writes the moments without reading them (fresh pages are cheaper written than read, then
    // written): the buffers' contents must not matter, and the result must be the reference's from zero moments, bit
    // for bit, on the vector paths and the scalar tail, signed zeros in the gradient included. The later steps read
    // them again.
    [Fact]
    public void TheFirstStepStartsFromZeroMomentsWithoutReadingThem()
    {
        var random = new Random(17);
        foreach (int n in new[] { 1, 15, 17, 100, 70001 })
        {
            var settings = new AdamWSettings(LearningRate: 3e-3f, WeightDecay: 0.1f);
            float[] p = TestData.Uniform(random, n), fastP = (float[])p.Clone(), referenceP = (float[])p.Clone();
            float[] g = TestData.Uniform(random, n, 0.5);
            g[0] = -0f;
            g[n / 2] = 0f;
            float[] m1 = Enumerable.Repeat(float.NaN, n).ToArray(), v1 = Enumerable.Repeat(float.NaN, n).ToArray();
            float[] m2 = new float[n], v2 = new float[n];
            AdamW.Step(fastP, g, m1, v1, settings, 1);
            AdamW.StepReference(referenceP, g, m2, v2, settings, 1);
            Assert.Equal(referenceP, fastP);
            Assert.Equal(m2, m1);
            Assert.Equal(v2, v1);
            Assert.True(BitConverter.SingleToInt32Bits(m1[0]) == BitConverter.SingleToInt32Bits(m2[0]), $"the sign of m[0], n={n}");

            float[] g2 = TestData.Uniform(random, n, 0.5);
            AdamW.Step(fastP, g2, m1, v1, settings, 2);
            AdamW.StepReference(referenceP, g2, m2, v2, settings, 2);
            Assert.Equal(referenceP, fastP);
            Assert.Equal(m2, m1);
        }
    }

    [Fact]
    public void ClippingScalesOnlyWhenTheNormExceedsTheLimit()
    {
        var random = new Random(16);
        float[] g = TestData.Uniform(random, 10007, 0.1);
        double exact = Math.Sqrt(g.Sum(v => (double)v * v));
        Assert.Equal(exact, GradientClipping.GlobalNorm(g), 1e-6 * exact);
        Assert.Equal(exact, GradientClipping.GlobalNormReference(g), 1e-6 * exact);

        float[] untouched = (float[])g.Clone();
        float norm = GradientClipping.ClipByGlobalNorm(untouched, (float)exact * 2);
        Assert.Equal(g, untouched);
        Assert.Equal(exact, norm, 1e-6 * exact);

        float[] clipped = (float[])g.Clone();
        GradientClipping.ClipByGlobalNorm(clipped, 1f);
        Assert.Equal(1.0, GradientClipping.GlobalNorm(clipped), 1e-5);
        double ratio = clipped[0] / (double)g[0];
        Assert.Equal(1 / (exact + 1e-6), ratio, 1e-6);
    }
}
