using System.Globalization;
using System.Text.Json;
using HeadLens.Checkpoints.Gguf;
using HeadLens.Kernels.Quantized;
using HeadLens.Model;
using HeadLens.Tests.Checkpoints;

namespace HeadLens.Tests.Cli;

/// <summary>GGUF files through the tool: describe shows the tensor types and memory; logits run on the kept types (and with
/// --activations q8); bench gguf's JSON.</summary>
public sealed class GgufCliTests : IDisposable
{
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-ggufcli-" + Guid.NewGuid().ToString("N"));
    private readonly string path;

    public GgufCliTests()
    {
        Directory.CreateDirectory(directory);
        path = Path.Combine(directory, "small-q8_0.gguf");
        GgufWriter.Write(path, Transformer.Create(GgufTests.SmallLlama(), seed: 4), GgufTests.PlaceholderLlamaVocabulary(300), GgufWriteType.Q8_0);
    }

    public void Dispose() => Directory.Delete(directory, recursive: true);

    [Fact]
    public void DescribeShowsTensorTypesAndMemory()
    {
        var (code, output, error) = CliTests.Run("describe", "--model", path);
        Assert.True(code == 0, error);
        Assert.Contains("tensor types", output, StringComparison.Ordinal);
        using var file = GgufFile.Open(path);
        foreach (var type in new[] { GgmlType.Q8_0, GgmlType.F32 })
        {
            int count = file.Tensors.Count(tensor => tensor.Type == type);
            Assert.Contains($"{type} × {count} (", output, StringComparison.Ordinal);
        }

        Assert.Contains("kept in the file's types", output, StringComparison.Ordinal);
    }

    [Fact]
    public void LogitsRunOnTheKeptTypesAndEqualTheReferencePath()
    {
        var (code, output, error) = CliTests.Run("logits", "--model", path, "--ids", "1,17,42,299,5", "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        var actual = json.RootElement.GetProperty("logits").EnumerateArray().SelectMany(row => row.EnumerateArray().Select(value => value.GetSingle())).ToArray();
        var (reference, _) = GgufModel.Load(path);
        GgufQuantizedModelTests.AssertClose(actual, GgufTests.Logits(reference, [1, 17, 42, 299, 5]), "headlens logits on a Q8_0 file");
    }

    [Fact]
    public void ActivationsQ8RunsTheIntegerProductsAndABadValueIsOneLine()
    {
        int[] ids = [1, 17, 42, 299, 5];
        var (code, output, error) = CliTests.Run("logits", "--model", path, "--ids", "1,17,42,299,5", "--activations", "q8", "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        var actual = json.RootElement.GetProperty("logits").EnumerateArray().SelectMany(row => row.EnumerateArray().Select(value => value.GetSingle())).ToArray();
        var (model, _) = GgufModel.Open(path);
        model.UseQ8Activations();
        GgufQuantizedModelTests.AssertClose(actual, GgufTests.Logits(model, ids), "headlens logits --activations q8");

        var (generateCode, generated, generateError) = CliTests.Run("generate", "--model", path, "--ids", "1,17,42", "--max-tokens", "3", "--temperature", "0", "--activations", "q8", "--json");
        Assert.True(generateCode == 0, generateError);
        Assert.Equal(3, JsonDocument.Parse(generated).RootElement.GetProperty("ids").GetArrayLength());

        var (badCode, _, badError) = CliTests.Run("generate", "--model", path, "--ids", "1,17,42", "--activations", "q4");
        Assert.NotEqual(0, badCode);
        Assert.Contains("--activations", badError, StringComparison.Ordinal);
        Assert.Single(badError.Trim().Split('\n'));
    }

    [LlamaCppFact]
    public void BenchGgufReportsBothEnginesInTheJsonShape()
    {
        var (code, output, error) = CliTests.Run("bench", "gguf", "--model", path, "--prompt", "4", "--new-tokens", "2", "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        Assert.Equal("gguf", json.RootElement.GetProperty("name").GetString());
        var result = Assert.Single(json.RootElement.GetProperty("results").EnumerateArray());
        Assert.Equal("small-q8_0.gguf", result.GetProperty("config").GetProperty("file").GetString());
        Assert.Equal("Q8_0", result.GetProperty("config").GetProperty("type").GetString());
        foreach (string figure in new[] { "decode_tokens_per_s", "prompt_tokens_per_s", "llamacpp_decode_tokens_per_s", "llamacpp_prompt_tokens_per_s", "decode_q8act_tokens_per_s", "prompt_q8act_tokens_per_s" })
        {
            Assert.True(result.GetProperty(figure).GetDouble() > 0, figure + " " + result.GetProperty(figure).GetDouble().ToString(CultureInfo.InvariantCulture));
        }
    }
}
