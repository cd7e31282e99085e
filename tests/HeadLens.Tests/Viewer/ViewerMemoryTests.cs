using System.Text.Json;
using HeadLens.Cli.Viewer;
using HeadLens.Model;
using Xunit.Abstractions;

namespace HeadLens.Tests.Viewer;

/// <summary>
/// What one request may allocate: one head's [T, T] pattern at a time (plus the answer), never a layer's [H, T, T] or
/// the model's [L, H, T, T]. Measured with the allocation counter of the test's own thread: the views and the
/// synthetic source run synchronously on it, so other tests running at the same time do not count.
/// </summary>
public class ViewerMemoryTests(ITestOutputHelper output)
{
    private const int Tokens = 1024;
    private const int Layers = 12;
    private const int Heads = 12;

    // One head's pattern at 1024 tokens: 4 MiB. The model's patterns would be 144 of them (576 MiB), one layer 12.
    private const long HeadBytes = (long)Tokens * Tokens * sizeof(float);

    private static TokenizedText LongInput(SyntheticSource source) =>
        source.Tokenize(string.Join(' ', Enumerable.Range(0, Tokens).Select(i => "w" + (i % 97))));

    private long Measure(string what, Func<object> request)
    {
        // Once to warm up (JIT, the serializer's metadata, the tokenizer's vocabulary), then measured.
        request();
        long before = GC.GetAllocatedBytesForCurrentThread();
        object answer = request();
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(answer, answer.GetType(), ViewerServer.Json);
        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        output.WriteLine($"{what}: {bytes / 1048576.0:F1} MiB allocated, answer {json.Length / 1048576.0:F1} MiB of JSON");
        return bytes;
    }

    [Fact]
    public void TheModelViewOfALongTextWorksInOneHeadsPatternAtATime()
    {
        var source = new SyntheticSource(Layers, Heads, maxTokens: Tokens);
        var views = new AttentionViews(source);
        var input = LongInput(source);
        Assert.Equal(Tokens, input.Ids.Length);
        long bytes = Measure("heads (thumbnails of 144 heads)", () => views.Heads(input));
        // One head's pattern, the answer (144 thumbnails, under 1 MiB of JSON) and its bookkeeping: far under one layer.
        Assert.True(bytes < 3 * HeadBytes, $"{bytes} bytes for the model view; one layer's patterns are {Heads * HeadBytes}");
    }

    [Fact]
    public void TheTokenViewOfALongTextWorksInOneHeadsPatternAtATime()
    {
        var source = new SyntheticSource(Layers, Heads, maxTokens: Tokens);
        var views = new AttentionViews(source);
        var input = LongInput(source);
        long bytes = Measure("token (a row and a column per layer)", () => views.Token(input, Tokens / 2));
        Assert.True(bytes < 2 * HeadBytes, $"{bytes} bytes for the token view; one layer's patterns are {Heads * HeadBytes}");
    }

    [Fact]
    public void TheMatrixViewOfALongTextComputesOnlyItsHead()
    {
        var source = new SyntheticSource(Layers, Heads, maxTokens: Tokens);
        var views = new AttentionViews(source);
        var input = LongInput(source);
        long bytes = Measure("pattern (one head)", () => views.Pattern(input, 11, [5]));
        // The answer itself is one T×T matrix (4 MiB as floats, about 6 MiB as JSON); the work beside it, one head.
        Assert.True(bytes < 5 * HeadBytes, $"{bytes} bytes for one head's matrix; one layer's patterns are {Heads * HeadBytes}");
    }

    [Fact]
    public void AModelsAnalysisPassHoldsOneHeadsScoresAtATime()
    {
        // The forward pass the viewer captures q and k from: GPT-2's shape, narrow. Its attention runs one head at a
        // time (the hooked reference path), so its scratch is [T, T], not [H, T, T] twice. Allocations on other
        // threads (the matrix products' workers) are not counted, and those hold no patterns.
        var config = ModelPresets.Get("gpt2") with { VocabSize = 256, Channels = 96, HiddenChannels = 384 };
        var model = Transformer.Create(config.Validated(), seed: 3);
        var source = new ModelSource(model, new global::HeadLens.Tokenization.ByteTokenizer(), "gpt2-shaped");
        int[] ids = Enumerable.Range(0, Tokens).Select(i => 97 + (i % 26)).ToArray();
        source.ContextVectors([.. ids[..8]], 0);
        long before = GC.GetAllocatedBytesForCurrentThread();
        source.ContextVectors(ids, 0);
        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        // What the pass keeps: q, k (L × T × C each) and the residual stream (L + 1 of them), 4 bytes a value.
        long captured = ((3L * Layers) + 1) * Tokens * config.Channels * sizeof(float);
        output.WriteLine($"forward pass at {Tokens} tokens: {bytes / 1048576.0:F1} MiB allocated on the calling thread, {captured / 1048576.0:F1} MiB captured");
        // Beside them, the pass's [T, C] working buffers and its two [T, T] scratch buffers: about 15 MiB here, where
        // one layer's scores and pattern would be 96 MiB.
        Assert.True(bytes < captured + (6 * HeadBytes), $"{bytes} bytes for one forward pass; one layer's scores and pattern would add {2 * Heads * HeadBytes}");
    }
}
