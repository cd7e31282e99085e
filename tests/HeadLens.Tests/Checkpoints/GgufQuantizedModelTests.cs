using HeadLens.Analysis;
using HeadLens.Checkpoints.Gguf;
using HeadLens.Kernels.Quantized;
using HeadLens.Model;

namespace HeadLens.Tests.Checkpoints;

/// <summary>
/// GGUF models opened with their matrices kept in the file's types (<see cref="GgufModel.Open(string)"/>) against the same
/// file read the reference way (<see cref="GgufModel.Load"/>: every tensor dequantized to fp32): every inference pass
/// — the batched Infer (few-vector and panel products), the analysis Run, token-by-token decoding — gives the same
/// logits to float rounding, and the model refuses to train in one line.
/// </summary>
public sealed class GgufQuantizedModelTests : IDisposable
{
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-ggufq-" + Guid.NewGuid().ToString("N"));

    public GgufQuantizedModelTests() => Directory.CreateDirectory(directory);

    public void Dispose() => Directory.Delete(directory, recursive: true);

    public static TheoryData<string, GgufWriteType> Cases
    {
        get
        {
            var cases = new TheoryData<string, GgufWriteType>();
            foreach (string family in new[] { "llama", "qwen2", "gpt2", "gpt2-untied" })
            {
                foreach (var type in new[] { GgufWriteType.F32, GgufWriteType.F16, GgufWriteType.Q8_0 })
                {
                    cases.Add(family, type);
                }
            }

            return cases;
        }
    }

    /// <summary>|a − b| ≤ 1e-5 · max(1, max|b|) at every position: the kept-type products sum in another order than fp32's.</summary>
    internal static void AssertClose(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = 1;
        foreach (float value in expected)
        {
            scale = Math.Max(scale, Math.Abs(value));
        }

        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
        }

