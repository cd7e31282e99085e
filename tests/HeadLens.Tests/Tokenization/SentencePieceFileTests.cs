using System.Buffers.Binary;
using System.Text;
using HeadLens.Tokenization;

namespace HeadLens.Tests.Tokenization;

public sealed class SentencePieceFileTests : IDisposable
{
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-sp-" + Guid.NewGuid().ToString("N"));

    public SentencePieceFileTests() => Directory.CreateDirectory(directory);

    public void Dispose() => Directory.Delete(directory, recursive: true);

    // A llama2.c-format vocabulary: <unk>, BOS, EOS, the 256 byte tokens, then pieces with scores (higher merges first).
    private static readonly (string Piece, float Score)[] Pieces =
    [
        (" ", -1f), ("h", -2f), ("e", -2f), ("l", -2f), ("o", -2f), ("w", -2f), ("r", -2f), ("d", -2f),
        ("he", -3f), ("ll", -3f), ("hell", -5f), ("hello", -6f), (" hello", -4f), ("wo", -7f), (" w", -8f), ("é", -2f),
    ];

    private string WriteTokenizer()
    {
        using var stream = new MemoryStream();
        void Int(int value)
        {
            Span<byte> bytes = stackalloc byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(bytes, value);
            stream.Write(bytes);
        }

        void Token(string piece, float score)
        {
            byte[] bytes = Encoding.UTF8.GetBytes(piece);
            Int(BitConverter.SingleToInt32Bits(score));
            Int(bytes.Length);
            stream.Write(bytes);
        }

        Int(16);
        Token("<unk>", 0);
        Token("\n<s>\n", 0);
        Token("\n</s>\n", 0);
        for (int b = 0; b < 256; b++)
        {
            Token($"<0x{b:X2}>", 0);
        }

        foreach (var (piece, score) in Pieces)
        {
            Token(piece, score);
        }

        string path = Path.Combine(directory, "tokenizer.bin");
        File.WriteAllBytes(path, stream.ToArray());
        return path;
    }

    private static int Id(string piece) => 259 + Array.FindIndex(Pieces, p => p.Piece == piece);

    [Fact]
    public void EncodesLikeRunCAndDecodesBack()
    {
        var tokenizer = SentencePieceTokenizer.FromLlama2cFile(WriteTokenizer(), 259 + Pieces.Length);
        // " hello" has the best score once " " and "hello" exist; "hello" forms from he + ll → hell + o.
        Assert.Equal([Id(" hello")], tokenizer.Encode("hello"));
        // 'x' is not a piece: byte fallback to <0x78> = 0x78 + 3; 'é' is a piece (one UTF-8 character).
        int[] ids = tokenizer.Encode("hello wx é");
        Assert.Equal([Id(" hello"), Id(" w"), 0x78 + 3, Id(" "), Id("é")], ids);
        Assert.Equal("hello wx é", tokenizer.Decode([1, .. ids])); // the space after BOS is stripped
        Assert.Equal(" hello wx é", tokenizer.Decode(ids)); // without BOS before it, the dummy-prefix space stays
        Assert.Equal("ü", tokenizer.Decode(tokenizer.Encode("ü")).TrimStart()); // two byte tokens, one character
        Assert.Equal(1, tokenizer.BosId);
        Assert.Equal(2, tokenizer.EosId);
    }

    [Fact]
    public void TruncatedFileIsRefused()
    {
        string path = WriteTokenizer();
        File.WriteAllBytes(path, File.ReadAllBytes(path)[..100]);
        Assert.Contains("tokenizer.bin", Assert.Throws<HeadLensException>(() => SentencePieceTokenizer.FromLlama2cFile(path, 275)).Message);
    }
}
