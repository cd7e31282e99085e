using System.Numerics;
using HeadLens.Analysis;

namespace HeadLens.Tests.Analysis;

public class EigenvaluesTests
{
    // A = Q·B·Q with Q = I − 2vvᵀ (orthogonal, its own inverse) and B block upper triangular: real eigenvalues on
    // the diagonal and pairs a ± bi from 2×2 blocks [[a, −b], [b, a]], with random entries above the blocks. The
    // eigenvalues of A are exactly those of B.
    private static (double[] Matrix, List<Complex> Expected) Known(int n, int seed)
    {
        var random = new Random(seed);
        var b = new double[n * n];
        var expected = new List<Complex>();
        int i = 0;
        while (i < n)
        {
            double a = (4 * random.NextDouble()) - 2;
            if (i + 1 < n && random.Next(2) == 0)
            {
                double imaginary = 0.1 + random.NextDouble();
                b[i * n + i] = a;
                b[i * n + i + 1] = -imaginary;
                b[(i + 1) * n + i] = imaginary;
                b[(i + 1) * n + i + 1] = a;
                expected.Add(new Complex(a, imaginary));
                expected.Add(new Complex(a, -imaginary));
                for (int j = i + 2; j < n; j++)
                {
                    b[i * n + j] = random.NextDouble() - 0.5;
                    b[(i + 1) * n + j] = random.NextDouble() - 0.5;
                }

                i += 2;
            }
            else
            {
                b[i * n + i] = a;
                expected.Add(a);
                for (int j = i + 1; j < n; j++)
                {
                    b[i * n + j] = random.NextDouble() - 0.5;
                }

                i++;
            }
        }

        var v = Enumerable.Range(0, n).Select(_ => random.NextDouble() - 0.5).ToArray();
        double norm = Math.Sqrt(v.Sum(x => x * x));
        var q = new double[n * n];
        for (int r = 0; r < n; r++)
        {
            for (int c = 0; c < n; c++)
            {
                q[r * n + c] = (r == c ? 1 : 0) - (2 * v[r] * v[c] / (norm * norm));
            }
        }

        return (Multiply(Multiply(q, b, n), q, n), expected);
    }

    private static double[] Multiply(double[] x, double[] y, int n)
    {
        var z = new double[n * n];
        for (int r = 0; r < n; r++)
        {
            for (int k = 0; k < n; k++)
            {
                for (int c = 0; c < n; c++)
                {
                    z[r * n + c] += x[r * n + k] * y[k * n + c];
                }
            }
        }

        return z;
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 2)]
    [InlineData(3, 3)]
    [InlineData(8, 4)]
    [InlineData(17, 5)]
    [InlineData(64, 6)]
    public void FindsKnownEigenvalues(int n, int seed)
    {
        var (matrix, expected) = Known(n, seed);
        var actual = Eigenvalues.Compute(matrix, n).ToList();
        Assert.Equal(n, actual.Count);
        foreach (var lambda in expected)
        {
            // Match each expected eigenvalue to the nearest one found, once. Eigenvalues of a matrix with random
            // well-separated spectrum are well conditioned: 1e-8 is many orders above double rounding (~1e-14·n)
            // and far below the spacing of the eigenvalues.
            var nearest = actual.MinBy(found => (found - lambda).Magnitude);
            Assert.True((nearest - lambda).Magnitude < 1e-8, $"expected {lambda}, nearest found {nearest}");
            actual.Remove(nearest);
        }
    }

    [Fact]
    public void RandomMatrixKeepsTraceAndTraceOfSquare()
    {
        // Σλ = tr(A) and Σλ² = tr(A²) hold for any matrix: a check that needs no known spectrum.
        const int n = 40;
        var random = new Random(9);
        var a = Enumerable.Range(0, n * n).Select(_ => random.NextDouble() - 0.5).ToArray();
        var lambdas = Eigenvalues.Compute(a, n);
        double trace = Enumerable.Range(0, n).Sum(i => a[i * n + i]);
        var square = Multiply(a, a, n);
        double traceSquare = Enumerable.Range(0, n).Sum(i => square[i * n + i]);
        var sum = lambdas.Aggregate(Complex.Zero, (s, x) => s + x);
        var sumSquares = lambdas.Aggregate(Complex.Zero, (s, x) => s + (x * x));
        Assert.True((sum - trace).Magnitude < 1e-9, $"Σλ = {sum}, tr = {trace}");
        Assert.True((sumSquares - traceSquare).Magnitude < 1e-9, $"Σλ² = {sumSquares}, tr(A²) = {traceSquare}");
    }

    [Fact]
    public void ZeroMatrixHasZeroEigenvalues()
    {
        Assert.All(Eigenvalues.Compute(new double[25], 5), lambda => Assert.Equal(Complex.Zero, lambda));
    }
}
