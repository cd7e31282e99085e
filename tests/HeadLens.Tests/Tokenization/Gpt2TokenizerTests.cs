using System.IO.Compression;
using System.Text.Json;
using HeadLens.Tokenization;

namespace HeadLens.Tests.Tokenization;

public class Gpt2TokenizerTests
{
    private static readonly string[][] PairMerges = [["h", "i"]];
    private static readonly string[] TextMerges = ["h i"];
    private static readonly string Dir = Path.Combine(AppContext.BaseDirectory, "Fixtures", "gpt2-tokenizer");

    internal static Gpt2Tokenizer Load() => Gpt2Tokenizer.FromText(Gunzip("vocab.json.gz"), Gunzip("merges.txt.gz"));

    [Fact]
    public void IdsMatchTheGpt3EncoderReference()
    {
        // tests/reference/gpt2_tokenizer_ids.js: contractions, digits, runs of spaces and tabs, accents, CJK, emoji.
        var tokenizer = Load();
        string text = File.ReadAllText(Path.Combine(Dir, "sample.txt"));
        int[] expected = JsonSerializer.Deserialize<int[]>(File.ReadAllText(Path.Combine(Dir, "sample.ids.json")))!;
        Assert.Equal(expected, tokenizer.Encode(text));
        Assert.Equal(text, tokenizer.Decode(expected));
        Assert.Equal(50257, tokenizer.VocabSize);
        Assert.Equal(50256, tokenizer.EosId);
    }

    [Fact]
    public void SaveAndTokenizerJsonGiveTheSameIds()
    {
        var tokenizer = Load();
        string text = File.ReadAllText(Path.Combine(Dir, "sample.txt"));
        string directory = Path.Combine(Path.GetTempPath(), "headlens-tok-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
        try
        {
            tokenizer.Save(directory);
            Assert.Equal(tokenizer.Encode(text), TokenizerLoader.FromDirectory(directory)!.Encode(text));
            // The same vocabulary as a Hugging Face tokenizer.json (merges as "left right" strings).
            var vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(Gunzip("vocab.json.gz"))!;
            var merges = Gunzip("merges.txt.gz").Split('\n').Where(l => l.Length > 0 && !l.StartsWith("#version", StringComparison.Ordinal)).ToArray();
            string json = JsonSerializer.Serialize(new { model = new { type = "BPE", vocab, merges } });
            string path = Path.Combine(directory, "tokenizer.json");
            File.WriteAllText(path, json);
            Assert.Equal(tokenizer.Encode(text), Gpt2Tokenizer.FromTokenizerJson(path).Encode(text));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void TokenizerJsonAddedTokensAndSentencePieceRefusal()
    {
        string directory = Path.Combine(Path.GetTempPath(), "headlens-tokjson-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
        try
        {
            // <|endoftext|> only among the added tokens (as many tokenizer.json files have it), merges as pairs.
            var vocab = new Dictionary<string, int> { ["h"] = 0, ["i"] = 1, ["hi"] = 2, ["Ġ"] = 3 };
            string path = Path.Combine(directory, "tokenizer.json");
            File.WriteAllText(path, JsonSerializer.Serialize(new
            {
                added_tokens = new[] { new { id = 4, content = "<|endoftext|>", special = true } },
                pre_tokenizer = new { type = "ByteLevel" },
                model = new { type = "BPE", vocab, merges = PairMerges },
            }));
            var tokenizer = Gpt2Tokenizer.FromTokenizerJson(path);
            Assert.Equal((5, 4), (tokenizer.VocabSize, tokenizer.EosId));
            // "hi hi" → words "hi", " hi" → [hi], [Ġ, hi] (Ġ is the space byte; there is no "Ġhi" merge).
            Assert.Equal([2, 3, 2], tokenizer.Encode("hi hi"));
            Assert.Equal("hi hi", tokenizer.Decode([2, 3, 2]));

            // A Llama-style tokenizer.json (Metaspace, byte fallback) would give wrong ids silently: refused by name.
            File.WriteAllText(path, JsonSerializer.Serialize(new
            {
                pre_tokenizer = new { type = "Metaspace", replacement = "▁" },
                model = new { type = "BPE", byte_fallback = true, vocab, merges = TextMerges },
            }));
            var error = Assert.Throws<HeadLensException>(() => TokenizerLoader.FromDirectory(directory));
            Assert.Contains("tokenizer.json", error.Message);
            Assert.Contains("SentencePiece", error.Message);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void UnknownIdIsNamed() =>
        Assert.Contains("99999", Assert.Throws<HeadLensException>(() => Load().Decode([99999])).Message);

    private static string Gunzip(string name)
    {
        using var stream = new GZipStream(File.OpenRead(Path.Combine(Dir, name)), CompressionMode.Decompress);
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
