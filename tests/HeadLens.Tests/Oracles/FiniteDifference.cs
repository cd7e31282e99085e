namespace HeadLens.Tests.Oracles;

/// <summary>Central finite differences of a float64 scalar function: the oracle every Backward is checked against.</summary>
internal static class FiniteDifference
{
    /// <summary>
    /// ∂f/∂x_i ≈ (f(x + h·e_i) − f(x − h·e_i)) / 2h. In float64 with h = 1e-5 the truncation error is O(h²·f''')
    /// ≈ 1e-10 and the rounding error ≈ 1e-16/h ≈ 1e-11 for the O(1) functions used here: far below what fp32
    /// analytic gradients can resolve, so any mismatch above ~1e-5 is a real error in the Backward.
    /// </summary>
    public static double[] Gradient(Func<double[], double> function, double[] point, double step = 1e-5)
    {
        var gradient = new double[point.Length];
        var x = (double[])point.Clone();
        for (int i = 0; i < x.Length; i++)
        {
            double saved = x[i];
            x[i] = saved + step;
            double plus = function(x);
            x[i] = saved - step;
            double minus = function(x);
            x[i] = saved;
            gradient[i] = (plus - minus) / (2 * step);
        }

        return gradient;
    }

    /// <summary>Σ y_i·r_i: projects a vector output onto fixed random weights so one scalar tests the whole Jacobian.</summary>
    public static double Project(double[] y, double[] weights)
    {
        double sum = 0;
        for (int i = 0; i < y.Length; i++)
        {
            sum += y[i] * weights[i];
        }

        return sum;
    }

    public static double[] ToDouble(float[] values) => Array.ConvertAll(values, value => (double)value);

    public static float[] ToFloat(double[] values) => Array.ConvertAll(values, value => (float)value);

    /// <summary>
    /// Asserts an fp32 analytic gradient matches a float64 numeric one: |a − n| ≤ tolerance·max(|n|, 1e-2·max|n|).
    /// The relative floor keeps near-zero entries from turning fp32 rounding (~1e-7 of the largest entry) into
    /// huge ratios.
    /// </summary>
    public static void AssertClose(ReadOnlySpan<float> analytic, double[] numeric, double tolerance, string what)
    {
        Assert.Equal(numeric.Length, analytic.Length);
        double largest = numeric.Length == 0 ? 0 : numeric.Max(Math.Abs);
        double floor = Math.Max(1e-2 * largest, 1e-6);
        for (int i = 0; i < numeric.Length; i++)
        {
            double error = Math.Abs(analytic[i] - numeric[i]) / Math.Max(Math.Abs(numeric[i]), floor);
            Assert.True(error <= tolerance, $"{what}[{i}]: analytic {analytic[i]:G7} vs numeric {numeric[i]:G7} (error {error:E2})");
        }
    }
}
