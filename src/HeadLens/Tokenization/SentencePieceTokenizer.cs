using System.Buffers.Binary;
using System.Text;

namespace HeadLens.Tokenization;

/// <summary>
/// SentencePiece-style BPE with byte fallback, as llama2.c stores and runs it (the Llama 2 tokenizer family).
/// The file (llama2.c's <c>tokenizer.bin</c>): int32 max_token_length, then per token a float32 score, an int32 byte
/// length and the piece's bytes (spaces already written as ' ', byte tokens as the text <c>&lt;0xXX&gt;</c>).
/// Encoding follows llama2.c's run.c exactly: a dummy-prefix space before non-empty text; every UTF-8 code point
/// looked up as a piece, or else spelled as byte tokens (id = byte + 3); then, again and again, the adjacent pair
/// whose concatenation is the piece with the best score is merged (the leftmost on ties) until no pair is a piece.
/// Ids 1 and 2 are BOS and EOS. <see cref="Encode(string)"/> never adds BOS (<see cref="ITokenizer.EncodeForModel"/> puts it first);
/// <see cref="Decode"/> drops BOS/EOS, strips the space a piece carries right after BOS, and turns byte tokens back
/// into raw bytes.
/// </summary>
public sealed class SentencePieceTokenizer : ITokenizer
{
    /// <summary>The file name <see cref="Save"/> writes and <see cref="TokenizerLoader"/> recognises.</summary>
    public const string FileName = "tokenizer.bin";

    private const int ByteTokenOffset = 3; // ids 0, 1, 2 are <unk>, BOS, EOS; then the 256 byte tokens
    private const float NoScore = -1e10f;   // run.c's starting "best score": a piece scoring no better never merges

    // Pieces are byte strings (not necessarily valid UTF-8); Latin-1 maps each byte to one char, so a .NET string is
    // an exact, hashable stand-in and concatenating two pieces is concatenating their strings.
    private readonly string[] pieces;
    private readonly float[] scores;
    private readonly Dictionary<string, int> pieceIds;
    private readonly int maxTokenLength;

    public SentencePieceTokenizer(IReadOnlyList<(byte[] Piece, float Score)> vocabulary)
    {
        if (vocabulary.Count < ByteTokenOffset)
        {
            throw new HeadLensException($"a SentencePiece vocabulary needs at least 3 tokens (<unk>, BOS, EOS), got {vocabulary.Count}");
        }

        pieces = new string[vocabulary.Count];
        scores = new float[vocabulary.Count];
        pieceIds = new Dictionary<string, int>(vocabulary.Count, StringComparer.Ordinal);
        for (int id = 0; id < vocabulary.Count; id++)
        {
            pieces[id] = Encoding.Latin1.GetString(vocabulary[id].Piece);
            scores[id] = vocabulary[id].Score;
            maxTokenLength = Math.Max(maxTokenLength, vocabulary[id].Piece.Length);
            pieceIds.TryAdd(pieces[id], id); // a repeated piece resolves to its lowest id
        }
    }

    public int VocabSize => pieces.Length;

    public int? BosId => 1;

    public bool AddsBos => true;

    public int? EosId => 2;

    /// <summary>Reads a llama2.c tokenizer file of exactly <paramref name="vocabSize"/> tokens (the model's vocab_size).</summary>
    public static SentencePieceTokenizer FromLlama2cFile(string path, int vocabSize) => Read(path, vocabSize);

    /// <summary>Reads a llama2.c tokenizer file, taking as many tokens as it holds.</summary>
    public static SentencePieceTokenizer FromLlama2cFile(string path) => Read(path, null);

    public int[] Encode(string text) => Encode(text, bos: false, eos: false);

    /// <summary>Encodes as run.c's <c>encode(text, bos, eos)</c>: BOS first and EOS last when asked.</summary>
    public int[] Encode(string text, bool bos, bool eos)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        var symbols = new List<int>(bytes.Length + 3);
        if (bos)
        {
            symbols.Add(1);
        }

