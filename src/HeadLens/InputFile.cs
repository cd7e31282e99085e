using System.Runtime.InteropServices;
using System.Text;

namespace HeadLens;

/// <summary>
/// Every file HeadLens reads goes through here first: it must exist, be a regular file (a FIFO would block the open
/// forever, /dev/zero would be read until memory runs out; both are refused in one line) and, when read whole, be no
/// larger than the limit for its kind. The limits sit well above the largest real files of each kind.
/// </summary>
public static partial class InputFile
{
    /// <summary>config.json, an index, a tokenizer_config.json: real ones are a few kilobytes.</summary>
    public const long JsonLimit = 16L << 20;

    /// <summary>Tokenizer files: the largest real tokenizer.json files (Gemma's) are about 35 MB.</summary>
    public const long TokenizerLimit = 256L << 20;

    /// <summary>A training corpus, read whole and held as 4-byte token ids: 1 GiB of text is 4 GiB of ids for byte-level tokens.</summary>
    public const long CorpusLimit = 1L << 30;

    /// <summary>training_state.json: its loss history grows by about 10 bytes a step.</summary>
    public const long StateLimit = 512L << 20;

    /// <summary>
    /// Refuses a path that does not exist or is not a regular file (a directory, FIFO, device or socket; symbolic links
    /// are followed) and, for a positive <paramref name="limit"/>, one larger than it. Returns the file's length.
    /// </summary>
    public static long Check(string path, long limit = 0)
    {
        if (Directory.Exists(path))
        {
            throw new HeadLensException($"{path}: a directory, not a file");
        }

        if (!File.Exists(path))
        {
            throw new HeadLensException($"{path}: file not found");
        }

        if (SpecialKind(path) is { } kind)
        {
            throw new HeadLensException($"{path}: not a regular file ({kind}); HeadLens reads only regular files");
        }

        long length = new FileInfo(path).Length;
        if (limit > 0 && length > limit)
        {
            throw new HeadLensException($"{path}: {length:N0} bytes, more than the {limit >> 20} MiB such a file may have");
        }

        return length;
    }

    public static byte[] ReadAllBytes(string path, long limit)
    {
        _ = Check(path, limit);
        return File.ReadAllBytes(path);
    }

    public static string ReadAllText(string path, long limit)
    {
        _ = Check(path, limit);
        return File.ReadAllText(path, Encoding.UTF8);
    }

    /// <summary>
    /// A parser's error as the reason in a one-line message: its first sentence, control characters escaped (a JSON
    /// reader quotes the bad token, which may hold newlines), at most 160 characters.
    /// </summary>
    public static string Reason(Exception error)
    {
        string first = error.Message.Split('.')[0];
        string shown = first.Length > 160 ? first[..160] + "…" : first;
        return string.Concat(shown.Select(c => char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString()));
    }

    // What a non-regular file is, from statx(2)'s file type (Linux: one layout on every architecture, unlike stat's);
    // null for a regular file. Where statx is missing the FIFO check is skipped (Windows has no FIFOs on the path).
    private static string? SpecialKind(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        Span<byte> status = stackalloc byte[256];
        int result;
        try
        {
            result = Statx(AtCurrentDirectory, path, 0, StatxType, ref MemoryMarshal.GetReference(status));
        }
        catch (Exception error) when (error is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }

        if (result != 0)
        {
            return null;
        }

        int mode = BitConverter.ToUInt16(status[28..30]) & 0xF000;
        return mode switch
        {
            0x8000 => null,
            0x1000 => "a FIFO",
            0x2000 => "a character device",
            0x6000 => "a block device",
            0xC000 => "a socket",
            0x4000 => "a directory",
            _ => "not a plain file",
        };
    }

    private const int AtCurrentDirectory = -100;
    private const uint StatxType = 0x1;

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int directory, string path, int flags, uint mask, ref byte status);
}
