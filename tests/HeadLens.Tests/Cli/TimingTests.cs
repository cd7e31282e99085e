using System.Diagnostics;
using System.Text;
using HeadLens.Cli.Commands.Bench;

namespace HeadLens.Tests.Cli;

public sealed class TimingTests
{
    // Warm-up in pairs, then blocks in ABBA order, each an untimed pass and then timed passes (one when the block
    // time is 0), so neither engine's pass ever follows the other's at once except across a pause.
    [Fact]
    public void BlocksAlternateInAbbaOrderAfterTheWarmUp()
    {
        var calls = new StringBuilder();
        Timing.AlternatingMedianMilliseconds(() => calls.Append('a'), () => calls.Append('b'), warmup: 1, blocks: 4, blockSeconds: 0);
        Assert.Equal("ab" + "aabb" + "bbaa" + "aabb" + "bbaa", calls.ToString());
    }

    // The medians belong to the right engine (one spins 3 ms a pass, the other returns at once), and a block runs
    // timed passes for at least its time.
    [Fact]
    public void MediansKeepTheirEngines()
    {
        int quickPasses = 0;
        var (slow, quick) = Timing.AlternatingMedianMilliseconds(
            () =>
            {
                var spin = Stopwatch.StartNew();
                while (spin.Elapsed.TotalMilliseconds < 3)
                {
                }
            },
            () => quickPasses++,
            warmup: 0,
            blocks: 2,
            blockSeconds: 0.02);
        Assert.True(slow >= 3, $"first engine's median {slow} ms");
        Assert.True(quick < slow, $"second engine's median {quick} ms against {slow}");
        Assert.True(quickPasses > 2 * 2, $"{quickPasses} passes of the quick engine in two 20 ms blocks");
    }

    // A slow configuration stops after maxSeconds, but never with fewer than 2 blocks of each engine.
    [Fact]
    public void SamplingStopsAtTheTimeLimitWithTwoBlocksAtLeast()
    {
        int first = 0, second = 0;
        Timing.AlternatingMedianMilliseconds(() => first++, () => second++, warmup: 0, blocks: 1000, blockSeconds: 0, maxSeconds: 0);
        Assert.Equal(2 * 2, first);
        Assert.Equal(2 * 2, second);
    }
}
