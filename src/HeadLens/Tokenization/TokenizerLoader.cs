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

        string llama2c = Path.Combine(directory, SentencePieceTokenizer.FileName);
        if (File.Exists(llama2c))
        {
            return SentencePieceTokenizer.FromLlama2cFile(llama2c);
        }

        return ByteTokenizer.FromDirectory(directory);
    }
}
