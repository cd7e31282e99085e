using HeadLens.Model;
using HeadLens.Tokenization;

namespace HeadLens.Checkpoints.Onnx;

/// <summary>
/// BERT-family encoders from ONNX files: the graph's weights (mapped to Hugging Face names by
/// <see cref="BertGraphMapper"/>) become a <see cref="Transformer"/> with BERT's features, through the same name table
/// and checks as a Hugging Face directory. The WordPiece vocabulary comes from <c>vocab.txt</c> beside the file.
/// </summary>
public static class OnnxModels
{
    public static (Transformer Model, ITokenizer? Tokenizer) Load(string path)
    {
        var checkpoint = BertOnnxCheckpoint.Load(path);
        string vocabulary = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".", "vocab.txt");
        var tokenizer = File.Exists(vocabulary) ? BertWordPieceTokenizer.FromVocabulary(vocabulary) : null;
        return (ToTransformer(checkpoint, Path.GetFileName(path)), tokenizer);
    }

    /// <summary>The encoder an ONNX checkpoint describes, with its weights; <paramref name="source"/> names it in errors.</summary>
    public static Transformer ToTransformer(BertOnnxCheckpoint checkpoint, string source)
    {
        var info = checkpoint.Config;
        var config = (ModelPresets.Bert(info.VocabSize, info.MaxPositions, info.Layers, info.Heads, info.Channels, info.MlpWidth) with
        {
            TokenTypes = info.TypeVocabSize,
            NormEpsilon = info.LayerNormEpsilon,
        }).Validated(source);
        return ModelFiles.FromTensors(config, new MappedTensors(checkpoint.Tensors), _ => source);
    }

    /// <summary>The mapped weights as a tensor source (float32, already in memory).</summary>
    private sealed class MappedTensors : ITensorSource
    {
        private readonly IReadOnlyDictionary<string, BertTensor> tensors;

        public MappedTensors(IReadOnlyDictionary<string, BertTensor> tensors)
        {
            this.tensors = tensors;
            Entries = tensors.ToDictionary(entry => entry.Key,
                entry => new SafeTensorInfo(entry.Key, "F32", entry.Value.Shape, 0, (long)entry.Value.Data.Length * sizeof(float)), StringComparer.Ordinal);
        }

        public IReadOnlyDictionary<string, SafeTensorInfo> Entries { get; }

        public void ReadFloat32(string tensorName, Span<float> destination) => tensors[tensorName].Data.CopyTo(destination);
    }
}
