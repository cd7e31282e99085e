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

/// <summary>
/// Random windows of a corpus's training split, drawn by a seeded generator whose state is checkpointed. A share
/// <paramref name="repeatedShare"/> of the windows are instead a passage of the corpus written twice in a row
/// (⌈(T+1)/2⌉ tokens, then the same tokens again): the second copy can be predicted only by looking back at the
/// first, which rewards copying from the context (induction) in a corpus too small for that to pay off otherwise.
/// </summary>
public sealed class CorpusBatches(Corpus corpus, ulong seed, double repeatedShare = 0) : IBatchSource
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
            var windowIds = ids.Slice(b * context, context);
            var windowTargets = targets.Slice(b * context, context);
            // The share draw comes first only when repeats are on, so that plain runs keep their windows.
            if (repeatedShare > 0 && random.Next() % 1_000_000 < repeatedShare * 1_000_000)
            {
                // Window + 1 tokens = passage, passage (cut at the end): position i holds passage[i mod half].
                int half = (context + 2) / 2;
                int passageStart = random.NextInt(corpus.Train.Length - half);
                for (int i = 0; i < context; i++)
                {
                    windowIds[i] = corpus.Train[passageStart + (i % half)];
                    windowTargets[i] = corpus.Train[passageStart + ((i + 1) % half)];
                }

                continue;
            }

            int start = random.NextInt(corpus.Train.Length - context - 1);
            corpus.Train.AsSpan(start, context).CopyTo(windowIds);
            corpus.Train.AsSpan(start + 1, context).CopyTo(windowTargets);
        }
    }
}
