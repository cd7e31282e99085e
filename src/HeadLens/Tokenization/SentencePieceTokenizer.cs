using System.Buffers.Binary;
using System.Text;

namespace HeadLens.Tokenization;

/// <summary>
/// SentencePiece-style BPE as llama2.c's run.c implements it, from a llama2.c tokenizer file (int32
/// max_token_length, then per token: float32 score, int32 byte length, the bytes). Encoding: a dummy-prefix space,
/// then each UTF-8 character as its piece (or, when absent, its bytes as the byte tokens &lt;0xXX&gt; at id byte + 3),
/// then repeatedly merge the adjacent pair whose concatenation is a piece with the highest score. BOS = 1 (added by
/// callers through <see cref="BosId"/>), EOS = 2. Decoding strips the space that follows BOS and turns &lt;0xXX&gt;
/// pieces back into raw bytes.
/// </summary>
public sealed class SentencePieceTokenizer : ITokenizer
{
    private const int ByteTokenOffset = 3;
    private static readonly Encoding Latin1 = Encoding.Latin1;
    private readonly byte[][] pieces;
    private readonly float[] scores;
    private readonly Dictionary<string, int> lookup; // piece bytes as Latin-1 text → id (1:1 with bytes)
    private readonly int maxTokenLength;

    public SentencePieceTokenizer(byte[][] pieces, float[] scores, int maxTokenLength)
    {
        this.pieces = pieces;
        this.scores = scores;
        this.maxTokenLength = maxTokenLength;
        lookup = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = 0; id < pieces.Length; id++)
        {
            lookup.TryAdd(Latin1.GetString(pieces[id]), id);
        }
    }

    public int VocabSize => pieces.Length;

    public int? BosId => 1;

    public int? EosId => 2;

    public static SentencePieceTokenizer FromLlama2cFile(string path, int vocabSize)
    {
        string name = Path.GetFileName(path);
        if (!File.Exists(path))
        {
            throw new HeadLensException($"{path}: tokenizer file not found");
        }

        byte[] data = File.ReadAllBytes(path);
        int at = 0;
        int ReadInt()
        {
            if (at + 4 > data.Length)
            {
                throw new HeadLensException($"{name}: truncated tokenizer file (at byte {at})");
            }

            at += 4;
            return BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(at - 4));
        }

        int maxLength = ReadInt();
        var pieces = new byte[vocabSize][];
        var scores = new float[vocabSize];
        for (int id = 0; id < vocabSize; id++)
        {
            scores[id] = BitConverter.Int32BitsToSingle(ReadInt());
            int length = ReadInt();
            if (length < 0 || length > data.Length - at)
            {
                throw new HeadLensException($"{name}: token {id} claims {length} bytes, past the end of the file");
            }

            pieces[id] = data.AsSpan(at, length).ToArray();
            at += length;
        }

        return new SentencePieceTokenizer(pieces, scores, maxLength);
    }

    public int[] Encode(string text)
    {
        var ids = new List<int>();
        if (text.Length == 0)
        {
            return [];
        }

        if (lookup.TryGetValue(" ", out int space))
        {
            ids.Add(space); // the dummy prefix SentencePiece adds before the text
        }

        byte[] bytes = Encoding.UTF8.GetBytes(text);
        for (int i = 0; i < bytes.Length;)
        {
            int length = Utf8Length(bytes[i]);
            length = Math.Min(length, bytes.Length - i);
            if (lookup.TryGetValue(Latin1.GetString(bytes, i, length), out int id))
            {
                ids.Add(id);
            }
            else
            {
                for (int b = 0; b < length; b++)
                {
                    ids.Add(bytes[i + b] + ByteTokenOffset);
                }
            }

            i += length;
        }

        while (true)
        {
            float bestScore = float.NegativeInfinity;
            int best = -1, bestId = -1;
            for (int i = 0; i + 1 < ids.Count; i++)
            {
                string merged = Latin1.GetString([.. pieces[ids[i]], .. pieces[ids[i + 1]]]);
                if (lookup.TryGetValue(merged, out int id) && scores[id] > bestScore)
                {
                    bestScore = scores[id];
                    best = i;
                    bestId = id;
                }
            }

            if (best < 0)
            {
                break;
            }

            ids[best] = bestId;
            ids.RemoveAt(best + 1);
        }

        return [.. ids];
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        var bytes = new List<byte>();
        int previous = -1;
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)pieces.Length)
            {
                throw new HeadLensException($"token id {id} is outside the vocabulary of {pieces.Length}");
            }

            if (id is 1 or 2)
            {
                previous = id;
                continue; // BOS/EOS delimit sequences; they are not text
            }

            byte[] piece = pieces[id];
            if (previous == 1 && piece.Length > 0 && piece[0] == (byte)' ')
            {
                piece = piece[1..];
            }

            if (RawByte(piece) is { } raw)
            {
                bytes.Add(raw);
            }
            else
            {
                bytes.AddRange(piece);
            }

            previous = id;
        }

        return Encoding.UTF8.GetString([.. bytes]);
    }

    public string TokenText(int id) => (uint)id < (uint)pieces.Length ? Encoding.UTF8.GetString(pieces[id]) : $"<{id}>";

    /// <summary>Writes the llama2.c tokenizer format.</summary>
    public void Save(string directory)
    {
        using var stream = File.Create(Path.Combine(directory, "tokenizer.bin"));
        Span<byte> number = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(number, maxTokenLength);
        stream.Write(number);
        for (int id = 0; id < pieces.Length; id++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(number, BitConverter.SingleToInt32Bits(scores[id]));
            stream.Write(number);
            BinaryPrimitives.WriteInt32LittleEndian(number, pieces[id].Length);
            stream.Write(number);
            stream.Write(pieces[id]);
        }
    }

    // "<0xAB>" → 0xAB
    private static byte? RawByte(byte[] piece) =>
        piece.Length == 6 && piece[0] == '<' && piece[1] == '0' && piece[2] == 'x' && piece[5] == '>'
            && byte.TryParse(Latin1.GetString(piece, 3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte value)
            ? value : null;

    private static int Utf8Length(byte first) =>
        first < 0x80 ? 1 : (first & 0xE0) == 0xC0 ? 2 : (first & 0xF0) == 0xE0 ? 3 : (first & 0xF8) == 0xF0 ? 4 : 1;
}
