using System.Buffers.Binary;
using System.Text;
using HeadLens.Tokenization;

namespace HeadLens.Tests.Tokenization;

public sealed class SentencePieceTokenizerTests : IDisposable
{
    // A small vocabulary laid out as llama2.c's tokenizer files are: <unk>, BOS, EOS, the 256 byte tokens, then
    // merged pieces with scores (higher merges first). Ids: " " 259, "h" 260, "e" 261, "l" 262, "o" 263, "he" 264,
    // "ll" 265, "llo" 266, "hello" 267, " hello" 268, "é" 269, "世" 270, "界" 271, "世界" 272, " w" 273, "w" 274,
    // "o w" 275 (a piece that spans a space), "lo" 276.
    private static readonly (string Piece, float Score)[] Pieces =
    [
        (" ", -1), ("h", -2), ("e", -3), ("l", -4), ("o", -5), ("he", -10), ("ll", -6), ("llo", -7), ("hello", -8),
        (" hello", -9), ("é", -11), ("世", -12), ("界", -13), ("世界", -14), (" w", -1), ("w", -16), ("o w", -0.5f),
        ("lo", -6),
    ];

    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-sp-" + Guid.NewGuid().ToString("N"));

    public SentencePieceTokenizerTests() => Directory.CreateDirectory(directory);

    public void Dispose() => Directory.Delete(directory, recursive: true);

    internal static List<(byte[] Piece, float Score)> Vocabulary()
    {
        var vocabulary = new List<(byte[], float)>
        {
            (Encoding.UTF8.GetBytes("<unk>"), 0), (Encoding.UTF8.GetBytes("\n<s>\n"), 0), (Encoding.UTF8.GetBytes("\n</s>\n"), 0),
        };
        for (int b = 0; b < 256; b++)
        {
            vocabulary.Add((Encoding.UTF8.GetBytes($"<0x{b:X2}>"), 0));
        }

        vocabulary.AddRange(Pieces.Select(p => (Encoding.UTF8.GetBytes(p.Piece), p.Score)));
        return vocabulary;
    }

    [Fact]
    public void EncodesAsRunCWorkedByHand()
    {
        var tokenizer = new SentencePieceTokenizer(Vocabulary());
        // [" ",h,e,l,l,o]: ll and lo tie at -6, the leftmost (ll) wins; then ll+o = llo (-7); he (-10);
        // he+llo = hello (-8); " "+hello = " hello" (-9).
        Assert.Equal([268], tokenizer.Encode("hello"));
        Assert.Equal([1, 268, 2], tokenizer.Encode("hello", bos: true, eos: true));
        // "lo" and "ll" tie at -6: the leftmost pair merges first, so "lll o" → ll·l·o → ll·lo (no "lllo" piece).
        Assert.Equal([259, 265, 276], tokenizer.Encode("lllo"));
        // A piece may span a space: " w" (-1) merges first, then "o"+" w" = "o w" (-0.5) takes the o from "hello".
        Assert.Equal(ExpectedHelloW(), tokenizer.Encode("hello w"));
        // Code points in the vocabulary are one token; others fall back to their UTF-8 bytes (id = byte + 3).
        Assert.Equal([259, 272, 269], tokenizer.Encode("世界é"));
        byte[] emoji = Encoding.UTF8.GetBytes("🙂");
        Assert.Equal([259, .. emoji.Select(b => b + 3)], tokenizer.Encode("🙂"));
        Assert.Empty(tokenizer.Encode(""));
        Assert.Equal([1], tokenizer.Encode("", bos: true, eos: false));
    }

    // "hello w" → [" ",h,e,l,l,o," ",w]: " w" (-1) → [.., o, " w"]; "o w" (-0.5) → [" ",h,e,l,l,"o w"];
    // ll (-6) → [" ",h,e,ll,"o w"]; he (-10) → [" ",he,ll,"o w"]; nothing else is a piece (" he", "hell"...).
    private static int[] ExpectedHelloW() => [259, 264, 265, 275];

    [Fact]
    public void HeapMergeMatchesRunCsQuadraticScan()
    {
        var tokenizer = new SentencePieceTokenizer(Vocabulary());
        var reference = new RunCReference(Vocabulary());
        var random = new Random(7);
        string alphabet = "helo w世界é\n🙂x";
        for (int trial = 0; trial < 500; trial++)
        {
            var text = new StringBuilder();
            int length = random.Next(0, 40);
            for (int i = 0; i < length; i++)
            {
                char c = alphabet[random.Next(alphabet.Length)];
                text.Append(char.IsSurrogate(c) ? "🙂" : c.ToString());
            }

            string sample = text.ToString();
            Assert.Equal(reference.Encode(sample), tokenizer.Encode(sample));
            Assert.Equal(sample, tokenizer.Decode([1, .. tokenizer.Encode(sample)]));
        }
    }

