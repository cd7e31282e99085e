namespace HeadLens.Tokenization;

/// <summary>
/// Finds the tokenizer a model directory carries: GPT-2 BPE files (vocab.json + merges.txt), a Hugging Face
/// tokenizer.json, a llama2.c tokenizer.bin, or HeadLens's byte-tokenizer marker — in that order; null when none.
/// </summary>
public static class TokenizerLoader
{
    public static ITokenizer? FromDirectory(string directory)
    {
        string vocab = Path.Combine(directory, "vocab.json"), merges = Path.Combine(directory, "merges.txt");
        if (File.Exists(vocab) && File.Exists(merges))
        {
            return Gpt2Tokenizer.FromFiles(vocab, merges);
        }

        string json = Path.Combine(directory, "tokenizer.json");
        if (File.Exists(json))
        {
            return Gpt2Tokenizer.FromTokenizerJson(json);
        }

        // BERT-family: a WordPiece vocabulary (uncased unless the tokenizer config says otherwise).
        string wordPiece = Path.Combine(directory, "vocab.txt");
        if (File.Exists(wordPiece))
        {
            return BertWordPieceTokenizer.FromVocabulary(wordPiece, lowerCase: LowerCase(directory));
        }

        string llama2c = Path.Combine(directory, SentencePieceTokenizer.FileName);
        if (File.Exists(llama2c))
        {
            return SentencePieceTokenizer.FromLlama2cFile(llama2c);
        }

        return ByteTokenizer.FromDirectory(directory);
    }

    // tokenizer_config.json's do_lower_case (Hugging Face writes it for BERT tokenizers); uncased when absent.
    private static bool LowerCase(string directory)
    {
        string path = Path.Combine(directory, "tokenizer_config.json");
        if (!File.Exists(path))
        {
            return true;
        }

        try
        {
            return System.Text.Json.Nodes.JsonNode.Parse(InputFile.ReadAllText(path, InputFile.JsonLimit))?["do_lower_case"]?.GetValue<bool>() ?? true;
        }
        catch (Exception error) when (error is System.Text.Json.JsonException or InvalidOperationException or FormatException)
        {
            throw new HeadLensException($"{path}: malformed tokenizer config ({InputFile.Reason(error)})");
        }
    }
}
