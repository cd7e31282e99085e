namespace HeadLens.Tokenization;

/// <summary>Finds the tokenizer a model directory carries: GPT-2 BPE files, a tokenizer.json, or HeadLens's byte marker.</summary>
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

        return ByteTokenizer.FromDirectory(directory);
    }
}
