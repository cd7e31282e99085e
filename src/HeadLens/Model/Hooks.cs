namespace HeadLens.Model;

/// <summary>
/// Called at a capture point with the activation about to flow on. The hook may read it or change it in place
/// (that is how every intervention works); <paramref name="shape"/> names its layout (see <see cref="HookNames"/>).
/// </summary>
public delegate void ActivationHook(string name, Span<float> activation, ReadOnlySpan<int> shape);

/// <summary>The capture points, named as in TransformerLens. Shapes use T = tokens, C, H, G = kv heads, D, F, V.</summary>
public static class HookNames
{
    public const string Embed = "hook_embed";                                           // [T, C] token embeddings
    public const string PositionEmbed = "hook_pos_embed";                               // [T, C] added positions
    public const string FinalNormalized = "ln_final.hook_normalized";                  // [T, C]

    public static string ResidPre(int layer) => $"blocks.{layer}.hook_resid_pre";       // [T, C]
    public static string AttentionNormalized(int layer) => $"blocks.{layer}.ln1.hook_normalized"; // [T, C]
    public static string Q(int layer) => $"blocks.{layer}.attn.hook_q";                 // [T, H, D] before RoPE
    public static string K(int layer) => $"blocks.{layer}.attn.hook_k";                 // [T, G, D] before RoPE
    public static string V(int layer) => $"blocks.{layer}.attn.hook_v";                 // [T, G, D]
    public static string RotQ(int layer) => $"blocks.{layer}.attn.hook_rot_q";          // [T, H, D] after RoPE (RoPE models)
    public static string RotK(int layer) => $"blocks.{layer}.attn.hook_rot_k";          // [T, G, D] after RoPE
    public static string Scores(int layer) => $"blocks.{layer}.attn.hook_scores";       // [H, T, T] scaled, −∞ masked (linear attention: φ(q)·φ(k), 0 masked)
    public static string Pattern(int layer) => $"blocks.{layer}.attn.hook_pattern";     // [H, T, T] post-softmax (linear: scores / row sum)
    public static string Z(int layer) => $"blocks.{layer}.attn.hook_z";                 // [T, H, D] pattern · V
    public static string Result(int layer) => $"blocks.{layer}.attn.hook_result";       // [T, H, C] each head's W_O output
    public static string AttentionOut(int layer) => $"blocks.{layer}.hook_attn_out";    // [T, C] Σ heads + b_O
    public static string ResidMid(int layer) => $"blocks.{layer}.hook_resid_mid";       // [T, C]
    public static string MlpNormalized(int layer) => $"blocks.{layer}.ln2.hook_normalized"; // [T, C]
    public static string MlpPre(int layer) => $"blocks.{layer}.mlp.hook_pre";           // [T, F] before the activation
    public static string MlpPost(int layer) => $"blocks.{layer}.mlp.hook_post";         // [T, F] after it
    public static string MlpOut(int layer) => $"blocks.{layer}.hook_mlp_out";           // [T, C]
    public static string ResidPost(int layer) => $"blocks.{layer}.hook_resid_post";     // [T, C]

    /// <summary>Every capture point of a model, in the order a forward pass reaches them.</summary>
    public static IEnumerable<string> All(ModelConfig config)
    {
        yield return Embed;
        if (AddsPositions(config))
        {
            yield return PositionEmbed;
        }

        for (int l = 0; l < config.Layers; l++)
        {
            yield return ResidPre(l);
            yield return AttentionNormalized(l);
            yield return Q(l);
            yield return K(l);
            yield return V(l);
            if (config.Positions == PositionKind.Rotary)
            {
                yield return RotQ(l);
                yield return RotK(l);
            }

            yield return Scores(l);
            yield return Pattern(l);
            yield return Z(l);
            yield return Result(l);
            yield return AttentionOut(l);
            yield return ResidMid(l);
            if (config.HasMlp)
            {
                yield return MlpNormalized(l);
                yield return MlpPre(l);
                yield return MlpPost(l);
                yield return MlpOut(l);
            }

            yield return ResidPost(l);
        }

        if (config.NormPlacement == NormPlacement.Pre)
        {
            yield return FinalNormalized;
        }
    }

    internal static bool AddsPositions(ModelConfig config) =>
        config.Positions is PositionKind.Learned or PositionKind.Sinusoidal;
}

