using HeadLens.Attention;

namespace HeadLens.Tests.Oracles;

/// <summary>Scaled dot-product attention in float64, straight from the formula (visibility from the options).</summary>
internal static class Float64Attention
{
    public static double[] Forward(AttentionOptions options, int tq, int tk, int offset, double[] q, double[] k, double[] v)
    {
        int heads = options.Heads, kvHeads = options.KvHeads, dqk = options.HeadDimQK, dv = options.HeadDimV;
        double scale = options.Scale ?? 1 / Math.Sqrt(dqk);
        var output = new double[tq * heads * dv];
        var scores = new double[tk];
        for (int h = 0; h < heads; h++)
        {
            int g = h / (heads / kvHeads);
            for (int i = 0; i < tq; i++)
            {
                double max = double.NegativeInfinity;
                for (int j = 0; j < tk; j++)
                {
                    if (!options.IsVisible(offset + i, j))
                    {
                        scores[j] = double.NegativeInfinity;
                        continue;
                    }

                    double dot = 0;
                    for (int d = 0; d < dqk; d++)
                    {
                        dot += q[(i * heads + h) * dqk + d] * k[(j * kvHeads + g) * dqk + d];
                    }

                    double bias = options.AlibiSlopes is null ? 0 : -options.AlibiSlopes[h] * Math.Abs(offset + i - j);
                    scores[j] = scale * dot + bias;
                    max = Math.Max(max, scores[j]);
                }

                if (double.IsNegativeInfinity(max))
                {
                    continue;
                }

                double sum = 0;
                for (int j = 0; j < tk; j++)
                {
                    sum += Math.Exp(scores[j] - max);
                }

                for (int j = 0; j < tk; j++)
                {
                    double p = Math.Exp(scores[j] - max) / sum;
                    for (int d = 0; d < dv; d++)
                    {
                        output[(i * heads + h) * dv + d] += p * v[(j * kvHeads + g) * dv + d];
                    }
                }
            }
        }

        return output;
    }
}
