using System.Diagnostics;
using System.Text;
using HeadLens.Cli.Commands.Bench;

namespace HeadLens.Tests.Cli;

public sealed class TimingTests
{
    // Both engines warm up and are then sampled strictly in turn, first before second, at least the asked number of
    // pairs; the medians belong to the right engine (one spins 3 ms, the other returns at once).
    [Fact]
    public void InterleavedSamplesAlternateAndKeepTheirEngines()
    {
        var calls = new StringBuilder();
        var (slow, quick) = Timing.InterleavedMedianMilliseconds(
            () =>
            {
                calls.Append('a');
                var spin = Stopwatch.StartNew();
                while (spin.Elapsed.TotalMilliseconds < 3)
                {
                }
            },
            () => calls.Append('b'),
            warmup: 2,
            iterations: 7);

        string order = calls.ToString();
        Assert.True(order.Length >= 2 * (2 + 7), order);
        Assert.Equal(string.Concat(Enumerable.Repeat("ab", order.Length / 2)), order);
        Assert.True(slow >= 3, $"first engine's median {slow} ms");
        Assert.True(quick < slow, $"second engine's median {quick} ms against {slow}");
    }

    // A slow configuration stops after maxSeconds, but never with fewer than 3 pairs.
    [Fact]
    public void InterleavedSamplingStopsAtTheTimeLimitWithThreePairsAtLeast()
    {
        int first = 0, second = 0;
        Timing.InterleavedMedianMilliseconds(() => first++, () => second++, warmup: 0, iterations: 1_000_000, maxSeconds: 0);
        Assert.Equal(3, first);
        Assert.Equal(3, second);
    }
}
