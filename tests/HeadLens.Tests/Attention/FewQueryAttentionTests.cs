using HeadLens.Attention;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Attention;

// The few-query (decode-step) forward: Forward takes it up to FewQueries queries. Each case runs 1..4 queries at the
// end of odd-length caches against the reference and against the tiled path it replaces for these shapes. One query
// without per-key masks reads the cache in key order, in parts of at least 128 keys merged at the end: 97 keys make
// one part, 301 three, 1100 nine, and "window-sinks-long" has parts that hold the sinks and the window's first keys.
// Heads that share a kv head sum their values a block of keys at a time; with AVX-512 their scores come from 16-lane
// kernels and four heads of a group are summed together (gqa-64, gqa-128 over two 64-column halves), the others one
// at a time (the group of 3 in gqa-3-32, the groups of 2, head sizes 16 and 32). .ci/run repeats these at 8 lanes
// and without intrinsics.
public class FewQueryAttentionTests
{
    private static readonly Dictionary<string, AttentionOptions> Configurations = new()
    {
        ["mha-64"] = new AttentionOptions(12, 12, 64, 64),
        ["gqa-64"] = new AttentionOptions(8, 2, 64, 64),
        ["gqa-128"] = new AttentionOptions(16, 2, 128, 128),
        ["gqa-3-32"] = new AttentionOptions(6, 2, 32, 32),
        ["mqa-dqk-ne-dv"] = new AttentionOptions(4, 1, 12, 20),
        ["window"] = new AttentionOptions(4, 2, 64, 64) { Window = 40 },
        ["window-sinks"] = new AttentionOptions(4, 2, 16, 16) { Window = 33, Sinks = 5 },
        ["alibi"] = new AttentionOptions(2, 2, 8, 8) { AlibiSlopes = [0.5f, 0.03125f] },
        ["padding"] = new AttentionOptions(2, 1, 16, 16) { KeyPadding = PaddingAt(301, 3, 50, 96) },
        ["strided"] = new AttentionOptions(2, 2, 8, 8) { Sparse = SparsePattern.Strided, SparseStride = 8 },
        ["cross"] = new AttentionOptions(3, 3, 32, 32) { Mask = MaskKind.Bidirectional },
        ["bidirectional-window-sinks"] = new AttentionOptions(2, 2, 8, 8) { Mask = MaskKind.Bidirectional, Window = 30, Sinks = 2 },
        ["window-sinks-long"] = new AttentionOptions(4, 2, 64, 64) { Window = 700, Sinks = 4 },
    };

    public static TheoryData<string, int, int> Cases()
    {
        var data = new TheoryData<string, int, int>();
        foreach (var name in Configurations.Keys)
        {
            // The padding mask is for up to 301 keys.
            foreach (int keys in name == "padding" ? new[] { 97, 301 } : [97, 301, 1100])
            {
                for (int queries = 1; queries <= ScaledDotProductAttention.FewQueries; queries++)
                {
                    data.Add(name, queries, keys);
                }
            }
        }

        // One query against a cache long enough for the most parts of its keys (4500 keys: 32 parts of 141).
        data.Add("gqa-64", 1, 4500);
        return data;
    }

