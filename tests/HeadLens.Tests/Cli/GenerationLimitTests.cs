using System.Text.Json;
using HeadLens.Checkpoints;
using HeadLens.Inference;

namespace HeadLens.Tests.Cli;

/// <summary>Generation that reaches the context says so (issue 15), or slides a window with --slide.</summary>
public class GenerationLimitTests
{
    private static readonly string Model = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", "tiny-gpt2");

    [Fact]
    public void StoppingAtTheContextIsSaidOnStderrAndInJson()
    {
        // tiny-gpt2 has a context of 16: a 3-token prompt leaves room for 13.
        var (code, output, error) = CliTests.Run("generate", "--model", Model, "--ids", "1,2,3", "--max-tokens", "100", "--temperature", "0", "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        Assert.Equal(13, json.RootElement.GetProperty("ids").GetArrayLength());
        Assert.Equal("context", json.RootElement.GetProperty("stop_reason").GetString());
        Assert.Contains("stopped after 13 of 100 tokens", error);
        Assert.Contains("context of 16", error);
        Assert.Contains("--slide", error);

        var exact = CliTests.Run("generate", "--model", Model, "--ids", "1,2,3", "--max-tokens", "5", "--temperature", "0", "--json");
        using var exactJson = JsonDocument.Parse(exact.Out);
        Assert.Equal("max-tokens", exactJson.RootElement.GetProperty("stop_reason").GetString());
        Assert.Equal("", exact.Error);
    }

    [Fact]
    public void SlideGoesPastTheContext()
    {
        var (code, output, error) = CliTests.Run("generate", "--model", Model, "--ids", "1,2,3", "--max-tokens", "40", "--temperature", "0", "--slide", "--json");
        Assert.True(code == 0, error);
        using var json = JsonDocument.Parse(output);
        int[] ids = [.. json.RootElement.GetProperty("ids").EnumerateArray().Select(v => v.GetInt32())];
        Assert.Equal(40, ids.Length);
        Assert.Equal("max-tokens", json.RootElement.GetProperty("stop_reason").GetString());
        Assert.Equal(SlidingReference([1, 2, 3], 40), ids);
    }

    [Theory]
    [InlineData(1, 50)]
    [InlineData(16, 20)]   // the prompt fills the context: the first window slides at once
    [InlineData(9, 8)]     // ends before the context is full: no slide at all
    public void SlidingMatchesAFullForwardOverEachWindow(int promptLength, int newTokens)
    {
        var (model, _) = ModelFiles.Load(Model);
        int[] prompt = [.. Enumerable.Range(0, promptLength).Select(i => (i * 7 + 3) % model.Config.VocabSize)];
        var sampler = new Sampler(new SamplingSettings { Temperature = 0 });
        int[] fast = [.. Generator.Stream(model, null, prompt, newTokens, sampler, slide: true).Select(token => token.Id)];
        Assert.Equal(SlidingReference(prompt, newTokens), fast);
    }

    // The plain path: every token from a full forward over the window it sees. The window is the whole history until
    // the context is full; then the last half of it, growing again until full (what --slide documents).
    private static int[] SlidingReference(int[] prompt, int newTokens)
    {
        var (model, _) = ModelFiles.Load(Model);
        int context = model.Config.ContextLength, vocab = model.Config.VocabSize;
        var history = prompt.ToList();
        int windowStart = 0;
        var generated = new List<int>();
        while (generated.Count < newTokens)
        {
            if (history.Count - windowStart > context)
            {
                windowStart = history.Count - (context / 2);
            }

            int[] window = [.. history.Skip(windowStart)];
            var logits = model.Infer(window, 1, window.Length).Logits.Slice((window.Length - 1) * vocab, vocab).ToArray();
            int next = Array.IndexOf(logits, logits.Max());
            generated.Add(next);
            history.Add(next);
        }

        return [.. generated];
    }
}