/// <summary>
/// Hooks registered on a model, each for as long as its registration is not disposed:
/// <c>using var _ = model.Hooks.Add(HookNames.Pattern(0), (name, pattern, shape) => ...);</c>
/// They run inside <see cref="Transformer.Run"/>, the analysis pass; training and decoding run the same blocks
/// without a hook context, so an unused hook point costs one null check.
/// </summary>
public sealed class HookRegistry
{
    private readonly HashSet<string> names;
    private readonly List<(string Name, ActivationHook Hook)> hooks = [];

    internal HookRegistry(ModelConfig config) => names = new HashSet<string>(HookNames.All(config), StringComparer.Ordinal);

    public int Count => hooks.Count;

    /// <summary>Adds a hook at a capture point (several per point run in the order added); dispose to remove it.</summary>
    public IDisposable Add(string name, ActivationHook hook)
    {
        if (!names.Contains(name))
        {
            throw new HeadLensException($"no capture point named '{name}' in this model");
        }

        var entry = (name, hook);
        hooks.Add(entry);
        return new Registration(() => hooks.Remove(entry));
    }

    public void Clear() => hooks.Clear();

    internal void Invoke(string name, Span<float> activation, ReadOnlySpan<int> shape)
    {
        if (hooks.Count == 0)
        {
            return;
        }

        // A snapshot: a hook may dispose a registration while the point runs.
        foreach (var (hookName, hook) in hooks.ToArray())
        {
            if (hookName == name)
            {
                hook(name, activation, shape);
            }
        }
    }

    internal bool Has(string name) => hooks.Exists(entry => entry.Name == name);

    private sealed class Registration(Action remove) : IDisposable
    {
        private Action? remove = remove;

        public void Dispose()
        {
            remove?.Invoke();
            remove = null;
        }
    }
}

/// <summary>What one analysis run produced: the logits, the captured activations (as they flowed on, after any
/// hook changed them) with their shapes, and the final norm's 1/scale per token (for direct logit attribution).</summary>
public sealed class HookedRun(int[] ids, float[] logits, Dictionary<string, float[]> cache, Dictionary<string, int[]> shapes, float[] finalRstd)
{
    public int[] Ids { get; } = ids;

    public int Tokens => Ids.Length;

    /// <summary>[T, V] (empty when the run was asked for no logits).</summary>
    public float[] Logits { get; } = logits;

    public IReadOnlyDictionary<string, float[]> Cache { get; } = cache;

    public IReadOnlyDictionary<string, int[]> Shapes { get; } = shapes;

    /// <summary>[T]: 1/sqrt(var + ε) (LayerNorm) or 1/sqrt(mean x² + ε) (RMSNorm) of the final norm.</summary>
    public float[] FinalRstd { get; } = finalRstd;

    public float[] this[string name] => Cache.TryGetValue(name, out var value) ? value
        : throw new HeadLensException($"activation '{name}' was not captured in this run");
}

/// <summary>One run's hooks and captures: the forward calls <see cref="Point"/> at every capture point.</summary>
internal sealed class HookContext(HookRegistry hooks, Func<string, bool>? capture, bool fusedAttention = false)
{
    /// <summary>
    /// Whether attention may run on the fused kernel in layers where nothing reads or replaces the scores or the
    /// pattern (batched intervention sweeps: z matches the reference's to float rounding, as the batch's products do).
    /// Otherwise every layer materialises them, so that all analysis runs of a text agree to the last bit.
    /// </summary>
    public bool FusedAttention { get; } = fusedAttention;

    private readonly float[]?[] scratch = new float[2][];

    public Dictionary<string, float[]> Cache { get; } = new(StringComparer.Ordinal);

    public Dictionary<string, int[]> Shapes { get; } = new(StringComparer.Ordinal);

    /// <summary>Buffer <paramref name="slot"/> of the run's reusable scratch (the [H, T, T] scores and pattern).</summary>
    public Span<float> Scratch(int slot, int length)
    {
        if (scratch[slot] is not { } buffer || buffer.Length < length)
        {
            scratch[slot] = buffer = new float[length];
        }

        return buffer.AsSpan(0, length);
    }

    /// <summary>Whether anything reads or changes this point (the forward then materialises what it would skip).</summary>
    public bool Wants(string name) => hooks.Has(name) || capture?.Invoke(name) == true;

    public void Point(string name, Span<float> activation, params int[] shape)
    {
        hooks.Invoke(name, activation, shape);

        if (capture?.Invoke(name) == true)
        {
            Cache[name] = activation.ToArray();
            Shapes[name] = shape;
        }
    }
}
