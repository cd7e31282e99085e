using System.Globalization;
using System.Runtime.Intrinsics.X86;

namespace HeadLens.Kernels;

/// <summary>
/// The data caches of one core, as the machine reports them (bytes): what <see cref="GemmBlocking"/> sizes the matrix
/// product's blocks from. Read from Linux's /sys/devices/system/cpu/cpu0/cache, else from the x86 CPUID cache
/// leaves (4 on Intel, 0x8000001D on AMD); null where neither answers sensibly.
/// </summary>
/// <param name="Level1">L1 data cache of one core.</param>
/// <param name="Level1Ways">Its associativity (ways per set).</param>
/// <param name="Level2">L2 cache of one core.</param>
/// <param name="Level3">Last-level cache, 0 where there is none (it is shared by several cores).</param>
public sealed record CacheSizes(long Level1, int Level1Ways, long Level2, long Level3)
{
    private const string LinuxCacheDirectory = "/sys/devices/system/cpu/cpu0/cache";

    // What a cache of each level is believed to be at most and at least; a report outside these bounds (a broken
    // hypervisor, a misread field) is treated as no report at all.
    private const long MinLevel1 = 8 << 10, MaxLevel1 = 1 << 20;
    private const long MaxLevel2 = 64L << 20, MaxLevel3 = 4L << 30;

    /// <summary>The caches this machine reports, or null when it reports none that make sense.</summary>
    public static CacheSizes? Detect()
    {
        CacheSizes? fromSystem = OperatingSystem.IsLinux() ? FromSysfs(LinuxCacheDirectory) : null;
        return fromSystem ?? FromCpuid();
    }

    /// <summary>The caches described by a Linux sysfs cache directory (index0, index1, … with level, type, size).</summary>
    internal static CacheSizes? FromSysfs(string directory)
    {
        try
        {
            if (!Directory.Exists(directory))
            {
                return null;
            }

            var levels = new List<(int Level, long Size, int Ways)>();
            foreach (string index in Directory.EnumerateDirectories(directory, "index*"))
            {
                string? type = ReadLine(Path.Combine(index, "type"));
                if (type is null || type.Equals("Instruction", StringComparison.OrdinalIgnoreCase))
                {
                    continue;
                }

                if (int.TryParse(ReadLine(Path.Combine(index, "level")), NumberStyles.None, CultureInfo.InvariantCulture, out int level)
                    && ParseSize(ReadLine(Path.Combine(index, "size"))) is long size)
                {
                    _ = int.TryParse(ReadLine(Path.Combine(index, "ways_of_associativity")), NumberStyles.None, CultureInfo.InvariantCulture, out int ways);
                    levels.Add((level, size, ways));
                }
            }

            return FromLevels(levels);
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The caches the x86 CPUID instruction describes, or null off x86 or when it describes none.</summary>
    internal static CacheSizes? FromCpuid()
    {
        if (!X86Base.IsSupported)
        {
            return null;
        }

        var vendor = X86Base.CpuId(0, 0);
        bool amd = CpuModel.IsAmd(vendor);
        int leaf = 4;
        if (amd)
        {
            // AMD describes its caches in leaf 0x8000001D, in leaf 4's layout, when the topology extensions exist.
            leaf = unchecked((int)0x8000001D);
            if (unchecked((uint)X86Base.CpuId(unchecked((int)0x80000000), 0).Eax) < 0x8000001D)
            {
                return null;
            }
        }
        else if (vendor.Eax < 4)
        {
            return null;
        }

        return FromCpuidLeaf(subleaf => X86Base.CpuId(leaf, subleaf));
    }

    /// <summary>
    /// Decodes a CPUID deterministic cache leaf (Intel leaf 4, AMD 0x8000001D): one sub-leaf per cache until a
    /// null type. EAX[4:0] type (1 data, 2 instruction, 3 unified), EAX[7:5] level; EBX[11:0] line size − 1,
    /// EBX[21:12] partitions − 1, EBX[31:22] ways − 1; ECX sets − 1.
    /// </summary>
    internal static CacheSizes? FromCpuidLeaf(Func<int, (int Eax, int Ebx, int Ecx, int Edx)> subleaf)
    {
        var levels = new List<(int Level, long Size, int Ways)>();
        for (int index = 0; index < 16; index++)
        {
            var (eax, ebx, ecx, _) = subleaf(index);
            int type = eax & 0x1F;
            if (type == 0)
            {
                break;
            }

            if (type == 2)
            {
                continue;
            }

            int level = (eax >> 5) & 0x7;
            long line = (ebx & 0xFFF) + 1L, partitions = ((ebx >> 12) & 0x3FF) + 1L, ways = ((ebx >>> 22) & 0x3FF) + 1L;
            long sets = (uint)ecx + 1L;
            levels.Add((level, ways * partitions * line * sets, (int)ways));
        }

        return FromLevels(levels);
    }

    // One entry per data or unified cache; the first of each level counts. L1 and L2 must be present and plausible.
    private static CacheSizes? FromLevels(List<(int Level, long Size, int Ways)> levels)
    {
        (long Size, int Ways)? Level(int level)
        {
            foreach (var entry in levels)
            {
                if (entry.Level == level)
                {
                    return (entry.Size, entry.Ways);
                }
            }

            return null;
        }

        var level1 = Level(1);
        var level2 = Level(2);
        if (level1 is not { } one || level2 is not { } two
            || one.Size < MinLevel1 || one.Size > MaxLevel1 || two.Size <= one.Size || two.Size > MaxLevel2)
        {
            return null;
        }

        long three = Level(3) is { } l3 && l3.Size > two.Size && l3.Size <= MaxLevel3 ? l3.Size : 0;
        int ways = one.Ways is >= 1 and <= 64 ? one.Ways : 0;
        return new CacheSizes(one.Size, ways, two.Size, three);
    }

    private static string? ReadLine(string path) => File.Exists(path) ? File.ReadAllText(path).Trim() : null;

    // sysfs writes sizes as "48K", "1280K", "32M" (binary units); a bare number is bytes.
    internal static long? ParseSize(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return null;
        }

        long unit = char.ToUpperInvariant(text[^1]) switch
        {
            'K' => 1L << 10,
            'M' => 1L << 20,
            'G' => 1L << 30,
            _ => 1,
        };
        string digits = unit == 1 ? text : text[..^1];
        return long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out long value) && value > 0 && value < 1L << 40
            ? value * unit
            : null;
    }
}
