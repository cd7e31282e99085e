using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using HeadLens.Attention;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Attention;

// The fused attention's panel helpers against plain loops, at the width this machine runs: AVX-512, AVX2 with FMA or
// Vector128 (CI runs them again with AVX-512 off and with AVX off). With no accelerated vectors at all the panel path
// is not taken and these tests return.
public class AttentionPanelsTests
{
    // The tile-at-a-time softmax's exponentials (any head size): e^(x − shift) for every count (whole vectors and the
    // scalar tail), against float64. Relative error at most 4e-7 + 1.2e-7·|x − shift|: the float difference and its
    // product with log₂e each round by 2⁻²⁴ of the exponent (what the old Subtract-then-Exp path did once), plus Exp2's
    // 2e-7; so the terms near the max, which carry the sum, are within ~4e-7. Masked (−∞) scores give exactly 0, and the
    // returned sum is the sum of what was written.
    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(23)]
    [InlineData(64)]
    [InlineData(61)]
    public unsafe void ExpShiftedRowWritesTheShiftedExponentialsAndReturnsTheirSum(int count)
    {
        var random = new Random(count);
        var scores = Enumerable.Range(0, count).Select(_ => (float)((random.NextDouble() * 40) - 30)).ToArray();
        if (count > 1)
        {
            scores[count / 2] = float.NegativeInfinity;
        }

        float shift = scores.Max();
        var row = (float[])scores.Clone();
        float sum;
        fixed (float* rp = row)
        {
            sum = AttentionPanels.ExpShiftedRow(rp, count, shift);
        }

        double written = 0;
        for (int j = 0; j < count; j++)
        {
            double expected = Math.Exp((double)scores[j] - shift);
            if (float.IsNegativeInfinity(scores[j]))
            {
                Assert.Equal(0f, row[j]);
            }
            else
            {
                double bound = (4e-7 + (1.2e-7 * Math.Abs((double)scores[j] - shift))) * expected;
                Assert.True(Math.Abs(row[j] - expected) <= bound, $"[{j}] e^({scores[j]} − {shift}): {row[j]} vs {expected}");
            }

            written += row[j];
        }

        Assert.True(Math.Abs(sum - written) <= 1e-6 * written, $"sum {sum} vs {written}");
    }

    // P·V for 32-wide values: every row count through the 4-row blocks (6-row and 2-row on AVX2) and the single last
    // row, depths past a tile, strided A, B and C, overwrite and accumulate; columns past 32 of C are never written.
    [Theory]
    [InlineData(1, 5, false)]
    [InlineData(3, 64, true)]
    [InlineData(4, 1, false)]
    [InlineData(7, 33, true)]
    [InlineData(13, 70, false)]
    [InlineData(48, 64, true)]
    public unsafe void MultiplyAdd32EqualsAPlainProduct(int rows, int depth, bool add)
    {
        if (!AttentionPanels.Available)
        {
            return;
        }

        const int lda = 70, ldb = 40, ldc = 36;
        var random = new Random((rows * 100) + depth);
        var a = Enumerable.Range(0, rows * lda).Select(_ => (float)((random.NextDouble() * 2) - 1)).ToArray();
        var b = Enumerable.Range(0, depth * ldb).Select(_ => (float)((random.NextDouble() * 2) - 1)).ToArray();
        var c = Enumerable.Range(0, rows * ldc).Select(_ => (float)((random.NextDouble() * 2) - 1)).ToArray();
        var before = (float[])c.Clone();
        fixed (float* ap = a, bp = b, cp = c)
        {
            AttentionPanels.MultiplyAdd32(rows, depth, ap, lda, bp, ldb, cp, ldc, add);
        }

        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < ldc; j++)
            {
                if (j >= AttentionPanels.HalfWidth)
                {
                    Assert.Equal(before[(i * ldc) + j], c[(i * ldc) + j]);
                    continue;
                }

                double expected = add ? before[(i * ldc) + j] : 0, scale = Math.Abs(expected);
                for (int p = 0; p < depth; p++)
                {
                    expected += (double)a[(i * lda) + p] * b[(p * ldb) + j];
                    scale += Math.Abs((double)a[(i * lda) + p] * b[(p * ldb) + j]);
                }

                Assert.True(Math.Abs(c[(i * ldc) + j] - expected) <= 1e-6 * scale, $"[{i}, {j}]: {c[(i * ldc) + j]} vs {expected}");
            }
        }
    }

    // The backward's two 64-wide products, C (+)= A·B and C += Aᵀ·B: every row count through the 4-row blocks and
    // the single rows after them, depths odd and even (their loops take two steps per trip, then a last odd one),
    // strided A, B and C; columns past 64 of C are never written.
    [Theory]
    [InlineData(1, 1, false)]
    [InlineData(4, 2, true)]
    [InlineData(5, 3, false)]
    [InlineData(7, 17, true)]
    [InlineData(8, 64, false)]
    [InlineData(13, 65, true)]
    public unsafe void MultiplyAddAndItsTransposedFormEqualAPlainProduct(int rows, int depth, bool add)
    {
        if (!AttentionPanels.Available)
        {
            return;
        }

        const int width = AttentionPanels.Width, lda = 70, ldb = 72, ldc = 68;
        var random = new Random((rows * 100) + depth);
        float[] Uniform(int length) => Enumerable.Range(0, length).Select(_ => (float)((random.NextDouble() * 2) - 1)).ToArray();
        float[] a = Uniform(rows * lda), aTransposed = Uniform(depth * lda), b = Uniform(depth * ldb), c = Uniform(rows * ldc);
        float[] before = (float[])c.Clone(), cTransposed = (float[])c.Clone();
        fixed (float* ap = a, atp = aTransposed, bp = b, cp = c, ctp = cTransposed)
        {
            AttentionPanels.MultiplyAdd(rows, depth, ap, lda, bp, ldb, cp, ldc, add);
            AttentionPanels.MultiplyAddTransposedA(rows, depth, atp, lda, bp, ldb, ctp, ldc);
        }

        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < ldc; j++)
            {
                if (j >= width)
                {
                    Assert.Equal(before[(i * ldc) + j], c[(i * ldc) + j]);
                    Assert.Equal(before[(i * ldc) + j], cTransposed[(i * ldc) + j]);
                    continue;
                }

                double expected = add ? before[(i * ldc) + j] : 0, scale = Math.Abs(expected);
                double expectedT = before[(i * ldc) + j], scaleT = Math.Abs(expectedT);
                for (int p = 0; p < depth; p++)
                {
                    double term = (double)a[(i * lda) + p] * b[(p * ldb) + j], termT = (double)aTransposed[(p * lda) + i] * b[(p * ldb) + j];
                    expected += term;
                    scale += Math.Abs(term);
                    expectedT += termT;
                    scaleT += Math.Abs(termT);
                }

                Assert.True(Math.Abs(c[(i * ldc) + j] - expected) <= 1e-6 * scale, $"A·B [{i}, {j}]: {c[(i * ldc) + j]} vs {expected}");
                Assert.True(Math.Abs(cTransposed[(i * ldc) + j] - expectedT) <= 1e-6 * scaleT, $"Aᵀ·B [{i}, {j}]: {cTransposed[(i * ldc) + j]} vs {expectedT}");
            }
        }
    }

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
        var inputs = new List<float> { 0f, -0f, -0.5f, -1f, -124.5f, -124.99f, AttentionPanels.Exp2Floor, -125.01f, -125.5f, -126f, -126.5f, -149f, -150f, -200f, -1e30f, float.NegativeInfinity, float.NaN, -float.NaN };
        inputs.AddRange(Enumerable.Range(0, 4000).Select(_ => (float)(random.NextDouble() * -130)));
        // Every half-integer from the floor up: the two widths round these ties to different n (see the 8-lane Exp2).
        inputs.AddRange(Enumerable.Range(0, 251).Select(i => i * -0.5f));
        inputs.AddRange(Enumerable.Range(0, 500).Select(_ => (float)(random.NextDouble() * -2)));
        while (inputs.Count % 16 != 0)
        {
            inputs.Add(-3f);
        }

        var x = inputs.ToArray();
        // Both widths where the machine has them: the 8-lane version needs only AVX2, so it is checked on AVX-512
        // machines too.
        float[]? wide = null, narrow = null;
        if (Avx512F.IsSupported && Vector512.IsHardwareAccelerated)
        {
            wide = new float[x.Length];
            var offTheFmaPipes = new float[16];
            var clamped = new float[16];
            float floorValue = AttentionPanels.Exp2(Vector512.Create(AttentionPanels.Exp2Floor)).ToScalar();
            for (int i = 0; i < x.Length; i += 16)
            {
                AttentionPanels.Exp2(Vector512.Create<float>(x.AsSpan(i, 16))).CopyTo(wide, i);
                AssertExp2(x.AsSpan(i, 16), wide.AsSpan(i, 16).ToArray());
                // AttendRows's variant finds the lanes to zero another way, and must give the same bits.
                AttentionPanels.Exp2OffTheFmaPipes(Vector512.Create<float>(x.AsSpan(i, 16))).CopyTo(offTheFmaPipes);
                for (int lane = 0; lane < 16; lane++)
                {
                    Assert.True(
                        BitConverter.SingleToInt32Bits(wide[i + lane]) == BitConverter.SingleToInt32Bits(offTheFmaPipes[lane]),
                        $"2^{x[i + lane]}: {wide[i + lane]} from Exp2, {offTheFmaPipes[lane]} from Exp2OffTheFmaPipes");
                }

                // The variant for tiles with nothing hidden: the same bits from the floor up, and below it (−∞, NaN too)
                // the floor's own, never 0 and never a subnormal.
                AttentionPanels.Exp2Clamped(Vector512.Create<float>(x.AsSpan(i, 16))).CopyTo(clamped);
                for (int lane = 0; lane < 16; lane++)
                {
                    float expected = x[i + lane] >= AttentionPanels.Exp2Floor ? wide[i + lane] : floorValue;
                    Assert.True(
                        BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(clamped[lane]),
                        $"2^max({x[i + lane]}, floor): {clamped[lane]} from Exp2Clamped, expected {expected}");
                }
            }
        }

        if (Avx2.IsSupported && Fma.IsSupported && Vector256.IsHardwareAccelerated)
        {
            narrow = new float[x.Length];
            for (int i = 0; i < x.Length; i += 8)
            {
                AttentionPanels.Exp2(Vector256.Create<float>(x.AsSpan(i, 8))).CopyTo(narrow, i);
                AssertExp2(x.AsSpan(i, 8), narrow.AsSpan(i, 8).ToArray());
            }
        }

        // The same polynomial on the same reduced argument, scaled by an exact 2^n (vscalefps at 16 lanes, the exponent
        // bits at 8): one set of bits, so a softmax weight does not depend on the machine's vector width.
        if (wide is not null && narrow is not null)
        {
            for (int i = 0; i < x.Length; i++)
            {
                Assert.True(BitConverter.SingleToInt32Bits(wide[i]) == BitConverter.SingleToInt32Bits(narrow[i]), $"2^{x[i]}: {wide[i]} at 16 lanes, {narrow[i]} at 8");
            }
        }

        // The 4-lane version (Arm, x86 without AVX2) runs wherever Vector128 does, so it is checked on every machine,
        // and with FMA (its multiply-adds fused then: Arm, or x86 with FMA) against the 8-lane version's bits. Without
        // FMA each of the polynomial's five steps rounds its product before the sum: one more rounding of a term
        // ≤ 0.35 of the result, which the bound takes as 1e-7 more (2.21e-7 the worst over 2 million arguments, simulated in
        // float32; 2.00e-7 fused).
        bool fused = Fma.IsSupported || System.Runtime.Intrinsics.Arm.AdvSimd.IsSupported;
        var four = new float[x.Length];
        for (int i = 0; i < x.Length; i += 4)
        {
            AttentionPanels.Exp2(Vector128.Create<float>(x.AsSpan(i, 4))).CopyTo(four, i);
            AssertExp2(x.AsSpan(i, 4), four.AsSpan(i, 4).ToArray(), fused ? 2e-7 : 3e-7);
        }

        if (narrow is not null)
        {
            for (int i = 0; i < x.Length; i++)
            {
                Assert.True(BitConverter.SingleToInt32Bits(narrow[i]) == BitConverter.SingleToInt32Bits(four[i]), $"2^{x[i]}: {narrow[i]} at 8 lanes, {four[i]} at 4");
            }
        }
    }

    private static void AssertExp2(ReadOnlySpan<float> inputs, float[] results, double relativeError = 2e-7)
    {
        for (int lane = 0; lane < inputs.Length; lane++)
        {
            float input = inputs[lane], actual = results[lane];
            Assert.False(float.IsSubnormal(actual), $"2^{input} = {actual} is subnormal");
            if (!(input >= AttentionPanels.Exp2Floor))
            {
                Assert.Equal(0f, actual);
                continue;
            }

            double expected = Math.Pow(2, input);
            Assert.True(Math.Abs(actual - expected) <= relativeError * expected, $"2^{input}: {actual} against {expected}");
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

    // The fused forward step for four rows against float64: starting from four running states (nothing seen yet, a
    // max above every score, one far below them that forces a rescale, one in between), for every kind of per-row
    // range (all visible, the causal diagonal, an empty row, a window, a short last tile). What must hold for any
    // running max m the kernel keeps: acc·2^m = acc₀·2^m₀ + Σ 2^s·v and Σ sums·2^m = l₀·2^m₀ + Σ 2^s over the
    // visible keys, and P = 2^(s − m) there, exactly 0 elsewhere. fp32 scores of 64 products carry ~1e-5 absolute
    // error, so 2^s carries ~1e-5 relative: 1e-4 of the sum of the terms' magnitudes.
    [Fact]
    public unsafe void AttendRowsEqualsTheOnlineSoftmaxStepInFloat64()
    {
        if (!AttentionPanels.Available)
        {
            return;
        }

        const int width = AttentionPanels.Width, ldq = 70;
        var random = new Random(9);
        float[] queries = TestData.Uniform(random, (4 * ldq) + 3), keys = TestData.Uniform(random, width * width);
        float[] values = TestData.Uniform(random, width * width), startAcc = TestData.Uniform(random, 4 * width);
        for (int i = 0; i < queries.Length; i++)
        {
            queries[i] *= 3; // scores of a few units either way, as trained heads give
        }

        float[] startMax = [float.NegativeInfinity, 40f, -30f, 1f];
        float[] startSums = Enumerable.Range(0, 4 * 16).Select(i => i < 16 ? 0f : 0.25f + (float)random.NextDouble()).ToArray();
        Array.Clear(startAcc, 0, width); // a row that has seen nothing has a zero accumulator
        int[]?[] rangeSets =
        [
            null,
            [0, 1, 0, 2, 0, 3, 0, 4],
            [5, 5, 0, 64, 7, 7, 0, 33],
            [10, 40, 11, 41, 0, 64, 63, 64],
            [0, 17, 0, 17, 0, 17, 0, 17],
            [0, 35, 1, 35, 0, 34, 2, 35], // depth 35: the AVX2 products' four-, two- and one-step loops
        ];
        foreach (var ranges in rangeSets)
        {
            float[] acc = (float[])startAcc.Clone(), max = (float[])startMax.Clone(), sums = (float[])startSums.Clone();
            var p = new float[4 * width];
            Array.Fill(p, float.NaN);
            int depth = ranges is null ? width : Enumerable.Range(0, 4).Max(i => ranges[(2 * i) + 1]);
            fixed (float* q = queries, k = keys, v = values, a = acc, m = max, l = sums, pp = p)
            fixed (int* r = ranges)
            {
                AttentionPanels.AttendRows(q + 3, q + 3 + ldq, q + 3 + (2 * ldq), q + 3 + (3 * ldq), k, v, r, depth, k, v, a, m, l, pp);
            }

            for (int i = 0; i < 4; i++)
            {
                int first = ranges?[2 * i] ?? 0, end = ranges?[(2 * i) + 1] ?? width;
                double start = float.IsNegativeInfinity(startMax[i]) ? 0 : Math.Pow(2, startMax[i]);
                double sum = startSums.Skip(16 * i).Take(16).Sum(x => (double)x) * start, sumScale = sum;
                var expected = new double[width];
                var scale = new double[width];
                for (int c = 0; c < width; c++)
                {
                    expected[c] = startAcc[(i * width) + c] * start;
                    scale[c] = Math.Abs(expected[c]);
                }

                string where = $"ranges {(ranges is null ? "none" : string.Join(",", ranges))}, row {i}";
                for (int j = 0; j < width; j++)
                {
                    if (j < first || j >= end)
                    {
                        Assert.True(p[(i * width) + j] == 0f, $"{where}: P[{j}] = {p[(i * width) + j]} is hidden");
                        continue;
                    }

                    double score = 0;
                    for (int d = 0; d < width; d++)
                    {
                        score += (double)queries[3 + (i * ldq) + d] * keys[(d * width) + j];
                    }

                    double term = Math.Pow(2, score);
                    sum += term;
                    sumScale += term;
                    for (int c = 0; c < width; c++)
                    {
                        expected[c] += term * values[(j * width) + c];
                        scale[c] += term * Math.Abs(values[(j * width) + c]);
                    }

                    double pExpected = Math.Pow(2, score - max[i]);
                    Assert.True(Math.Abs(p[(i * width) + j] - pExpected) <= 1e-4 * pExpected, $"{where}: P[{j}] = {p[(i * width) + j]}, expected {pExpected}");
                }

                if (sum == 0)
                {
                    Assert.True(float.IsNegativeInfinity(max[i]), $"{where}: nothing seen, max {max[i]}");
                    Assert.Equal(startSums.Skip(16 * i).Take(16), sums.Skip(16 * i).Take(16));
                    Assert.Equal(startAcc.Skip(i * width).Take(width), acc.Skip(i * width).Take(width));
                    continue;
                }

                double unit = Math.Pow(2, max[i]);
                double actualSum = sums.Skip(16 * i).Take(16).Sum(x => (double)x) * unit;
                Assert.True(Math.Abs(actualSum - sum) <= 1e-4 * sumScale, $"{where}: sum {actualSum}, expected {sum}");
                for (int c = 0; c < width; c++)
                {
                    double actual = acc[(i * width) + c] * unit;
                    Assert.True(Math.Abs(actual - expected[c]) <= 1e-4 * scale[c], $"{where}: acc[{c}] {actual}, expected {expected[c]}");
                }
            }
        }
    }
}
