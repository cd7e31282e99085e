namespace HeadLens.Checkpoints.Onnx;

/// <summary>
/// A BERT-family encoder's hyper-parameters as read from its ONNX graph (see <see cref="BertGraphMapper"/> for how
/// each is found). The activation is always the exact erf GELU (the mapper refuses any other), the blocks are
/// post-norm, and attention is bidirectional with a padding mask.
/// </summary>
/// <param name="Layers">Encoder blocks.</param>
/// <param name="Heads">Attention heads per block (from the Reshape that splits the heads, checked against the score scale).</param>
/// <param name="Channels">Residual width C (the word embedding's columns).</param>
/// <param name="MlpWidth">The intermediate (MLP) width.</param>
/// <param name="MaxPositions">Rows of the learned position embedding.</param>
/// <param name="VocabSize">Rows of the word embedding.</param>
/// <param name="TypeVocabSize">Rows of the token-type (segment) embedding.</param>
/// <param name="LayerNormEpsilon">The ε every LayerNorm adds to the variance (one value for the whole graph).</param>
public sealed record BertConfigInfo(int Layers, int Heads, int Channels, int MlpWidth, int MaxPositions, int VocabSize,
    int TypeVocabSize, float LayerNormEpsilon)
{
    public int HeadSize => Channels / Heads;
}

/// <summary>One mapped weight: its Hugging Face shape and row-major float32 data.</summary>
public sealed record BertTensor(int[] Shape, float[] Data);

/// <summary>
/// A BERT encoder read from ONNX: the config, the weights under Hugging Face BERT names and layouts
/// (<c>encoder.layer.0.attention.self.query.weight</c> [out, in], ...), and the names of the graph values that
/// hold each layer's attention probabilities (the Softmax outputs, [B, H, T, T]), so that a runtime can be asked for
/// them. Graph inputs are named as in the file (<see cref="InputIdsName"/> ...).
/// </summary>
public sealed record BertOnnxCheckpoint(
    BertConfigInfo Config,
    IReadOnlyDictionary<string, BertTensor> Tensors,
    IReadOnlyList<string> AttentionProbabilityOutputs,
    string InputIdsName,
    string? AttentionMaskName,
    string? TokenTypeIdsName,
    string LastHiddenStateName)
{
    /// <summary>Reads and maps an ONNX file.</summary>
    public static BertOnnxCheckpoint Load(string path) => BertGraphMapper.Map(OnnxReader.Read(path));

    /// <summary>Reads and maps an ONNX model from a stream (an embedded resource); <paramref name="source"/> names it in errors.</summary>
    public static BertOnnxCheckpoint Load(Stream stream, string source) => BertGraphMapper.Map(OnnxReader.Read(stream, source));
}
