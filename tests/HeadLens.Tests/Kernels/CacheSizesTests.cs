using HeadLens.Kernels;

namespace HeadLens.Tests.Kernels;

/// <summary>Reading cache sizes from a Linux sysfs directory and from CPUID cache leaves, and refusing nonsense.</summary>
public sealed class CacheSizesTests : IDisposable
{
    private readonly string directory = Path.Combine(Path.GetTempPath(), $"headlens-caches-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(directory))
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void SysfsDirectoryIsRead()
    {
        WriteIndex(0, "1", "Data", "48K", "12");
        WriteIndex(1, "1", "Instruction", "32K", "8");
        WriteIndex(2, "2", "Unified", "1280K", "20");
        WriteIndex(3, "3", "Unified", "49152K", "12");
        Assert.Equal(new CacheSizes(48 << 10, 12, 1280 << 10, 48 << 20), CacheSizes.FromSysfs(directory));
    }

    [Fact]
    public void SysfsWithoutLevel3OrWaysStillReads()
    {
        WriteIndex(0, "1", "Data", "32K", null);
        WriteIndex(1, "2", "Unified", "2M", "16");
        Assert.Equal(new CacheSizes(32 << 10, 0, 2 << 20, 0), CacheSizes.FromSysfs(directory));
    }

    [Theory]
    [InlineData("48K", "garbage")]      // L2 size unreadable
    [InlineData("48K", "16K")]          // L2 smaller than L1
    [InlineData("2K", "1280K")]         // L1 implausibly small
    [InlineData("48K", "999999999K")]   // L2 implausibly large
    public void ImplausibleSysfsGivesNothing(string level1, string level2)
    {
        WriteIndex(0, "1", "Data", level1, "12");
        WriteIndex(1, "2", "Unified", level2, "20");
        Assert.Null(CacheSizes.FromSysfs(directory));
    }

    [Fact]
    public void MissingSysfsGivesNothing()
    {
        Assert.Null(CacheSizes.FromSysfs(directory));
        Directory.CreateDirectory(directory);
        Assert.Null(CacheSizes.FromSysfs(directory));
        WriteIndex(0, "1", "Data", "48K", "12"); // an L1 alone is not enough to size the blocks
        Assert.Null(CacheSizes.FromSysfs(directory));
    }

    [Fact]
    public void CpuidLeafIsDecoded()
    {
        // Intel leaf 4 as an Ice Lake server reports it: L1d, L1i, L2, L3, then a null type.
        (int, int, int, int)[] leaves =
        [
            Leaf(type: 1, level: 1, line: 64, partitions: 1, ways: 12, sets: 64),
            Leaf(type: 2, level: 1, line: 64, partitions: 1, ways: 8, sets: 64),
            Leaf(type: 3, level: 2, line: 64, partitions: 1, ways: 20, sets: 1024),
            Leaf(type: 3, level: 3, line: 64, partitions: 1, ways: 12, sets: 65536),
            (0, 0, 0, 0),
            Leaf(type: 1, level: 1, line: 64, partitions: 1, ways: 1, sets: 1), // past the end: never read
        ];
        Assert.Equal(new CacheSizes(48 << 10, 12, 1280 << 10, 48 << 20), CacheSizes.FromCpuidLeaf(index => leaves[index]));
    }

    [Fact]
    public void CpuidWithoutCachesGivesNothing()
    {
        Assert.Null(CacheSizes.FromCpuidLeaf(_ => (0, 0, 0, 0)));
        Assert.Null(CacheSizes.FromCpuidLeaf(index => index == 0 ? Leaf(1, 1, 64, 1, 12, 64) : (0, 0, 0, 0)));
    }

    [Theory]
    [InlineData("48K", 48L << 10)]
    [InlineData("32M", 32L << 20)]
    [InlineData("1G", 1L << 30)]
    [InlineData("4096", 4096L)]
    [InlineData("", null)]
    [InlineData("K", null)]
    [InlineData("-5K", null)]
    [InlineData("12.5K", null)]
    [InlineData("0K", null)]
    public void SizesParse(string text, long? expected) => Assert.Equal(expected, CacheSizes.ParseSize(text));

    [Fact]
    public void ThisMachineReportsPlausibleCachesOrNone()
    {
        var caches = CacheSizes.Detect();
        if (caches is not null)
        {
            Assert.InRange(caches.Level1, 8 << 10, 1 << 20);
            Assert.True(caches.Level2 > caches.Level1);
            Assert.True(caches.Level3 == 0 || caches.Level3 > caches.Level2);
        }

        Assert.Equal(GemmBlocking.Choose(caches, Gemm.TileRows, Gemm.TileColumns, GemmBlocking.WideFmaAtHalfRate), GemmBlocking.ForThisMachine);
        // Only the 512-bit tile can run at half rate (the 256-bit one issues two FMAs per cycle on every such core).
        Assert.True(!GemmBlocking.WideFmaAtHalfRate || Gemm.TileColumns == 32);
    }

    private static (int, int, int, int) Leaf(int type, int level, int line, int partitions, int ways, int sets) =>
        (type | (level << 5), (line - 1) | ((partitions - 1) << 12) | ((ways - 1) << 22), sets - 1, 0);

    private void WriteIndex(int index, string level, string type, string size, string? ways)
    {
        string path = Path.Combine(directory, $"index{index}");
        Directory.CreateDirectory(path);
        File.WriteAllText(Path.Combine(path, "level"), level + "\n");
        File.WriteAllText(Path.Combine(path, "type"), type + "\n");
        File.WriteAllText(Path.Combine(path, "size"), size + "\n");
        if (ways is not null)
        {
            File.WriteAllText(Path.Combine(path, "ways_of_associativity"), ways + "\n");
        }
    }
}
