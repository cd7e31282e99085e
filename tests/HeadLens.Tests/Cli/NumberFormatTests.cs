using System.Text.RegularExpressions;
using HeadLens.Cli;
using HeadLens.Model;

namespace HeadLens.Tests.Cli;

/// <summary>Numbers people read (issue 15): one format in every command; describe's FLOPs line; the sinks table.</summary>
public partial class NumberFormatTests
{
    [Theory]
    [InlineData(950, "950")]
    [InlineData(16_384, "16.38K")]
    [InlineData(124_439_808, "124.4M")]
    [InlineData(1_049_600, "1.05M")]
    [InlineData(999_960, "1M")]
    [InlineData(7_241_732_096, "7.242B")]
    [InlineData(-2_500, "-2.5K")]
    public void CountsTakeASuffix(double n, string expected) => Assert.Equal(expected, Numbers.Count(n));

    [Theory]
    [InlineData(6e-5, "6e-5")]
    [InlineData(3e-3, "0.003")]
    [InlineData(0.25, "0.25")]
    [InlineData(3.14159, "3.142")]
    [InlineData(1.718e10, "1.72e10")]
    [InlineData(9.996e-7, "1e-6")]
    [InlineData(0, "0")]
    public void ValuesAreShortAndScientificOnlyWhenTiny(double x, string expected) => Assert.Equal(expected, Numbers.Value(x));

    [Theory]
    [InlineData(2.1e9, "2.1 GFLOP")]
    [InlineData(285_025_280, "285 MFLOP")]
    [InlineData(950, "950 FLOP")]
    [InlineData(999_700, "1 MFLOP")]
    public void FlopsTakeAUnit(double flops, string expected) => Assert.Equal(expected, Numbers.Flops(flops));

    [Theory]
    [InlineData(512, "512 B")]
    [InlineData(75_497_472, "72 MiB")]
    [InlineData(497_759_232, "474.7 MiB")]
    public void BytesAreBinary(double bytes, string expected) => Assert.Equal(expected, Numbers.Bytes(bytes));

    [Theory]
    [InlineData("peak_bytes", 123_456_789, "117.7 MiB")]
    [InlineData("tokens_per_s", 150_000, "150K")]
    [InlineData("gflops", 412.345, "412.3")]
    [InlineData("median_ms", 0.00004, "4e-5")]
    public void BenchTablesUseTheSameFormats(string figure, double value, string expected) =>
        Assert.Equal(expected, HeadLens.Cli.Commands.BenchCommand.Figure(figure, value));

    [Theory]
    [InlineData("gpt2", 1024)]         // tied embeddings: the unembedding is the token table, multiplied all the same
    [InlineData("llama2-7b", 4096)]    // untied: the output head is its own matrix
    [InlineData("tiny-bert", 64)]      // an encoder: no unembedding at all
    public void DescribeCountsTwoFlopsPerWeightUsedIncludingTheUnembedding(string preset, int context)
    {
        var (code, output, error) = CliTests.Run("describe", "--preset", preset, "--context", context.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(code == 0, error);
        var config = ModelPresets.Get(preset);
        var (embeddings, _, _, _, head) = config.ParameterCounts();
        // Every parameter but the embedding tables (looked up, not multiplied), plus the unembedding once if tied.
        long unembedding = config.HasOutputHead && head == 0 ? (long)config.VocabSize * config.Channels : 0;
        long used = config.ParameterCount - embeddings + unembedding;
        double flops = (2.0 * used) + (4.0 * config.Layers * config.Channels * context);
        Assert.Contains($"FLOPs / token", output);
        Assert.Matches($@"FLOPs / token\s+{Regex.Escape(Numbers.Flops(flops))} = 2 × {Regex.Escape(Numbers.Count(used))} weights used per token", output);
        Assert.Contains(Numbers.Count(config.ParameterCount), output);
        Assert.DoesNotMatch(@"\dE[+-]\d", output); // no 1.05E+006
    }

    [Fact]
    public void DescribeGpt2ReadsAsPeopleWriteIt()
    {
        var (_, output, _) = CliTests.Run("describe", "--preset", "gpt2", "--context", "131072");
        Assert.Matches(@"parameters\s+124\.4M", output);
        Assert.Contains("17.18B (T² = 17,179,869,184", output); // 131072² scores per head
    }

    [Fact]
    public void SinksTableIsAlignedAndItsVerdictUsesItsOwnFigures()
    {
        var (code, output, error) = CliTests.Run("experiment", "sinks");
        Assert.True(code == 0, error);
        string[] labels = ["full attention", "window-only cache", "window + 4 sinks", "sliding recomputation"];
        var rows = labels.Select(label => output.Split('\n').Single(line => line.StartsWith("  " + label, StringComparison.Ordinal))).ToList();
        // The perplexity column ends at the same place in every row.
        var ends = rows.Select(row => PerplexityColumn().Match(row)).Select(match => match.Index + match.Length).Distinct().ToList();
        Assert.Single(ends);
        Assert.DoesNotContain("within 0%", output);
        string windowChange = ChangeColumn().Match(rows[1]).Groups[1].Value;
        if (output.Contains("differs from full attention by", StringComparison.Ordinal))
        {
            Assert.Contains($"differs from full attention by {windowChange}", output);
        }
    }

    [GeneratedRegex(@"\d+\.\d\d(?=\s|$)")]
    private static partial Regex PerplexityColumn();

    [GeneratedRegex(@"\(([+-]?\d+\.\d%) vs full\)")]
    private static partial Regex ChangeColumn();
}
