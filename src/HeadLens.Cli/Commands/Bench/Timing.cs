using System.Diagnostics;

namespace HeadLens.Cli.Commands.Bench;

/// <summary>Wall-clock timing for benchmarks: warm up, then report the median (these machines are noisy).</summary>
internal static class Timing
{
    public static double MedianMilliseconds(Action action, int warmup, int iterations, double maxSeconds = 20, double minWarmupSeconds = 0)
    {
        var warming = Stopwatch.StartNew();
        for (int i = 0; i < warmup || warming.Elapsed.TotalSeconds < minWarmupSeconds; i++)
        {
            action();
        }

        var samples = new List<double>(iterations);
        var total = Stopwatch.StartNew();
        for (int i = 0; i < iterations; i++)
        {
            long start = Stopwatch.GetTimestamp();
            action();
            samples.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            // A long configuration stops early rather than holding the run for minutes; at least 3 samples.
            if (samples.Count >= 3 && total.Elapsed.TotalSeconds > maxSeconds)
            {
                break;
            }
        }

        return Median(samples);
    }

    /// <summary>
    /// Medians of two engines' times sampled in turn (first, second, first, ...) after both are warmed up: on a shared
    /// machine whose speed drifts over seconds, samples taken in blocks one engine after the other can land in
    /// different phases, and the ratio of their medians then measures the drift. At least <paramref name="iterations"/>
    /// pairs and <paramref name="minSeconds"/> of sampling, stopping after <paramref name="maxSeconds"/> (3 pairs at least).
    /// </summary>
    public static (double First, double Second) InterleavedMedianMilliseconds(
        Action first, Action second, int warmup, int iterations, double minSeconds = 0, double maxSeconds = 20, double minWarmupSeconds = 0)
    {
        var warming = Stopwatch.StartNew();
        for (int i = 0; i < warmup || warming.Elapsed.TotalSeconds < minWarmupSeconds; i++)
        {
            first();
            second();
        }

        var firstSamples = new List<double>(iterations);
        var secondSamples = new List<double>(iterations);
        var total = Stopwatch.StartNew();
        while (firstSamples.Count < 3
            || (total.Elapsed.TotalSeconds <= maxSeconds && (firstSamples.Count < iterations || total.Elapsed.TotalSeconds < minSeconds)))
        {
            long start = Stopwatch.GetTimestamp();
            first();
            firstSamples.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            start = Stopwatch.GetTimestamp();
            second();
            secondSamples.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        }

        return (Median(firstSamples), Median(secondSamples));
    }

    public static double Median(List<double> samples)
    {
        samples.Sort();
        int middle = samples.Count / 2;
        return samples.Count % 2 == 1 ? samples[middle] : (samples[middle - 1] + samples[middle]) / 2;
    }

    /// <summary>Bytes the managed heap handed out (all threads) while <paramref name="action"/> ran.</summary>
    public static long AllocatedBytes(Action action)
    {
        long before = GC.GetTotalAllocatedBytes(precise: true);
        action();
        return GC.GetTotalAllocatedBytes(precise: true) - before;
    }
}
