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
/// Random windows of a corpus's training split, drawn by a seeded generator whose state is checkpointed. In a share
/// <paramref name="repeatedShare"/> of the windows, a passage of the window (random length from 4 tokens to half the
/// window, random place) is written again later in the same window, over the text there. The copy can be predicted
/// only by looking back at the passage, which rewards copying from the context (induction) in a corpus small enough
/// to be memorised otherwise. Random lengths and places matter: with a fixed distance between the copies, a head that
/// looks back a fixed number of positions would do instead of induction. With <paramref name="randomPassageVocabulary"/>
/// &gt; 0 the passage is first replaced by tokens drawn uniformly from that many ids: such a passage cannot have been
/// memorised, so its copy is predictable only from the context, however often the corpus has been seen.
/// </summary>
public sealed class CorpusBatches(Corpus corpus, ulong seed, double repeatedShare = 0, int randomPassageVocabulary = 0) : IBatchSource
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
            int start = random.NextInt(corpus.Train.Length - context - 1);
            // The share draw happens only when repeats are on, so that plain runs keep their windows.
            if (repeatedShare > 0 && random.Next() % 1_000_000 < repeatedShare * 1_000_000)
            {
                WriteWithRepeat(corpus.Train.AsSpan(start, context + 1), windowIds, windowTargets);
                continue;
            }

            corpus.Train.AsSpan(start, context).CopyTo(windowIds);
            corpus.Train.AsSpan(start + 1, context).CopyTo(windowTargets);
        }
    }

    /// <summary>
    /// The window's text [T + 1] with the passage [a, a + L) (random tokens when asked) written again at [d, d + L),
    /// d ≥ a + L.
    /// </summary>
    private void WriteWithRepeat(ReadOnlySpan<int> text, Span<int> ids, Span<int> targets)
    {
        Span<int> sequence = text.Length <= 4096 ? stackalloc int[text.Length] : new int[text.Length];
        text.CopyTo(sequence);
        int longest = sequence.Length / 2, shortest = Math.Min(4, longest);
        int length = shortest + random.NextInt(longest - shortest + 1);
        int passage = random.NextInt(sequence.Length - 2 * length + 1);
        int copy = passage + length + random.NextInt(sequence.Length - length - (passage + length) + 1);
        if (randomPassageVocabulary > 0)
        {
            for (int i = 0; i < length; i++)
            {
                sequence[passage + i] = random.NextInt(randomPassageVocabulary);
            }
        }

        sequence.Slice(passage, length).CopyTo(sequence.Slice(copy, length));
        sequence[..^1].CopyTo(ids);
        sequence[1..].CopyTo(targets);
    }
}
