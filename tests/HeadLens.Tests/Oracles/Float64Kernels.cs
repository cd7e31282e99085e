namespace HeadLens.Tests.Oracles;

/// <summary>Float64 re-implementations of the kernels' forward formulas, written independently of the library.</summary>
internal static class Float64Kernels
{
    public static double[] Softmax(double[] x, int rows, int cols)
    {
        var y = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            double max = double.NegativeInfinity;
            for (int j = 0; j < cols; j++)
            {
                max = Math.Max(max, x[r * cols + j]);
            }

            if (double.IsNegativeInfinity(max))
            {
                continue;
            }

            double sum = 0;
            for (int j = 0; j < cols; j++)
            {
                sum += Math.Exp(x[r * cols + j] - max);
            }

            for (int j = 0; j < cols; j++)
            {
                y[r * cols + j] = Math.Exp(x[r * cols + j] - max) / sum;
            }
        }

        return y;
    }

    public static double[] LayerNorm(double[] x, double[] w, double[] b, int rows, int cols, double eps)
    {
        var y = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            double mean = 0, variance = 0;
            for (int j = 0; j < cols; j++)
            {
                mean += x[r * cols + j];
            }

            mean /= cols;
            for (int j = 0; j < cols; j++)
            {
                variance += Math.Pow(x[r * cols + j] - mean, 2);
            }

            variance /= cols;
            for (int j = 0; j < cols; j++)
            {
                y[r * cols + j] = (x[r * cols + j] - mean) / Math.Sqrt(variance + eps) * w[j] + b[j];
            }
        }

        return y;
    }

    public static double[] RmsNorm(double[] x, double[] w, int rows, int cols, double eps)
    {
        var y = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            double meanSquare = 0;
            for (int j = 0; j < cols; j++)
            {
                meanSquare += x[r * cols + j] * x[r * cols + j];
            }

            double inverse = 1 / Math.Sqrt(meanSquare / cols + eps);
            for (int j = 0; j < cols; j++)
            {
                y[r * cols + j] = x[r * cols + j] * inverse * w[j];
            }
        }

        return y;
    }

    public static double Gelu(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

    public static double Silu(double x) => x / (1 + Math.Exp(-x));

    public static double[] CrossEntropyLosses(double[] logits, int[] targets, int rows, int vocab)
    {
        var losses = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            if (targets[r] < 0)
            {
                continue;
            }

            double max = double.NegativeInfinity;
            for (int j = 0; j < vocab; j++)
            {
                max = Math.Max(max, logits[r * vocab + j]);
            }

            double sum = 0;
            for (int j = 0; j < vocab; j++)
            {
                sum += Math.Exp(logits[r * vocab + j] - max);
            }

            losses[r] = max + Math.Log(sum) - logits[r * vocab + targets[r]];
        }

        return losses;
    }

    public static double MeanLoss(double[] losses, int[] targets)
    {
        int count = targets.Count(target => target >= 0);
        return count == 0 ? 0 : losses.Sum() / count;
    }
}
