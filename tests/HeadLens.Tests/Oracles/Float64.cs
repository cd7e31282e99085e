namespace HeadLens.Tests.Oracles;

/// <summary>Float64 references: the oracles that fast and reference float paths are both measured against.</summary>
internal static class Float64
{
    /// <summary>
    /// op(A)·op(B) in float64, and beside it Σ_p |op(A)_ip · op(B)_pj| per entry: the natural scale of the rounding
    /// error of any summation order.
    /// </summary>
    public static (double[] Product, double[] Scale) GemmWithScale(
        bool transposeA, bool transposeB, int m, int n, int k, float[] a, int lda, float[] b, int ldb)
    {
        var product = new double[m * n];
        var scale = new double[m * n];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double sum = 0, magnitude = 0;
                for (int p = 0; p < k; p++)
                {
                    double term = (double)(transposeA ? a[p * lda + i] : a[i * lda + p])
                        * (transposeB ? b[j * ldb + p] : b[p * ldb + j]);
                    sum += term;
                    magnitude += Math.Abs(term);
                }

                product[i * n + j] = sum;
                scale[i * n + j] = magnitude;
            }
        }

        return (product, scale);
    }

    /// <summary>max over entries of |actual − expected| / max(scale, tiny), with actual stored at stride ldc.</summary>
    public static double MaxScaledError(float[] actual, int ldc, double[] expected, double[] scale, int m, int n)
    {
        double worst = 0;
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double error = Math.Abs(actual[i * ldc + j] - expected[i * n + j]) / Math.Max(scale[i * n + j], 1e-30);
                if (double.IsNaN(error))
                {
                    return double.PositiveInfinity;
                }

                worst = Math.Max(worst, error);
            }
        }

        return worst;
    }

    /// <summary>
    /// max |actual − expected| / max(|expected|, floor): an error relative to the magnitude of the values, with a
    /// floor so that entries near zero (from cancellation) do not turn a tiny absolute error into a huge ratio.
    /// </summary>
    public static double MaxRelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, double floor = 1.0)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double error = Math.Abs(actual[i] - expected[i]) / Math.Max(Math.Abs(expected[i]), floor);
            if (double.IsNaN(error))
            {
                return double.PositiveInfinity;
            }

            worst = Math.Max(worst, error);
        }

        return worst;
    }
}
