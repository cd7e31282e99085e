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
