using HeadLens.Model;

namespace HeadLens.Analysis;

/// <summary>A token and the probability a stage gives it.</summary>
public sealed record LensToken(int Token, double Probability);

/// <summary>
/// One stage of the stream — after the embedding (<see cref="Layer"/> −1) or after block <see cref="Layer"/> — read as
/// if it were the last: per position the <see cref="Top"/> next tokens ([T][k]), the probability of the token that
/// actually follows (<see cref="NextProbabilities"/>, [T − 1]) and of the model's own top answer there
/// (<see cref="AnswerProbabilities"/>, [T]); <see cref="Loss"/> the mean next-token loss over the T − 1 predictions.
/// </summary>
public sealed record LensStage(int Layer, double Loss, double[] NextProbabilities, double[] AnswerProbabilities, LensToken[][] Top);

/// <summary>The logit lens of one text: the model's own top answer per position ([T]) and every stage, embedding first.</summary>
public sealed record LogitLensResult(int[] Ids, int[] Answers, IReadOnlyList<LensStage> Stages);

/// <summary>
/// The logit lens (nostalgebraist 2020): the residual stream after each block, put through the model's final norm and
/// output head as if no block followed, says what the model "would predict" at that depth — where an answer forms,
/// and which layers change it. The last stage is the model's own output (TransformerLens: accumulated_resid +
/// apply_ln_to_stack; no learned per-layer translators, as the tuned lens would add).
/// </summary>
public static class LogitLens
{
    // Logits one chunk of rows may hold while being read.
    private const long MaxChunkBytes = 64L << 20;

    /// <summary>Reads every stage of <paramref name="ids"/>, keeping the <paramref name="top"/> most likely next tokens per position.</summary>
    public static LogitLensResult Run(Transformer model, int[] ids, int top = 5) => Read(model, ids, top, int.MaxValue);

    /// <summary>As <see cref="Run"/>, unembedding at most <paramref name="maxChunkRows"/> positions at a time (tests).</summary>
    internal static LogitLensResult Read(Transformer model, int[] ids, int top, int maxChunkRows)
    {
        var config = model.Config;
        if (!config.HasOutputHead)
        {
            throw new HeadLensException("the logit lens needs a model with an output head; an encoder has no next-token prediction to read");
        }

        if (top < 1)
        {
            throw new HeadLensException("the logit lens keeps at least 1 token per position");
        }

        int t = ids.Length, c = config.Channels, vocab = config.VocabSize;
        top = Math.Min(top, vocab);
        var run = new HookedForward(model).Run(ids, name => name == HookNames.ResidPre(0)
            || Enumerable.Range(0, config.Layers).Any(l => name == HookNames.ResidPost(l)));
        int[] answers = [.. Enumerable.Range(0, t).Select(i => ArgMax(run.Logits.AsSpan(i * vocab, vocab)))];

        int chunk = (int)Math.Clamp(MaxChunkBytes / (sizeof(float) * (long)vocab), 1, Math.Min(t, maxChunkRows));
        var logits = new float[chunk * vocab];
        var stages = new List<LensStage>(config.Layers + 1);
        for (int layer = -1; layer < config.Layers; layer++)
        {
            var stream = run[layer < 0 ? HookNames.ResidPre(0) : HookNames.ResidPost(layer)];
            var next = new double[t - 1];
            var answer = new double[t];
            var best = new LensToken[t][];
            for (int first = 0; first < t; first += chunk)
            {
                int rows = Math.Min(chunk, t - first);
                model.Unembed(stream.AsSpan(first * c, rows * c), rows, logits);
                for (int r = 0; r < rows; r++)
                {
                    int i = first + r;
                    var row = logits.AsSpan(r * vocab, vocab);
                    double logSum = LogSumExp(row);
                    if (i < t - 1)
                    {
                        next[i] = Math.Exp(row[ids[i + 1]] - logSum);
                    }

                    answer[i] = Math.Exp(row[answers[i]] - logSum);
                    int[] ranked = TopTokens(row, top);
                    best[i] = new LensToken[ranked.Length];
                    for (int k = 0; k < ranked.Length; k++)
                    {
                        best[i][k] = new LensToken(ranked[k], Math.Exp(row[ranked[k]] - logSum));
                    }
                }
            }

            double loss = next.Length == 0 ? double.NaN : next.Average(p => -Math.Log(p));
            stages.Add(new LensStage(layer, loss, next, answer, best));
        }

        return new LogitLensResult(ids, answers, stages);
    }

    /// <summary>log Σ exp(row) in float64, from the row's maximum.</summary>
    internal static double LogSumExp(ReadOnlySpan<float> row)
    {
        float max = System.Numerics.Tensors.TensorPrimitives.Max(row);
        double sum = 0;
        foreach (float value in row)
        {
            sum += Math.Exp(value - max);
        }

        return max + Math.Log(sum);
    }

    private static int ArgMax(ReadOnlySpan<float> row) => System.Numerics.Tensors.TensorPrimitives.IndexOfMax(row);

    // The k largest entries' indices, largest first (ties: the lower index first).
    private static int[] TopTokens(ReadOnlySpan<float> row, int k)
    {
        var best = new int[k];
        int count = 0;
        for (int id = 0; id < row.Length; id++)
        {
            if (count == k && row[id] <= row[best[k - 1]])
            {
                continue;
            }

            int slot = Math.Min(count, k - 1);
            while (slot > 0 && row[best[slot - 1]] < row[id])
            {
                best[slot] = best[slot - 1];
                slot--;
            }

            best[slot] = id;
            count = Math.Min(count + 1, k);
        }

        return best;
    }
}