    // Both fp32; errors relative to 1 (outputs are convex combinations of |v| ≤ 1), as FusedForwardEqualsReference.
    [Theory]
    [MemberData(nameof(Cases))]
    public void EqualsReferenceAndTiledPath(string name, int queries, int keys)
    {
        var options = Configurations[name];
        // Decode steps: the queries are the cache's last positions; cross-attention queries start at 0.
        int offset = options.Mask == MaskKind.Causal ? keys - queries : 0;
        var (q, k, v) = ScaledDotProductAttentionTests.Inputs(options, queries, keys, seed: (name.Length * 31) + (queries * 7) + keys);
        int outputLength = queries * options.Heads * options.HeadDimV, lseLength = options.Heads * queries;
        float[] expected = new float[outputLength], expectedLse = new float[lseLength];
        float[] tiled = new float[outputLength], tiledLse = new float[lseLength];
        float[] actual = new float[outputLength], actualLse = new float[lseLength];
        ScaledDotProductAttention.ForwardReference(options, queries, keys, offset, q, k, v, expected, expectedLse);
        ScaledDotProductAttention.ForwardTiled(options, 1, queries, keys, offset, q, k, v, tiled, tiledLse);
        ScaledDotProductAttention.Forward(options, queries, keys, offset, q, k, v, actual, actualLse);
        Assert.True(Float64.MaxRelativeError(actual, FiniteDifference.ToDouble(expected)) <= 1e-5, $"{name} vs reference");
        Assert.True(Float64.MaxRelativeError(actual, FiniteDifference.ToDouble(tiled)) <= 1e-5, $"{name} vs tiled");
        for (int i = 0; i < lseLength; i++)
        {
            Assert.Equal(expectedLse[i], actualLse[i], 1e-4f);
            Assert.Equal(tiledLse[i], actualLse[i], 1e-4f);
        }
    }

    // Queries that see no key (every key padded): zero rows and a logSumExp of −∞, as the reference gives.
    [Fact]
    public void QueryWithNothingVisibleGivesZeroRow()
    {
        var options = new AttentionOptions(2, 2, 8, 8) { KeyPadding = Enumerable.Repeat(true, 20).ToArray() };
        var (q, k, v) = ScaledDotProductAttentionTests.Inputs(options, 2, 20, seed: 5);
        float[] expected = new float[2 * 2 * 8], expectedLse = new float[4], actual = new float[expected.Length], actualLse = new float[4];
        Array.Fill(actual, 1f);
        ScaledDotProductAttention.ForwardReference(options, 2, 20, 9, q, k, v, expected, expectedLse);
        ScaledDotProductAttention.Forward(options, 2, 20, 9, q, k, v, actual, actualLse);
        Assert.All(expectedLse, x => Assert.True(float.IsNegativeInfinity(x)));
        Assert.All(actualLse, x => Assert.True(float.IsNegativeInfinity(x)));
        Assert.Equal(expected, actual);
        Assert.All(actual, x => Assert.Equal(0f, x));
    }

    // A batch of decode steps in one call (one fork–join over sequences × heads, or over sequences × parts of the
    // keys for one query; 3 × 32 heads × 600 keys is enough work for the pool) equals one call per sequence exactly:
    // the same arithmetic per row.
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void BatchedCallEqualsOneCallPerSequence(int queries)
    {
        const int batch = 3, keys = 600;
        var options = new AttentionOptions(32, 4, 64, 64);
        var (q, k, v) = ScaledDotProductAttentionTests.Inputs(options, batch * queries, batch * keys, seed: 11);
        int qLength = queries * 32 * 64, kLength = keys * 4 * 64;
        float[] output = new float[q.Length], lse = new float[batch * 32 * queries];
        ScaledDotProductAttention.Forward(options, batch, queries, keys, keys - queries, q, k, v, output, lse);
        for (int b = 0; b < batch; b++)
        {
            float[] one = new float[qLength], oneLse = new float[32 * queries];
            ScaledDotProductAttention.Forward(options, queries, keys, keys - queries,
                q.AsSpan(b * qLength, qLength), k.AsSpan(b * kLength, kLength), v.AsSpan(b * kLength, kLength), one, oneLse);
            Assert.Equal(one, output.AsSpan(b * qLength, qLength).ToArray());
            Assert.Equal(oneLse, lse.AsSpan(b * 32 * queries, 32 * queries).ToArray());
        }
    }

    private static bool[] PaddingAt(int length, params int[] padded)
    {
        var mask = new bool[length];
        foreach (int j in padded)
        {
            mask[j] = true;
        }

        return mask;
    }
}
