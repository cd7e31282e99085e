using HeadLens.Checkpoints;
using HeadLens.Checkpoints.Gguf;
using HeadLens.Inference;
using HeadLens.Model;
using LLama;
using LLama.Common;
using LLama.Native;

namespace HeadLens.Tests.Checkpoints;

/// <summary>A [Fact] skipped, with the reason shown, where llama.cpp's native library (LLamaSharp.Backend.Cpu) cannot load.</summary>
public sealed class LlamaCppFactAttribute : FactAttribute
{
    public LlamaCppFactAttribute()
    {
        if (LlamaCpp.Unavailable.Value is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>llama.cpp in-process through LLamaSharp: one model, a fresh KV cache (F32) per call.</summary>
internal sealed class LlamaCpp : IDisposable
{
    public static readonly Lazy<string?> Unavailable = new(() =>
    {
        try
        {
            NativeLibraryConfig.All.WithLogCallback((level, message) => { });
            _ = NativeApi.llama_max_devices();
            return null;
        }
#pragma warning disable CA1031 // any failure to load the native library means: skip, saying why
        catch (Exception error)
#pragma warning restore CA1031
        {
            return $"llama.cpp's native library did not load ({error.GetType().Name}: {error.Message.Split('\n')[0]})";
        }
    });

    private readonly LLamaWeights weights;
    private readonly LLamaContext context;

    public LlamaCpp(string path, int contextSize)
    {
        var parameters = new ModelParams(path)
        {
            ContextSize = (uint)contextSize,
            GpuLayerCount = 0,
            Threads = 2,
            BatchThreads = 2,
            TypeK = GGMLType.GGML_TYPE_F32,
            TypeV = GGMLType.GGML_TYPE_F32,
            FlashAttention = false,
        };
        weights = LLamaWeights.LoadFromFile(parameters);
        context = weights.CreateContext(parameters);
    }

    /// <summary>The last position's logits after a fresh pass over <paramref name="ids"/>.</summary>
    public float[] LastLogits(int[] ids)
    {
        context.NativeHandle.MemoryClear(true);
        var batch = new LLamaBatch();
        for (int i = 0; i < ids.Length; i++)
        {
            batch.Add(ids[i], i, LLamaSeqId.Zero, i == ids.Length - 1);
        }

        Assert.Equal(DecodeResult.Ok, context.Decode(batch));
        return context.NativeHandle.GetLogitsIth(batch.TokenCount - 1).ToArray();
    }

    /// <summary>llama.cpp's token ids for <paramref name="text"/>: no BOS, special-token text taken as plain text.</summary>
    public int[] Tokenize(string text) =>
        [.. weights.Tokenize(text, false, false, System.Text.Encoding.UTF8).Select(token => (int)token)];

    /// <summary>Logits [T, V] at every position of a fresh pass over <paramref name="ids"/>.</summary>
    public float[] AllLogits(int[] ids)
    {
        context.NativeHandle.MemoryClear(true);
        var batch = new LLamaBatch();
        for (int i = 0; i < ids.Length; i++)
        {
            batch.Add(ids[i], i, LLamaSeqId.Zero, true);
        }

        Assert.Equal(DecodeResult.Ok, context.Decode(batch));
        var result = new List<float>();
        for (int i = 0; i < ids.Length; i++)
        {
            result.AddRange(context.NativeHandle.GetLogitsIth(i).ToArray());
        }

        return [.. result];
    }

    /// <summary>Greedy continuation: <paramref name="count"/> argmax tokens after the prompt, one decode call each.</summary>
    public int[] Greedy(int[] prompt, int count)
    {
        var logits = LastLogits(prompt);
        var result = new List<int>();
        for (int step = 0; step < count; step++)
        {
            int next = Argmax(logits);
            result.Add(next);
            var batch = new LLamaBatch();
            batch.Add(next, prompt.Length + step, LLamaSeqId.Zero, true);
            Assert.Equal(DecodeResult.Ok, context.Decode(batch));
            logits = context.NativeHandle.GetLogitsIth(0).ToArray();
        }

        return [.. result];
    }

    public static int Argmax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
            {
                best = i;
            }
        }

        return best;
    }

    public void Dispose()
    {
        context.Dispose();
        weights.Dispose();
    }
}

/// <summary>llama.cpp as the peer: files HeadLens writes run in llama.cpp with the same numbers.</summary>
public sealed class LlamaCppTests(Xunit.Abstractions.ITestOutputHelper output) : IDisposable
{
    private static readonly string Fixtures = Path.Combine(AppContext.BaseDirectory, "Fixtures", "llama2c");
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-llamacpp-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(directory))
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private static int[] HeadLensGreedy(Transformer model, int[] prompt, int count)
    {
        var cache = model.NewCache(prompt.Length + count + 1);
        var logits = new float[model.Config.VocabSize];
        model.DecodeStep(prompt, cache, logits);
        var result = new int[count];
        for (int step = 0; step < count; step++)
        {
            result[step] = LlamaCpp.Argmax(logits);
            model.DecodeStep([result[step]], cache, logits);
        }

        return result;
    }

