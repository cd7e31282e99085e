namespace HeadLens.Embeddings;

/// <summary>Which dimensions of a head form the rotated pairs.</summary>
public enum RopeLayout
{
    /// <summary>Pairs (2i, 2i+1): Meta's original Llama and llama2.c.</summary>
    Interleaved,

    /// <summary>Pairs (i, i + D/2): Hugging Face's rotate_half layout.</summary>
    SplitHalves,
}

/// <summary>How positions are stretched to reach past the trained context.</summary>
public enum RopeScaling
{
    None,

    /// <summary>Position interpolation: angles use position / factor.</summary>
    Linear,

    /// <summary>NTK-aware: the base becomes θ·factor^(D/(D−2)), stretching low frequencies more than high ones.</summary>
    NtkAware,

    /// <summary>
    /// Llama 3.1: wavelengths shorter than original/highFactor keep their frequency, those longer than
    /// original/lowFactor are divided by the factor, and the band between blends the two linearly in
    /// original/wavelength.
    /// </summary>
    Llama3,
}

/// <summary>Rotary position embedding settings (Su et al. 2021).</summary>
public sealed record RopeSettings(float Theta = 10000f, RopeLayout Layout = RopeLayout.SplitHalves)
{
    public RopeScaling Scaling { get; init; }

    public float ScalingFactor { get; init; } = 1f;

    /// <summary>Llama 3: below this many rotations per original context a frequency is fully divided by the factor.</summary>
    public float LowFrequencyFactor { get; init; } = 1f;

    /// <summary>Llama 3: above this many rotations per original context a frequency is kept.</summary>
    public float HighFrequencyFactor { get; init; } = 4f;

    /// <summary>Llama 3: the context the model was pretrained with before its context was extended.</summary>
    public int OriginalContext { get; init; } = 8192;

    /// <summary>Throws a one-line error naming the setting that makes these rotations impossible.</summary>
    public void Validate(string source)
    {
        if (!(Theta > 0) || !float.IsFinite(Theta))
        {
            throw new HeadLensException($"{source}: rope theta must be positive (got {Theta})");
        }

        if (Scaling != RopeScaling.None && (!(ScalingFactor > 0) || !float.IsFinite(ScalingFactor)))
        {
            throw new HeadLensException($"{source}: rope scaling factor must be positive (got {ScalingFactor})");
        }

        if (Scaling == RopeScaling.Llama3 && (!(HighFrequencyFactor > LowFrequencyFactor) || !(LowFrequencyFactor > 0) || OriginalContext <= 0))
        {
            throw new HeadLensException($"{source}: llama3 rope scaling needs 0 < low_freq_factor < high_freq_factor and a positive " +
                $"original_max_position_embeddings (got {LowFrequencyFactor}, {HighFrequencyFactor}, {OriginalContext})");
        }
    }
}

// Rotary position embedding, in place on x [T, H, D] for tokens at positions offset .. offset+T−1:
//   for pair i (0 ≤ i < D/2) with frequency θ_i = base^(−2i/D) and angle a = position·θ_i:
//     (x, y) ← (x·cos a − y·sin a, x·sin a + y·cos a)
//   where the pair is (2i, 2i+1) (interleaved) or (i, i + D/2) (split halves).
// The two layouts agree after a permutation of the head dimensions: moving component 2i to i and 2i+1 to i + D/2
// turns an interleaved head into a split-halves one, and RoPE commutes with that move.
// Backward: the rotation is orthogonal, so the gradient is rotated back by −a.
// Angles are computed in double: at position 10⁵ a float angle would be off by ~0.01 rad.
public static class Rope
{
    public static void Forward(Span<float> x, int tokens, int heads, int headDim, int positionOffset, RopeSettings settings) =>
        Rotate(x, tokens, heads, headDim, positionOffset, settings, direction: 1);

    public static void Backward(Span<float> xGrad, int tokens, int heads, int headDim, int positionOffset, RopeSettings settings) =>
        Rotate(xGrad, tokens, heads, headDim, positionOffset, settings, direction: -1);

    /// <summary>The frequency θ_i of pair i, after scaling.</summary>
    public static double Frequency(int pair, int headDim, RopeSettings settings)
    {
        double theta = settings.Theta;
        if (settings.Scaling == RopeScaling.NtkAware)
        {
            theta *= Math.Pow(settings.ScalingFactor, headDim / (headDim - 2.0));
        }

        double frequency = Math.Pow(theta, -2.0 * pair / headDim);
        return settings.Scaling switch
        {
            RopeScaling.Linear => frequency / settings.ScalingFactor,
            RopeScaling.Llama3 => Llama3Frequency(frequency, settings),
            _ => frequency,
        };
    }

    private static double Llama3Frequency(double frequency, RopeSettings settings)
    {
        // Rotations per original context decide: fast pairs (position detail) keep their frequency, slow pairs
        // (long-range) are interpolated by the factor, and the band between is a linear blend of the two.
        double rotations = settings.OriginalContext * frequency / (2 * Math.PI);
        if (rotations > settings.HighFrequencyFactor)
        {
            return frequency;
        }

        if (rotations < settings.LowFrequencyFactor)
        {
            return frequency / settings.ScalingFactor;
        }

        double blend = (rotations - settings.LowFrequencyFactor) / (settings.HighFrequencyFactor - settings.LowFrequencyFactor);
        return ((1 - blend) * frequency / settings.ScalingFactor) + (blend * frequency);
    }

    private static void Rotate(Span<float> x, int tokens, int heads, int headDim, int positionOffset, RopeSettings settings, int direction)
    {
        if (headDim % 2 != 0)
        {
            throw new ArgumentException($"RoPE needs an even head size, got {headDim}");
        }

        if (x.Length < tokens * heads * headDim)
        {
            throw new ArgumentException($"RoPE: buffer holds {x.Length} floats, needs {tokens * heads * headDim}");
        }

        int half = headDim / 2;
        Span<float> cos = stackalloc float[half];
        Span<float> sin = stackalloc float[half];
        Span<double> frequency = stackalloc double[half];
        for (int i = 0; i < half; i++)
        {
            frequency[i] = Frequency(i, headDim, settings);
        }

        for (int t = 0; t < tokens; t++)
        {
            double position = positionOffset + t;
            for (int i = 0; i < half; i++)
            {
                double angle = position * frequency[i];
                cos[i] = (float)Math.Cos(angle);
                sin[i] = direction * (float)Math.Sin(angle);
            }

            for (int h = 0; h < heads; h++)
            {
                var head = x.Slice((t * heads + h) * headDim, headDim);
                for (int i = 0; i < half; i++)
                {
                    (int a, int b) = settings.Layout == RopeLayout.Interleaved ? (2 * i, 2 * i + 1) : (i, i + half);
                    float first = head[a], second = head[b];
                    head[a] = first * cos[i] - second * sin[i];
                    head[b] = first * sin[i] + second * cos[i];
                }
            }
        }
    }
}
