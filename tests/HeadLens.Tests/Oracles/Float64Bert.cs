using HeadLens.Checkpoints.Onnx;

namespace HeadLens.Tests.Oracles;

/// <summary>
/// A BERT encoder in plain float64 loops over Hugging Face-named weights: the oracle for the ONNX mapping (against
/// ONNX Runtime) and, later, for HeadLens's own encoder. Post-norm blocks, exact erf GELU, bidirectional attention
/// where a padding mask hides keys at positions ≥ the sequence's length (padded queries still get rows, as ONNX
/// Runtime computes them). T = tokens, C = channels, H = heads, D = head size, M = MLP width.
/// </summary>
internal static class Float64Bert
{
    public sealed record Result(double[,] Hidden, double[][,,] Probabilities); // [T, C]; per layer [H, T, T]

    /// <param name="ids">Token ids, padded to T.</param>
    /// <param name="tokenTypes">Token types (null: all 0).</param>
    /// <param name="length">Real tokens; keys from here on are masked.</param>
    public static Result Forward(BertOnnxCheckpoint model, int[] ids, int[]? tokenTypes, int length)
    {
        var config = model.Config;
        int t = ids.Length, c = config.Channels;
        var w = model.Tensors;
        var x = new double[t, c];
        for (int i = 0; i < t; i++)
        {
            for (int j = 0; j < c; j++)
            {
                x[i, j] = (double)w["embeddings.word_embeddings.weight"].Data[ids[i] * c + j]
                    + w["embeddings.position_embeddings.weight"].Data[i * c + j]
                    + w["embeddings.token_type_embeddings.weight"].Data[(tokenTypes?[i] ?? 0) * c + j];
            }
        }

        x = LayerNorm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], config.LayerNormEpsilon);
        var probabilities = new double[config.Layers][,,];
        for (int layer = 0; layer < config.Layers; layer++)
        {
            string p = $"encoder.layer.{layer}.";
            var (attended, probs) = Attention(x, model, p, length);
            probabilities[layer] = probs;
            x = LayerNorm(Add(x, Linear(attended, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"])),
                w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], config.LayerNormEpsilon);
            var up = Linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"]);
            for (int i = 0; i < up.GetLength(0); i++)
            {
                for (int j = 0; j < up.GetLength(1); j++)
                {
                    up[i, j] = 0.5 * up[i, j] * (1 + Erf(up[i, j] / Math.Sqrt(2)));
                }
            }

            x = LayerNorm(Add(x, Linear(up, w[p + "output.dense.weight"], w[p + "output.dense.bias"])),
                w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], config.LayerNormEpsilon);
        }

        return new Result(x, probabilities);
    }

    /// <summary>sentence-transformers' embedding: the mean of the real tokens' final vectors, L2-normalised.</summary>
    public static double[] SentenceEmbedding(double[,] hidden, int length)
    {
        int c = hidden.GetLength(1);
        var mean = new double[c];
        for (int i = 0; i < length; i++)
        {
            for (int j = 0; j < c; j++)
            {
                mean[j] += hidden[i, j] / length;
            }
        }

        double norm = Math.Sqrt(mean.Sum(v => v * v));
        return mean.Select(v => v / Math.Max(norm, 1e-12)).ToArray();
    }

    private static (double[,] Context, double[,,] Probabilities) Attention(double[,] x, BertOnnxCheckpoint model, string p, int length)
    {
        var w = model.Tensors;
        int t = x.GetLength(0), c = model.Config.Channels, h = model.Config.Heads, d = model.Config.HeadSize;
        var q = Linear(x, w[p + "attention.self.query.weight"], w[p + "attention.self.query.bias"]);
        var k = Linear(x, w[p + "attention.self.key.weight"], w[p + "attention.self.key.bias"]);
        var v = Linear(x, w[p + "attention.self.value.weight"], w[p + "attention.self.value.bias"]);
        var probabilities = new double[h, t, t];
        var context = new double[t, c];
        for (int head = 0; head < h; head++)
        {
            for (int i = 0; i < t; i++)
            {
                // Masked keys are left out (ONNX adds −10000 to them, which underflows to exactly 0 after exp).
                var scores = new double[length];
                for (int j = 0; j < length; j++)
                {
                    double dot = 0;
                    for (int e = 0; e < d; e++)
                    {
                        dot += q[i, head * d + e] * k[j, head * d + e];
                    }

                    scores[j] = dot / Math.Sqrt(d);
                }

                double max = scores.Max(), sum = scores.Sum(s => Math.Exp(s - max));
                for (int j = 0; j < length; j++)
                {
                    probabilities[head, i, j] = Math.Exp(scores[j] - max) / sum;
                    for (int e = 0; e < d; e++)
                    {
                        context[i, head * d + e] += probabilities[head, i, j] * v[j, head * d + e];
                    }
                }
            }
        }

        return (context, probabilities);
    }

    // y = x·Wᵀ + b with W [out, in] (Hugging Face's layout).
    private static double[,] Linear(double[,] x, BertTensor weight, BertTensor bias)
    {
        int t = x.GetLength(0), inputs = weight.Shape[1], outputs = weight.Shape[0];
        var y = new double[t, outputs];
        for (int i = 0; i < t; i++)
        {
            for (int o = 0; o < outputs; o++)
            {
                double sum = bias.Data[o];
                for (int e = 0; e < inputs; e++)
                {
                    sum += x[i, e] * weight.Data[o * inputs + e];
                }

                y[i, o] = sum;
            }
        }

        return y;
    }

    private static double[,] Add(double[,] a, double[,] b)
    {
        var sum = (double[,])a.Clone();
        for (int i = 0; i < a.GetLength(0); i++)
        {
            for (int j = 0; j < a.GetLength(1); j++)
            {
                sum[i, j] += b[i, j];
            }
        }

        return sum;
    }

    private static double[,] LayerNorm(double[,] x, BertTensor gamma, BertTensor beta, double epsilon)
    {
        int t = x.GetLength(0), c = x.GetLength(1);
        var y = new double[t, c];
        for (int i = 0; i < t; i++)
        {
            double mean = 0, variance = 0;
            for (int j = 0; j < c; j++)
            {
                mean += x[i, j] / c;
            }

            for (int j = 0; j < c; j++)
            {
                variance += (x[i, j] - mean) * (x[i, j] - mean) / c;
            }

            for (int j = 0; j < c; j++)
            {
                y[i, j] = (x[i, j] - mean) / Math.Sqrt(variance + epsilon) * gamma.Data[j] + beta.Data[j];
            }
        }

        return y;
    }

    /// <summary>erf to ~1e-16: its Maclaurin series for |x| &lt; 3, the continued fraction of erfc beyond.</summary>
    public static double Erf(double x)
    {
        double a = Math.Abs(x);
        if (a < 3)
        {
            // erf(x) = 2/√π Σ (−1)ⁿ x^(2n+1) / (n! (2n+1))
            double term = a, sum = a;
            for (int n = 1; n < 100 && Math.Abs(term) > 1e-18 * Math.Abs(sum); n++)
            {
                term *= -a * a / n;
                sum += term / (2 * n + 1);
            }

            return Math.Sign(x) * 2 / Math.Sqrt(Math.PI) * sum;
        }

        // erfc(a) = exp(−a²)/√π · 1/(a + 1/2/(a + 1/(a + 3/2/(a + ...)))), evaluated from the tail (Lentz not needed at a ≥ 3).
        double fraction = a;
        for (int n = 60; n >= 1; n--)
        {
            fraction = a + n / 2.0 / fraction;
        }

        return Math.Sign(x) * (1 - Math.Exp(-a * a) / Math.Sqrt(Math.PI) / fraction);
    }
}