    [Fact]
    public void DecodeStripsTheDummySpaceAfterBosOnlyAndJoinsByteTokens()
    {
        var tokenizer = new SentencePieceTokenizer(Vocabulary());
        Assert.Equal("hello", tokenizer.Decode([1, 268]));
        Assert.Equal(" hello", tokenizer.Decode([268])); // mid-stream: the space is real
        Assert.Equal("hello hello", tokenizer.Decode([1, 268, 268, 2]));
        byte[] emoji = Encoding.UTF8.GetBytes("🙂");
        Assert.Equal("🙂", tokenizer.Decode(emoji.Select(b => b + 3).ToArray()));
        Assert.Equal("\uFFFD", tokenizer.Decode([emoji[0] + 3])); // a cut-off character is replaced, not thrown
        Assert.Contains("9999", Assert.Throws<HeadLensException>(() => tokenizer.Decode([9999])).Message);
        Assert.Equal((1, 2, true), (tokenizer.BosId, tokenizer.EosId, tokenizer.AddsBos));
    }

    [Fact]
    public void SavesAndLoadsLlama2cFiles()
    {
        var tokenizer = new SentencePieceTokenizer(Vocabulary());
        tokenizer.Save(directory);
        string path = Path.Combine(directory, SentencePieceTokenizer.FileName);
        byte[] file = File.ReadAllBytes(path);
        Assert.Equal(Vocabulary().Max(p => p.Piece.Length), BinaryPrimitives.ReadInt32LittleEndian(file));
        var loaded = SentencePieceTokenizer.FromLlama2cFile(path, Vocabulary().Count);
        var found = Assert.IsType<SentencePieceTokenizer>(TokenizerLoader.FromDirectory(directory));
        foreach (string text in new[] { "hello w", "世界é🙂 lllo", "" })
        {
            Assert.Equal(tokenizer.Encode(text), loaded.Encode(text));
            Assert.Equal(tokenizer.Encode(text), found.Encode(text));
        }

        Assert.Equal(Vocabulary().Count, found.VocabSize);
    }

    [Fact]
    public void BadTokenizerFilesAreNamedWithoutHugeAllocations()
    {
        new SentencePieceTokenizer(Vocabulary()).Save(directory);
        byte[] good = File.ReadAllBytes(Path.Combine(directory, SentencePieceTokenizer.FileName));
        string Message(byte[] bytes, int? vocabSize = null)
        {
            string path = Path.Combine(directory, "bad.bin");
            File.WriteAllBytes(path, bytes);
            long before = GC.GetAllocatedBytesForCurrentThread();
            var error = Assert.Throws<HeadLensException>(() => vocabSize is { } size
                ? SentencePieceTokenizer.FromLlama2cFile(path, size)
                : SentencePieceTokenizer.FromLlama2cFile(path));
            // A few times the file's size covers the file itself, its pieces and the strings; a lying count must
            // not allocate by what it claims.
            Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 8L * bytes.Length + 100_000, "allocation bounded by the file");
            Assert.Contains("bad.bin", error.Message);
            return error.Message;
        }

        Assert.Contains("truncated", Message(good[..2]));
        Assert.Contains("truncated at token", Message(good[..(good.Length - 3)]));
        Assert.Contains("cannot hold", Message(good, int.MaxValue));
        Assert.Contains("more than", Message(good, 100));
        byte[] lyingLength = (byte[])good.Clone();
        BinaryPrimitives.WriteInt32LittleEndian(lyingLength.AsSpan(4 + 4), 1 << 30); // token 0's byte length
        Assert.Contains("token 0 has length", Message(lyingLength));
        byte[] lyingMax = (byte[])good.Clone();
        BinaryPrimitives.WriteInt32LittleEndian(lyingMax, -1);
        Assert.Contains("max_token_length", Message(lyingMax));
    }

    /// <summary>llama2.c run.c's encode, transcribed plainly (a full left-to-right scan per merge): the oracle.</summary>
    private sealed class RunCReference(List<(byte[] Piece, float Score)> vocabulary)
    {
        private readonly List<string> pieces = vocabulary.Select(v => Encoding.Latin1.GetString(v.Piece)).ToList();

        public int[] Encode(string text)
        {
            byte[] bytes = Encoding.UTF8.GetBytes(text);
            var tokens = new List<int>();
            if (bytes.Length > 0)
            {
                tokens.Add(Lookup(" "));
            }

            var buffer = new List<byte>();
            for (int i = 0; i < bytes.Length; i++)
            {
                if ((bytes[i] & 0xC0) != 0x80)
                {
                    buffer.Clear();
                }

                buffer.Add(bytes[i]);
                if (i + 1 < bytes.Length && (bytes[i + 1] & 0xC0) == 0x80 && buffer.Count < 4)
                {
                    continue;
                }

                int id = Lookup(Encoding.Latin1.GetString([.. buffer]));
                tokens.AddRange(id >= 0 ? [id] : buffer.Select(b => b + 3));
                buffer.Clear();
            }

            while (true)
            {
                float bestScore = -1e10f;
                int bestId = -1, bestIndex = -1;
                for (int i = 0; i + 1 < tokens.Count; i++)
                {
                    int id = Lookup(pieces[tokens[i]] + pieces[tokens[i + 1]]);
                    if (id >= 0 && vocabulary[id].Score > bestScore)
                    {
                        (bestScore, bestId, bestIndex) = (vocabulary[id].Score, id, i);
                    }
                }

                if (bestIndex < 0)
                {
                    return [.. tokens];
                }

                tokens[bestIndex] = bestId;
                tokens.RemoveAt(bestIndex + 1);
            }
        }

        private int Lookup(string piece) => pieces.IndexOf(piece);
    }
}
