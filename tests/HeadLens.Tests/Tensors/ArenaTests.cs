using HeadLens.Tensors;

namespace HeadLens.Tests.Tensors;

/// <summary>Where an arena puts its tensors: each on a 64-byte boundary of memory, none overlapping another.</summary>
public sealed class ArenaTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public unsafe void EveryTensorStartsOnA64ByteBoundary(bool largePages)
    {
        // Odd sizes, so that a tensor's end falls mid-line and the next start has to be padded; the big one reaches the
        // size that HugePages advises.
        var arena = new Arena("test", largePages);
        int[][] shapes = [[5], [3, 7], [1024, 1025], [1], [13, 17, 19]];
        for (int i = 0; i < shapes.Length; i++)
        {
            arena.Reserve($"t{i}", shapes[i]);
        }

        arena.Allocate();
        long previousEnd = 0;
        for (int i = 0; i < shapes.Length; i++)
        {
            var tensor = arena.Get($"t{i}");
            fixed (float* start = tensor.Span)
            {
                Assert.Equal(0, (long)start % 64);
                Assert.True((long)start >= previousEnd, $"t{i} overlaps the tensor before it");
                previousEnd = (long)(start + tensor.Length);
            }
        }

        // RangeOf places each tensor in All: the same memory as its own span.
        for (int i = 0; i < shapes.Length; i++)
        {
            var tensor = arena.Get($"t{i}");
            var (offset, length) = arena.RangeOf(tensor);
            Assert.Equal(tensor.Length, length);
            Assert.True(arena.All.Slice(offset, length).Overlaps(tensor.Span, out int elementOffset) && elementOffset == 0, $"RangeOf misplaces t{i}");
        }

        var stranger = new Arena("other");
        stranger.Reserve("t0", 5);
        stranger.Reserve("elsewhere", 3);
        stranger.Allocate();
        Assert.Throws<ArgumentException>(() => arena.RangeOf(stranger.Get("t0")));
        Assert.Throws<ArgumentException>(() => arena.RangeOf(stranger.Get("elsewhere")));

        // Before Allocate there is no place to give: the same error as All's.
        var unallocated = new Arena("unallocated");
        unallocated.Reserve("t0", 5);
        Assert.Contains("not allocated", Assert.Throws<InvalidOperationException>(() => unallocated.RangeOf(arena.Get("t0"))).Message, StringComparison.Ordinal);

        // All spans exactly the tensors: it starts at the first one and ends at the last one's end.
        fixed (float* all = arena.All)
        fixed (float* first = arena.Get("t0").Span)
        {
            Assert.Equal((long)first, (long)all);
            Assert.Equal(previousEnd, (long)(all + arena.All.Length));
        }
    }
}
