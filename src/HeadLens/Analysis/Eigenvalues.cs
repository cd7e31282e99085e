using System.Numerics;

namespace HeadLens.Analysis;

/// <summary>
/// Eigenvalues of a small real non-symmetric matrix A [n, n] (the OV circuits' [D, D] matrices; D ≤ a few hundred),
/// in two textbook steps:
///   1. Householder reduction to upper Hessenberg form H = Qᵀ A Q (same eigenvalues; zeros below the subdiagonal);
///   2. the shifted QR algorithm on H in complex arithmetic: H − μI = QR, H ← RQ + μI keeps H's eigenvalues and
///      drives the last subdiagonal entry to 0, which splits off an eigenvalue (deflation). μ is the Wilkinson
///      shift (the eigenvalue of the trailing 2×2 block nearer its last entry), with an occasional exceptional shift
///      to break cycles. Complex arithmetic lets complex-conjugate pairs converge without the double-shift bookkeeping.
/// Cost O(n³); eigenvalues only (no vectors).
/// </summary>
internal static class Eigenvalues
{
    public static Complex[] Compute(ReadOnlySpan<double> matrix, int n)
    {
        if (matrix.Length < n * n)
        {
            throw new ArgumentException($"eigenvalues: matrix holds {matrix.Length} values, needs {n}×{n}");
        }

        var a = matrix[..(n * n)].ToArray();
        ReduceToHessenberg(a, n);
        var h = new Complex[n, n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                h[i, j] = a[i * n + j];
            }
        }

        return ShiftedQr(h, n);
    }

    // A ← P A P with Householder reflections P = I − 2vvᵀ that zero column k below its subdiagonal.
    private static void ReduceToHessenberg(double[] a, int n)
    {
        var v = new double[n];
        for (int k = 0; k < n - 2; k++)
        {
            double norm = 0;
            for (int i = k + 1; i < n; i++)
            {
                norm += a[i * n + k] * a[i * n + k];
            }

            norm = Math.Sqrt(norm);
            if (norm == 0)
            {
                continue;
            }

            // alpha takes the sign opposite to the pivot so that v = x − alpha·e₁ does not cancel.
            double alpha = a[(k + 1) * n + k] > 0 ? -norm : norm;
            double vNorm = 0;
            for (int i = k + 1; i < n; i++)
            {
                v[i] = a[i * n + k] - (i == k + 1 ? alpha : 0);
                vNorm += v[i] * v[i];
            }

            vNorm = Math.Sqrt(vNorm);
            if (vNorm == 0)
            {
                continue;
            }

            for (int i = k + 1; i < n; i++)
            {
                v[i] /= vNorm;
            }

            // From the left: rows k+1.. ← rows − 2v(vᵀ rows).
            for (int j = 0; j < n; j++)
            {
                double dot = 0;
                for (int i = k + 1; i < n; i++)
                {
                    dot += v[i] * a[i * n + j];
                }

                for (int i = k + 1; i < n; i++)
                {
                    a[i * n + j] -= 2 * v[i] * dot;
                }
            }

            // From the right: columns k+1.. ← columns − 2(columns v)vᵀ.
            for (int i = 0; i < n; i++)
            {
                double dot = 0;
                for (int j = k + 1; j < n; j++)
                {
                    dot += a[i * n + j] * v[j];
                }

                for (int j = k + 1; j < n; j++)
                {
                    a[i * n + j] -= 2 * dot * v[j];
                }
            }
        }
    }

    private static Complex[] ShiftedQr(Complex[,] h, int n)
    {
        const double Epsilon = 1e-15;
        double scale = 0;
        foreach (var value in h)
        {
            scale = Math.Max(scale, value.Magnitude);
        }

        var eigenvalues = new List<Complex>(n);
        var cosines = new Complex[n];
        var sines = new Complex[n];
        int hi = n - 1, iterations = 0;
        while (hi >= 0)
        {
            // The active block is [lo, hi]: the largest trailing block with no negligible subdiagonal entry.
            int lo = hi;
            while (lo > 0)
            {
                double size = h[lo - 1, lo - 1].Magnitude + h[lo, lo].Magnitude;
                if (h[lo, lo - 1].Magnitude <= Epsilon * (size > 0 ? size : scale))
                {
                    h[lo, lo - 1] = Complex.Zero;
                    break;
                }

                lo--;
            }

            if (lo == hi)
            {
                eigenvalues.Add(h[hi, hi]);
                hi--;
                iterations = 0;
                continue;
            }

            if (++iterations > 100 * n)
            {
                throw new HeadLensException($"eigenvalues: the QR iteration did not converge on a {n}×{n} matrix");
            }

            var mu = iterations % 11 == 10 ? h[hi, hi] + h[hi, hi - 1].Magnitude : WilkinsonShift(h, hi);
            for (int i = lo; i <= hi; i++)
            {
                h[i, i] -= mu;
            }

            // H − μI = QR with Givens rotations G_k = [[c̄, s̄], [−s, c]] acting on rows k, k+1 ...
            for (int k = lo; k < hi; k++)
            {
                var x = h[k, k];
                var y = h[k + 1, k];
                double r = Math.Sqrt((x.Magnitude * x.Magnitude) + (y.Magnitude * y.Magnitude));
                var c = r == 0 ? Complex.One : x / r;
                var s = r == 0 ? Complex.Zero : y / r;
                cosines[k] = c;
                sines[k] = s;
                for (int j = k; j <= hi; j++)
                {
                    var top = h[k, j];
                    var bottom = h[k + 1, j];
                    h[k, j] = (Complex.Conjugate(c) * top) + (Complex.Conjugate(s) * bottom);
                    h[k + 1, j] = (-s * top) + (c * bottom);
                }
            }

            // ... then RQ: multiply by each G_kᴴ from the right (columns k, k+1), which keeps H Hessenberg.
            for (int k = lo; k < hi; k++)
            {
                var c = cosines[k];
                var s = sines[k];
                for (int i = lo; i <= Math.Min(k + 2, hi); i++)
                {
                    var left = h[i, k];
                    var right = h[i, k + 1];
                    h[i, k] = (left * c) + (right * s);
                    h[i, k + 1] = (-left * Complex.Conjugate(s)) + (right * Complex.Conjugate(c));
                }
            }

            for (int i = lo; i <= hi; i++)
            {
                h[i, i] += mu;
            }
        }

        return [.. eigenvalues];
    }

    // The eigenvalue of the trailing 2×2 block [[a, b], [c, d]] nearer d.
    private static Complex WilkinsonShift(Complex[,] h, int hi)
    {
        var a = h[hi - 1, hi - 1];
        var b = h[hi - 1, hi];
        var c = h[hi, hi - 1];
        var d = h[hi, hi];
        var half = (a + d) / 2;
        var root = Complex.Sqrt((half * half) - ((a * d) - (b * c)));
        var first = half + root;
        var second = half - root;
        return (first - d).Magnitude < (second - d).Magnitude ? first : second;
    }
}
