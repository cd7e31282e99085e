using HeadLens.Model;

namespace HeadLens.Analysis;

/// <summary>
/// How much each component wrote, directly, into one logit at one position. The residual stream at the end is a
/// sum of what every component added: x = embed + positions + Σ_{l,h} result_{l,h} + Σ_l b_O,l + Σ_l mlp_l, and the
/// final norm is linear once its per-token scale is fixed at the value the run used:
///   logit_t = Σ_c W_U[t, c] · (γ_c · center(x)_c · rstd + β_c)    (RMSNorm: no centring, no β)
/// so each component's share is W_U[t] · (γ ⊙ center(component) · rstd), and the shares plus W_U[t]·β add up to
/// the logit exactly (Elhage et al. 2021; TransformerLens's apply_ln_to_stack).
/// </summary>
/// <remarks>
/// With <see cref="Wrong"/>, every share is of the logit difference logit(Token) − logit(Wrong) (the direction
/// W_U[Token] − W_U[Wrong]), and <see cref="Logit"/> is that difference.
/// </remarks>
public sealed record LogitAttribution(int Position, int Token, double Logit, double[,] Heads, double[] OutputBiases, double[] Mlps, double Embeddings, double FinalBias,
    int? Wrong = null)
{
    /// <summary>The sum of every share: equals <see cref="Logit"/> up to float rounding.</summary>
    public double Total
    {
        get
        {
            double sum = Embeddings + FinalBias + OutputBiases.Sum() + Mlps.Sum();
            foreach (double value in Heads)
            {
                sum += value;
            }

            return sum;
        }
    }
}

public static class DirectLogitAttribution
{
    /// <summary>
    /// The direct share of every head (and of the other components) in logit <paramref name="token"/> at
    /// <paramref name="position"/> (null: the model's top prediction there); with <paramref name="wrong"/>, in
    /// logit(token) − logit(wrong): which components write one answer over the other (the indirect-object analysis of
    /// Wang et al. 2022).
    /// </summary>
    public static LogitAttribution Compute(Transformer model, ReadOnlySpan<int> ids, int position, int? token, int? wrong = null)
    {
        var config = model.Config;
        if (!config.HasOutputHead)
        {
            throw new HeadLensException("logit attribution needs a model with an output head; an encoder has no logits");
        }

        if ((uint)position >= (uint)ids.Length)
        {
            throw new HeadLensException($"logit attribution: position {position} is outside the text's {ids.Length} tokens");
        }

        foreach (int? id in new[] { token, wrong })
        {
            if (id is { } t && (uint)t >= (uint)config.VocabSize)
            {
                throw new HeadLensException($"logit attribution: token id {t} is outside the vocabulary (0..{config.VocabSize - 1})");
            }
        }

        var run = new HookedForward(model).Run(ids, name => name == HookNames.Embed || name == HookNames.PositionEmbed
            || name.EndsWith("hook_result", StringComparison.Ordinal) || name.EndsWith("hook_mlp_out", StringComparison.Ordinal));
        int c = config.Channels, heads = config.Heads;
        var p = model.Parameters;
        int row = position * config.VocabSize;
        int answer = token ?? System.Numerics.Tensors.TensorPrimitives.IndexOfMax(run.Logits.AsSpan(row, config.VocabSize));
        float[] unembed = new float[c];                   // W_U[answer], or W_U[answer] − W_U[wrong]
        p.OutputHead.Row(answer, unembed);
        if (wrong is { } other)
        {
            float[] wrongRow = new float[c];
            p.OutputHead.Row(other, wrongRow);
            for (int i = 0; i < c; i++)
            {
                unembed[i] -= wrongRow[i];
            }
        }

        float[] gamma = p.FinalNorm.Span.ToArray();
        float rstd = run.FinalRstd[position];
        bool center = config.Norm == NormKind.LayerNorm;

        // W_U[t] · (γ ⊙ center(v) · rstd)
        double Share(ReadOnlySpan<float> vector)
        {
            double mean = 0;
            if (center)
            {
                foreach (float value in vector)
                {
                    mean += value;
                }

                mean /= vector.Length;
            }

            double sum = 0;
            for (int i = 0; i < vector.Length; i++)
            {
                sum += unembed[i] * (double)gamma[i] * (vector[i] - mean);
            }

            return sum * rstd;
        }

        double embeddings = Share(run[HookNames.Embed].AsSpan(position * c, c));
        if (p.PositionEmbedding is not null)
        {
            embeddings += Share(run[HookNames.PositionEmbed].AsSpan(position * c, c));
        }

        var headShares = new double[config.Layers, heads];
        var biases = new double[config.Layers];
        var mlps = new double[config.Layers];
        for (int l = 0; l < config.Layers; l++)
        {
            var result = run[HookNames.Result(l)];
            for (int h = 0; h < heads; h++)
            {
                headShares[l, h] = Share(result.AsSpan(((position * heads) + h) * c, c));
            }

            if (p.Layer(l).OutputBias is { } bias)
            {
                biases[l] = Share(bias.Span);
            }

            if (config.HasMlp)
            {
                mlps[l] = Share(run[HookNames.MlpOut(l)].AsSpan(position * c, c));
            }
        }

        double finalBias = 0;
        if (p.FinalNormBias is { } beta)
        {
            for (int i = 0; i < c; i++)
            {
                finalBias += unembed[i] * (double)beta.Span[i];
            }
        }

        double logit = run.Logits[row + answer] - (wrong is { } w ? (double)run.Logits[row + w] : 0);
        return new LogitAttribution(position, answer, logit, headShares, biases, mlps, embeddings, finalBias, wrong);
    }
}