        int firstPiece = symbols.Count;
        if (bytes.Length > 0)
        {
            symbols.Add(pieceIds.TryGetValue(" ", out int space) ? space : ' ' + ByteTokenOffset);
        }

        // One code point at a time (a lead byte and up to three continuation bytes, as run.c groups them).
        int start = 0;
        for (int i = 0; i < bytes.Length; i++)
        {
            if ((bytes[i] & 0xC0) != 0x80)
            {
                start = i;
            }

            bool continues = i + 1 < bytes.Length && (bytes[i + 1] & 0xC0) == 0x80;
            if (continues && i + 1 - start < 4)
            {
                continue;
            }

            if (pieceIds.TryGetValue(Encoding.Latin1.GetString(bytes, start, i + 1 - start), out int id))
            {
                symbols.Add(id);
            }
            else
            {
                for (int b = start; b <= i; b++)
                {
                    symbols.Add(bytes[b] + ByteTokenOffset);
                }
            }

            start = i + 1;
        }

        var merged = MergeByScore(symbols.GetRange(firstPiece, symbols.Count - firstPiece));
        symbols.RemoveRange(firstPiece, symbols.Count - firstPiece);
        symbols.AddRange(merged);
        if (eos)
        {
            symbols.Add(2);
        }

        return [.. symbols];
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        var bytes = new List<byte>(ids.Length * 4);
        int previous = -1;
        foreach (int id in ids)
        {
            string piece = Piece(id);
            if (id != BosId && id != EosId)
            {
                if (previous == BosId && piece.StartsWith(' '))
                {
                    piece = piece[1..]; // the dummy prefix that encoding put before the text
                }

                if (ByteTokenValue(piece) is { } raw)
                {
                    bytes.Add(raw);
                }
                else
                {
                    bytes.AddRange(Encoding.Latin1.GetBytes(piece));
                }
            }

            previous = id;
        }

