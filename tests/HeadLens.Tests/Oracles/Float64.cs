namespace HeadLens.Tests.Oracles;

/// <summary>Float64 references: the oracles fast and reference float paths are both measured against.</summary>
internal static class Float64
{
    public static double[] Gemm(bool transposeA, bool transposeB, int m, int n, int k, float[] a, float[] b)
    {
        var c = new double[m * n];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++)
                {
                    double aip = transposeA ? a[p * m + i] : a[i * k + p];
                    double bpj = transposeB ? b[j * k + p] : b[p * n + j];
                    sum += aip * bpj;
                }

                c[i * n + j] = sum;
            }
        }

        return c;
    }

    /// <summary>
    /// max |actual - expected| / max(|expected|, floor): an error relative to the magnitude of the values, with a
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
