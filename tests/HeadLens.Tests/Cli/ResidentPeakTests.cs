using System.Runtime.InteropServices;
using HeadLens.Cli.Commands.Bench;

namespace HeadLens.Tests.Cli;

/// <summary>
/// bench gguf reports each file's peak resident memory, not the peak of the files' generation before it: the peak
/// restarts before each file (GgufBenchmark.RestartResidentPeak). Alone, so that no other test's allocation lands
/// between the readings.
/// </summary>
[Collection(RunsAlone.Name)]
public sealed class ResidentPeakTests
{
    [ClearRefsFact]
    public unsafe void RestartingThePeakForgetsMemoryAlreadyReturned()
    {
        // 512 MB from the system (above malloc's mapping threshold, so freeing it unmaps it), every page touched.
        const long bytes = 512L << 20;
        byte* block = (byte*)NativeMemory.Alloc((nuint)bytes);
        for (long offset = 0; offset < bytes; offset += 4096)
        {
            block[offset] = 1;
        }

        long peakWithBlock = GgufBenchmark.StatusBytes("VmHWM");
        NativeMemory.Free(block);
        // Freeing alone leaves the peak (up to the drift of the kernel's per-CPU page counters), so the drop below is
        // the restart's.
        long peakFreed = GgufBenchmark.StatusBytes("VmHWM");
        Assert.True(peakFreed >= peakWithBlock - (bytes / 8), $"freeing the block lowered the peak by itself: {peakFreed >> 20} MiB, {peakWithBlock >> 20} MiB with it");

        GgufBenchmark.RestartResidentPeak();

        long peakAfter = GgufBenchmark.StatusBytes("VmHWM");
        Assert.True(peakAfter <= peakWithBlock - (bytes / 2), $"peak {peakAfter >> 20} MiB after the restart, {peakWithBlock >> 20} MiB with the block");
    }
}

/// <summary>A test that needs Linux's /proc/self/clear_refs; skipped, with the reason, where it is missing.</summary>
public sealed class ClearRefsFactAttribute : FactAttribute
{
    public ClearRefsFactAttribute()
    {
        if (!File.Exists("/proc/self/clear_refs"))
        {
            Skip = "no /proc/self/clear_refs (not Linux): the peak resident size cannot be restarted here";
        }
    }
}
