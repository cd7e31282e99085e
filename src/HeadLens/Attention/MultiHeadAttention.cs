using HeadLens.Embeddings;
using HeadLens.Kernels;

namespace HeadLens.Attention;

/// <summary>Activations of one multi-head attention call, kept for its backward; reused across calls of one shape.</summary>
public sealed class MultiHeadAttentionState
{
    internal float[] Q = [], K = [], V = [], Heads = [], LogSumExp = [], Fused = [];
    internal float[] QGrad = [], KGrad = [], VGrad = [], HeadsGrad = [], FusedGrad = [];
    internal int QueryLength, KeyLength, PositionOffset;

    internal static void Ensure(ref float[] buffer, int length)
    {
        if (buffer.Length < length)
        {
            buffer = new float[length];
        }
    }
}

/// <summary>
/// Multi-head attention with its projections:
///   q = x·W_Qᵀ (+b_Q) [Tq, H·Dqk];  k = c·W_Kᵀ (+b_K) [Tk, G·Dqk];  v = c·W_Vᵀ (+b_V) [Tk, G·Dv]
///   heads = attention(q, k, v) [Tq, H·Dv]  (RoPE on q and k first, when set);  y = heads·W_Oᵀ (+b_O) [Tq, C]
/// where c = x for self-attention and the other sequence for cross-attention (queries from one sequence, keys and
/// values from another; not causal). With <see cref="FusedProjection"/> the three input projections are one matrix
/// [(H + 2G)·D, C] (GPT-2's c_attn), computed as one product and split.
/// Weights are stored [out, in] as in PyTorch's nn.Linear. Gradients accumulate into the …Grad arrays.
/// </summary>
public sealed class MultiHeadAttention
{
    public MultiHeadAttention(AttentionOptions options, int channels, int contextChannels, bool bias, bool fusedProjection = false)
    {
        if (fusedProjection && (contextChannels != channels || options.HeadDimQK != options.HeadDimV))
        {
            throw new ArgumentException("a fused QKV projection needs self-attention shapes and equal head sizes");
        }

        Options = options;
        Channels = channels;
        ContextChannels = contextChannels;
        FusedProjection = fusedProjection;
        QueryWeight = new float[QuerySize * channels];
        KeyWeight = new float[KeySize * contextChannels];
        ValueWeight = new float[ValueSize * contextChannels];
        OutputWeight = new float[channels * options.Heads * options.HeadDimV];
        QueryBias = bias ? new float[QuerySize] : [];
        KeyBias = bias ? new float[KeySize] : [];
        ValueBias = bias ? new float[ValueSize] : [];
        OutputBias = bias ? new float[channels] : [];
        QueryWeightGrad = new float[QueryWeight.Length];
        KeyWeightGrad = new float[KeyWeight.Length];
        ValueWeightGrad = new float[ValueWeight.Length];
        OutputWeightGrad = new float[OutputWeight.Length];
        QueryBiasGrad = new float[QueryBias.Length];
        KeyBiasGrad = new float[KeyBias.Length];
        ValueBiasGrad = new float[ValueBias.Length];
        OutputBiasGrad = new float[OutputBias.Length];
    }

    public AttentionOptions Options { get; }

    public int Channels { get; }

    public int ContextChannels { get; }

    public bool FusedProjection { get; }

    /// <summary>Rotary embedding of q and k (null: positions come from elsewhere).</summary>
    public RopeSettings? Rope { get; init; }

    public float[] QueryWeight { get; }

    public float[] KeyWeight { get; }

    public float[] ValueWeight { get; }

    public float[] OutputWeight { get; }

    public float[] QueryBias { get; }

    public float[] KeyBias { get; }

    public float[] ValueBias { get; }

    public float[] OutputBias { get; }

    public float[] QueryWeightGrad { get; }

    public float[] KeyWeightGrad { get; }

    public float[] ValueWeightGrad { get; }

    public float[] OutputWeightGrad { get; }

    public float[] QueryBiasGrad { get; }

    public float[] KeyBiasGrad { get; }

    public float[] ValueBiasGrad { get; }

