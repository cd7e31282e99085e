namespace HeadLens.Cli.Viewer;

/// <summary>
/// One computation on the source at a time, waited for asynchronously. The model-backed source is not thread-safe
/// and locks itself; without this gate, twenty waiting requests would be twenty pool threads blocked on that lock,
/// and the matrix products, which run their parts on the same pool, would wait for threads the pool adds only slowly.
/// A request whose client has gone stops waiting.
/// </summary>
internal sealed class ComputeGate : IDisposable
{
    private readonly SemaphoreSlim slot = new(1, 1);

    public async Task<T> RunAsync<T>(Func<T> work, CancellationToken cancel)
    {
        await slot.WaitAsync(cancel);
        try
        {
            return work();
        }
        finally
        {
            slot.Release();
        }
    }

    public void Dispose() => slot.Dispose();
}
