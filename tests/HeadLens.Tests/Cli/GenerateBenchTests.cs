using System.Text.Json;

namespace HeadLens.Tests.Cli;

public class GenerateBenchTests
{
    // `bench generate` reports the whole run's rate (the contract's tokens_per_s) and, apart, the prompt's pass and
    // the decode steps' rate after it; the whole run takes longer than the prompt's pass alone (40 decode steps of the
    // tiny model take milliseconds, its 20-token prompt a fraction of one, so timing noise cannot reverse them).
    [Fact]
    public void ThePromptAndTheDecodeStepsAreReportedApart()
    {
        var (code, output, error) = CliTests.Run("bench", "generate", "--preset", "tiny", "--prompt", "20", "--new-tokens", "40", "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        var result = Assert.Single(json.RootElement.GetProperty("results").EnumerateArray());
        Assert.Equal(20, result.GetProperty("config").GetProperty("prompt").GetInt32());
        double whole = result.GetProperty("median_ms").GetDouble(), prompt = result.GetProperty("prompt_ms").GetDouble();
        Assert.True(prompt > 0 && whole > prompt, $"the whole run {whole} ms, the prompt {prompt} ms");
        Assert.True(result.GetProperty("tokens_per_s").GetDouble() > 0);
        Assert.True(result.GetProperty("decode_tokens_per_s").GetDouble() > 0);
    }
}
