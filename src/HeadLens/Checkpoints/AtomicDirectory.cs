using System.Globalization;
using System.Runtime.InteropServices;

namespace HeadLens.Checkpoints;

/// <summary>
/// Replaces a whole directory (a checkpoint) so that a kill at any instant leaves the name holding either the old
/// contents or the new ones, complete, never neither.
///
/// A save writes everything into the sibling "DIR.saving-PID", flushes every file and the directory to disk, then
/// swaps it in with one <c>renameat2(RENAME_EXCHANGE)</c> (Linux): the single system call exchanges the two names, so
/// DIR exists at every instant. The old contents, now under "DIR.saving-PID", are deleted afterwards. Why the
/// exchange and not versioned directories behind a symlink: DIR stays a plain Hugging Face directory that PyTorch
/// and every other tool read as before (a symlink is awkward on Windows and surprises users who copy the directory),
/// and a directory written by an older HeadLens is replaced the same way.
///
/// Fallback, where the exchange is missing (not Linux, or a filesystem that answers EINVAL such as NFS): move DIR to
/// "DIR.previous-PID", then "DIR.saving-PID" to DIR. A kill between the two moves leaves DIR missing; then the
/// new checkpoint is "DIR.saving-PID" (complete: the moves start only after it is written), and every loader finds it
/// through <see cref="Resolve"/>; <see cref="Recover"/> puts it back in place. Leftovers of interrupted saves are
/// deleted by <see cref="Recover"/> at the next start of a save or a training run.
/// </summary>
internal static partial class AtomicDirectory
{
    public const string SavingSuffix = ".saving-";
    public const string PreviousSuffix = ".previous-";

    /// <summary>
    /// Test seam: called with the name of every step of a save that touches the disk's state ("write", "flush",
    /// "exchange", "move-old", "move-new", "sync-parent", "delete-old") just before it runs. A test throws from it
    /// at step i to stand for a kill there (no cleanup runs after the throw, as none runs after a kill). Per thread,
    /// so that tests saving in parallel are not hit.
    /// </summary>
    [ThreadStatic]
    internal static Action<string>? FaultHook;

    /// <summary>Test seam (per thread): true makes saves take the two-move fallback, as on a system without RENAME_EXCHANGE.</summary>
    [ThreadStatic]
    internal static bool ExchangeDisabled;

    /// <summary>Writes a new version of <paramref name="directory"/> through <paramref name="write"/> (given the directory to fill) and swaps it in.</summary>
    public static void Replace(string directory, Action<string> write)
    {
        string full = Path.GetFullPath(directory);
        string parent = Path.GetDirectoryName(full) ?? throw new HeadLensException($"{directory}: cannot save into a file system root");
        Directory.CreateDirectory(parent);
        Recover(full);
        string temporary = full + SavingSuffix + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        if (Directory.Exists(temporary))
        {
            Directory.Delete(temporary, recursive: true);
        }

        Directory.CreateDirectory(temporary);
        Step("write");
        write(temporary);
        Step("flush");
        foreach (string file in Directory.EnumerateFiles(temporary))
        {
            using var stream = new FileStream(file, FileMode.Open, FileAccess.Write);
            stream.Flush(flushToDisk: true);
        }

        SyncDirectory(temporary);
        if (!Directory.Exists(full))
        {
            Step("move-new");
            Directory.Move(temporary, full);
        }
        else if (!TryExchange(temporary, full))
        {
            string previous = full + PreviousSuffix + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
            Step("move-old");
            Directory.Move(full, previous);
            Step("move-new");
            Directory.Move(temporary, full);
            temporary = previous;
        }

        Step("sync-parent");
        SyncDirectory(parent);
        Step("delete-old");
        if (Directory.Exists(temporary))
        {
            Directory.Delete(temporary, recursive: true);
        }
    }

