namespace HeadLens.Embeddings;

// Absolute position schemes, added to the token embeddings x [T, C] of tokens at positions offset .. offset+T−1:
//   learned (GPT-2):                 x_t += P[offset + t, :], P [context, C] trained like any weight
//   sinusoidal (Vaswani et al.):     x_t,2i += sin(p / 10000^(2i/C)),  x_t,2i+1 += cos(p / 10000^(2i/C))
// and ALiBi (Press et al. 2022), which adds no vector but a per-head bias −m_h·distance on the attention scores
// (see AttentionOptions.AlibiSlopes): m_h is the geometric sequence 2^(−8/H), 2^(−16/H), … .
public static class Positions
{
    public static void AddLearned(ReadOnlySpan<float> table, int contextLength, int channels, int positionOffset, int tokens, Span<float> x)
    {
        if (positionOffset + tokens > contextLength)
        {
            throw new HeadLensException($"position {positionOffset + tokens - 1} is past the model's context of {contextLength} tokens");
        }

        for (int t = 0; t < tokens; t++)
        {
            var row = x.Slice(t * channels, channels);
            System.Numerics.Tensors.TensorPrimitives.Add(row, table.Slice((positionOffset + t) * channels, channels), row);
        }
    }

    /// <summary>Backward of <see cref="AddLearned"/>: the table's gradient accumulates the rows' gradients.</summary>
    public static void AddLearnedBackward(ReadOnlySpan<float> xGrad, int channels, int positionOffset, int tokens, Span<float> tableGrad)
    {
        for (int t = 0; t < tokens; t++)
        {
            var row = tableGrad.Slice((positionOffset + t) * channels, channels);
            System.Numerics.Tensors.TensorPrimitives.Add(row, xGrad.Slice(t * channels, channels), row);
        }
    }

    public static void AddSinusoidal(int channels, int positionOffset, int tokens, Span<float> x)
    {
        for (int t = 0; t < tokens; t++)
        {
            double position = positionOffset + t;
            for (int i = 0; i < channels / 2; i++)
            {
                double angle = position / Math.Pow(10000, 2.0 * i / channels);
                x[t * channels + 2 * i] += (float)Math.Sin(angle);
                x[t * channels + 2 * i + 1] += (float)Math.Cos(angle);
            }
        }
    }

    /// <summary>ALiBi slopes for <paramref name="heads"/> heads (the paper's rule, including non-powers of two).</summary>
    public static float[] AlibiSlopes(int heads)
    {
        static double[] PowerOfTwo(int n) =>
            Enumerable.Range(1, n).Select(i => Math.Pow(2, -8.0 * i / n)).ToArray();

        int closest = 1 << (int)Math.Floor(Math.Log2(heads));
        var slopes = PowerOfTwo(closest).ToList();
        if (closest < heads)
        {
            // Interleave from the next power of two: every other slope of 2·closest heads.
            slopes.AddRange(PowerOfTwo(2 * closest).Where((_, i) => i % 2 == 0).Take(heads - closest));
        }

        return slopes.Select(slope => (float)slope).ToArray();
    }
}
