using HeadLens.Attention;

namespace HeadLens.Tests.Attention;

/// <summary>
/// Counts the managed bytes one attention backward allocates. It runs alone (<see cref="RunsAlone"/>): when another
/// test holds the compute pool, a parallel region falls back to Parallel.For, whose tasks allocate several KB on the
/// calling thread (73,912 bytes against the bound of 73,728 in one CI run, 66,112 with the pool to itself).
/// </summary>
[Collection(RunsAlone.Name)]
public class AttentionAllocationTests
{
    // The backward's managed allocations are its row term D [B, H, T] and a few small objects, whatever the length:
    // nothing per (key tile, query tile) pair. Counted on the calling thread, which always takes some of the four
    // heads' work items (each takes milliseconds). An array per pair was 176 KB per head here (2.8 MB at T = 16384).
    [Fact]
    public void BackwardAllocatesOnlyItsRowTerm()
    {
        const int T = 4096;
        var options = new AttentionOptions(4, 4, 64, 64);
        var (q, k, v) = ScaledDotProductAttentionTests.Inputs(options, T, T, seed: 5);
        var outputGrad = ScaledDotProductAttentionTests.Inputs(options, T, T, seed: 6).Q;
        float[] output = new float[q.Length], logSumExp = new float[4 * T];
        float[] qGrad = new float[q.Length], kGrad = new float[k.Length], vGrad = new float[v.Length];
        ScaledDotProductAttention.Forward(options, T, T, 0, q, k, v, output, logSumExp);
        void Backward() => ScaledDotProductAttention.Backward(options, 1, T, T, 0, q, k, v, output, outputGrad, logSumExp, qGrad, kGrad, vGrad);
        Backward(); // per-thread scratch
        long before = GC.GetAllocatedBytesForCurrentThread();
        Backward();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < (4 * T * sizeof(float)) + (8 << 10), $"{allocated} bytes allocated by one backward");
    }
}
