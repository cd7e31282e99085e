using System.Text;
using HeadLens.Tokenization;

namespace HeadLens.Training;

/// <summary>
/// A text corpus, tokenised once, split into training (the first 90%) and validation (the last 10%) tokens.
/// </summary>
public sealed class Corpus
{
    public Corpus(int[] tokens, double validationShare = 0.1)
    {
        int validation = (int)(tokens.Length * validationShare);
        Train = tokens[..^validation];
        Validation = tokens[^validation..];
    }

    public int[] Train { get; }

    public int[] Validation { get; }

    /// <summary>
    /// FNV-1a (64-bit) over every token, in hex: a checkpoint records it so that --resume refuses another corpus
    /// (another corpus would draw other batches, and the run would no longer match an uninterrupted one).
    /// </summary>
    public string Fingerprint => fingerprint ??= ComputeFingerprint();

    private string? fingerprint;

    private string ComputeFingerprint()
    {
        ulong hash = 14695981039346656037UL;
        foreach (int token in Train.Concat(Validation))
        {
            hash = (hash ^ (uint)token) * 1099511628211UL;
        }

        return hash.ToString("x16", System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Reads and checks a UTF-8 text file: missing, empty and binary files are refused with one clear line.</summary>
    public static string ReadText(string path)
    {
        try
        {
            _ = InputFile.Check(path, InputFile.CorpusLimit);
        }
        catch (HeadLensException error)
        {
            throw new HeadLensException("corpus " + error.Message);
        }

        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length == 0 || bytes.All(b => b is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t'))
        {
            throw new HeadLensException($"corpus {path}: the file is empty");
        }

        if (Array.IndexOf(bytes, (byte)0) >= 0)
        {
            throw new HeadLensException($"corpus {path}: binary data (a NUL byte at offset {Array.IndexOf(bytes, (byte)0)}); expected UTF-8 text");
        }

        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException error)
        {
            throw new HeadLensException($"corpus {path}: not valid UTF-8 text (at byte {error.Index})");
        }
    }

    public static Corpus Load(string path, ITokenizer tokenizer, int context)
    {
        var tokens = tokenizer.Encode(ReadText(path));
        if (tokens.Length < 10 * (context + 1))
        {
            throw new HeadLensException($"corpus {path}: {tokens.Length} tokens is too short to train with a context of {context} (needs at least {10 * (context + 1)})");
        }

        return new Corpus(tokens);
    }
}

/// <summary>SplitMix64: a tiny random generator whose whole state is one number, so a checkpoint can store it.</summary>
public sealed class SplitMix64(ulong state)
{
    public ulong State { get; set; } = state;

    public ulong Next()
    {
        ulong z = State += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, bound).</summary>
    public int NextInt(int bound) => (int)(Next() % (ulong)bound);
}
