using System.Globalization;
using HeadLens.Tensors;

namespace HeadLens.Tests.Tensors;

/// <summary>
/// Buffers advised onto 2 MiB pages: still zeroed, of the asked length and usable like any array, and, on a Linux
/// kernel with transparent huge pages, inside a mapping the kernel has marked for them (the "hg" flag of
/// /proc/self/smaps) — whether the kernel then finds free 2 MiB pages is its business, the flag is ours.
/// </summary>
public sealed class HugePagesTests
{
    private const int PageFloats = (2 << 20) / sizeof(float);

    [Theory]
    [InlineData(1)]
    [InlineData(1000)]
    [InlineData(PageFloats - 1)] // below the size worth advising
    [InlineData((3 * PageFloats) + 17)] // whole pages inside, ragged ends
    public void BuffersAreZeroedAndOfTheAskedLength(int length)
    {
        var buffer = HugePages.AllocateZeroed(length);

        Assert.Equal(length, buffer.Length);
        Assert.True(buffer.AsSpan().IndexOfAnyExcept(0f) < 0, "a fresh buffer must be all zeros");
        buffer[^1] = 2f;
        buffer[0] = 1f;
        Assert.Equal(1f, buffer[0]);
        Assert.Equal(length == 1 ? 1f : 2f, buffer[^1]);
    }

    [Fact]
    public unsafe void LargeBuffersAreMarkedForHugePagesWhereTheKernelHasThem()
    {
        var buffer = HugePages.AllocateZeroed(4 * PageFloats);
        if (!OperatingSystem.IsLinux() || !File.Exists("/sys/kernel/mm/transparent_hugepage/enabled")
            || File.ReadAllText("/sys/kernel/mm/transparent_hugepage/enabled").Contains("[never]", StringComparison.Ordinal))
        {
            // No transparent huge pages to ask for: the advice is a no-op there by design, the buffer an ordinary one.
            Assert.Equal(4 * PageFloats, buffer.Length);
            return;
        }

        fixed (float* start = buffer)
        {
            // The first whole 2 MiB page inside the buffer must lie in a mapping flagged "hg" (VM_HUGEPAGE).
            ulong page = ((ulong)start + (2UL << 20) - 1) & ~((2UL << 20) - 1);
            Assert.Contains("hg", FlagsOfMappingAt(page));
        }

        GC.KeepAlive(buffer);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ArenasAreZeroed(bool largePages)
    {
        var arena = new Arena("test", largePages);
        arena.Reserve("big", 3 * PageFloats);
        arena.Reserve("small", 5);
        arena.Allocate();

        Assert.Equal(largePages, arena.LargePages);
        Assert.True(arena.All.IndexOfAnyExcept(0f) < 0, "an allocated arena must be all zeros");
        Assert.True(arena.All.Length >= (3 * PageFloats) + 5);
    }

    // The VmFlags line of the /proc/self/smaps entry whose range holds `address`.
    private static string[] FlagsOfMappingAt(ulong address)
    {
        bool inside = false;
        foreach (string line in File.ReadLines("/proc/self/smaps"))
        {
            int dash = line.IndexOf('-', StringComparison.Ordinal);
            int space = line.IndexOf(' ', StringComparison.Ordinal);
            if (dash > 0 && space > dash
                && ulong.TryParse(line.AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong low)
                && ulong.TryParse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong high))
            {
                inside = address >= low && address < high;
            }
            else if (inside && line.StartsWith("VmFlags:", StringComparison.Ordinal))
            {
                return line["VmFlags:".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            }
        }

        throw new InvalidOperationException($"no mapping holds 0x{address:x}");
    }
}

/// <summary>The available memory GgufModel reads; alone, so that no other test's allocations move it meanwhile.</summary>
[Collection(RunsAlone.Name)]
public sealed class AvailableMemoryTests
{
    /// <summary>
    /// The available memory that decides whether GGUF matrices are copied: positive, and on Linux it falls by about what
    /// a touched allocation takes (so it is the live figure, in bytes; another process's work moves it too: half is asked).
    /// </summary>
    [Fact]
    public void AvailableMemoryIsWithinTheMachineAndFallsWithAnAllocation()
    {
        long before = HugePages.AvailableMemory();
        Assert.True(before > 0, $"available memory {before}");
        if (!OperatingSystem.IsLinux() || GC.GetGCMemoryInfo().TotalAvailableMemoryBytes < (4L << 30))
        {
            return; // a machine this small is not asked for another half gigabyte
        }

        const int bytes = 512 << 20;
        var block = GC.AllocateUninitializedArray<byte>(bytes, pinned: true);
        block.AsSpan().Fill(1);
        long after = HugePages.AvailableMemory();
        GC.KeepAlive(block);
        Assert.True(before - after > bytes / 2, $"MemAvailable fell by {before - after} bytes for a {bytes}-byte buffer");
    }
}
