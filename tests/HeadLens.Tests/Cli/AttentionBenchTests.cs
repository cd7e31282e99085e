using System.Text.Json;

namespace HeadLens.Tests.Cli;

public class AttentionBenchTests
{
    // `bench attention --batch` adds batched fused forward and backward results to the JSON shape, each with its
    // batch in the config, and positive figures.
    [Fact]
    public void BatchedForwardAndBackwardAppearInTheJson()
    {
        var (code, output, error) = CliTests.Run("bench", "attention", "--T", "64", "--batch", "1,2", "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        var results = json.RootElement.GetProperty("results").EnumerateArray()
            .Select(r => (Variant: r.GetProperty("config").GetProperty("variant").GetString(), Batch: r.GetProperty("config").GetProperty("batch").GetInt32(), Ms: r.GetProperty("median_ms").GetDouble()))
            .ToArray();
        Assert.Equal(
            ["reference/1", "fused/1", "backward/1", "window/1", "linear/1", "linear-backward/1", "fused/2", "backward/2"],
            results.Select(r => $"{r.Variant}/{r.Batch}").ToArray());
        Assert.All(results, r => Assert.True(r.Ms > 0));
    }

    // `--kv-heads 3`: the fused forward and backward with 4 query heads per kv head, its count in the config.
    [Fact]
    public void SharedKvHeadsRunTheFusedForwardAndBackward()
    {
        var (code, output, error) = CliTests.Run("bench", "attention", "--T", "64", "--kv-heads", "3", "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        var configs = json.RootElement.GetProperty("results").EnumerateArray().Select(r => r.GetProperty("config")).ToArray();
        Assert.Equal("fused,backward", string.Join(",", configs.Select(c => c.GetProperty("variant").GetString())));
        Assert.All(configs, c => Assert.Equal(3, c.GetProperty("kv_heads").GetInt32()));
    }

    // `--decode`: one decode-step result per (batch, T), with its layer count and the cache it read, and no buffer
    // allocated per step once warm (the work items' delegates only: ~0.3 KB a layer).
    [Fact]
    public void DecodeStepsAreTimedPerToken()
    {
        var (code, output, error) = CliTests.Run("bench", "attention", "--decode", "--T", "300", "--batch", "1,2", "--kv-heads", "4", "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        var results = json.RootElement.GetProperty("results").EnumerateArray().ToArray();
        Assert.Equal(2, results.Length);
        for (int i = 0; i < 2; i++)
        {
            var config = results[i].GetProperty("config");
            Assert.Equal("decode", config.GetProperty("variant").GetString());
            Assert.Equal(i + 1, config.GetProperty("batch").GetInt32());
            Assert.Equal(12, config.GetProperty("layers").GetInt32());
            Assert.True(results[i].GetProperty("median_ms").GetDouble() > 0);
            Assert.Equal((i + 1) * 300.0 * 4 * 64 * 2 * 12 * 4, results[i].GetProperty("cache_bytes").GetDouble());
            Assert.InRange(results[i].GetProperty("peak_bytes").GetDouble(), 0, 16 * 1024);
        }
    }

    [Fact]
    public void BadBatchIsOneLine() =>
        CliTests.AssertOneLineError(CliTests.Run("bench", "attention", "--T", "64", "--batch", "0"), "--batch");

    [Theory]
    [InlineData("5")]
    [InlineData("0")]
    [InlineData("two")]
    public void BadKvHeadsIsOneLine(string kvHeads) =>
        CliTests.AssertOneLineError(CliTests.Run("bench", "attention", "--T", "64", "--kv-heads", kvHeads), "--kv-heads");
}