        Assert.True(worst <= 1e-5 * scale, $"{what}: largest difference {worst} (logits up to {scale})");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void KeptTypesGiveTheReferenceLogitsInEveryPass(string family, GgufWriteType type)
    {
        var model = Transformer.Create(GgufTests.Family(family), seed: 21);
        string path = Path.Combine(directory, $"{family}-{type}.gguf");
        GgufWriter.Write(path, model, null, type);
        var (reference, _) = GgufModel.Load(path);
        var (kept, _) = GgufModel.Open(path);
        Assert.True(kept.Parameters.HasStoredMatrices);
        Assert.Equal(type == GgufWriteType.F32 ? GgmlType.F32 : type == GgufWriteType.F16 ? GgmlType.F16 : GgmlType.Q8_0, kept.Parameters.Layer(1).Query.Type);
        Assert.Null(kept.Parameters.Layer(1).Query.Dense);
        // Only vectors (norms, biases) and tables that are not products (positions) take arena space.
        long arena = kept.Parameters.Arena.All.Length;
        Assert.True(arena < reference.Parameters.Arena.All.Length / 4, $"{arena} fp32 values in the kept model's arena");

        // 3 tokens: the few-vector products; 13: dequantized panels through Gemm.
        foreach (int[] ids in new[] { new[] { 1, 17, 42 }, new[] { 1, 17, 42, 299, 5, 5, 123, 7, 250, 3, 60, 8, 9 } })
        {
            AssertClose(GgufTests.Logits(kept, ids), GgufTests.Logits(reference, ids), $"{family} {type} Infer of {ids.Length}");
            AssertClose(kept.Run(ids).Logits, reference.Run(ids).Logits, $"{family} {type} Run of {ids.Length}");
        }

        // Decoding: the prompt in one step, then one token at a time.
        var keptCache = kept.NewCache(32);
        var referenceCache = reference.NewCache(32);
        var keptLogits = new float[model.Config.VocabSize];
        var referenceLogits = new float[model.Config.VocabSize];
        int[] prompt = [1, 200, 13, 77, 5, 150, 2, 9, 31, 64, 100];
        kept.DecodeStep(prompt, keptCache, keptLogits);
        reference.DecodeStep(prompt, referenceCache, referenceLogits);
        for (int step = 0; step < 5; step++)
        {
            AssertClose(keptLogits, referenceLogits, $"{family} {type} decode step {step}");
            int next = LlamaCpp.Argmax(referenceLogits);
            kept.DecodeStep([next], keptCache, keptLogits);
            reference.DecodeStep([next], referenceCache, referenceLogits);
        }
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2-untied")]
    public void CopyingScoresOfKeptTypesEqualTheReference(string family)
    {
        // The vocabulary spans several of the 1024-row chunks the kept tables are decoded in.
        var config = GgufTests.Family(family) with { VocabSize = 2500 };
        string path = Path.Combine(directory, $"{family}-copying.gguf");
        GgufWriter.Write(path, Transformer.Create(config, seed: 8), null, GgufWriteType.Q8_0);
        var (reference, _) = GgufModel.Load(path);
        var (kept, _) = GgufModel.Open(path);
        var expected = Circuits.CopyingScores(reference);
        var actual = Circuits.CopyingScores(kept);
        for (int l = 0; l < config.Layers; l++)
        {
            for (int h = 0; h < config.Heads; h++)
            {
                // The same fp32 products summed over the vocabulary in chunks instead of one Gemm: rounding only.
                Assert.True(Math.Abs(actual[l, h] - expected[l, h]) <= 1e-4, $"{family} layer {l} head {h}: {actual[l, h]} vs {expected[l, h]}");
            }
        }
    }

    /// <summary>
    /// Matrices copied onto 2 MiB pages (GgufModel.Open's copy, forced here for a small file) give the same
    /// logits as the matrices read in the mapping, bit for bit, in every pass; where the system has such pages, the
    /// model's products read the copy (the first copied matrix starts on a 2 MiB boundary; the mapping's do not).
    /// </summary>
    [Theory]
    [InlineData("gpt2", GgufWriteType.F32)]
    [InlineData("gpt2-untied", GgufWriteType.F16)]
    [InlineData("llama", GgufWriteType.F32)]
    [InlineData("llama", GgufWriteType.Q8_0)]
    public unsafe void LargePageCopiesGiveTheMappedLogitsBitForBit(string family, GgufWriteType type)
    {
        string path = Path.Combine(directory, $"{family}-{type}-large.gguf");
        GgufWriter.Write(path, Transformer.Create(GgufTests.Family(family), seed: 23), null, type);
        var (mapped, _) = GgufModel.Open(path, largePages: false);
        var (copied, _) = GgufModel.Open(path, largePageMinBytes: 0);
        // An untied embedding is read a row at a time and stays in the mapping; every other matrix is copied.
        var first = copied.Parameters.Stored.Where(pair => copied.Config.TiedEmbeddings || pair.Key != "token_embedding.weight")
            .Select(pair => pair.Value).MinBy(matrix => (long)matrix.Start)!;
        Assert.Equal(HeadLens.Tensors.HugePages.Available, (long)first.Start % (2 << 20) == 0);
        Assert.Equal(mapped.Parameters.Stored.Keys.Order(), copied.Parameters.Stored.Keys.Order());
        foreach (var (name, matrix) in mapped.Parameters.Stored)
        {
            Assert.True(matrix.Bytes.SequenceEqual(copied.Parameters.Stored[name].Bytes), name);
        }

        int[] ids = [1, 17, 42, 299, 5, 5, 123, 7, 250, 3, 60, 8, 9];
        Assert.Equal(GgufTests.Logits(mapped, ids), GgufTests.Logits(copied, ids));
        var mappedCache = mapped.NewCache(32);
        var copiedCache = copied.NewCache(32);
        var mappedLogits = new float[mapped.Config.VocabSize];
        var copiedLogits = new float[mapped.Config.VocabSize];
        mapped.DecodeStep(ids, mappedCache, mappedLogits);
        copied.DecodeStep(ids, copiedCache, copiedLogits);
        for (int step = 0; step < 4; step++)
        {
            Assert.Equal(mappedLogits, copiedLogits);
            int next = LlamaCpp.Argmax(mappedLogits);
            mapped.DecodeStep([next], mappedCache, mappedLogits);
            copied.DecodeStep([next], copiedCache, copiedLogits);
        }
    }

    [Fact]
    public void KeptTypesRefuseToTrainInOneLine()
    {
        string path = Path.Combine(directory, "q8.gguf");
        GgufWriter.Write(path, Transformer.Create(GgufTests.SmallLlama(), seed: 2), null, GgufWriteType.Q8_0);
        var (kept, _) = GgufModel.Open(path);
        int[] ids = [1, 2, 3, 4];
        var error = Assert.Throws<HeadLensException>(() => kept.Forward(ids, [2, 3, 4, 5], 1, 4));
        Assert.Contains("training needs fp32 weights", error.Message, StringComparison.Ordinal);
        Assert.Contains("Q8_0", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error.Message);
    }
}
