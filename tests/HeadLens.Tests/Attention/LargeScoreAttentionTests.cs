using HeadLens.Attention;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Attention;

// Fused attention where scores are large, as in real "sink" heads: |scale·q·k| up to 100, so exp(s − max) spans
// e^−200 .. 1 and a row's running maximum jumps by up to 200 between key tiles. Against the float64 oracle and the
// fp32 reference path; causal (the default mask) with odd sizes, the AVX-512 panel path (head size 64, T ≥ 64),
// grouped queries, a window with sink tokens, a decode offset, and single decode queries, whose keys are read in parts
// (of ~117 and ~101 keys here) with a running maximum that jumps between blocks and between parts.
//
// Tolerance. In fp32 a score s = scale·Σ_d q_d·k_d is within γ·σ of its exact value, γ = (D + 2)·ε (a dot product of
// length D in any order, then the scale; ε = 2⁻²⁴), σ = scale·Σ_d |q_d·k_d|. A softmax weight then carries a relative
// error of at most 2γσ_max (its own score and the others', through the normaliser), so an output (a convex combination
// of |v| ≤ 1) is off by at most 2γσ_max of its row, plus the rounding of the sums (the 1e-5 of the small-score tests).
// With σ up to ~150 and D = 64 that is ~1.2e-3 in the worst case: the price of fp32 scores this large (ulp(100) is
// already 7.6e-6), which the reference path pays too. A kernel that mishandles the rescaling (a lost tile, an
// overflowing exponential, a NaN from −∞ − −∞) is off by O(1).
public class LargeScoreAttentionTests
{
    public static TheoryData<string, string> Cases()
    {
        var cases = new TheoryData<string, string>();
        foreach (string shape in Shapes.Keys)
        {
            foreach (string kind in (string[])["random", "sink", "anti-sink"])
            {
                cases.Add(shape, kind);
            }
        }

        return cases;
    }

