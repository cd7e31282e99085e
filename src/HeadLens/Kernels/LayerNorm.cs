using System.Numerics.Tensors;

namespace HeadLens.Kernels;

// Layer normalisation over the last dimension of x [rows, cols] (GPT-2's ln_1, ln_2, ln_f):
//   μ = mean(x),  σ² = mean((x − μ)²),  r = 1/√(σ² + ε),  n = (x − μ)·r,  y = n·w + b
// Backward (d = dy·w):  dx += r·(d − mean(d) − n·mean(d·n));  dw += Σ_rows dy·n;  db += Σ_rows dy
// dx accumulates because the input of every norm is the residual stream. mean and rstd [rows] are saved by
// Forward for Backward.
// Implementations: ForwardReference/BackwardReference (scalar loops), Forward/Backward (TensorPrimitives).
public static class LayerNorm
{
    public static void ForwardReference(
        ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, int rows, int cols, float epsilon,
        Span<float> y, Span<float> mean, Span<float> rstd)
    {
        for (int r = 0; r < rows; r++)
        {
            var xr = x.Slice(r * cols, cols);
            var yr = y.Slice(r * cols, cols);
            float mu = 0f;
            for (int j = 0; j < cols; j++)
            {
                mu += xr[j];
            }

            mu /= cols;
            float variance = 0f;
            for (int j = 0; j < cols; j++)
            {
                float centred = xr[j] - mu;
                variance += centred * centred;
            }

            variance /= cols;
            float inverse = 1f / MathF.Sqrt(variance + epsilon);
            for (int j = 0; j < cols; j++)
            {
                yr[j] = (xr[j] - mu) * inverse * weight[j] + bias[j];
            }

            mean[r] = mu;
            rstd[r] = inverse;
        }
    }

    public static void Forward(
        ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, int rows, int cols, float epsilon,
        Span<float> y, Span<float> mean, Span<float> rstd)
    {
        for (int r = 0; r < rows; r++)
        {
            var xr = x.Slice(r * cols, cols);
            var yr = y.Slice(r * cols, cols);
            float mu = TensorPrimitives.Sum(xr) / cols;
            TensorPrimitives.Subtract(xr, mu, yr);
            float inverse = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(yr) / cols + epsilon);
            TensorPrimitives.Multiply(yr, inverse, yr);
            TensorPrimitives.FusedMultiplyAdd(yr, weight[..cols], bias[..cols], yr);
            mean[r] = mu;
            rstd[r] = inverse;
        }
    }

    public static void BackwardReference(
        ReadOnlySpan<float> yGrad, ReadOnlySpan<float> x, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd, int rows, int cols,
        Span<float> xGrad, Span<float> weightGrad, Span<float> biasGrad)
    {
        for (int r = 0; r < rows; r++)
        {
            var dy = yGrad.Slice(r * cols, cols);
            var xr = x.Slice(r * cols, cols);
            var dx = xGrad.Slice(r * cols, cols);
            float meanD = 0f, meanDn = 0f;
            for (int j = 0; j < cols; j++)
            {
                float n = (xr[j] - mean[r]) * rstd[r];
                float d = dy[j] * weight[j];
                meanD += d;
                meanDn += d * n;
            }

            meanD /= cols;
            meanDn /= cols;
            for (int j = 0; j < cols; j++)
            {
                float n = (xr[j] - mean[r]) * rstd[r];
                float d = dy[j] * weight[j];
                dx[j] += rstd[r] * (d - meanD - n * meanDn);
                weightGrad[j] += dy[j] * n;
                biasGrad[j] += dy[j];
            }
        }
    }

    public static void Backward(
        ReadOnlySpan<float> yGrad, ReadOnlySpan<float> x, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd, int rows, int cols,
        Span<float> xGrad, Span<float> weightGrad, Span<float> biasGrad)
    {
        // Two row-sized scratch rows: the normalised input n and d = dy·w.
        float[] scratch = System.Buffers.ArrayPool<float>.Shared.Rent(2 * cols);
        try
        {
            var n = scratch.AsSpan(0, cols);
            var d = scratch.AsSpan(cols, cols);
            var w = weight[..cols];
            var dw = weightGrad[..cols];
            var db = biasGrad[..cols];
            for (int r = 0; r < rows; r++)
            {
                var dy = yGrad.Slice(r * cols, cols);
                var dx = xGrad.Slice(r * cols, cols);
                TensorPrimitives.Subtract(x.Slice(r * cols, cols), mean[r], n);
                TensorPrimitives.Multiply(n, rstd[r], n);
                TensorPrimitives.Multiply(dy, w, d);
                float meanD = TensorPrimitives.Sum(d) / cols;
                float meanDn = TensorPrimitives.Dot(d, n) / cols;
                TensorPrimitives.FusedMultiplyAdd(dy, n, dw, dw);
                TensorPrimitives.Add(db, dy, db);
                // dx += r·(d − meanD − n·meanDn), built in d to avoid a third scratch row.
                TensorPrimitives.FusedMultiplyAdd(n, -meanDn, d, d);
                TensorPrimitives.Subtract(d, meanD, d);
                TensorPrimitives.FusedMultiplyAdd(d, rstd[r], dx, dx);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<float>.Shared.Return(scratch);
        }
    }
}
