using System.Numerics.Tensors;

namespace HeadLens.Kernels;

// GELU in GPT-2's tanh form, elementwise:
//   y = ½·x·(1 + tanh(u)),  u = √(2/π)·(x + 0.044715·x³)
//   dy/dx = ½·(1 + tanh u) + ½·x·(1 − tanh² u)·√(2/π)·(1 + 3·0.044715·x²)
// Backward overwrites xGrad (activation gradient).
// Implementations: ForwardReference/BackwardReference (scalar), Forward/Backward (TensorPrimitives in chunks that
// fit on the stack, so no allocation).
public static class Gelu
{
    private const float Coefficient = 0.044715f;
    private const int Chunk = 512;
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

    public static void Forward(ReadOnlySpan<float> x, Span<float> y)
    {
        Span<float> t = stackalloc float[Chunk];
        for (int start = 0; start < x.Length; start += Chunk)
        {
            int count = Math.Min(Chunk, x.Length - start);
            var xs = x.Slice(start, count);
            var ts = t[..count];
            TanhOfU(xs, ts);
            // y = ½x(1 + t) = ½x + ½x·t
            TensorPrimitives.FusedMultiplyAdd(xs, ts, xs, ts);
            TensorPrimitives.Multiply(ts, 0.5f, y.Slice(start, count));
        }
    }

    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> yGrad, Span<float> xGrad)
    {
        Span<float> t = stackalloc float[Chunk];
        Span<float> s = stackalloc float[Chunk];
        for (int start = 0; start < x.Length; start += Chunk)
        {
            int count = Math.Min(Chunk, x.Length - start);
            var xs = x.Slice(start, count);
            var ts = t[..count];
            var ss = s[..count];
            TanhOfU(xs, ts);
            // s = √(2/π)·(1 + 3c·x²)·½x·(1 − t²)
            TensorPrimitives.Multiply(xs, xs, ss);
            TensorPrimitives.Multiply(ss, 3f * Coefficient * SqrtTwoOverPi, ss);
            TensorPrimitives.Add(ss, SqrtTwoOverPi, ss);
            TensorPrimitives.Multiply(ss, xs, ss);
            TensorPrimitives.Multiply(ss, 0.5f, ss);
            var dx = xGrad.Slice(start, count);
            TensorPrimitives.Multiply(ts, ts, dx);
            TensorPrimitives.Subtract(1f, dx, dx);
            TensorPrimitives.Multiply(ss, dx, ss);
            // slope = ½(1 + t) + s
            TensorPrimitives.Multiply(ts, 0.5f, ts);
            TensorPrimitives.Add(ts, 0.5f, ts);
            TensorPrimitives.Add(ts, ss, ts);
            TensorPrimitives.Multiply(ts, yGrad.Slice(start, count), dx);
        }
    }

    // t = tanh(√(2/π)·(x + c·x³)).
    private static void TanhOfU(ReadOnlySpan<float> x, Span<float> t)
    {
        TensorPrimitives.Multiply(x, x, t);
        TensorPrimitives.Multiply(t, Coefficient, t);
        TensorPrimitives.FusedMultiplyAdd(t, x, x, t);
        TensorPrimitives.Multiply(t, SqrtTwoOverPi, t);
        TensorPrimitives.Tanh(t, t);
    }
}
