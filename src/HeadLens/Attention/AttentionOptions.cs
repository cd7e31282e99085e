namespace HeadLens.Attention;

/// <summary>Which keys a query may see before windows, sinks, padding and sparsity narrow it further.</summary>
public enum MaskKind
{
    /// <summary>Decoder self-attention: a query sees keys at its own position and before.</summary>
    Causal,

    /// <summary>Encoder or cross-attention: every key is visible.</summary>
    Bidirectional,
}

/// <summary>The Sparse Transformer's factorised patterns (Child et al. 2019), applied on top of the mask.</summary>
public enum SparsePattern
{
    None,

    /// <summary>Visible when the distance is below the stride, or a multiple of it.</summary>
    Strided,

    /// <summary>Visible within the same block of `stride` positions, or in the last `summary` columns of any block.</summary>
    Fixed,
}

/// <summary>
/// The shape and visibility rules of one attention call. Layouts are token-major, as projections produce them:
/// q [Tq, Heads, HeadDimQK], k [Tk, KvHeads, HeadDimQK], v [Tk, KvHeads, HeadDimV], output [Tq, Heads, HeadDimV].
/// Query i sits at absolute position queryOffset + i; key j at position j. Query head h reads key/value head
/// h / (Heads / KvHeads) (grouped-query attention; KvHeads = 1 is multi-query).
/// </summary>
public sealed record AttentionOptions(int Heads, int KvHeads, int HeadDimQK, int HeadDimV)
{
    public MaskKind Mask { get; init; } = MaskKind.Causal;

    /// <summary>The factor on Q·Kᵀ; null means 1/√HeadDimQK.</summary>
    public float? Scale { get; init; }

    /// <summary>0 = unlimited; otherwise a key is visible only when |query position − key position| &lt; Window.</summary>
    public int Window { get; init; }

    /// <summary>The first Sinks keys stay visible beside a window (StreamingLLM's attention sinks).</summary>
    public int Sinks { get; init; }

    /// <summary>ALiBi: per query head, a bias of −slope·(query position − key position) on the scores.</summary>
    public float[]? AlibiSlopes { get; init; }

    /// <summary>[Tk]: true where the key is padding and must never be attended.</summary>
    public bool[]? KeyPadding { get; init; }

    public SparsePattern Sparse { get; init; }

    /// <summary>The stride (block length) of the sparse pattern.</summary>
    public int SparseStride { get; init; }

    /// <summary>For <see cref="SparsePattern.Fixed"/>: the summary columns at the end of each block.</summary>
    public int SparseSummary { get; init; } = 1;

    public float EffectiveScale => Scale ?? 1f / MathF.Sqrt(HeadDimQK);

    /// <summary>Query heads per key/value head.</summary>
    public int GroupSize => Heads / KvHeads;

    /// <summary>True when visibility depends on more than position ranges, so every score needs the full check.</summary>
    internal bool NeedsElementMask => KeyPadding is not null || Sparse != SparsePattern.None;

    public void Validate(int queryLength, int keyLength, int queryOffset)
    {
        if (Heads <= 0 || KvHeads <= 0 || HeadDimQK <= 0 || HeadDimV <= 0)
        {
            throw new ArgumentException($"attention: heads ({Heads}), kv heads ({KvHeads}) and head sizes ({HeadDimQK}, {HeadDimV}) must be positive");
        }

        if (Heads % KvHeads != 0)
        {
            throw new ArgumentException($"attention: kv heads ({KvHeads}) must divide heads ({Heads})");
        }

        if (queryLength < 0 || keyLength < 0 || queryOffset < 0)
        {
            throw new ArgumentException("attention: lengths and offset must not be negative");
        }

        if (Window < 0 || Sinks < 0)
        {
            throw new ArgumentException("attention: window and sinks must not be negative");
        }

        if (AlibiSlopes is not null && AlibiSlopes.Length != Heads)
        {
            throw new ArgumentException($"attention: {AlibiSlopes.Length} ALiBi slopes for {Heads} heads");
        }

        if (KeyPadding is not null && KeyPadding.Length < keyLength)
        {
            throw new ArgumentException($"attention: key padding has {KeyPadding.Length} entries for {keyLength} keys");
        }

        if (Sparse != SparsePattern.None && SparseStride <= 0)
        {
            throw new ArgumentException("attention: a sparse pattern needs a positive stride");
        }
    }

    /// <summary>Whether the query at absolute position <paramref name="queryPosition"/> may see key position <paramref name="keyPosition"/>.</summary>
    public bool IsVisible(int queryPosition, int keyPosition)
    {
        if (KeyPadding is not null && KeyPadding[keyPosition])
        {
            return false;
        }

        int distance = queryPosition - keyPosition;
        if (Mask == MaskKind.Causal && distance < 0)
        {
            return false;
        }

        bool sink = keyPosition < Sinks;
        if (Window > 0 && Math.Abs(distance) >= Window && !sink)
        {
            return false;
        }

        return Sparse switch
        {
            SparsePattern.Strided => sink || Math.Abs(distance) < SparseStride || distance % SparseStride == 0,
            SparsePattern.Fixed => sink || queryPosition / SparseStride == keyPosition / SparseStride
                || keyPosition % SparseStride >= SparseStride - SparseSummary,
            _ => true,
        };
    }

    /// <summary>The additive bias on a score (ALiBi), 0 without one.</summary>
    public float Bias(int head, int queryPosition, int keyPosition) =>
        AlibiSlopes is null ? 0f : -AlibiSlopes[head] * Math.Abs(queryPosition - keyPosition);

    /// <summary>
    /// The key positions [first, end) that can be visible to any query in [queryStart, queryEnd) by position alone;
    /// keys outside are skipped whole (this is what makes causal cost half and windows cost O(T·W)).
    /// Sinks are handled by the caller as a separate range.
    /// </summary>
    internal (int First, int End) KeyRange(int queryStart, int queryEnd, int keyLength)
    {
        int end = Mask == MaskKind.Causal ? Math.Min(keyLength, queryEnd) : keyLength;
        int first = Window > 0 ? Math.Max(0, queryStart - Window + 1) : 0;
        if (Window > 0 && Mask == MaskKind.Bidirectional)
        {
            end = Math.Min(end, queryEnd - 1 + Window);
        }

        return (first, Math.Max(first, end));
    }
}
