using HeadLens.Kernels;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Kernels;

public class EmbeddingTests
{
    [Fact]
    public void LookupCopiesRowsAndGradientAccumulatesRepeatedIds()
    {
        var random = new Random(13);
        int vocab = 11, channels = 19;
        float[] table = TestData.Uniform(random, vocab * channels);
        int[] ids = [3, 0, 3, 10, 7];
        float[] fast = new float[ids.Length * channels], reference = new float[ids.Length * channels];
        Embedding.Forward(ids, table, vocab, channels, fast);
        Embedding.ForwardReference(ids, table, vocab, channels, reference);
        for (int t = 0; t < ids.Length; t++)
        {
            for (int c = 0; c < channels; c++)
            {
                Assert.Equal(table[ids[t] * channels + c], fast[t * channels + c]);
                Assert.Equal(table[ids[t] * channels + c], reference[t * channels + c]);
            }
        }

        float[] dy = TestData.Uniform(random, ids.Length * channels);
        float[] grad = Enumerable.Repeat(0.5f, vocab * channels).ToArray();
        float[] gradReference = (float[])grad.Clone();
        Embedding.Backward(ids, dy, vocab, channels, grad);
        Embedding.BackwardReference(ids, dy, vocab, channels, gradReference);
        for (int c = 0; c < channels; c++)
        {
            Assert.Equal(0.5 + dy[c] + dy[2 * channels + c], grad[3 * channels + c], 5);
            Assert.Equal(0.5f, grad[1 * channels + c]);
        }

        Assert.Equal(gradReference, grad);
    }

    [Fact]
    public void OutOfRangeIdNamesTheToken()
    {
        var error = Assert.Throws<HeadLensException>(() => Embedding.Forward([1, 12], new float[10 * 4], 10, 4, new float[8]));
        Assert.Contains("12", error.Message);
        Assert.Contains("position 1", error.Message);
        Assert.Throws<HeadLensException>(() => Embedding.Backward([-1], new float[4], 10, 4, new float[40]));
    }
}
