using System.Runtime.InteropServices;

namespace HeadLens.Tensors;

/// <summary>
/// Asks Linux to back a large buffer with 2 MiB pages (transparent huge pages, <c>madvise(MADV_HUGEPAGE)</c>).
/// Why: the micro-kernel of a matrix product writes a C tile of 12 rows, and for most products of a training step a
/// row of C (768–50,257 floats, 3–200 KB) is another 4 KiB page: 12 pages per tile, ~500 per sweep of the kernel down
/// an A block, far more than the first-level TLB holds. With 2 MiB pages a whole [1024, 3072] activation is 6 pages.
/// Measured on the Ice Lake Xeon (1 thread, the 1024 × 3072 × 768 forward product, operands allocated both ways in
/// one process, under moderate load): 6–10% more per core, and `perf` put 11.6% of the kernel's samples on the
/// prefetches of the next C tile with small pages, 5.0% with large ones. Under heavy load (others' work on the same
/// cores) the difference disappeared in the noise.
/// The systems this runs on default to "madvise" mode (/sys/kernel/mm/transparent_hugepage/enabled), where only
/// memory that asks gets huge pages; elsewhere the call does nothing or is absent, and the buffer keeps 4 KiB pages.
/// Which buffers ask, and why not all: see <see cref="Arena"/>'s constructor.
/// </summary>
internal static partial class HugePages
{
    // Below this, a buffer spans too few 2 MiB pages to matter, and the part inside whole pages is small.
    private const long MinBytes = 4L << 20;

    private const long PageBytes = 2L << 20;

    private const int AdviseHugePage = 14; // MADV_HUGEPAGE

    /// <summary>
    /// A pinned float array of <paramref name="length"/> zeros whose whole 2 MiB pages are huge pages where the system
    /// grants them. A large array comes from memory the process has not touched yet (the runtime knows it is zero and
    /// does not clear it), so the advice reaches it before its first touch, and the pages are faulted in whole then,
    /// as late as before: nothing is touched here.
    /// </summary>
    public static unsafe float[] AllocateZeroed(int length)
    {
        var array = GC.AllocateArray<float>(length, pinned: true);
        if (OperatingSystem.IsLinux() && (long)length * sizeof(float) >= MinBytes)
        {
            fixed (float* start = array)
            {
                long first = ((long)start + PageBytes - 1) & ~(PageBytes - 1);
                long end = ((long)start + ((long)length * sizeof(float))) & ~(PageBytes - 1);
                if (end > first)
                {
                    Advise((nint)first, (nuint)(end - first));
                }
            }
        }

        return array;
    }

    /// <summary>
    /// Whether this system hands 2 MiB pages to memory that asks (transparent huge pages in "always" or "madvise"
    /// mode): read once. Elsewhere (not Linux, or "never") a copy made for large pages would cost time for nothing.
    /// </summary>
    public static bool Available => available.Value;

    private static readonly Lazy<bool> available = new(() =>
    {
        const string setting = "/sys/kernel/mm/transparent_hugepage/enabled";
        try
        {
            return OperatingSystem.IsLinux() && File.Exists(setting) && !File.ReadAllText(setting).Contains("[never]", StringComparison.Ordinal);
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    });

    /// <summary>
    /// Bytes of memory the system could give this process now without swapping: Linux's MemAvailable
    /// (/proc/meminfo), else the runtime's figure for the whole machine (or its container's limit).
    /// </summary>
    public static long AvailableMemory()
    {
        try
        {
            if (MemAvailable(File.ReadLines("/proc/meminfo")) is long bytes)
            {
                return bytes;
            }
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            // No /proc (not Linux, or a sandbox): the runtime's figure below.
        }

        return GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    }

    /// <summary>The MemAvailable line of /proc/meminfo ("MemAvailable:   12345678 kB") in bytes; null without one.</summary>
    internal static long? MemAvailable(IEnumerable<string> meminfo)
    {
        const string field = "MemAvailable:";
        foreach (string line in meminfo)
        {
            if (line.StartsWith(field, StringComparison.Ordinal))
            {
                string[] parts = line[field.Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return parts.Length == 2 && parts[1] == "kB"
                    && long.TryParse(parts[0], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long kilobytes)
                    ? kilobytes * 1024 : null;
            }
        }

        return null;
    }

    /// <summary>Unmanaged memory of at least <paramref name="bytes"/>, 2 MiB-aligned and asked for on 2 MiB pages.</summary>
    public static LargePageBlock AllocateBlock(long bytes) => new(bytes);

    internal static void AdviseLarge(nint address, nuint bytes)
    {
        if (OperatingSystem.IsLinux())
        {
            Advise(address, bytes);
        }
    }

    private static void Advise(nint address, nuint bytes)
    {
        try
        {
            // The result is not checked: a kernel without transparent huge pages refuses (EINVAL), and the buffer
            // then simply keeps small pages.
            _ = MemoryAdvise(address, bytes, AdviseHugePage);
        }
        catch (Exception error) when (error is DllNotFoundException or EntryPointNotFoundException)
        {
            // No libc to call (another C library): small pages.
        }
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int MemoryAdvise(nint address, nuint length, int advice);
}

/// <summary>
/// A block of unmanaged memory on 2 MiB pages (where the system grants them), freed when the block is disposed or
/// no longer reachable. Holders of pointers into it keep the block itself reachable (e.g. a QuantizedMatrix's owner).
/// Untouched until written: its pages are faulted in (zeroed by the kernel, whole 2 MiB at a time) by the first write.
/// </summary>
internal sealed unsafe class LargePageBlock : IDisposable
{
    private const long PageBytes = 2L << 20;

    private byte* start;

    public LargePageBlock(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        // Whole 2 MiB pages: the advice covers all of the block, and the last page is not shared with other memory.
        Bytes = (bytes + PageBytes - 1) & ~(PageBytes - 1);
        start = (byte*)NativeMemory.AlignedAlloc((nuint)Bytes, (nuint)PageBytes);
        GC.AddMemoryPressure(Bytes);
        HugePages.AdviseLarge((nint)start, (nuint)Bytes);
    }

    ~LargePageBlock() => Free();

    /// <summary>Bytes of the block (the request rounded up to whole 2 MiB pages).</summary>
    public long Bytes { get; }

    public byte* Start => start != null ? start : throw new ObjectDisposedException(nameof(LargePageBlock));

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private void Free()
    {
        if (start != null)
        {
            NativeMemory.AlignedFree(start);
            start = null;
            GC.RemoveMemoryPressure(Bytes);
        }
    }
}
