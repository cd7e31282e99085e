using System.Text.Json;

namespace HeadLens.Tests.Cli;

/// <summary>`convert` between the formats HeadLens reads: what it writes loads back and computes the same thing.</summary>
public sealed class ConvertCommandTests : IDisposable
{
    private static readonly string Fixtures = Path.Combine(AppContext.BaseDirectory, "Fixtures");
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-convert-" + Guid.NewGuid().ToString("N"));

    public ConvertCommandTests() => Directory.CreateDirectory(directory);

    public void Dispose() => Directory.Delete(directory, recursive: true);

    [Fact]
    public void Llama2cToGgufGreedyDecodesRunCsIds()
    {
        string gguf = Path.Combine(directory, "llama2c.gguf");
        var converted = CliTests.Run("convert", "--model", Path.Combine(Fixtures, "llama2c", "llama2c-260k.bin"), "--out", gguf);
        Assert.True(converted.Code == 0, converted.Error);
        var (code, output, error) = CliTests.Run("generate", "--model", gguf, "--ids", "1", "--max-tokens", "40", "--temperature", "0", "--json");
        Assert.True(code == 0, error);
        int[] expected = File.ReadAllText(Path.Combine(Fixtures, "llama2c", "llama2c-260k.greedy-ids.txt"))
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).Take(40).ToArray();
        Assert.Equal(expected, JsonDocument.Parse(output).RootElement.GetProperty("ids").EnumerateArray().Select(id => id.GetInt32()).ToArray());
    }

    [Fact]
    public void TheBuiltInEncoderSavesAsAHuggingFaceDirectoryThatEmbedsTheSame()
    {
        string saved = Path.Combine(directory, "minilm");
        var converted = CliTests.Run("convert", "--model", "minilm", "--out", saved);
        Assert.True(converted.Code == 0, converted.Error);
        Assert.True(File.Exists(Path.Combine(saved, "vocab.txt")));
        string[] texts = ["--text", "The bank of the river.", "--text", "Money in the bank."];
        var original = CliTests.Run(["embed", "--model", "minilm", .. texts, "--json"]);
        var reloaded = CliTests.Run(["embed", "--model", saved, .. texts, "--json"]);
        Assert.True(original.Code == 0 && reloaded.Code == 0, original.Error + reloaded.Error);
        Assert.Equal(JsonDocument.Parse(original.Out).RootElement.GetProperty("embeddings").ToString(),
            JsonDocument.Parse(reloaded.Out).RootElement.GetProperty("embeddings").ToString());
    }

    [Fact]
    public void WhatAFormatCannotHoldIsRefusedInOneLine()
    {
        CliTests.AssertOneLineError(CliTests.Run("convert", "--model", "minilm", "--out", Path.Combine(directory, "m.gguf")), "GGUF");
        CliTests.AssertOneLineError(CliTests.Run("convert", "--out", Path.Combine(directory, "kjv.gguf"), "--type", "q4"), "--type q4");
        Assert.False(File.Exists(Path.Combine(directory, "m.gguf")));
    }

    [Fact]
    public void AnExistingOutputIsRefusedUnlessForced()
    {
        string gguf = Path.Combine(directory, "kjv.gguf");
        File.WriteAllText(gguf, "an earlier conversion");
        CliTests.AssertOneLineError(CliTests.Run("convert", "--out", gguf), "--force");
        Assert.Equal("an earlier conversion", File.ReadAllText(gguf));

        var forced = CliTests.Run("convert", "--out", gguf, "--force");
        Assert.True(forced.Code == 0, forced.Error);

        // What replaced it is the embedded model (byte-level tokens as a GGUF vocabulary): the same greedy tokens.
        string[] greedy = ["--prompt", "And God said", "--max-tokens", "24", "--temperature", "0", "--json"];
        var fromGguf = CliTests.Run(["generate", "--model", gguf, .. greedy]);
        var fromEmbedded = CliTests.Run(["generate", .. greedy]);
        Assert.True(fromGguf.Code == 0 && fromEmbedded.Code == 0, fromGguf.Error + fromEmbedded.Error);
        Assert.Equal(JsonDocument.Parse(fromEmbedded.Out).RootElement.GetProperty("ids").ToString(),
            JsonDocument.Parse(fromGguf.Out).RootElement.GetProperty("ids").ToString());

        string saved = Path.Combine(directory, "saved");
        Directory.CreateDirectory(saved);
        Assert.True(CliTests.Run("convert", "--out", saved).Code == 0, "an empty directory may be written into");
        CliTests.AssertOneLineError(CliTests.Run("convert", "--out", saved), "--force");
        CliTests.AssertOneLineError(CliTests.Run("convert", "--model", saved, "--out", saved, "--force"), "the model being converted");
    }
}
