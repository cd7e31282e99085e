using System.Numerics.Tensors;

namespace HeadLens.Kernels;

// GELU in its exact form (BERT's "gelu"), elementwise:
//   y = x·Φ(x) = ½·x·(1 + erf(x/√2))
//   dy/dx = Φ(x) + x·φ(x),  φ(x) = exp(−x²/2)/√(2π)
// Backward overwrites xGrad (activation gradient).
// Implementations: ForwardReference/BackwardReference (erf in double: its Taylor series below 2.5, the continued
// fraction of erfc above, both to ~1e-15), Forward (float, in chunks that stay in L1, vectorised through
// TensorPrimitives: Abramowitz & Stegun 7.1.26, erf(z) = 1 − (a₁t + … + a₅t⁵)·exp(−z²), t = 1/(1 + p·z), whose error
// is below 1.5e-7 — the size of float rounding at 1).
public static class GeluErf
{
    private const float P = 0.3275911f, A1 = 0.254829592f, A2 = -0.284496736f, A3 = 1.421413741f, A4 = -1.453152027f, A5 = 1.061405429f;
    private const int Chunk = 512;

    public static void ForwardReference(ReadOnlySpan<float> x, Span<float> y)
    {
        for (int i = 0; i < x.Length; i++)
        {
            double v = x[i];
            y[i] = (float)(0.5 * v * (1 + Erf(v / Math.Sqrt(2))));
        }
    }

    public static void BackwardReference(ReadOnlySpan<float> x, ReadOnlySpan<float> yGrad, Span<float> xGrad)
    {
        for (int i = 0; i < x.Length; i++)
        {
            double v = x[i];
            double cdf = 0.5 * (1 + Erf(v / Math.Sqrt(2)));
            double density = Math.Exp(-0.5 * v * v) / Math.Sqrt(2 * Math.PI);
            xGrad[i] = (float)(yGrad[i] * (cdf + (v * density)));
        }
    }

    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> yGrad, Span<float> xGrad) => BackwardReference(x, yGrad, xGrad);

    public static void Forward(ReadOnlySpan<float> x, Span<float> y)
    {
        if (y.Length < x.Length)
        {
            throw new ArgumentException("gelu (erf): y is shorter than x");
        }

        Span<float> z = stackalloc float[Chunk];
        Span<float> t = stackalloc float[Chunk];
        Span<float> e = stackalloc float[Chunk];
        for (int start = 0; start < x.Length; start += Chunk)
        {
            int n = Math.Min(Chunk, x.Length - start);
            var xs = x.Slice(start, n);
            var ys = y.Slice(start, n);
            var zs = z[..n];
            var ts = t[..n];
            var es = e[..n];
            TensorPrimitives.Abs(xs, zs);
            TensorPrimitives.Multiply(zs, MathF.Sqrt(0.5f), zs);                 // z = |x|/√2
            TensorPrimitives.Multiply(zs, P, ts);
            TensorPrimitives.Add(ts, 1f, ts);
            TensorPrimitives.Reciprocal(ts, ts);                                  // t = 1/(1 + p·z)
            TensorPrimitives.Multiply(zs, zs, es);
            TensorPrimitives.Negate(es, es);
            TensorPrimitives.Exp(es, es);                                         // exp(−z²)
            TensorPrimitives.Multiply(ts, A5, zs);                                // Horner: ((((a₅t + a₄)t + a₃)t + a₂)t + a₁)t
            TensorPrimitives.Add(zs, A4, zs);
            TensorPrimitives.MultiplyAdd(zs, ts, A3, zs);
            TensorPrimitives.MultiplyAdd(zs, ts, A2, zs);
            TensorPrimitives.MultiplyAdd(zs, ts, A1, zs);
            TensorPrimitives.Multiply(zs, ts, zs);
            TensorPrimitives.Multiply(zs, es, zs);                                // erfc(|x|/√2) = poly·exp(−z²)
            // y = ½x(1 + erf(x/√2)) = x − ½x·erfc(x/√2) for x ≥ 0, and ½x·erfc(|x|/√2) for x < 0.
            for (int i = 0; i < n; i++)
            {
                float v = xs[i], half = 0.5f * v * zs[i];
                ys[i] = v >= 0 ? v - half : half;
            }
        }
    }

    /// <summary>erf in double precision (series below 2.5, erfc's continued fraction above).</summary>
    public static double Erf(double x)
    {
        double z = Math.Abs(x);
        if (z < 2.5)
        {
            // erf(z) = 2/√π · Σ (−1)ⁿ z^(2n+1) / (n!·(2n+1)); terms fall below 1e-17 of the sum by n ≈ 40 at z = 2.5.
            double term = z, sum = z, z2 = z * z;
            for (int n = 1; n < 60; n++)
            {
                term *= -z2 / n;
                double next = term / ((2 * n) + 1);
                sum += next;
                if (Math.Abs(next) < 1e-17 * Math.Abs(sum))
                {
                    break;
                }
            }

            return Math.Sign(x) * 2 / Math.Sqrt(Math.PI) * sum;
        }

        // erfc(z) = exp(−z²)/√π · 1/(z + ½/(z + 1/(z + 3/2/(z + 2/(z + …))))), evaluated bottom-up from a fixed depth
        // (60 levels converge to double precision for z ≥ 2.5).
        double fraction = z;
        for (int k = 60; k >= 1; k--)
        {
            fraction = z + (k / 2.0 / fraction);
        }

        double erfc = Math.Exp(-z * z) / Math.Sqrt(Math.PI) / fraction;
        return Math.Sign(x) * (1 - erfc);
    }
}
