using System.Runtime.InteropServices;

namespace HeadLens.Tensors;

/// <summary>
/// Asks Linux to back a large buffer with 2 MiB pages (transparent huge pages, <c>madvise(MADV_HUGEPAGE)</c>).
/// Why: a matrix product walks C, and the packing walks A and B, one row per step, and a row of a training product
/// (768–50,257 floats) is another 4 KiB page each time: one C tile of 12 rows touches 12 pages, a sweep of the
/// kernel down an A block ~500. With 4 KiB pages those sweeps miss the first-level TLB on every row; with 2 MiB pages
/// a whole [1024, 3072] activation is 6 pages. Measured on the Ice Lake Xeon (1 thread, the 1024 × 3072 × 768
/// forward product, operands allocated both ways in one process): ~6% more per core with 2 MiB pages.
/// The systems this runs on default to "madvise" mode (/sys/kernel/mm/transparent_hugepage/enabled), where only
/// memory that asks gets huge pages; elsewhere the call does nothing or is absent, and the buffer keeps 4 KiB pages.
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
