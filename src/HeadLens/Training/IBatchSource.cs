namespace HeadLens.Training;

/// <summary>
/// Where a training loop's micro-batches come from: each call fills <c>ids</c> and <c>targets</c>, both
/// [batch, context], with the next micro-batch (targets are the tokens that follow the ids). A source that is
/// resumed must make its position part of the checkpoint (CorpusBatches.State).
/// </summary>
public interface IBatchSource
{
    void Next(Span<int> ids, Span<int> targets, int batch, int context);
}

/// <summary>Random windows of a corpus's training split, drawn by a seeded generator whose state is checkpointed.</summary>
public sealed class CorpusBatches(Corpus corpus, ulong seed) : IBatchSource
{
    private readonly SplitMix64 random = new(seed);

    /// <summary>The generator's state: saved with a checkpoint, restored on resume.</summary>
    public ulong State
    {
        get => random.State;
        set => random.State = value;
    }

    public void Next(Span<int> ids, Span<int> targets, int batch, int context)
    {
        for (int b = 0; b < batch; b++)
        {
            int start = random.NextInt(corpus.Train.Length - context - 1);
            corpus.Train.AsSpan(start, context).CopyTo(ids[(b * context)..]);
            corpus.Train.AsSpan(start + 1, context).CopyTo(targets[(b * context)..]);
        }
    }
}
