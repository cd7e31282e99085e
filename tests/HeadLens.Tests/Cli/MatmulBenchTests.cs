using System.Text.Json;
using HeadLens.Kernels;

namespace HeadLens.Tests.Cli;

public class MatmulBenchTests
{
    // `--blocking`: each product timed with this machine's blocking, then with each given one, every result naming
    // the blocking it ran with; the products' own keys unchanged.
    [Fact]
    public void GivenBlockingsAreTimedAfterTheMachinesOwn()
    {
        int rows = 2 * Gemm.TileRows, columns = 2 * Gemm.TileColumns;
        string given = $"64x{rows}x{columns}";
        var (code, output, error) = CliTests.Run("bench", "matmul", "--sizes", "96", "--threads", "2", "--blocking", given, "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        var configs = json.RootElement.GetProperty("results").EnumerateArray().Select(r => r.GetProperty("config")).ToArray();
        var own = GemmBlocking.ForProduct(96, 96);
        string machines = $"{own.Depth}x{own.Rows}x{own.Columns} (this machine's)";
        Assert.Equal(
            [$"2/{machines}", $"2/{given}", $"1/{machines}", $"1/{given}"],
            configs.Select(c => $"{c.GetProperty("threads").GetInt32()}/{c.GetProperty("blocking").GetString()}").ToArray());
        Assert.All(configs, c => Assert.Equal(96, c.GetProperty("m").GetInt32()));
        Assert.All(json.RootElement.GetProperty("results").EnumerateArray(), r => Assert.True(r.GetProperty("gflops").GetDouble() > 0));

        // Without --blocking the results carry no blocking key (the CLI contract's keys only).
        (code, output, error) = CliTests.Run("bench", "matmul", "--sizes", "64", "--json");
        Assert.True(code == 0, error);
        using var plain = JsonDocument.Parse(output);
        Assert.All(plain.RootElement.GetProperty("results").EnumerateArray(), r => Assert.False(r.GetProperty("config").TryGetProperty("blocking", out _)));
    }

    [Fact]
    public void ABlockingThatIsNotWholeTilesIsRefusedByName()
    {
        CliTests.AssertOneLineError(
            CliTests.Run("bench", "matmul", "--sizes", "64", "--blocking", $"64x{Gemm.TileRows + 1}x{Gemm.TileColumns}"),
            $"--blocking expects KCxMCxNC (positive; MC a multiple of {Gemm.TileRows} and NC of {Gemm.TileColumns}");
        CliTests.AssertOneLineError(CliTests.Run("bench", "matmul", "--blocking", "256x480"), "got '256x480'");
    }

    // --sizes leaves the GPT-2 step's products out, so --tokens with it would be ignored: refused before any product
    // runs, by name (it was once reported as an unknown option, after the whole run).
    [Fact]
    public void TokensWithSizesIsRefusedBeforeTheRun()
    {
        var result = CliTests.Run("bench", "matmul", "--sizes", "2048", "--tokens", "256", "--json");
        CliTests.AssertOneLineError(result, "--sizes times the square products only; --tokens chooses the GPT-2 step's products");
        Assert.Equal("", result.Out);
    }
}
