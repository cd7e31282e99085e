using System.Text;

namespace HeadLens.Tokenization;

/// <summary>Text to token ids and back, exactly as the model was trained.</summary>
public interface ITokenizer
{
    int VocabSize { get; }

    /// <summary>
    /// The beginning-of-sequence id, when the vocabulary has one. <see cref="Encode"/> never adds it;
    /// <see cref="EncodeForModel"/> puts it first when <see cref="AddsBos"/> says the model expects it.
    /// </summary>
    int? BosId { get; }

    /// <summary>Whether the model expects <see cref="BosId"/> before every text.</summary>
    bool AddsBos { get; }

    /// <summary>The end-of-text id that stops generation, if the vocabulary has one.</summary>
    int? EosId { get; }

    /// <summary>
    /// The ids that end a generated text: EOS, and BOS where the vocabulary has one (a BOS in the output would start a
    /// new document, which the prompt never asked for). Every generation loop stops on exactly these.
    /// </summary>
    IReadOnlySet<int> StopIds
    {
        get
        {
            var stops = new HashSet<int>();
            if (EosId is { } eos)
            {
                stops.Add(eos);
            }

            if (BosId is { } bos)
            {
                stops.Add(bos);
            }

            return stops;
        }
    }

    /// <summary>The text's tokens alone: no BOS, no EOS (for pieces of a text, and for looking words up).</summary>
    int[] Encode(string text);

    /// <summary>
    /// The ids a model reads for a whole text, exactly as it was trained: BOS first iff <see cref="AddsBos"/>
    /// (Llama-family tokenizers add theirs, GPT-2's adds none). Every command and the viewer encode input through this.
    /// </summary>
    int[] EncodeForModel(string text) => AddsBos && BosId is { } bos ? [bos, .. Encode(text)] : Encode(text);

    string Decode(ReadOnlySpan<int> ids);

    /// <summary>A readable label for one token (for tables and the viewer).</summary>
    string TokenText(int id);

    /// <summary>Writes the tokenizer's files into a model directory.</summary>
    void Save(string directory);
}

/// <summary>
/// Byte-level tokens: ids 0..255 are the UTF-8 bytes of the text. No vocabulary file, no unknown tokens; the
/// embedded default model uses it so that it needs nothing but its weights.
/// </summary>
public sealed class ByteTokenizer : ITokenizer
{
    public const string MarkerFile = "headlens_tokenizer.json";

    public int VocabSize => 256;

    public int? BosId => null;

    public bool AddsBos => false;

    public int? EosId => null;

    public int[] Encode(string text) => Encoding.UTF8.GetBytes(text).Select(b => (int)b).ToArray();

    public string Decode(ReadOnlySpan<int> ids)
    {
        var bytes = new byte[ids.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            bytes[i] = (byte)ids[i];
        }

        // Invalid sequences (a cut-off multi-byte character) decode to U+FFFD rather than throwing.
        return Encoding.UTF8.GetString(bytes);
    }

    public string TokenText(int id) => id switch
    {
        10 => "\\n",
        32 => "␣",
        < 32 or >= 127 => $"<0x{id:X2}>",
        _ => ((char)id).ToString(),
    };

    public void Save(string directory) =>
        File.WriteAllText(System.IO.Path.Combine(directory, MarkerFile), "{\"type\": \"byte\"}\n");

    /// <summary>The tokenizer a model directory carries, or null when it has none.</summary>
    public static ITokenizer? FromDirectory(string directory) =>
        File.Exists(System.IO.Path.Combine(directory, MarkerFile)) ? new ByteTokenizer() : null;
}
