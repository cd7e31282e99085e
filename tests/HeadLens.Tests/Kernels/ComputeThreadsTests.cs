using HeadLens.Kernels;

namespace HeadLens.Tests.Kernels;

public class ComputeThreadsTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 2)]
    [InlineData(7, 2)]
    [InlineData(64, 8)]
    public void EveryPartRunsExactlyOnce(int parts, int threads)
    {
        for (int repeat = 0; repeat < 50; repeat++)
        {
            var counts = new int[parts];
            ComputeThreads.Run(parts, threads, part => Interlocked.Increment(ref counts[part]));
            Assert.All(counts, count => Assert.Equal(1, count));
        }
    }

    // Parts that sleep leave the caller nothing to steal: the second part must run on a pool worker. A few tries,
    // since a loaded machine may be slow to schedule the worker once.
    [Fact]
    public void WorkersTakePartsBesideTheCaller()
    {
        if (Environment.ProcessorCount < 2)
        {
            return;
        }

        int caller = Environment.CurrentManagedThreadId;
        bool helped = false;
        for (int attempt = 0; attempt < 5 && !helped; attempt++)
        {
            var threadIds = new int[2];
            ComputeThreads.Run(2, 2, part =>
            {
                threadIds[part] = Environment.CurrentManagedThreadId;
                Thread.Sleep(50);
            });
            helped = threadIds.Any(id => id != caller);
        }

        Assert.True(helped);
    }

    [Fact]
    public void FailureReachesTheCaller()
    {
        var error = Assert.Throws<InvalidOperationException>(() =>
            ComputeThreads.Run(4, 2, part => throw new InvalidOperationException($"part {part}")));
        Assert.StartsWith("part ", error.Message, StringComparison.Ordinal);
        // The pool still works afterwards.
        int sum = 0;
        ComputeThreads.Run(4, 2, part => Interlocked.Add(ref sum, part + 1));
        Assert.Equal(10, sum);
    }

    [Fact]
    public void NestedCallsDoNotDeadlock()
    {
        int total = 0;
        ComputeThreads.Run(2, 2, outer => ComputeThreads.Run(3, 2, inner => Interlocked.Increment(ref total)));
        Assert.Equal(6, total);
    }
}
