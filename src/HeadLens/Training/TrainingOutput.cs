using System.Globalization;
using HeadLens.Checkpoints;

namespace HeadLens.Training;

/// <summary>
/// The checks on <c>train --out DIR</c> that run before any training, so that a run never ends (or starts) by
/// destroying a model or by finding, hundreds of steps in, that it cannot save.
/// </summary>
public static class TrainingOutput
{
    /// <summary>
    /// Repairs an interrupted save and deletes its leftovers, then refuses: a DIR that is a file; a new run
    /// (no <paramref name="resume"/>) into a DIR that already holds a model or other files, unless
    /// <paramref name="force"/>; a DIR that cannot be written (tried by creating, writing and removing the sibling
    /// the saves write into).
    /// </summary>
    public static void Check(string output, bool resume, bool force)
    {
        if (resume && force)
        {
            throw new HeadLensException("--resume continues the run in --out, --force replaces it: give one of them");
        }

        if (File.Exists(output))
        {
            throw new HeadLensException($"--out {output}: is a file, not a directory");
        }

        string full;
        try
        {
            full = Path.GetFullPath(output);
            Directory.CreateDirectory(Path.GetDirectoryName(full) ?? throw new HeadLensException($"--out {output}: cannot save into a file system root"));
            AtomicDirectory.Recover(full);
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new HeadLensException($"--out {output}: cannot be created ({error.Message})");
        }

        if (!resume && !force && Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
        {
            throw new HeadLensException(File.Exists(Path.Combine(full, "config.json"))
                ? $"--out {output}: already holds a trained model; give --resume to continue its run or --force to replace it"
                : $"--out {output}: is not empty and holds no model; choose another directory (or --force to replace it)");
        }

        string probe = full + AtomicDirectory.SavingSuffix + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        try
        {
            Directory.CreateDirectory(probe);
            File.WriteAllBytes(Path.Combine(probe, "probe"), [0]);
            Directory.Delete(probe, recursive: true);
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            throw new HeadLensException($"--out {output}: cannot be written ({error.Message})");
        }
    }
}
