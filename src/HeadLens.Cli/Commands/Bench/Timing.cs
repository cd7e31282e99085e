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
    /// Medians of two engines' times over blocks of passes taken in turn (first, second, second, first, ...), each
    /// block at least <paramref name="blockSeconds"/> long, after both are warmed up: on a shared machine whose speed
    /// drifts over seconds, one engine's samples all taken before the other's can land in different phases, and the
    /// ratio of their medians then measures the drift. Engines that run their own thread pools keep those threads
    /// spinning for a while after a call (ONNX Runtime does by default), which takes a core from the other engine's
    /// next pass: so each block starts after a pause and one untimed pass, and single passes are never interleaved.
    /// At least <paramref name="blocks"/> blocks each, stopping after <paramref name="maxSeconds"/> (2 blocks at least).
    /// </summary>
    public static (double First, double Second) AlternatingMedianMilliseconds(
        Action first, Action second, int warmup, int blocks, double blockSeconds, double maxSeconds = 30, double minWarmupSeconds = 0)
    {
        var warming = Stopwatch.StartNew();
        for (int i = 0; i < warmup || warming.Elapsed.TotalSeconds < minWarmupSeconds; i++)
        {
            first();
            second();
        }

        var firstSamples = new List<double>();
        var secondSamples = new List<double>();
        var total = Stopwatch.StartNew();
        for (int block = 0; block < Math.Max(2, blocks); block++)
        {
            if (block >= 2 && total.Elapsed.TotalSeconds > maxSeconds)
            {
                break;
            }

            // ABBA order, so neither engine always runs right after the other.
            bool firstLeads = block % 2 == 0;
            Sample(firstLeads ? first : second, firstLeads ? firstSamples : secondSamples, blockSeconds);
            Sample(firstLeads ? second : first, firstLeads ? secondSamples : firstSamples, blockSeconds);
        }

        return (Median(firstSamples), Median(secondSamples));
    }

    private static void Sample(Action action, List<double> samples, double blockSeconds)
    {
        Thread.Sleep(PauseBetweenBlocks);
        action();
        var block = Stopwatch.StartNew();
        do
        {
            long start = Stopwatch.GetTimestamp();
            action();
            samples.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        }
        while (block.Elapsed.TotalSeconds < blockSeconds);
    }

    // A pause before each block, for the other engine's spinning pool threads to give up their core; the untimed pass
    // after it takes whatever is left of the hand-over.
    private static readonly TimeSpan PauseBetweenBlocks = TimeSpan.FromMilliseconds(30);

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
