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

/// <summary>The available memory GgufModel reads before copying a file's matrices onto 2 MiB pages.</summary>
public sealed class AvailableMemoryTests
{
    /// <summary>
    /// MemAvailable is read from its own line, in kB, as bytes; a missing or malformed line gives nothing (the caller
    /// then takes the runtime's figure). Holding the live figure to a touched allocation was tried and dropped: a
    /// gigabyte just touched lowered MemAvailable by only 90–264 MB (likely pages recently freed onto the kernel's
    /// per-CPU lists, which it does not count as free), and a half-gigabyte version failed once in CI.
    /// </summary>
    [Fact]
    public void MemAvailableIsItsOwnLineInBytes()
    {
        string[] meminfo = ["MemTotal:       24563412 kB", "MemFree:        16135316 kB", "MemAvailable:   22208520 kB", "Buffers:          123456 kB"];
        Assert.Equal(22208520L * 1024, HugePages.MemAvailable(meminfo));
        Assert.Null(HugePages.MemAvailable(["MemTotal:       24563412 kB", "MemFree:        16135316 kB"]));
        Assert.Null(HugePages.MemAvailable(["MemAvailable:   lots kB"]));
        Assert.Null(HugePages.MemAvailable(["MemAvailable:   22208520 MB"]));
        Assert.True(HugePages.AvailableMemory() > 0);
    }
}
