using HeadLens.Checkpoints.Gguf;
using HeadLens.Kernels.Quantized;
using HeadLens.Model;
using LLama;
using LLama.Native;
using Xunit.Abstractions;

namespace HeadLens.Tests.Checkpoints;

/// <summary>
/// Files made by llama.cpp's own quantizer (LLamaQuantizer) from an F32 file HeadLens wrote: a Llama-shaped model
/// whose widths are multiples of 256 (the K-quant super-block), quantized to Q8_0 and to Q4_K_M (Q4_K with Q6_K for
/// some tensors). HeadLens opens them with the matrices kept in those types; its logits equal its own
/// dequantize-then-fp32 reference path, and agree with llama.cpp's, which differ only because llama.cpp also
/// quantizes the activations (to 8 bits per block) before each product.
/// </summary>
public sealed class LlamaCppQuantizedTests(ITestOutputHelper output) : IDisposable
{
    private const int Vocabulary = 512;
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-llamaq-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(directory))
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>A random GQA llama, weights scaled up from the init so that the logits spread (clear argmaxes).</summary>
    internal static Transformer WideLlama(int seed)
    {
        var config = ModelPresets.Llama(Vocabulary, context: 128, layers: 2, heads: 4, kvHeads: 2, channels: 256, hidden: 512);
        var model = Transformer.Create(config, seed);
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
        return model;
    }

    // Argmax agreement: issue 13 asks ≥ 95% for Q8_0 (measured 62/64); for Q4_K_M it asks for the figure (measured
    // 52/64, the random model's top logits are often close), guarded here with some room for near-ties that another
    // llama.cpp CPU build (AVX2 instead of AVX-512: other summation orders) may flip.
    [LlamaCppTheory]
    [InlineData(LLamaFtype.MOSTLY_Q8_0, 0.95)]
    [InlineData(LLamaFtype.MOSTLY_Q4_K_M, 0.75)]
    public void LlamaCppQuantizedFilesRunInHeadLensAsInLlamaCpp(LLamaFtype ftype, double argmaxAgreement)
    {
        Directory.CreateDirectory(directory);
        string f32 = Path.Combine(directory, "wide-f32.gguf"), quantized = Path.Combine(directory, $"wide-{ftype}.gguf");
        GgufWriter.Write(f32, WideLlama(seed: 17), GgufTests.PlaceholderLlamaVocabulary(Vocabulary));
        // quantizeOutputTensor as llama.cpp's llama-quantize does (LLamaSharp's default leaves output.weight in F32).
        Assert.True(LLamaQuantizer.Quantize(f32, quantized, ftype, nthread: 2, quantizeOutputTensor: true), $"llama.cpp could not quantize to {ftype}");

        var (kept, _) = GgufModel.Open(quantized);
        var (reference, _) = GgufModel.Load(quantized);
        var (exact, _) = GgufModel.Load(f32);
        var types = kept.Parameters.Stored.Values.Select(matrix => matrix.Type).ToHashSet();
        Assert.Contains(ftype == LLamaFtype.MOSTLY_Q8_0 ? GgmlType.Q8_0 : GgmlType.Q4_K, types);
        if (ftype == LLamaFtype.MOSTLY_Q4_K_M)
        {
            Assert.Contains(GgmlType.Q6_K, types);
        }

        // A 64-token text: BOS, then ids drawn from the vocabulary.
        var random = new Random(5);
        int[] ids = [1, .. Enumerable.Range(0, 63).Select(_ => random.Next(3, Vocabulary))];
        var ours = GgufTests.Logits(kept, ids);
        GgufQuantizedModelTests.AssertClose(ours, GgufTests.Logits(reference, ids), $"{ftype}: kept types against dequantize-then-fp32");

        // Decoding one token at a time takes the row dots that factor each block's terms (BlockDecoder.Dot512), not the
        // decode-then-Gemm path of the pass above: the same bound against the reference, step by step.
        var keptCache = kept.NewCache(ids.Length);
        var referenceCache = reference.NewCache(ids.Length);
        var keptStep = new float[Vocabulary];
        var referenceStep = new float[Vocabulary];
        for (int t = 0; t < 16; t++)
        {
            kept.DecodeStep([ids[t]], keptCache, keptStep);
            reference.DecodeStep([ids[t]], referenceCache, referenceStep);
            GgufQuantizedModelTests.AssertClose(keptStep, referenceStep, $"{ftype}: decode step {t}, kept types against dequantize-then-fp32");
        }

        using var peer = new LlamaCpp(quantized, 128);
        var theirs = peer.AllLogits(ids);
        var unquantized = GgufTests.Logits(exact, ids);
        int agree = 0;
        for (int t = 0; t < ids.Length; t++)
        {
            agree += LlamaCpp.Argmax(ours.AsSpan(t * Vocabulary, Vocabulary)) == LlamaCpp.Argmax(theirs.AsSpan(t * Vocabulary, Vocabulary)) ? 1 : 0;
        }

        double engines = RootMeanSquare(ours, theirs), weights = RootMeanSquare(ours, unquantized);
        double largest = Enumerable.Range(0, ours.Length).Max(i => Math.Abs(ours[i] - theirs[i]));
        output.WriteLine($"{ftype}: argmax agrees at {agree}/{ids.Length} positions; HeadLens vs llama.cpp (same file) RMS {engines:G3}, " +
            $"max {largest:G3}; the weights' own quantization (same engine, F32 file vs {ftype}) RMS {weights:G3}; logits RMS {RootMeanSquare(ours, new float[ours.Length]):G3}");

        // llama.cpp quantizes the activations to 8 bits per block (Q8_0 for Q8_0 weights, Q8_K for K-quants) before each
        // product; HeadLens multiplies them in fp32. An 8-bit rounding of x moves Σ w·x by about as much as the same
        // rounding of w does, and less than a 4- or 6-bit rounding of w: so the engines must differ by less than the
        // weights' own quantization moves the logits (measured: Q8_0 0.026 vs 0.042 RMS, Q4_K_M 0.049 vs 0.51, logits
        // RMS 1.28). A wrong decoding of any block format would differ by at least the weights' quantization.
        Assert.True(engines < weights, $"{ftype}: HeadLens and llama.cpp differ by RMS {engines}, the weights' quantization changes logits by {weights}");
        Assert.True(agree >= argmaxAgreement * ids.Length, $"{ftype}: argmax agrees at {agree} of {ids.Length} positions");
    }

    private static double RootMeanSquare(float[] a, float[] b) =>
        Math.Sqrt(Enumerable.Range(0, a.Length).Average(i => ((double)a[i] - b[i]) * ((double)a[i] - b[i])));
}

/// <summary>A [Theory] skipped, with the reason shown, where llama.cpp's native library cannot load.</summary>
public sealed class LlamaCppTheoryAttribute : TheoryAttribute
{
    public LlamaCppTheoryAttribute()
    {
        if (LlamaCpp.Unavailable.Value is { } reason)
        {
            Skip = reason;
        }
    }
}