    [LlamaCppFact]
    public void RandomGqaLlamaWrittenAsF32AgreesWithLlamaCpp()
    {
        // Weights scaled up from the init so that the logits spread (a near-uniform model would make greedy ties).
        var config = GgufTests.SmallLlama(vocab: 320) with { Layers = 3, ContextLength = 128 };
        var model = Transformer.Create(config, seed: 11);
        var all = model.Parameters.Arena.All;
        for (int i = 0; i < all.Length; i++)
        {
            all[i] *= 4;
        }

        foreach (var layer in Enumerable.Range(0, config.Layers).Select(model.Parameters.Layer))
        {
            layer.AttentionNorm.Span.Fill(1);
            layer.MlpNorm!.Span.Fill(1);
        }

        model.Parameters.FinalNorm.Span.Fill(1);
        Directory.CreateDirectory(directory);
        string path = Path.Combine(directory, "llama-gqa-f32.gguf");
        GgufWriter.Write(path, model, GgufTests.PlaceholderLlamaVocabulary(320));
        using var peer = new LlamaCpp(path, 128);
        int[] prompt = [1, 300, 17, 99, 260, 5, 42, 200, 7, 311, 64];
        var theirs = peer.LastLogits(prompt);
        var ours = GgufTests.Logits(model, prompt).AsSpan((prompt.Length - 1) * config.VocabSize, config.VocabSize).ToArray();
        double worst = Enumerable.Range(0, ours.Length).Max(i => Math.Abs(ours[i] - theirs[i]));
        Assert.True(worst <= 1e-4 * Math.Max(1, ours.Max(Math.Abs)), $"largest logit difference {worst} (logits up to {ours.Max(Math.Abs)})");

        // And the file read back by HeadLens (interleaved Q/K as llama.cpp stores them) decodes as llama.cpp does.
        var (loaded, _) = GgufModel.Load(path);
        var greedy = peer.Greedy(prompt, 20);
        Assert.Equal(greedy, HeadLensGreedy(loaded, prompt, 20));
        Assert.Equal(greedy, HeadLensGreedy(model, prompt, 20));
    }

    public static TheoryData<string, GgufWriteType> PeerCases => new()
    {
        { "gpt2", GgufWriteType.F32 },
        { "gpt2", GgufWriteType.F16 },
        { "llama-gqa", GgufWriteType.F16 },
    };

    [LlamaCppTheory]
    [MemberData(nameof(PeerCases))]
    public void RandomModelsWrittenAsGgufAgreeWithLlamaCpp(string family, GgufWriteType type)
    {
        bool gpt2 = family == "gpt2";
        var config = gpt2 ? ModelPresets.Gpt2(vocab: 320, context: 128, layers: 3, heads: 4, channels: 64)
            : GgufTests.SmallLlama(vocab: 320) with { Layers = 3, ContextLength = 128 };
        var model = Transformer.Create(config, seed: 13);
        var all = model.Parameters.Arena.All;
        for (int i = 0; i < all.Length; i++)
        {
            all[i] *= 4; // spread the logits (clear argmaxes); norms back to 1 below, biases stay 0
        }

        foreach (var (name, parameter, _, decay) in model.NamedParameters())
        {
            if (!decay && name.Contains("norm", StringComparison.Ordinal) && name.EndsWith(".weight", StringComparison.Ordinal))
            {
                parameter.Span.Fill(1);
            }
        }

        Directory.CreateDirectory(directory);
        string path = Path.Combine(directory, $"{family}-{type}.gguf");
        GgufWriter.Write(path, model, null, type);
        var (ours, _) = GgufModel.Open(path);
        using var peer = new LlamaCpp(path, 128);
        int[] prompt = [1, 300, 17, 99, 260, 5, 42, 200, 7, 311, 64];
        var theirs = peer.LastLogits(prompt);
        var mine = GgufTests.Logits(ours, prompt).AsSpan((prompt.Length - 1) * config.VocabSize, config.VocabSize).ToArray();
        double worst = Enumerable.Range(0, mine.Length).Max(i => Math.Abs(mine[i] - theirs[i]));
        double scale = Math.Max(1, mine.Max(Math.Abs));
        // GPT-2: llama.cpp's GELU is an fp16 table (about 1e-3 from the exact function); F16 files: llama.cpp rounds
        // the activations to fp16 before each product (relative 2⁻¹¹), HeadLens multiplies them in fp32.
        double tolerance = 3e-3;
        output.WriteLine($"{family} {type}: largest logit difference from llama.cpp {worst:G3} (logits up to {scale:G3})");
        Assert.True(worst <= tolerance * scale, $"{family} {type}: largest logit difference {worst} (logits up to {scale})");
        Assert.Equal(peer.Greedy(prompt, 20), HeadLensGreedy(ours, prompt, 20));
    }

    [Fact]
    public void RealLlama2cModelAsGgufReproducesRunCsGreedyIds()
    {
        int[] expected = File.ReadAllText(Path.Combine(Fixtures, "llama2c-260k.greedy-ids.txt"))
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();
        var original = Llama2cFile.Load(Path.Combine(Fixtures, "llama2c-260k.bin"));
        Directory.CreateDirectory(directory);
        string path = Path.Combine(directory, "llama2c-260k-f32.gguf");
        GgufWriter.Write(path, original, GgufTests.PlaceholderLlamaVocabulary(512));
        var (model, tokenizer) = GgufModel.Load(path);
        Assert.Equal(1, tokenizer!.BosId);
        var ids = Generator.Generate(model, [1], 200, new Sampler(new SamplingSettings { Temperature = 0f })).ToArray();
        Assert.Equal(expected, ids);
        Assert.Equal(expected, HeadLensGreedy(model, [1], 200));
    }

    [LlamaCppFact]
    public void RealLlama2cModelAsGgufRunsInLlamaCppToTheSameIds()
    {
        int[] expected = File.ReadAllText(Path.Combine(Fixtures, "llama2c-260k.greedy-ids.txt"))
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();
        Directory.CreateDirectory(directory);
        string path = Path.Combine(directory, "llama2c-260k-f32.gguf");
        GgufWriter.Write(path, Llama2cFile.Load(Path.Combine(Fixtures, "llama2c-260k.bin")), GgufTests.PlaceholderLlamaVocabulary(512));
        using var peer = new LlamaCpp(path, 512);
        Assert.Equal(expected, peer.Greedy([1], 200));
    }
}
