using HeadLens.Checkpoints.Gguf;
using HeadLens.Model;
using LLama;
using LLama.Native;
using Xunit.Abstractions;

namespace HeadLens.Tests.Checkpoints;

/// <summary>
/// The opt-in 8-bit activations (<see cref="Transformer.UseQ8Activations"/>, `--activations q8`) on files made by
/// llama.cpp's own quantizer (the wide Llama of <see cref="LlamaCppQuantizedTests"/>, Q8_0 and Q4_K_M): how far the
/// logits move from HeadLens's fp32 products, and how close they come to llama.cpp's, which quantizes its activations
/// the same way (Q8_K: 127/amax per 256 values, rounded to nearest even; for Q8_0 it keeps the block scale in fp16
/// where HeadLens keeps float32). The prompt pass and decoding give the same q8 logits, and the option turns off again.
/// </summary>
public sealed class Q8ActivationModelTests(ITestOutputHelper output) : IDisposable
{
    private const int Vocabulary = 512;
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-q8act-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(directory))
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private static double RootMeanSquare(float[] a, float[] b) =>
        Math.Sqrt(Enumerable.Range(0, a.Length).Average(i => ((double)a[i] - b[i]) * ((double)a[i] - b[i])));

    private static int Agreement(float[] a, float[] b, int positions)
    {
        int agree = 0;
        for (int t = 0; t < positions; t++)
        {
            agree += LlamaCpp.Argmax(a.AsSpan(t * Vocabulary, Vocabulary)) == LlamaCpp.Argmax(b.AsSpan(t * Vocabulary, Vocabulary)) ? 1 : 0;
        }

        return agree;
    }

    // Measured on the Ice Lake Xeon (llama.cpp's AVX-512 build), 64 positions, logits RMS 1.28:
    //   Q4_K_M: q8 vs fp32 (HeadLens) RMS 0.049; q8 vs llama.cpp 0.0185, where fp32 vs llama.cpp is 0.049; argmax
    //           agrees with llama.cpp at 59/64 (fp32: 52/64); q8 decoding vs q8 prompt pass RMS 0.0006 (max 0.015).
    //   Q8_0:   q8 vs fp32 RMS 0.026; q8 vs llama.cpp 0.027, fp32 vs llama.cpp 0.027 (not closer: llama.cpp's own Q8_0
    //           activations did not come out as HeadLens's, unexplained); argmax 61/64 (fp32: 62/64); decoding vs
    //           prompt RMS 0.003 (max 0.072).
    // Decoding and the prompt pass differ at all because they sum in other orders (the prompt's attention is another
    // kernel; with AVX, Q8_0's prompt products go through the fp32 panel product, while the K-quants' blocked integer
    // product and, without AVX2, DecodedRow give the decode steps' bits): an activation that moves by an ulp can round
    // to the next 8-bit step, which the later layers carry on.
    [LlamaCppTheory]
    [InlineData(LLamaFtype.MOSTLY_Q8_0, 0.035, 0.90)]
    [InlineData(LLamaFtype.MOSTLY_Q4_K_M, 0.025, 0.85)]
    public void Q8ActivationsMoveTheLogitsByTheirRoundingAndComeCloseToLlamaCpp(LLamaFtype ftype, double peerBound, double argmaxAgreement)
    {
        Directory.CreateDirectory(directory);
        string f32 = Path.Combine(directory, "wide-f32.gguf"), quantized = Path.Combine(directory, $"wide-{ftype}.gguf");
        GgufWriter.Write(f32, LlamaCppQuantizedTests.WideLlama(seed: 17), GgufTests.PlaceholderLlamaVocabulary(Vocabulary));
        Assert.True(LLamaQuantizer.Quantize(f32, quantized, ftype, nthread: 2, quantizeOutputTensor: true), $"llama.cpp could not quantize to {ftype}");

        var random = new Random(5);
        int[] ids = [1, .. Enumerable.Range(0, 63).Select(_ => random.Next(3, Vocabulary))];
        var (model, _) = GgufModel.Open(quantized);
        var fp32 = GgufTests.Logits(model, ids);
        model.UseQ8Activations();
        Assert.True(model.QuantizesActivations);
        var q8 = GgufTests.Logits(model, ids);

        // Decoding the text one token at a time: the same x̂ times the same weights (integer dots one vector at a time;
        // the prompt pass multiplies x̂ as floats through the panel product).
        var cache = model.NewCache(ids.Length);
        var decoded = new float[q8.Length];
        for (int t = 0; t < ids.Length; t++)
        {
            model.DecodeStep([ids[t]], cache, decoded.AsSpan(t * Vocabulary, Vocabulary));
        }

        model.UseQ8Activations(false);
        Assert.Equal(fp32, GgufTests.Logits(model, ids)); // off again: the fp32 products, bit for bit

        using var peer = new LlamaCpp(quantized, 128);
        var theirs = peer.AllLogits(ids);
        double moved = RootMeanSquare(q8, fp32), toPeer = RootMeanSquare(q8, theirs), fp32ToPeer = RootMeanSquare(fp32, theirs);
        int agree = Agreement(q8, theirs, ids.Length), agreeFp32 = Agreement(fp32, theirs, ids.Length);
        double decodeMoved = RootMeanSquare(decoded, q8);
        double decodeLargest = Enumerable.Range(0, q8.Length).Max(i => Math.Abs(decoded[i] - q8[i]));
        output.WriteLine($"{ftype}: q8 decoding vs q8 prompt pass RMS {decodeMoved:G3} (max {decodeLargest:G3}); q8 vs fp32 (HeadLens) RMS {moved:G3}; q8 vs llama.cpp RMS {toPeer:G3}; fp32 vs llama.cpp RMS {fp32ToPeer:G3}; " +
            $"argmax agrees with llama.cpp at {agree}/{ids.Length} (fp32: {agreeFp32}/{ids.Length}); logits RMS {RootMeanSquare(q8, new float[q8.Length]):G3}");

        // The 8-bit rounding of the activations moves the logits by about what an 8-bit rounding of the weights does
        // (LlamaCppQuantizedTests: Q8_0's weights moved them by RMS 0.042), far less than a 4-bit one.
        Assert.InRange(moved, 0.005, 0.05);
        Assert.True(decodeMoved <= 0.2 * moved, $"{ftype}: q8 decoding differs from the q8 prompt pass by RMS {decodeMoved}, a fifth of the q8 rounding's {moved}");
        Assert.True(toPeer <= peerBound, $"{ftype}: q8 differs from llama.cpp by RMS {toPeer} (bound {peerBound})");
        if (ftype == LLamaFtype.MOSTLY_Q4_K_M)
        {
            Assert.True(toPeer < 0.6 * fp32ToPeer, $"{ftype}: q8 is not closer to llama.cpp (RMS {toPeer}) than fp32 is ({fp32ToPeer})");
        }

        Assert.True(agree >= argmaxAgreement * ids.Length, $"{ftype}: argmax agrees with llama.cpp at {agree} of {ids.Length} positions");
    }
}
