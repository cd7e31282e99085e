using HeadLens.Checkpoints;
using HeadLens.Model;
using HeadLens.Tokenization;

namespace HeadLens.Cli;

/// <summary>The --model / --text / --ids arguments shared by the commands that run a model.</summary>
internal static class ModelInput
{
    /// <summary>Loads --model (a Hugging Face model directory); without it, the embedded default model.</summary>
    public static (Transformer Model, ITokenizer? Tokenizer, string Path) LoadModel(CommandArgs args)
    {
        string path = args.Get("model") ?? AppData.DefaultModel;
        string? tokenizerPath = args.Get("tokenizer");
        var (model, tokenizer) = ModelFiles.Load(path);
        if (tokenizerPath is not null)
        {
            // llama2.c models carry no tokenizer: their tokenizer.bin (or any model directory's tokenizer) comes here.
            tokenizer = Directory.Exists(tokenizerPath)
                ? TokenizerLoader.FromDirectory(tokenizerPath) ?? throw new HeadLensException($"{tokenizerPath}: no tokenizer files")
                : SentencePieceTokenizer.FromLlama2cFile(tokenizerPath, model.Config.VocabSize);
        }

        return (model, tokenizer, path);
    }

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

        if (ids!.Length == 0)
        {
            throw new HeadLensException($"--{textOption} encodes to no tokens");
        }

        foreach (int id in ids)
        {
            if (id >= model.Config.VocabSize)
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
