using System.Runtime.Intrinsics;
using HeadLens.Attention;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Attention;

// The fused attention's AVX-512 helpers against plain loops. They run only where AVX-512 exists (the panel path is
// taken only there); elsewhere these tests have nothing to check and return.
public class AttentionPanelsTests
{
    // 2^x against float64 over the range scores take (x ≤ 0), through the floor, and past it: exactly 0 below the
    // floor (−∞ masked scores, NaN), never a subnormal (each one a microcode assist), 2e-7 relative above it.
    [Fact]
    public void Exp2MatchesFloat64AndIsExactlyZeroBelowItsFloor()
    {
        if (!AttentionPanels.Available)
        {
            return;
        }

        var random = new Random(5);
        var inputs = new List<float> { 0f, -0.5f, -1f, -124.5f, -124.99f, AttentionPanels.Exp2Floor, -125.01f, -125.5f, -126f, -126.5f, -149f, -150f, -200f, -1e30f, float.NegativeInfinity, float.NaN };
        inputs.AddRange(Enumerable.Range(0, 4000).Select(_ => (float)(random.NextDouble() * -130)));
        inputs.AddRange(Enumerable.Range(0, 500).Select(_ => (float)(random.NextDouble() * -2)));
        while (inputs.Count % 16 != 0)
        {
            inputs.Add(-3f);
        }

        var x = inputs.ToArray();
        for (int i = 0; i < x.Length; i += 16)
        {
            var result = AttentionPanels.Exp2(Vector512.Create<float>(x.AsSpan(i, 16)));
            for (int lane = 0; lane < 16; lane++)
            {
                float input = x[i + lane], actual = result[lane];
                Assert.False(float.IsSubnormal(actual), $"2^{input} = {actual} is subnormal");
                if (!(input >= AttentionPanels.Exp2Floor))
                {
                    Assert.Equal(0f, actual);
                    continue;
                }

                double expected = Math.Pow(2, input);
                Assert.True(Math.Abs(actual - expected) <= 2e-7 * expected, $"2^{input}: {actual} against {expected}");
            }
        }
    }

    // Every number of rows a key tile can have (1..64), a stride wider than the block, and a scale; the padding
    // columns must be zero even when the block held garbage.
    [Fact]
    public unsafe void TransposeBlockEqualsAPlainTranspose()
    {
        if (!AttentionPanels.Available)
        {
            return;
        }

        const int width = AttentionPanels.Width, ld = 200;
        var random = new Random(6);
        float[] source = TestData.Uniform(random, (width * ld) + width);
        var block = new float[width * width];
        for (int rows = 1; rows <= width; rows++)
        {
            Array.Fill(block, float.NaN);
            fixed (float* x = source, b = block)
            {
                AttentionPanels.TransposeBlock(x + 3, ld, rows, 0.375f, b);
            }

            for (int d = 0; d < width; d++)
            {
                for (int j = 0; j < width; j++)
                {
                    float expected = j < rows ? 0.375f * source[3 + (j * ld) + d] : 0f;
                    Assert.True(expected == block[(d * width) + j], $"rows {rows}: block[{d}, {j}] = {block[(d * width) + j]}, expected {expected}");
                }
            }
        }
    }

    [Fact]
    public unsafe void CopyBlockEqualsAPlainCopy()
    {
        if (!AttentionPanels.Available)
        {
            return;
        }

        const int width = AttentionPanels.Width, ld = 131;
        var random = new Random(7);
        float[] source = TestData.Uniform(random, width * ld);
        var block = new float[width * width];
        foreach (int rows in new[] { 1, 17, 63, 64 })
        {
            Array.Fill(block, float.NaN);
            fixed (float* x = source, b = block)
            {
                AttentionPanels.CopyBlock(x + 5, ld, rows, b);
            }

            for (int j = 0; j < width; j++)
            {
                for (int d = 0; d < width; d++)
                {
                    Assert.Equal(j < rows ? source[5 + (j * ld) + d] : 0f, block[(j * width) + d]);
                }
            }
        }
    }

    // Every range [first, end) of a 64-wide row, against a plain loop.
    [Fact]
    public unsafe void HideOutsideHidesExactlyTheColumnsOutsideTheRange()
    {
        if (!AttentionPanels.Available)
        {
            return;
        }

        const int width = AttentionPanels.Width;
        float[] source = TestData.Uniform(new Random(8), width);
        var row = new float[width];
        for (int first = 0; first <= width; first++)
        {
            for (int end = first; end <= width; end++)
            {
                source.CopyTo(row, 0);
                fixed (float* r = row)
                {
                    AttentionPanels.HideOutside(r, first, end);
                }

                for (int j = 0; j < width; j++)
                {
                    Assert.Equal(j >= first && j < end ? source[j] : float.NegativeInfinity, row[j]);
                }
            }
        }
    }
}