    public float[] OutputBiasGrad { get; }

    private int QuerySize => Options.Heads * Options.HeadDimQK;

    private int KeySize => Options.KvHeads * Options.HeadDimQK;

    private int ValueSize => Options.KvHeads * Options.HeadDimV;

    /// <summary>y [Tq, C] from x [Tq, C] and context [Tk, C_ctx] (pass x again for self-attention).</summary>
    public void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> context, int queryLength, int keyLength, int positionOffset, Span<float> y, MultiHeadAttentionState state)
    {
        state.QueryLength = queryLength;
        state.KeyLength = keyLength;
        state.PositionOffset = positionOffset;
        MultiHeadAttentionState.Ensure(ref state.Q, queryLength * QuerySize);
        MultiHeadAttentionState.Ensure(ref state.K, keyLength * KeySize);
        MultiHeadAttentionState.Ensure(ref state.V, keyLength * ValueSize);
        MultiHeadAttentionState.Ensure(ref state.Heads, queryLength * Options.Heads * Options.HeadDimV);
        MultiHeadAttentionState.Ensure(ref state.LogSumExp, queryLength * Options.Heads);
        if (FusedProjection)
        {
            int width = QuerySize + KeySize + ValueSize;
            MultiHeadAttentionState.Ensure(ref state.Fused, queryLength * width);
            MatMul.Forward(x, FusedWeight(), FusedBias(), queryLength, width, Channels, state.Fused);
            Split(state.Fused, queryLength, state.Q, state.K, state.V);
        }
        else
        {
            MatMul.Forward(x, QueryWeight, QueryBias, queryLength, QuerySize, Channels, state.Q);
            MatMul.Forward(context, KeyWeight, KeyBias, keyLength, KeySize, ContextChannels, state.K);
            MatMul.Forward(context, ValueWeight, ValueBias, keyLength, ValueSize, ContextChannels, state.V);
        }

        if (Rope is not null)
        {
            Embeddings.Rope.Forward(state.Q, queryLength, Options.Heads, Options.HeadDimQK, positionOffset, Rope);
            Embeddings.Rope.Forward(state.K, keyLength, Options.KvHeads, Options.HeadDimQK, 0, Rope);
        }

        ScaledDotProductAttention.Forward(Options, queryLength, keyLength, positionOffset, state.Q, state.K, state.V, state.Heads, state.LogSumExp);
        MatMul.Forward(state.Heads, OutputWeight, OutputBias, queryLength, Channels, Options.Heads * Options.HeadDimV, y);
    }

    /// <summary>
    /// Backward of the last <see cref="Forward"/> with this state: xGrad and contextGrad accumulate (they feed the
    /// residual stream); pass the same span twice for self-attention.
    /// </summary>
    public void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> context, ReadOnlySpan<float> yGrad, Span<float> xGrad, Span<float> contextGrad, MultiHeadAttentionState state)
    {
        int tq = state.QueryLength, tk = state.KeyLength, headsWidth = Options.Heads * Options.HeadDimV;
        MultiHeadAttentionState.Ensure(ref state.HeadsGrad, tq * headsWidth);
        MultiHeadAttentionState.Ensure(ref state.QGrad, tq * QuerySize);
        MultiHeadAttentionState.Ensure(ref state.KGrad, tk * KeySize);
        MultiHeadAttentionState.Ensure(ref state.VGrad, tk * ValueSize);
        MatMul.Backward(yGrad, state.Heads, OutputWeight, tq, Channels, headsWidth, state.HeadsGrad, OutputWeightGrad, OutputBiasGrad);
        ScaledDotProductAttention.Backward(Options, tq, tk, state.PositionOffset, state.Q, state.K, state.V, state.Heads,
            state.HeadsGrad, state.LogSumExp, state.QGrad, state.KGrad, state.VGrad);
        if (Rope is not null)
        {
            Embeddings.Rope.Backward(state.QGrad, tq, Options.Heads, Options.HeadDimQK, state.PositionOffset, Rope);
            Embeddings.Rope.Backward(state.KGrad, tk, Options.KvHeads, Options.HeadDimQK, 0, Rope);
        }

        var inputGrad = new float[Math.Max(tq * Channels, tk * ContextChannels)];
        if (FusedProjection)
        {
            int width = QuerySize + KeySize + ValueSize;
            MultiHeadAttentionState.Ensure(ref state.FusedGrad, tq * width);
            Join(state.QGrad, state.KGrad, state.VGrad, tq, state.FusedGrad);
            var weightGrad = new float[width * Channels];
            var biasGrad = QueryBias.Length == 0 ? [] : new float[width];
            MatMul.Backward(state.FusedGrad, x, FusedWeight(), tq, width, Channels, inputGrad, weightGrad, biasGrad);
            AddStackedRows(weightGrad, Channels, QueryWeightGrad, KeyWeightGrad, ValueWeightGrad);
            AddStackedRows(biasGrad, 1, QueryBiasGrad, KeyBiasGrad, ValueBiasGrad);
            Accumulate(inputGrad.AsSpan(0, tq * Channels), xGrad);
            return;
        }

        MatMul.Backward(state.QGrad, x, QueryWeight, tq, QuerySize, Channels, inputGrad, QueryWeightGrad, QueryBiasGrad);
        Accumulate(inputGrad.AsSpan(0, tq * Channels), xGrad);
        MatMul.Backward(state.KGrad, context, KeyWeight, tk, KeySize, ContextChannels, inputGrad, KeyWeightGrad, KeyBiasGrad);
        Accumulate(inputGrad.AsSpan(0, tk * ContextChannels), contextGrad);
        MatMul.Backward(state.VGrad, context, ValueWeight, tk, ValueSize, ContextChannels, inputGrad, ValueWeightGrad, ValueBiasGrad);
        Accumulate(inputGrad.AsSpan(0, tk * ContextChannels), contextGrad);
    }

    private static void Accumulate(ReadOnlySpan<float> source, Span<float> target) =>
        System.Numerics.Tensors.TensorPrimitives.Add(target[..source.Length], source, target);

    // The fused view [W_Q; W_K; W_V] (rows stacked), as GPT-2 stores c_attn (after its transpose).
    private float[] FusedWeight() => [.. QueryWeight, .. KeyWeight, .. ValueWeight];

    private float[] FusedBias() => QueryBias.Length == 0 ? [] : [.. QueryBias, .. KeyBias, .. ValueBias];

    private void Split(ReadOnlySpan<float> fused, int tokens, Span<float> q, Span<float> k, Span<float> v)
    {
        int width = QuerySize + KeySize + ValueSize;
        for (int t = 0; t < tokens; t++)
        {
            var row = fused.Slice(t * width, width);
            row[..QuerySize].CopyTo(q.Slice(t * QuerySize, QuerySize));
            row.Slice(QuerySize, KeySize).CopyTo(k.Slice(t * KeySize, KeySize));
            row.Slice(QuerySize + KeySize, ValueSize).CopyTo(v.Slice(t * ValueSize, ValueSize));
        }
    }

    private void Join(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, int tokens, Span<float> fused)
    {
        int width = QuerySize + KeySize + ValueSize;
        for (int t = 0; t < tokens; t++)
        {
            var row = fused.Slice(t * width, width);
            q.Slice(t * QuerySize, QuerySize).CopyTo(row);
            k.Slice(t * KeySize, KeySize).CopyTo(row[QuerySize..]);
            v.Slice(t * ValueSize, ValueSize).CopyTo(row[(QuerySize + KeySize)..]);
        }
    }

    // Adds rows [0, Q), [Q, Q+K), [Q+K, …) of a stacked matrix into three targets.
    private void AddStackedRows(ReadOnlySpan<float> stacked, int rowLength, Span<float> q, Span<float> k, Span<float> v)
    {
        if (stacked.IsEmpty)
        {
            return;
        }

        Accumulate(stacked[..(QuerySize * rowLength)], q);
        Accumulate(stacked.Slice(QuerySize * rowLength, KeySize * rowLength), k);
        Accumulate(stacked.Slice((QuerySize + KeySize) * rowLength, ValueSize * rowLength), v);
    }
}
