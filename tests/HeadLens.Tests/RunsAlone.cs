namespace HeadLens.Tests;

/// <summary>
/// The collection of test classes that xUnit runs after all the others, one test at a time: those that change
/// process-wide state (ComputeThreads.Count) and those that assert how long a user waits. Beside the rest of the suite
/// on 2 cores, an update that takes 70 ms alone took over a second (.ci/run), so such a test timed the other tests.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class RunsAlone
{
    public const string Name = "Runs alone";
}
