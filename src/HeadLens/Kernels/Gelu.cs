using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using HeadLens.Attention;

namespace HeadLens.Kernels;

// GELU in GPT-2's tanh form, elementwise:
//   y = ½·x·(1 + tanh(u)),  u = √(2/π)·(x + 0.044715·x³)
//   dy/dx = ½·(1 + tanh u) + ½·x·(1 − tanh² u)·√(2/π)·(1 + 3·0.044715·x²)
// Backward overwrites xGrad (activation gradient).
// Implementations: ForwardReference/BackwardReference (scalar, tanh as written), Forward/Backward (one fused pass:
// Vector512 or Vector256 with the same math rewritten through the logistic function, split between the cores).
public static class Gelu
{
    private const float Coefficient = 0.044715f;
    private static readonly float SqrtTwoOverPi = MathF.Sqrt(2f / MathF.PI);

    public static void ForwardReference(ReadOnlySpan<float> x, Span<float> y)
    {
        for (int i = 0; i < x.Length; i++)
        {
            float v = x[i];
            float u = SqrtTwoOverPi * (v + Coefficient * v * v * v);
            y[i] = 0.5f * v * (1f + MathF.Tanh(u));
        }
    }

    public static void BackwardReference(ReadOnlySpan<float> x, ReadOnlySpan<float> yGrad, Span<float> xGrad)
    {
        for (int i = 0; i < x.Length; i++)
        {
            float v = x[i];
            float t = MathF.Tanh(SqrtTwoOverPi * (v + Coefficient * v * v * v));
            float slope = 0.5f * (1f + t) + 0.5f * v * (1f - t * t) * SqrtTwoOverPi * (1f + 3f * Coefficient * v * v);
            xGrad[i] = yGrad[i] * slope;
        }
    }

    public static unsafe void Forward(ReadOnlySpan<float> x, Span<float> y)
    {
        if (y.Length < x.Length)
        {
            throw new ArgumentException("gelu: y is shorter than x");
        }

        fixed (float* xp = x, yp = y)
        {
            nint xa = (nint)xp, ya = (nint)yp;
            ComputeThreads.RunInPieces(x.Length, (first, end) => ForwardRange((float*)xa, (float*)ya, first, end));
        }
    }

    public static unsafe void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> yGrad, Span<float> xGrad)
    {
        if (yGrad.Length < x.Length || xGrad.Length < x.Length)
        {
            throw new ArgumentException("gelu: yGrad or xGrad is shorter than x");
        }

        fixed (float* xp = x, gp = yGrad, dp = xGrad)
        {
            nint xa = (nint)xp, ga = (nint)gp, da = (nint)dp;
            ComputeThreads.RunInPieces(x.Length, (first, end) => BackwardRange((float*)xa, (float*)ga, (float*)da, first, end));
        }
    }

    // y = x·σ(2u): ½(1 + tanh u) is the logistic σ(2u), one exponential and one division per element.
    private static unsafe void ForwardRange(float* x, float* y, int first, int end)
    {
        int i = first;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + Vector512<float>.Count <= end; i += Vector512<float>.Count)
            {
                var v = Vector512.Load(x + i);
                (v * Sigmoid2U(v)).Store(y + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i + Vector256<float>.Count <= end; i += Vector256<float>.Count)
            {
                var v = Vector256.Load(x + i);
                (v * Sigmoid2U(v)).Store(y + i);
            }
        }

        for (; i < end; i++)
        {
            y[i] = x[i] * Sigmoid2U(x[i]);
        }
    }

    // dy/dx = σ + 2·x·σ·(1 − σ)·u', with σ = σ(2u) and u' = √(2/π)·(1 + 3c·x²) (since 1 − tanh² u = 4σ(1 − σ)).
    // For large |x| σ saturates at 0 or 1 and the second term at 0: no cancellation, nothing overflows.
    private static unsafe void BackwardRange(float* x, float* yGrad, float* xGrad, int first, int end)
    {
        float a = SqrtTwoOverPi, b = 3f * Coefficient * SqrtTwoOverPi;
        int i = first;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + Vector512<float>.Count <= end; i += Vector512<float>.Count)
            {
                var v = Vector512.Load(x + i);
                var sigma = Sigmoid2U(v);
                var du = Vector512.FusedMultiplyAdd(v * v, Vector512.Create(b), Vector512.Create(a));
                var slope = Vector512.FusedMultiplyAdd(v + v, sigma * (Vector512<float>.One - sigma) * du, sigma);
                (slope * Vector512.Load(yGrad + i)).Store(xGrad + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i + Vector256<float>.Count <= end; i += Vector256<float>.Count)
            {
                var v = Vector256.Load(x + i);
                var sigma = Sigmoid2U(v);
                var du = Vector256.FusedMultiplyAdd(v * v, Vector256.Create(b), Vector256.Create(a));
                var slope = Vector256.FusedMultiplyAdd(v + v, sigma * (Vector256<float>.One - sigma) * du, sigma);
                (slope * Vector256.Load(yGrad + i)).Store(xGrad + i);
            }
        }

        for (; i < end; i++)
        {
            float v = x[i], sigma = Sigmoid2U(v);
            float slope = sigma + 2f * v * sigma * (1f - sigma) * (a + b * v * v);
            xGrad[i] = slope * yGrad[i];
        }
    }

    // σ(2u) = 1 / (1 + e^(−2u)), u = √(2/π)·(x + c·x³).
    private static float Sigmoid2U(float x) =>
        1f / (1f + MathF.Exp(-2f * SqrtTwoOverPi * (x + Coefficient * x * x * x)));

    // The vector forms take t = e^(−2|u|) ≤ 1 through the attention kernels' 2^x for x ≤ 0 (a float polynomial, where
    // Vector512.Exp widens to double and, in the training step's backward, was called out of line: 1.6% of the step's
    // samples for GELU before, 0.3% after) and give σ(2u) = 1 / (1 + t) for u ≥ 0, t / (1 + t) below; t underflows to
    // 0 (σ = 1 or 0) from |2u| ≈ 87 on, where σ's float is 1 or below 2⁻¹²⁵ anyway.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Sigmoid2U(Vector512<float> x)
    {
        var u = x * Vector512.FusedMultiplyAdd(x * x, Vector512.Create(Coefficient), Vector512<float>.One);
        var t = AttentionPanels.Exp2(Vector512.Abs(u) * Vector512.Create(-2f * SqrtTwoOverPi * AttentionPanels.Log2E));
        var numerator = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(u, Vector512<float>.Zero), Vector512<float>.One, t);
        return numerator / (Vector512<float>.One + t);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Sigmoid2U(Vector256<float> x)
    {
        var u = x * Vector256.FusedMultiplyAdd(x * x, Vector256.Create(Coefficient), Vector256<float>.One);
        var t = AttentionPanels.Exp2(Vector256.Abs(u) * Vector256.Create(-2f * SqrtTwoOverPi * AttentionPanels.Log2E));
        var numerator = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(u, Vector256<float>.Zero), Vector256<float>.One, t);
        return numerator / (Vector256<float>.One + t);
    }
}
