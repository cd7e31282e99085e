namespace HeadLens.Cli;

/// <summary>Files that ship with the tool, found next to the app (copied to the output by the project file).</summary>
internal static class AppData
{
    /// <summary>The first megabyte of the King James Bible (public domain): the default training corpus.</summary>
    public static string Corpus => Path.Combine(AppContext.BaseDirectory, "Data", "kjv-excerpt.txt");

    /// <summary>The embedded default model, trained by `headlens train` on that corpus (see README).</summary>
    public static string DefaultModel => Path.Combine(AppContext.BaseDirectory, "Data", "kjv-model");
}
