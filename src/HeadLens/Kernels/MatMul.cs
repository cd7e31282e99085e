namespace HeadLens.Kernels;

// The linear layer and its three backward products (the products of training):
//   forward:  y[M,N]  = x[M,K] · W[N,K]ᵀ + b[N]
//   backward: dx[M,K] = dy[M,N] · W[N,K]        (activation gradient: overwritten)
//             dW[N,K] += dy[M,N]ᵀ · x[M,K]      (parameter gradient: accumulated)
//             db[N]   += Σ_m dy[m,:]            (parameter gradient: accumulated)
// M = rows (tokens), N = output features, K = input features. W is stored [out, in] as in PyTorch's nn.Linear.
// Implementations: Reference (Gemm.Reference) and Forward/Backward (Gemm.Multiply, the fast path).
public static class MatMul
{
    public static void Forward(
        ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, int m, int n, int k, Span<float> y)
    {
        Gemm.Multiply(false, true, m, n, k, x, k, weight, k, y, n, accumulate: false);
        AddBias(bias, m, n, y);
    }

    /// <summary>Backward of <see cref="Forward"/>; pass an empty span to skip a gradient.</summary>
    public static void Backward(
        ReadOnlySpan<float> yGrad, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, int m, int n, int k,
        Span<float> xGrad, Span<float> weightGrad, Span<float> biasGrad)
    {
        if (!xGrad.IsEmpty)
        {
            Gemm.Multiply(false, false, m, k, n, yGrad, n, weight, k, xGrad, k, accumulate: false);
        }

        if (!weightGrad.IsEmpty)
        {
            Gemm.Multiply(true, false, n, k, m, yGrad, n, x, k, weightGrad, k, accumulate: true);
        }

        BiasBackward(yGrad, m, n, biasGrad);
    }

    public static void ForwardReference(
        ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, int m, int n, int k, Span<float> y)
    {
        Gemm.Reference(false, true, m, n, k, x, k, weight, k, y, n, accumulate: false);
        AddBias(bias, m, n, y);
    }

    public static void BackwardReference(
        ReadOnlySpan<float> yGrad, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, int m, int n, int k,
        Span<float> xGrad, Span<float> weightGrad, Span<float> biasGrad)
    {
        if (!xGrad.IsEmpty)
        {
            Gemm.Reference(false, false, m, k, n, yGrad, n, weight, k, xGrad, k, accumulate: false);
        }

        if (!weightGrad.IsEmpty)
        {
            Gemm.Reference(true, false, n, k, m, yGrad, n, x, k, weightGrad, k, accumulate: true);
        }

        BiasBackward(yGrad, m, n, biasGrad);
    }

    private static void AddBias(ReadOnlySpan<float> bias, int m, int n, Span<float> y)
    {
        if (bias.IsEmpty)
        {
            return;
        }

        for (int row = 0; row < m; row++)
        {
            System.Numerics.Tensors.TensorPrimitives.Add(y.Slice(row * n, n), bias[..n], y.Slice(row * n, n));
        }
    }

    private static void BiasBackward(ReadOnlySpan<float> yGrad, int m, int n, Span<float> biasGrad)
    {
        if (biasGrad.IsEmpty)
        {
            return;
        }

        for (int row = 0; row < m; row++)
        {
            System.Numerics.Tensors.TensorPrimitives.Add(biasGrad[..n], yGrad.Slice(row * n, n), biasGrad[..n]);
        }
    }
}
