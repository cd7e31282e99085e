using HeadLens.Checkpoints.Gguf;
using HeadLens.Model;
using HeadLens.Tokenization;

namespace HeadLens.Tests.Checkpoints;

/// <summary>
/// Token ids from a GGUF file's vocabulary, HeadLens against llama.cpp's tokenizer (LLamaSharp) on a varied text
/// set: byte-level BPE ("gpt2" model) with each pre-tokenizer of the architectures in scope (gpt-2, llama-bpe for
/// Llama 3, qwen2), and SentencePiece ("llama" model, scores and byte fallback). The vocabularies are learned here
/// from a little English text (BpeTrainer), so every text mixes merged pieces, single bytes and unknown scripts.
/// </summary>
public sealed class LlamaCppTokenizerTests : IDisposable
{
    private static readonly string[] Texts =
    [
        "Hello world",
        "In the beginning God created the heaven and the earth.",
        "  leading spaces, and trailing  ",
        "numbers 1234567 and 3.14159, the 42nd of 2024",
        "don't won't I'LL we've THEY'RE it's",
        "tabs\tand\nnewlines\n\n\nthree\r\nand CRLF",
        "Ünïcödé façade naïve café — “quotes” ‘and’ ellipsis…",
        "中文字符 日本語 한국어 Ελληνικά русский",
        "emoji 🙂🚀 mixed in👍text",
        "symbols: @#$%^&*()_+-=[]{};':\",./<>?|\\~`",
        "a    b     c",
        "x",
        "And the earth was without form, and void; and darkness was upon the face of the deep.",
    ];

    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-llamatok-" + Guid.NewGuid().ToString("N"));

    public LlamaCppTokenizerTests() => Directory.CreateDirectory(directory);

    public void Dispose() => Directory.Delete(directory, recursive: true);

    private static string Corpus => string.Join("\n", Texts.Take(2).Concat(Texts.TakeLast(1))) +
        " the and of to in that he shall unto for his I a they be is him not them it with all thou thy was God which my me said but ye their have will when";

    [LlamaCppTheory]
    [InlineData("gpt-2")]
    [InlineData("llama-bpe")]
    [InlineData("qwen2")]
    [InlineData("llama")]
    public void TokenIdsEqualLlamaCpps(string kind)
    {
        var trained = BpeTrainer.Train(Corpus, 400);
        var tokenizer = kind == "llama" ? SentencePieceFrom(trained)
            : GgufTokenizer.Create(GgufTokenizer.ToVocabulary(trained) with { Pre = kind, AddBos = false });
        var config = kind == "gpt-2" ? ModelPresets.Gpt2(tokenizer.VocabSize, 64, 1, 2, 16)
            : ModelPresets.Llama(tokenizer.VocabSize, context: 64, layers: 1, heads: 2, kvHeads: 2, channels: 32, hidden: 32);
        string path = Path.Combine(directory, kind + ".gguf");
        GgufWriter.Write(path, Transformer.Create(config, seed: 1), tokenizer);
        var (_, read) = GgufModel.Open(path);
        using var peer = new LlamaCpp(path, 64);
        foreach (string text in Texts)
        {
            int[] ours = read!.Encode(text);
            Assert.True(peer.Tokenize(text).SequenceEqual(ours),
                $"{kind} '{text}': llama.cpp [{string.Join(",", peer.Tokenize(text))}], HeadLens [{string.Join(",", ours)}]");
        }
    }

    /// <summary>
    /// A llama (SentencePiece) vocabulary from a trained byte-level one: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, the 256
    /// byte tokens, then every learned piece that is whole UTF-8 text (spaces as '▁'), scored by merge order.
    /// </summary>
    private static GgufTokenizer SentencePieceFrom(Gpt2Tokenizer trained)
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { GgufVocabulary.Unknown, GgufVocabulary.Control, GgufVocabulary.Control };
        for (int b = 0; b < 256; b++)
        {
            tokens.Add($"<0x{b:X2}>");
            types.Add(GgufVocabulary.Byte);
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int id = 0; id < trained.VocabSize; id++)
        {
            string text = trained.Decode([id]);
            if (text.Length == 0 || text.Contains('\uFFFD') || text.Any(char.IsControl) || text.StartsWith("<|", StringComparison.Ordinal))
            {
                continue;
            }

            string piece = text.Replace(' ', '\u2581');
            if (seen.Add(piece))
            {
                tokens.Add(piece);
                types.Add(GgufVocabulary.Normal);
            }
        }

        return GgufTokenizer.Create(new GgufVocabulary("llama", tokens)
        {
            Scores = tokens.Select((_, id) => -(float)id).ToArray(),
            TokenTypes = types,
            BosId = 1,
            EosId = 2,
            UnknownId = 0,
            AddBos = true,
        });
    }
}