    /// <summary>
    /// The directory to read for <paramref name="directory"/>: itself when it exists, else the newest complete
    /// checkpoint an interrupted fallback save left beside it, else null. Reads only; moves nothing.
    /// </summary>
    public static string? Resolve(string directory)
    {
        string full = Path.GetFullPath(directory);
        if (Directory.Exists(full))
        {
            return full;
        }

        string? parent = Path.GetDirectoryName(full);
        if (parent is null || !Directory.Exists(parent))
        {
            return null;
        }

        // A "previous-X" exists only after "saving-X" was complete, so the pair's "saving-X" is the newer checkpoint;
        // a "previous-X" alone was the committed one. A "saving-X" alone was never committed. Among several
        // interrupted saves (a stale pair from an older crash), the newest files win.
        string name = Path.GetFileName(full);
        string? best = null;
        var newest = DateTime.MinValue;
        foreach (string previous in Directory.GetDirectories(parent, name + PreviousSuffix + "*"))
        {
            string saved = full + SavingSuffix + previous[(full.Length + PreviousSuffix.Length)..];
            string candidate = Directory.Exists(saved) ? saved : previous;
            if (!File.Exists(Path.Combine(candidate, "config.json")))
            {
                continue;
            }

            var written = Directory.EnumerateFiles(candidate).Select(File.GetLastWriteTimeUtc).DefaultIfEmpty().Max();
            if (best is null || written > newest)
            {
                best = candidate;
                newest = written;
            }
        }

        return best;
    }

    /// <summary>
    /// Puts the newest complete checkpoint back under <paramref name="directory"/> after a fallback save was killed
    /// between its two moves, then deletes the leftovers of interrupted saves (those of processes no longer running).
    /// </summary>
    public static void Recover(string directory)
    {
        string full = Path.GetFullPath(directory);
        string? found = Resolve(full);
        if (found is not null && found != full)
        {
            Directory.Move(found, full);
        }

        string? parent = Path.GetDirectoryName(full);
        if (!Directory.Exists(full) || parent is null)
        {
            return;
        }

        string name = Path.GetFileName(full);
        foreach (string suffix in (string[])[SavingSuffix, PreviousSuffix])
        {
            foreach (string leftover in Directory.GetDirectories(parent, name + suffix + "*"))
            {
                if (int.TryParse(leftover[(full.Length + suffix.Length)..], NumberStyles.None, CultureInfo.InvariantCulture, out int pid) && !IsRunning(pid))
                {
                    Directory.Delete(leftover, recursive: true);
                }
            }
        }
    }

    private static void Step(string name) => FaultHook?.Invoke(name);

    private static bool IsRunning(int pid)
    {
        if (pid == Environment.ProcessId)
        {
            return false;
        }

        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    // One atomic exchange of two existing names; false where the system or the filesystem has none.
    private static bool TryExchange(string a, string b)
    {
        if (ExchangeDisabled || !OperatingSystem.IsLinux())
        {
            return false;
        }

        Step("exchange");
        try
        {
            if (RenameAt2(AtCurrentDirectory, a, AtCurrentDirectory, b, RenameExchange) == 0)
            {
                return true;
            }
        }
        catch (Exception error) when (error is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }

        int errno = Marshal.GetLastPInvokeError();
        // EINVAL: the filesystem has no exchange; ENOSYS: the kernel is older than 3.15. Anything else is a real failure.
        if (errno is 22 or 38)
        {
            return false;
        }

        throw new HeadLensException($"{b}: cannot swap in the new checkpoint ({Marshal.GetPInvokeErrorMessage(errno)})");
    }

    // A rename is durable only once its directory is flushed; a best effort where the system offers no way to do so.
    private static void SyncDirectory(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        try
        {
            int descriptor = Open(path, 0);
            if (descriptor >= 0)
            {
                _ = FileSync(descriptor);
                _ = Close(descriptor);
            }
        }
        catch (Exception error) when (error is DllNotFoundException or EntryPointNotFoundException)
        {
            // No libc to call: the data files themselves were flushed; the rename's durability is the kernel's.
        }
    }

    private const int AtCurrentDirectory = -100;
    private const uint RenameExchange = 2;

    [LibraryImport("libc", EntryPoint = "renameat2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int RenameAt2(int oldDirectory, string oldPath, int newDirectory, string newPath, uint flags);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int FileSync(int descriptor);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int descriptor);
}
