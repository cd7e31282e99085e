using System.Numerics.Tensors;

namespace HeadLens.Kernels;

// The residual connection: y = a + b. Backward: da += dy, db += dy (both accumulate: each branch's gradient
// joins whatever else flows into it).
// Implementations: ForwardReference/BackwardReference (scalar), Forward/Backward (TensorPrimitives).
public static class Residual
{
    public static void ForwardReference(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y)
    {
        for (int i = 0; i < a.Length; i++)
        {
            y[i] = a[i] + b[i];
        }
    }

    public static void BackwardReference(ReadOnlySpan<float> yGrad, Span<float> aGrad, Span<float> bGrad)
    {
        for (int i = 0; i < yGrad.Length; i++)
        {
            aGrad[i] += yGrad[i];
            bGrad[i] += yGrad[i];
        }
    }

    public static void Forward(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y) =>
        TensorPrimitives.Add(a, b[..a.Length], y);

    public static void Backward(ReadOnlySpan<float> yGrad, Span<float> aGrad, Span<float> bGrad)
    {
        TensorPrimitives.Add(aGrad[..yGrad.Length], yGrad, aGrad);
        TensorPrimitives.Add(bGrad[..yGrad.Length], yGrad, bGrad);
    }
}
