using System.Numerics.Tensors;

namespace HeadLens.Kernels;

// Root-mean-square normalisation over the last dimension of x [rows, cols] (Llama):
//   r = 1/√(mean(x²) + ε),  y = x·r·w
// Backward (d = dy·w):  dx += r·d − x·r³·mean(d·x);  dw += Σ_rows dy·x·r
// dx accumulates (the input is the residual stream). rstd [rows] is saved by Forward for Backward.
// Implementations: ForwardReference/BackwardReference (scalar loops), Forward/Backward (TensorPrimitives).
public static class RmsNorm
{
    public static void ForwardReference(
        ReadOnlySpan<float> x, ReadOnlySpan<float> weight, int rows, int cols, float epsilon, Span<float> y, Span<float> rstd)
    {
        for (int r = 0; r < rows; r++)
        {
            var xr = x.Slice(r * cols, cols);
            var yr = y.Slice(r * cols, cols);
            float meanSquare = 0f;
            for (int j = 0; j < cols; j++)
            {
                meanSquare += xr[j] * xr[j];
            }

            float inverse = 1f / MathF.Sqrt(meanSquare / cols + epsilon);
            for (int j = 0; j < cols; j++)
            {
                yr[j] = xr[j] * inverse * weight[j];
            }

            rstd[r] = inverse;
        }
    }

    public static void Forward(
        ReadOnlySpan<float> x, ReadOnlySpan<float> weight, int rows, int cols, float epsilon, Span<float> y, Span<float> rstd)
    {
        for (int r = 0; r < rows; r++)
        {
            var xr = x.Slice(r * cols, cols);
            var yr = y.Slice(r * cols, cols);
            float inverse = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(xr) / cols + epsilon);
            TensorPrimitives.Multiply(xr, weight[..cols], yr);
            TensorPrimitives.Multiply(yr, inverse, yr);
            rstd[r] = inverse;
        }
    }

    public static void BackwardReference(
        ReadOnlySpan<float> yGrad, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> rstd,
        int rows, int cols, Span<float> xGrad, Span<float> weightGrad)
    {
        for (int r = 0; r < rows; r++)
        {
            var dy = yGrad.Slice(r * cols, cols);
            var xr = x.Slice(r * cols, cols);
            var dx = xGrad.Slice(r * cols, cols);
            float inverse = rstd[r];
            float meanDx = 0f;
            for (int j = 0; j < cols; j++)
            {
                meanDx += dy[j] * weight[j] * xr[j];
            }

            meanDx /= cols;
            for (int j = 0; j < cols; j++)
            {
                dx[j] += inverse * dy[j] * weight[j] - xr[j] * inverse * inverse * inverse * meanDx;
                weightGrad[j] += dy[j] * xr[j] * inverse;
            }
        }
    }

    public static void Backward(
        ReadOnlySpan<float> yGrad, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> rstd,
        int rows, int cols, Span<float> xGrad, Span<float> weightGrad)
    {
        float[] scratch = System.Buffers.ArrayPool<float>.Shared.Rent(cols);
        try
        {
            var d = scratch.AsSpan(0, cols);
            var w = weight[..cols];
            var dw = weightGrad[..cols];
            for (int r = 0; r < rows; r++)
            {
                var dy = yGrad.Slice(r * cols, cols);
                var xr = x.Slice(r * cols, cols);
                var dx = xGrad.Slice(r * cols, cols);
                float inverse = rstd[r];
                TensorPrimitives.Multiply(dy, w, d);
                float meanDx = TensorPrimitives.Dot(d, xr) / cols;
                // dw += dy·x·r
                TensorPrimitives.Multiply(dy, xr, d);
                TensorPrimitives.FusedMultiplyAdd(d, inverse, dw, dw);
                // dx += r·d − x·r³·meanDx, with d rebuilt as dy·w.
                TensorPrimitives.Multiply(dy, w, d);
                TensorPrimitives.Multiply(d, inverse, d);
                TensorPrimitives.FusedMultiplyAdd(xr, -inverse * inverse * inverse * meanDx, d, d);
                TensorPrimitives.Add(dx, d, dx);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<float>.Shared.Return(scratch);
        }
    }
}
