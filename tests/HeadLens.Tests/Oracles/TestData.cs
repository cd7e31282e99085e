namespace HeadLens.Tests.Oracles;

internal static class TestData
{
    /// <summary>Uniform values in [−scale, scale).</summary>
    public static float[] Uniform(Random random, int count, double scale = 1.0)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            values[i] = (float)((random.NextDouble() * 2 - 1) * scale);
        }

        return values;
    }

    /// <summary>Lengths that stress vector tails: 1..17, primes, tile multiples ± 1, and up to 300.</summary>
    public static readonly int[] OddLengths = [1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 97, 127, 128, 129, 211, 255, 256, 257, 300];
}
