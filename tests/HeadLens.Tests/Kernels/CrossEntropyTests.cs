using HeadLens.Kernels;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Kernels;

public class CrossEntropyTests
{
    // Loss: 1e-5 relative (floor 1) to float64 — logsumexp over ≤ 50257 fp32 terms after max subtraction.
    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 17)]
    [InlineData(5, 257)]
    [InlineData(7, 5003)]
    [InlineData(64, 4099)] // large enough for the parallel path
    public void FastAndReferenceLossesMatchFloat64(int rows, int vocab)
    {
        var random = new Random(rows * 31 + vocab);
        float[] logits = TestData.Uniform(random, rows * vocab, 6);
        int[] targets = Enumerable.Range(0, rows).Select(r => r % 4 == 3 ? -1 : random.Next(vocab)).ToArray();
        double[] expected = Float64Kernels.CrossEntropyLosses(FiniteDifference.ToDouble(logits), targets, rows, vocab);
        double expectedMean = Float64Kernels.MeanLoss(expected, targets);
        float[] losses = new float[rows], grad = new float[rows * vocab], referenceLosses = new float[rows], referenceGrad = new float[rows * vocab];
        float mean = CrossEntropy.ForwardBackward(logits, targets, rows, vocab, losses, grad);
        float referenceMean = CrossEntropy.ForwardBackwardReference(logits, targets, rows, vocab, referenceLosses, referenceGrad);
        Assert.True(Float64.MaxRelativeError(losses, expected) <= 1e-5);
        Assert.True(Float64.MaxRelativeError(referenceLosses, expected) <= 1e-5);
        Assert.Equal(expectedMean, mean, 1e-5 * Math.Max(1, expectedMean));
        Assert.Equal(expectedMean, referenceMean, 1e-5 * Math.Max(1, expectedMean));
        float forwardOnly = CrossEntropy.Forward(logits, targets, rows, vocab, losses);
        Assert.Equal(mean, forwardOnly);
        Assert.True(Float64.MaxRelativeError(grad, FiniteDifference.ToDouble(referenceGrad), floor: 1e-3) <= 1e-4);
        for (int r = 0; r < rows; r++)
        {
            if (targets[r] < 0)
            {
                Assert.All(grad.AsSpan(r * vocab, vocab).ToArray(), g => Assert.Equal(0f, g));
            }
        }
    }

    [Fact]
    public void GradientMatchesFiniteDifferencesOfTheMeanLoss()
    {
        var random = new Random(14);
        int rows = 4, vocab = 9;
        float[] logits = TestData.Uniform(random, rows * vocab, 3);
        int[] targets = [2, -1, 8, 0];
        double[] numeric = FiniteDifference.Gradient(
            p => Float64Kernels.MeanLoss(Float64Kernels.CrossEntropyLosses(p, targets, rows, vocab), targets),
            FiniteDifference.ToDouble(logits));
        float[] losses = new float[rows], grad = new float[rows * vocab];
        CrossEntropy.ForwardBackward(logits, targets, rows, vocab, losses, grad);
        FiniteDifference.AssertClose(grad, numeric, 1e-4, "cross-entropy dlogits (fast)");
        CrossEntropy.ForwardBackwardReference(logits, targets, rows, vocab, losses, grad);
        FiniteDifference.AssertClose(grad, numeric, 1e-4, "cross-entropy dlogits (reference)");
    }

    [Fact]
    public void TargetOutsideTheVocabularyIsRejected()
    {
        var error = Assert.Throws<HeadLensException>(() => CrossEntropy.Forward(new float[6], [0, 3], 2, 3, new float[2]));
        Assert.Contains("3", error.Message);
    }
}
