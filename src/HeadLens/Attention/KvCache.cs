namespace HeadLens.Attention;

/// <summary>
/// Keys and values of the tokens seen so far, per layer, for incremental decoding: each new token attends to the
/// cache instead of recomputing every earlier token. Layout per layer: keys [Length, KvHeads, HeadDimQK], values
/// [Length, KvHeads, HeadDimV] (grouped-query attention stores only the kv heads).
/// With <c>window</c> &gt; 0 the cache follows StreamingLLM's rule: it keeps the first <c>sinks</c> tokens and the
/// most recent <c>window</c> tokens, evicting the oldest token in between; <see cref="Positions"/> remembers each
/// slot's absolute position. Keys are cached after RoPE, so eviction never changes a cached score.
/// </summary>
public sealed class KvCache
{
    private readonly float[][] keys;
    private readonly float[][] values;
    private readonly int[] positions;
    private int pending;
    private int slotsWithPending;
    private (float[] Sums, int Tokens)[]? runningSums;

    public KvCache(int layers, int capacity, int kvHeads, int headDimQK, int headDimV, int sinks = 0, int window = 0)
    {
        if (layers <= 0 || capacity <= 0 || kvHeads <= 0 || headDimQK <= 0 || headDimV <= 0 || sinks < 0 || window < 0)
        {
            throw new ArgumentException("KV cache: sizes must be positive (sinks and window non-negative)");
        }

        Sinks = sinks;
        Window = window;
        // An evicting cache never holds more than sinks + window tokens.
        Capacity = window > 0 ? Math.Min(capacity, sinks + window) : capacity;
        KvHeads = kvHeads;
        HeadDimQK = headDimQK;
        HeadDimV = headDimV;
        keys = Enumerable.Range(0, layers).Select(_ => new float[Capacity * kvHeads * headDimQK]).ToArray();
        values = Enumerable.Range(0, layers).Select(_ => new float[Capacity * kvHeads * headDimV]).ToArray();
        positions = new int[Capacity];
    }

    public int Capacity { get; }

    public int KvHeads { get; }

    public int HeadDimQK { get; }

    public int HeadDimV { get; }

    public int Sinks { get; }

    public int Window { get; }

    /// <summary>Cached tokens (after the last <see cref="Advance"/>).</summary>
    public int Length { get; private set; }

    /// <summary>Absolute position of the next token to be appended.</summary>
    public int NextPosition { get; private set; }

    /// <summary>The absolute position of each cached slot.</summary>
    public ReadOnlySpan<int> Positions => positions.AsSpan(0, Length);

    public long Bytes => (keys.Sum(layer => (long)layer.Length) + values.Sum(layer => (long)layer.Length)) * sizeof(float);

    /// <summary>
    /// Stores the keys and values of <paramref name="tokens"/> new tokens for one layer, after the cached ones (and
    /// after evicting, where a window is set). Call for every layer, then <see cref="Advance"/> once.
    /// </summary>
    public void Append(int layer, ReadOnlySpan<float> k, ReadOnlySpan<float> v, int tokens)
    {
        int keyRow = KvHeads * HeadDimQK, valueRow = KvHeads * HeadDimV;
        int start = MakeRoom(layer, tokens);
        k[..(tokens * keyRow)].CopyTo(keys[layer].AsSpan(start * keyRow));
        v[..(tokens * valueRow)].CopyTo(values[layer].AsSpan(start * valueRow));
        pending = tokens;
        slotsWithPending = start + tokens;
    }

    /// <summary>Commits the tokens appended to every layer: they become part of <see cref="Length"/>.</summary>
    public void Advance(int tokens)
    {
        if (tokens != pending)
        {
            throw new InvalidOperationException($"KV cache: advancing by {tokens} after appending {pending}");
        }

        int start = SlotsAfterEviction(tokens);
        if (start < Length)
        {
            int evict = Length - start;
            Array.Copy(positions, Sinks + evict, positions, Sinks, start - Sinks);
        }

        for (int t = 0; t < tokens; t++)
        {
            positions[start + t] = NextPosition + t;
        }

        Length = start + tokens;
        NextPosition += tokens;
        pending = 0;
    }

    /// <summary>Keys of one layer including the tokens appended but not yet advanced: [slots, KvHeads, HeadDimQK].</summary>
    public ReadOnlySpan<float> Keys(int layer) => keys[layer].AsSpan(0, Slots * KvHeads * HeadDimQK);

    public ReadOnlySpan<float> Values(int layer) => values[layer].AsSpan(0, Slots * KvHeads * HeadDimV);

    // Slots in use, counting appended tokens not yet advanced (eviction has already made room for them).
    private int Slots => pending > 0 ? slotsWithPending : Length;

    public void Clear()
    {
        Length = 0;
        NextPosition = 0;
        pending = 0;
        runningSums = null;
    }

    /// <summary>
    /// Linear attention's running sums for one layer (<see cref="LinearAttention.StateFloats"/> floats, allocated on
    /// first use) and how many tokens they sum: with them a linear-attention model decodes a token in the same time at
    /// every position. The keys and values are still cached beside them, for a window's eviction (which sums cannot
    /// undo) and for rebuilding sums that disagree with <see cref="Length"/> (after a failed step).
    /// </summary>
    public (float[] Sums, int Tokens) RunningSums(int layer, int floats)
    {
        runningSums ??= new (float[], int)[keys.Length];
        if (runningSums[layer].Sums is not { } sums || sums.Length != floats)
        {
            runningSums[layer] = (new float[floats], 0);
        }

        return runningSums[layer];
    }

    /// <summary>Records that layer's running sums now sum <paramref name="tokens"/> tokens.</summary>
    public void SetRunningSums(int layer, int tokens) => runningSums![layer].Tokens = tokens;

    // Where the new tokens go in this layer, evicting old slots (between the sinks and the recent window) first.
    private int MakeRoom(int layer, int tokens)
    {
        int start = SlotsAfterEviction(tokens);
        if (start < Length)
        {
            int evict = Length - start;
            int keyRow = KvHeads * HeadDimQK, valueRow = KvHeads * HeadDimV;
            Array.Copy(keys[layer], (Sinks + evict) * keyRow, keys[layer], Sinks * keyRow, (start - Sinks) * keyRow);
            Array.Copy(values[layer], (Sinks + evict) * valueRow, values[layer], Sinks * valueRow, (start - Sinks) * valueRow);
        }

        return start;
    }

    // The number of old slots kept when `tokens` more arrive.
    private int SlotsAfterEviction(int tokens)
    {
        if (tokens > Capacity || (Window > 0 && tokens > Window))
        {
            throw new InvalidOperationException($"KV cache: {tokens} new tokens do not fit a cache of {Capacity}");
        }

        if (Length + tokens <= Capacity)
        {
            return Length;
        }

        if (Window == 0)
        {
            throw new HeadLensException($"the KV cache is full ({Capacity} tokens): the context is exhausted");
        }

        return Capacity - tokens;
    }
}
