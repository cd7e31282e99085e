using System.Numerics.Tensors;

namespace HeadLens.Kernels;

// SiLU (swish), elementwise:  y = x·σ(x);  dy/dx = σ(x)·(1 + x·(1 − σ(x)))
// SwiGLU (Llama's MLP gate), elementwise over gate and up [rows, hidden]:
//   y = silu(g)·u;  dg = dy·u·silu'(g);  du = dy·silu(g)        (activation gradients: overwritten)
// Implementations: ForwardReference/BackwardReference (scalar), Forward/Backward (TensorPrimitives in stack
// chunks).
public static class Silu
{
    internal const int Chunk = 512;

    public static void ForwardReference(ReadOnlySpan<float> x, Span<float> y)
    {
        for (int i = 0; i < x.Length; i++)
        {
            y[i] = x[i] / (1f + MathF.Exp(-x[i]));
        }
    }

    public static void BackwardReference(ReadOnlySpan<float> x, ReadOnlySpan<float> yGrad, Span<float> xGrad)
    {
        for (int i = 0; i < x.Length; i++)
        {
            float sigma = 1f / (1f + MathF.Exp(-x[i]));
            xGrad[i] = yGrad[i] * sigma * (1f + x[i] * (1f - sigma));
        }
    }

    public static void Forward(ReadOnlySpan<float> x, Span<float> y)
    {
        Span<float> sigma = stackalloc float[Chunk];
        for (int start = 0; start < x.Length; start += Chunk)
        {
            int count = Math.Min(Chunk, x.Length - start);
            var xs = x.Slice(start, count);
            TensorPrimitives.Sigmoid(xs, sigma[..count]);
            TensorPrimitives.Multiply(xs, sigma[..count], y.Slice(start, count));
        }
    }

    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> yGrad, Span<float> xGrad)
    {
        Span<float> sigma = stackalloc float[Chunk];
        Span<float> slope = stackalloc float[Chunk];
        for (int start = 0; start < x.Length; start += Chunk)
        {
            int count = Math.Min(Chunk, x.Length - start);
            Slope(x.Slice(start, count), sigma[..count], slope[..count]);
            TensorPrimitives.Multiply(slope[..count], yGrad.Slice(start, count), xGrad.Slice(start, count));
        }
    }

    // sigma = σ(x), slope = σ(x)·(1 + x·(1 − σ(x))) = σ + x·σ − x·σ².
    internal static void Slope(ReadOnlySpan<float> x, Span<float> sigma, Span<float> slope)
    {
        TensorPrimitives.Sigmoid(x, sigma);
        TensorPrimitives.Subtract(1f, sigma, slope);
        TensorPrimitives.Multiply(slope, x, slope);
        TensorPrimitives.MultiplyAdd(slope, sigma, sigma, slope);
    }
}

/// <summary>y = silu(gate)·up, Llama's gated MLP activation. See <see cref="Silu"/> for the formulas.</summary>
public static class SwiGlu
{
    public static void ForwardReference(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> y)
    {
        for (int i = 0; i < gate.Length; i++)
        {
            y[i] = gate[i] / (1f + MathF.Exp(-gate[i])) * up[i];
        }
    }

    public static void BackwardReference(
        ReadOnlySpan<float> gate, ReadOnlySpan<float> up, ReadOnlySpan<float> yGrad, Span<float> gateGrad, Span<float> upGrad)
    {
        for (int i = 0; i < gate.Length; i++)
        {
            float sigma = 1f / (1f + MathF.Exp(-gate[i]));
            float silu = gate[i] * sigma;
            gateGrad[i] = yGrad[i] * up[i] * sigma * (1f + gate[i] * (1f - sigma));
            upGrad[i] = yGrad[i] * silu;
        }
    }

    public static void Forward(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> y)
    {
        Silu.Forward(gate, y);
        TensorPrimitives.Multiply(y, up[..gate.Length], y);
    }

    public static void Backward(
        ReadOnlySpan<float> gate, ReadOnlySpan<float> up, ReadOnlySpan<float> yGrad, Span<float> gateGrad, Span<float> upGrad)
    {
        Span<float> sigma = stackalloc float[Silu.Chunk];
        Span<float> slope = stackalloc float[Silu.Chunk];
        for (int start = 0; start < gate.Length; start += Silu.Chunk)
        {
            int count = Math.Min(Silu.Chunk, gate.Length - start);
            var g = gate.Slice(start, count);
            var dy = yGrad.Slice(start, count);
            Silu.Slope(g, sigma[..count], slope[..count]);
            // du = dy·g·σ(g)
            var du = upGrad.Slice(start, count);
            TensorPrimitives.Multiply(g, sigma[..count], du);
            TensorPrimitives.Multiply(du, dy, du);
            // dg = dy·u·slope
            var dg = gateGrad.Slice(start, count);
            TensorPrimitives.Multiply(slope[..count], up.Slice(start, count), dg);
            TensorPrimitives.Multiply(dg, dy, dg);
        }
    }
}
