using System.Numerics.Tensors;

namespace HeadLens.Kernels;

// Row-wise softmax over a [rows, cols] matrix:
//   y_ij = exp(x_ij − max_j x_ij) / Σ_j exp(x_ij − max_j x_ij)
// Subtracting the row max keeps exp from overflowing; −∞ entries (masked) give exactly 0, and a row that is
// entirely −∞ (nothing visible) gives all zeros rather than NaN.
// Backward: dx_ij = y_ij · (dy_ij − Σ_k y_ik · dy_ik)   (activation gradient: overwritten)
// Implementations: ForwardReference/BackwardReference (scalar loops, the contract), Forward/Backward
// (TensorPrimitives, vectorised with Vector512/Vector256 where present).
public static class Softmax
{
    public static void ForwardReference(ReadOnlySpan<float> input, int rows, int cols, Span<float> output)
    {
        for (int r = 0; r < rows; r++)
        {
            var y = output.Slice(r * cols, cols);
            input.Slice(r * cols, cols).CopyTo(y);
            ReferenceRowInPlace(y);
        }
    }

    /// <summary>
    /// The reference softmax of one row, in place; returns log Σ exp(x) (−∞ for a row with nothing visible). Attention's
    /// reference path and its patterns use this same row, so every materialised pattern agrees to the last bit.
    /// </summary>
    public static float ReferenceRowInPlace(Span<float> row)
    {
        float max = float.NegativeInfinity;
        foreach (float x in row)
        {
            max = Math.Max(max, x);
        }

        if (float.IsNegativeInfinity(max))
        {
            row.Clear();
            return float.NegativeInfinity;
        }

        float sum = 0f;
        for (int j = 0; j < row.Length; j++)
        {
            row[j] = MathF.Exp(row[j] - max);
            sum += row[j];
        }

        for (int j = 0; j < row.Length; j++)
        {
            row[j] /= sum;
        }

        return max + MathF.Log(sum);
    }

    public static void Forward(ReadOnlySpan<float> input, int rows, int cols, Span<float> output)
    {
        for (int r = 0; r < rows; r++)
        {
            var x = input.Slice(r * cols, cols);
            var y = output.Slice(r * cols, cols);
            float max = cols == 0 ? float.NegativeInfinity : TensorPrimitives.Max(x);
            if (float.IsNegativeInfinity(max))
            {
                y.Clear();
                continue;
            }

            TensorPrimitives.Subtract(x, max, y);
            TensorPrimitives.Exp(y, y);
            TensorPrimitives.Multiply(y, 1f / TensorPrimitives.Sum(y), y);
        }
    }

    public static void BackwardReference(
        ReadOnlySpan<float> output, ReadOnlySpan<float> outputGrad, int rows, int cols, Span<float> inputGrad)
    {
        for (int r = 0; r < rows; r++)
        {
            var y = output.Slice(r * cols, cols);
            var dy = outputGrad.Slice(r * cols, cols);
            var dx = inputGrad.Slice(r * cols, cols);
            float dot = 0f;
            for (int j = 0; j < cols; j++)
            {
                dot += y[j] * dy[j];
            }

            for (int j = 0; j < cols; j++)
            {
                dx[j] = y[j] * (dy[j] - dot);
            }
        }
    }

    public static void Backward(
        ReadOnlySpan<float> output, ReadOnlySpan<float> outputGrad, int rows, int cols, Span<float> inputGrad)
    {
        for (int r = 0; r < rows; r++)
        {
            var y = output.Slice(r * cols, cols);
            var dy = outputGrad.Slice(r * cols, cols);
            var dx = inputGrad.Slice(r * cols, cols);
            float dot = TensorPrimitives.Dot(y, dy);
            TensorPrimitives.Subtract(dy, dot, dx);
            TensorPrimitives.Multiply(dx, y, dx);
        }
    }
}