        // Invalid sequences (a cut-off multi-byte character) decode to U+FFFD rather than throwing.
        return Encoding.UTF8.GetString([.. bytes]);
    }

    public string TokenText(int id) => Encoding.UTF8.GetString(Encoding.Latin1.GetBytes(Piece(id)));

    /// <summary>Writes <c>tokenizer.bin</c> in llama2.c's format (a temporary file, then a rename).</summary>
    public void Save(string directory)
    {
        string path = Path.Combine(directory, FileName);
        string temporary = path + ".tmp-" + Environment.ProcessId;
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write))
        {
            Span<byte> field = stackalloc byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(field, maxTokenLength);
            stream.Write(field);
            for (int id = 0; id < pieces.Length; id++)
            {
                BinaryPrimitives.WriteSingleLittleEndian(field, scores[id]);
                stream.Write(field);
                byte[] piece = Encoding.Latin1.GetBytes(pieces[id]);
                BinaryPrimitives.WriteInt32LittleEndian(field, piece.Length);
                stream.Write(field);
                stream.Write(piece);
            }
        }

        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>
    /// run.c's merge loop (best-scoring adjacent pair first, leftmost on ties) in O(n log n): the symbols form a linked
    /// list, candidate pairs wait in a heap ordered by (score descending, position ascending), and a candidate whose
    /// symbols have changed since it was pushed is skipped. Positions keep their order as symbols merge, so the
    /// heap's pick is exactly the pair run.c's left-to-right scan would pick.
    /// </summary>
    private List<int> MergeByScore(List<int> symbols)
    {
        int n = symbols.Count;
        var token = symbols.ToArray();
        var next = new int[n];
        var previous = new int[n];
        var version = new int[n]; // bumped whenever the symbol at a position changes or disappears
        for (int i = 0; i < n; i++)
        {
            next[i] = i + 1 < n ? i + 1 : -1;
            previous[i] = i - 1;
        }

        var candidates = new PriorityQueue<(int Left, int Right, int LeftVersion, int RightVersion, int Merged), (float, int)>(
            Comparer<(float Score, int Position)>.Create((a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Position.CompareTo(b.Position)));
        void Consider(int left)
        {
            int right = left < 0 ? -1 : next[left];
            if (right >= 0 && pieceIds.TryGetValue(pieces[token[left]] + pieces[token[right]], out int merged) && scores[merged] > NoScore)
            {
                candidates.Enqueue((left, right, version[left], version[right], merged), (scores[merged], left));
            }
        }

        for (int i = 0; i + 1 < n; i++)
        {
            Consider(i);
        }

        while (candidates.TryDequeue(out var pair, out _))
        {
            if (version[pair.Left] != pair.LeftVersion || version[pair.Right] != pair.RightVersion || next[pair.Left] != pair.Right)
            {
                continue; // stale: one side has merged with something else since
            }

            token[pair.Left] = pair.Merged;
            version[pair.Left]++;
            version[pair.Right]++;
            next[pair.Left] = next[pair.Right];
            if (next[pair.Right] >= 0)
            {
                previous[next[pair.Right]] = pair.Left;
            }

            next[pair.Right] = -1;
            Consider(previous[pair.Left]);
            Consider(pair.Left);
        }

        var result = new List<int>(n);
        for (int i = n > 0 ? 0 : -1; i >= 0; i = next[i])
        {
            result.Add(token[i]);
        }

        return result;
    }

    private string Piece(int id) =>
        (uint)id < (uint)pieces.Length
            ? pieces[id]
            : throw new HeadLensException($"token id {id} is not in the vocabulary of {pieces.Length}");

    // "<0xXX>" is a byte token: the raw byte XX.
    private static byte? ByteTokenValue(string piece) =>
        piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
            && byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out byte value)
            ? value
            : null;

    private static SentencePieceTokenizer Read(string path, int? vocabSize)
    {
        string name = Path.GetFileName(path);
        // A regular file only: a FIFO under this name would block the open forever.
        _ = InputFile.Check(path, InputFile.TokenizerLimit);

        byte[] file = File.ReadAllBytes(path); // the tokenizer file is small; nothing below allocates beyond its size
        if (file.Length < 4)
        {
            throw new HeadLensException($"{name}: truncated llama2.c tokenizer file ({file.Length} bytes)");
        }

        int maxLength = BinaryPrimitives.ReadInt32LittleEndian(file);
        if (maxLength <= 0 || maxLength > file.Length)
        {
            throw new HeadLensException($"{name}: max_token_length {maxLength} is not plausible for a file of {file.Length} bytes");
        }

        // Every token takes at least 8 bytes (score and length), which bounds a vocabulary size before it is trusted.
        long capacity = (file.Length - 4) / 8;
        if (vocabSize is { } expected && (expected < ByteTokenOffset || expected > capacity))
        {
            throw new HeadLensException($"{name}: cannot hold {expected} tokens ({file.Length} bytes)");
        }

        var vocabulary = new List<(byte[], float)>(vocabSize ?? 0);
        int at = 4;
        while (vocabSize is { } size ? vocabulary.Count < size : at < file.Length)
        {
            int id = vocabulary.Count;
            if (file.Length - at < 8)
            {
                throw new HeadLensException($"{name}: truncated at token {id} (the file ends inside its score and length)");
            }

            float score = BinaryPrimitives.ReadSingleLittleEndian(file.AsSpan(at));
            int length = BinaryPrimitives.ReadInt32LittleEndian(file.AsSpan(at + 4));
            at += 8;
            if (float.IsNaN(score))
            {
                throw new HeadLensException($"{name}: token {id} has score NaN");
            }

            if (length < 0 || length > maxLength || length > file.Length - at)
            {
                throw new HeadLensException($"{name}: token {id} has length {length} (max_token_length {maxLength}, {file.Length - at} bytes left)");
            }

            vocabulary.Add((file[at..(at + length)], score));
            at += length;
        }

        if (at != file.Length)
        {
            throw new HeadLensException($"{name}: {file.Length - at} bytes follow token {vocabulary.Count - 1}: the file holds more than {vocabulary.Count} tokens");
        }

        return new SentencePieceTokenizer(vocabulary);
    }
}