    private static readonly Dictionary<string, (AttentionOptions Options, int Tq, int Tk, int Offset)> Shapes = new()
    {
        ["causal-odd"] = (new AttentionOptions(3, 3, 16, 16), 77, 77, 0),
        ["causal-one-tile-plus-one"] = (new AttentionOptions(2, 2, 8, 8), 65, 65, 0),
        ["panel-causal"] = (new AttentionOptions(2, 2, 64, 64), 131, 131, 0),
        ["panel-gqa"] = (new AttentionOptions(4, 2, 64, 64), 97, 97, 0),
        ["window-sinks"] = (new AttentionOptions(2, 2, 16, 16) { Window = 19, Sinks = 2 }, 101, 101, 0),
        ["decode-offset"] = (new AttentionOptions(4, 2, 16, 24), 3, 90, 87),
        ["decode-one-query"] = (new AttentionOptions(4, 2, 64, 64), 1, 700, 699),
        ["decode-one-query-window-sinks"] = (new AttentionOptions(2, 2, 16, 16) { Window = 300, Sinks = 3 }, 1, 700, 699),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FusedForwardMatchesTheOracleAndTheReference(string shape, string kind)
    {
        var (options, tq, tk, offset) = Shapes[shape];
        var (q, k, v) = LargeScoreInputs(options, tq, tk, offset, kind, seed: shape.Length * 3 + kind.Length);
        var (largest, rowBounds) = Bounds(options, tq, tk, offset, q, k);
        Assert.InRange(largest, 99.0, 100.0001); // the construction reaches |s| = 100
        float[] reference = new float[tq * options.Heads * options.HeadDimV], referenceLse = new float[options.Heads * tq];
        float[] fused = new float[reference.Length], fusedLse = new float[referenceLse.Length];
        ScaledDotProductAttention.ForwardReference(options, tq, tk, offset, q, k, v, reference, referenceLse);
        ScaledDotProductAttention.Forward(options, tq, tk, offset, q, k, v, fused, fusedLse);
        double[] exact = Float64Attention.Forward(options, tq, tk, offset, FiniteDifference.ToDouble(q), FiniteDifference.ToDouble(k), FiniteDifference.ToDouble(v));
        int heads = options.Heads, dv = options.HeadDimV;
        for (int i = 0; i < tq; i++)
        {
            for (int h = 0; h < heads; h++)
            {
                double bound = rowBounds[h * tq + i];
                for (int d = 0; d < dv; d++)
                {
                    int at = (i * heads + h) * dv + d;
                    Assert.True(Math.Abs(fused[at] - exact[at]) <= bound, $"{shape}/{kind} fused out[{i}, {h}, {d}] = {fused[at]}, exact {exact[at]} (bound {bound:E2})");
                    Assert.True(Math.Abs(reference[at] - exact[at]) <= bound, $"{shape}/{kind} reference out[{i}, {h}, {d}] = {reference[at]}, exact {exact[at]} (bound {bound:E2})");
                    Assert.True(Math.Abs(fused[at] - reference[at]) <= 2 * bound, $"{shape}/{kind} out[{i}, {h}, {d}]: fused {fused[at]}, reference {reference[at]} (bound {2 * bound:E2})");
                }

                // log Σ exp s: each score within γσ, and the log of the sum rounded relative to its size.
                int row = h * tq + i;
                double lseBound = bound + 1e-5 * Math.Max(1, Math.Abs(referenceLse[row]));
                Assert.True(Math.Abs(fusedLse[row] - referenceLse[row]) <= 2 * lseBound, $"{shape}/{kind} lse[{h}, {i}]: fused {fusedLse[row]}, reference {referenceLse[row]}");
            }
        }
    }

    // Backward: both fp32 against each other. A gradient entry is a sum over up to T terms P·(…)·q or k, whose
    // weights P carry the same relative error 2γσ_max as the forward; so the tolerance is that error times the largest
    // entry's scale (1e-4 relative to the largest entry, as the small-score tests, plus 2γσ_max of it). One more term:
    // the fused path takes the softmax row term D_i = Σ_j P_ij·dP_ij as dO_i·O_i (FlashAttention-2), exact in exact
    // arithmetic but within γ_v·Σ_d|dO·O| in fp32 (γ_v = (Dv + 2)·ε). A sink key has P_i0 ≈ 1, so its dS_i0 =
    // P_i0·(dP_i0 − D_i) is that rounding (the exact value is ≈ e⁻⁷⁰), carried into dK_0 by scale·q_i over every query
    // and into dQ_i by scale·k_0; the reference, summing P·dP, cancels to 0 there. Each entry's bound adds
    // scale·Σ P·γ_v·Σ|dO·O|·|q| (dK) or ·|k| (dQ), from the reference's patterns.
    [Theory]
    [MemberData(nameof(Cases))]
    public void FusedBackwardMatchesTheReference(string shape, string kind)
    {
        var (options, tq, tk, offset) = Shapes[shape];
        var (q, k, v) = LargeScoreInputs(options, tq, tk, offset, kind, seed: shape.Length * 5 + kind.Length);
        var (_, rowBounds) = Bounds(options, tq, tk, offset, q, k);
        double weightError = rowBounds.Max();
        var random = new Random(shape.Length + kind.Length);
        float[] dO = TestData.Uniform(random, tq * options.Heads * options.HeadDimV);
        float[] output = new float[dO.Length], lse = new float[options.Heads * tq];
        ScaledDotProductAttention.Forward(options, tq, tk, offset, q, k, v, output, lse);
        float[] dq1 = new float[q.Length], dk1 = new float[k.Length], dv1 = new float[v.Length];
        float[] dq2 = new float[q.Length], dk2 = new float[k.Length], dv2 = new float[v.Length];
        ScaledDotProductAttention.BackwardReference(options, tq, tk, offset, q, k, v, output, dO, lse, dq1, dk1, dv1);
        ScaledDotProductAttention.Backward(options, tq, tk, offset, q, k, v, output, dO, lse, dq2, dk2, dv2);
        var (qExtra, kExtra) = RowTermRounding(options, tq, tk, offset, q, k, output, dO);
        AssertNear(dq1, dq2, 1e-4 + 2 * weightError, qExtra, $"{shape}/{kind} dq");
        AssertNear(dk1, dk2, 1e-4 + 2 * weightError, kExtra, $"{shape}/{kind} dk");
        AssertNear(dv1, dv2, 1e-4 + 2 * weightError, new double[dv1.Length], $"{shape}/{kind} dv");
    }

    // q, k, v with |v| ≤ 1 and scores rescaled so that the largest visible |s| is exactly 100:
    //   random:    uniform q and k;
    //   sink:      key 0 (visible to every query: causal, or a sink token of the window) lies along one direction u
    //              that every query shares, so s(i, 0) is the row's largest, far above the rest (a real sink head);
    //   anti-sink: the same with the sign of u flipped for the queries: key 0 sits far below every other key.
    private static (float[] Q, float[] K, float[] V) LargeScoreInputs(AttentionOptions options, int tq, int tk, int offset, string kind, int seed)
    {
        var random = new Random(seed);
        int heads = options.Heads, kvHeads = options.KvHeads, dqk = options.HeadDimQK;
        double[] q = FiniteDifference.ToDouble(TestData.Uniform(random, tq * heads * dqk));
        double[] k = FiniteDifference.ToDouble(TestData.Uniform(random, tk * kvHeads * dqk));
        float[] v = TestData.Uniform(random, tk * kvHeads * options.HeadDimV);
        if (kind != "random")
        {
            double[] u = FiniteDifference.ToDouble(TestData.Uniform(random, dqk));
            double norm = Math.Sqrt(u.Sum(x => x * x));
            double sign = kind == "sink" ? 1 : -1;
            for (int g = 0; g < kvHeads; g++)
            {
                for (int d = 0; d < dqk; d++)
                {
                    k[g * dqk + d] = 4 * u[d] / norm;
                }
            }

            for (int row = 0; row < tq * heads; row++)
            {
                for (int d = 0; d < dqk; d++)
                {
                    q[row * dqk + d] = 0.25 * q[row * dqk + d] + sign * 4 * u[d] / norm;
                }
            }
        }

        // Scale q so that the largest visible |s| is 100 (after rounding to float, checked by the caller).
        float[] qf = FiniteDifference.ToFloat(q), kf = FiniteDifference.ToFloat(k);
        double largest = Bounds(options, tq, tk, offset, qf, kf).Largest;
        for (int i = 0; i < q.Length; i++)
        {
            q[i] *= 100 / largest;
        }

        return (FiniteDifference.ToFloat(q), kf, v);
    }

    // The largest visible |s| in float64, and each row's output bound 2γσ_max + 1e-5 (see the top of the file).
    private static (double Largest, double[] RowBounds) Bounds(AttentionOptions options, int tq, int tk, int offset, float[] q, float[] k)
    {
        int heads = options.Heads, kvHeads = options.KvHeads, dqk = options.HeadDimQK;
        double scale = options.Scale ?? 1 / Math.Sqrt(dqk), gamma = (dqk + 2) * Math.Pow(2, -24), largest = 0;
        var bounds = new double[heads * tq];
        for (int h = 0; h < heads; h++)
        {
            int g = h / (heads / kvHeads);
            for (int i = 0; i < tq; i++)
            {
                double sigma = 0;
                for (int j = 0; j < tk; j++)
                {
                    if (!options.IsVisible(offset + i, j))
                    {
                        continue;
                    }

                    double dot = 0, magnitude = 0;
                    for (int d = 0; d < dqk; d++)
                    {
                        double term = (double)q[(i * heads + h) * dqk + d] * k[(j * kvHeads + g) * dqk + d];
                        dot += term;
                        magnitude += Math.Abs(term);
                    }

                    largest = Math.Max(largest, scale * Math.Abs(dot));
                    sigma = Math.Max(sigma, scale * magnitude);
                }

                bounds[h * tq + i] = 2 * gamma * sigma + 1e-5;
            }
        }

        return (largest, bounds);
    }

    // Per entry of dQ and dK: the rounding of the fused path's row term D_i, spread as described above.
    private static (double[] Query, double[] Key) RowTermRounding(
        AttentionOptions options, int tq, int tk, int offset, float[] q, float[] k, float[] output, float[] dO)
    {
        int heads = options.Heads, kvHeads = options.KvHeads, dqk = options.HeadDimQK, dv = options.HeadDimV;
        double scale = options.Scale ?? 1 / Math.Sqrt(dqk), gammaV = (dv + 2) * Math.Pow(2, -24);
        var patterns = new float[heads * tq * tk];
        ScaledDotProductAttention.Patterns(options, tq, tk, offset, q, k, Enumerable.Range(0, heads).ToArray(), patterns);
        double[] queryExtra = new double[q.Length], keyExtra = new double[k.Length];
        for (int h = 0; h < heads; h++)
        {
            int g = h / (heads / kvHeads);
            for (int i = 0; i < tq; i++)
            {
                double rounding = 0;
                for (int d = 0; d < dv; d++)
                {
                    rounding += Math.Abs((double)dO[(i * heads + h) * dv + d] * output[(i * heads + h) * dv + d]);
                }

                rounding *= 2 * gammaV * scale; // twice: the bound is on a difference of two fp32 paths
                for (int j = 0; j < tk; j++)
                {
                    double p = patterns[(h * tq + i) * tk + j];
                    for (int d = 0; d < dqk; d++)
                    {
                        keyExtra[(j * kvHeads + g) * dqk + d] += p * rounding * Math.Abs(q[(i * heads + h) * dqk + d]);
                        queryExtra[(i * heads + h) * dqk + d] += p * rounding * Math.Abs(k[(j * kvHeads + g) * dqk + d]);
                    }
                }
            }
        }

        return (queryExtra, keyExtra);
    }

    private static void AssertNear(float[] expected, float[] actual, double relative, double[] extra, string what)
    {
        double largest = Math.Max(expected.Max(MathF.Abs), 1e-3);
        for (int i = 0; i < expected.Length; i++)
        {
            double bound = relative * largest + extra[i];
            Assert.True(float.IsFinite(actual[i]), $"{what}[{i}] = {actual[i]}");
            Assert.True(Math.Abs(expected[i] - actual[i]) <= bound, $"{what}[{i}]: {expected[i]} vs {actual[i]} (bound {bound:E2})");
        }
    }
}
