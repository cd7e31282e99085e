using System.Numerics.Tensors;

namespace HeadLens.Kernels;

// Global-norm gradient clipping over all gradients at once (they live in one arena):
//   ‖g‖ = √(Σ g²)   (accumulated in double: 124M squares would lose digits in float)
//   if maxNorm / (‖g‖ + 1e-6) < 1:  g ← g · maxNorm / (‖g‖ + 1e-6)      (PyTorch's clip_grad_norm_ rule)
// Implementations: GlobalNormReference (scalar, double), GlobalNorm (TensorPrimitives.SumOfSquares over chunks
// short enough that the float partial sums stay exact to ~1e-7, added in double).
public static class GradientClipping
{
    private const int Chunk = 4096;

    public static float GlobalNormReference(ReadOnlySpan<float> gradients)
    {
        double sum = 0;
        foreach (float g in gradients)
        {
            sum += (double)g * g;
        }

        return (float)Math.Sqrt(sum);
    }

    public static float GlobalNorm(ReadOnlySpan<float> gradients)
    {
        double sum = 0;
        for (int start = 0; start < gradients.Length; start += Chunk)
        {
            sum += TensorPrimitives.SumOfSquares(gradients.Slice(start, Math.Min(Chunk, gradients.Length - start)));
        }

        return (float)Math.Sqrt(sum);
    }

    /// <summary>Scales the gradients so their global norm is at most <paramref name="maxNorm"/>; returns the norm before.</summary>
    public static float ClipByGlobalNorm(Span<float> gradients, float maxNorm)
    {
        float norm = GlobalNorm(gradients);
        float scale = maxNorm / (norm + 1e-6f);
        if (scale < 1f)
        {
            TensorPrimitives.Multiply(gradients, scale, gradients);
        }

        return norm;
    }
}
