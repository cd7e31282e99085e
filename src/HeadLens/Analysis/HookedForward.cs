using HeadLens.Model;

namespace HeadLens.Analysis;

/// <summary>
/// A model with its own set of hooks — an intervention, or several — kept apart from the model's shared
/// <see cref="Transformer.Hooks"/>, so <c>new HookedForward(model).ZeroAblateHead(1, 0).Run(ids)</c> leaves the model
/// untouched for every other caller. Runs go through the model's one forward (<see cref="Transformer.Run"/>).
/// </summary>
public sealed class HookedForward(Transformer model)
{
    private readonly HookRegistry hooks = new(model.Config);

    public Transformer Model { get; } = model;

    public ModelConfig Config => Model.Config;

    /// <summary>Adds a hook at a capture point (several per point run in the order added) for every later run.</summary>
    public HookedForward AddHook(string name, ActivationHook hook)
    {
        _ = hooks.Add(name, hook);
        return this;
    }

    /// <summary>Adds a hook for as long as the returned registration is not disposed.</summary>
    public IDisposable Use(string name, ActivationHook hook) => hooks.Add(name, hook);

    public void ClearHooks() => hooks.Clear();

    /// <summary>Runs ids through the model with these hooks; captures the points <paramref name="capture"/> accepts.</summary>
    public HookedRun Run(ReadOnlySpan<int> ids, Func<string, bool>? capture = null) => Model.RunWith(ids, capture, withLogits: true, hooks);

    /// <summary>
    /// The same run from block <paramref name="layer"/> on, the blocks before it skipped: <paramref name="residual"/>
    /// [T, C] is the stream entering that block (its hook_resid_pre from a run of the same ids, the earlier blocks'
    /// hooks applied or not as that run had them). Hooks and captures of earlier points do not run.
    /// </summary>
    public HookedRun RunFrom(ReadOnlySpan<int> ids, int layer, ReadOnlySpan<float> residual, Func<string, bool>? capture = null) =>
        Model.RunWith(ids, capture, withLogits: true, hooks, firstLayer: layer, residualIn: residual);

    /// <summary>
    /// <see cref="RunFrom"/> for <paramref name="batch"/> sequences in one pass: <paramref name="ids"/> [B, T] and
    /// <paramref name="residual"/> [B·T, C] row-major. Hooks see all B·T rows at once ([B·T, H, D] at hook_z), so an
    /// intervention can differ per sequence — except hook_rot_q / hook_rot_k, hook_scores and hook_pattern, which fire
    /// once per sequence with its T rows; the run's logits are [B·T, V]. Larger products than B single runs make, and
    /// attention on the fused kernel in the layers where nothing wants the scores or the pattern: the same values as
    /// B single runs to float rounding, not to the bit.
    /// </summary>
    public HookedRun RunBatchFrom(ReadOnlySpan<int> ids, int batch, int layer, ReadOnlySpan<float> residual, Func<string, bool>? capture = null) =>
        Model.RunWith(ids, capture, withLogits: true, hooks, firstLayer: layer, residualIn: residual, batch: batch, fusedAttention: true);

    /// <summary>
    /// <see cref="Run"/> where only the prediction after the text is read: logits [1, V] (its last position), and
    /// attention on the fused kernel (no hook here may read or replace a pattern).
    /// </summary>
    public HookedRun RunForLastLogits(ReadOnlySpan<int> ids, Func<string, bool>? capture = null) =>
        Model.RunWith(ids, capture, withLogits: true, hooks, lastLogitsOnly: true, fusedAttention: true);

    /// <summary>
    /// <see cref="RunBatchFrom"/> where only the prediction after each sequence is read: the run's logits are [B, V],
    /// each sequence's last position (the output head runs on B rows instead of B·T).
    /// </summary>
    public HookedRun RunBatchFromForLastLogits(ReadOnlySpan<int> ids, int batch, int layer, ReadOnlySpan<float> residual, Func<string, bool>? capture = null) =>
        Model.RunWith(ids, capture, withLogits: true, hooks, firstLayer: layer, residualIn: residual, batch: batch, lastLogitsOnly: true, fusedAttention: true);

    /// <summary>
    /// <see cref="RunBatchFrom"/> stopped after block <paramref name="lastLayer"/>: for what it captures there and
    /// before (its logits are empty, and the blocks after it, the final norm and the output head do not run).
    /// </summary>
    public HookedRun RunBatchFromThrough(ReadOnlySpan<int> ids, int batch, int layer, int lastLayer, ReadOnlySpan<float> residual, Func<string, bool>? capture = null) =>
        Model.RunWith(ids, capture, withLogits: false, hooks, firstLayer: layer, residualIn: residual, batch: batch, lastLayer: lastLayer, fusedAttention: true);
}
