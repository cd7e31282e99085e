using HeadLens.Tensors;

namespace HeadLens.Model;

/// <summary>
/// What a training forward pass keeps for its backward, for one batch shape (B sequences × T tokens, N = B·T rows),
/// allocated once in one arena and reused every step. Per layer l: the residual stream entering it, both norms'
/// outputs and statistics, q/k/v after RoPE, the concatenated heads, and the MLP's hidden activations.
/// </summary>
public sealed class Activations
{
    public Activations(ModelConfig config, int batch, int tokens)
    {
        Batch = batch;
        Tokens = tokens;
        int n = batch * tokens, c = config.Channels, f = config.HiddenChannels;
        int q = config.Heads * config.HeadDim, kv = config.KvHeads * config.HeadDim;
        Arena = new Arena($"activations {batch}x{tokens}");
        for (int l = 0; l <= config.Layers; l++)
        {
            Arena.Reserve($"residual.{l}", n, c);           // [N, C] entering layer l (l = L: the final stream)
        }

        for (int l = 0; l < config.Layers; l++)
        {
            string p = $"layers.{l}.";
            Arena.Reserve(p + "attention_norm", n, c);
            Arena.Reserve(p + "attention_norm.mean", n);
            Arena.Reserve(p + "attention_norm.rstd", n);
            Arena.Reserve(p + "q", n, q);                    // [N, H·D], after RoPE
            Arena.Reserve(p + "k", n, kv);                   // [N, G·D], after RoPE
            Arena.Reserve(p + "v", n, kv);
            Arena.Reserve(p + "heads", n, q);                // [N, H·D]: attention output before W_O
            Arena.Reserve(p + "lse", batch, config.Heads * tokens);
            Arena.Reserve(p + "middle", n, c);               // residual after attention
            if (config.HasMlp)
            {
                Arena.Reserve(p + "mlp_norm", n, c);
                Arena.Reserve(p + "mlp_norm.mean", n);
                Arena.Reserve(p + "mlp_norm.rstd", n);
                Arena.Reserve(p + "up", n, f);               // [N, F]
                Arena.Reserve(p + "gate", config.Family == ModelFamily.Llama ? n * f : 1);
                Arena.Reserve(p + "hidden", n, f);           // gelu(up) or silu(gate)·up
            }
        }

        Arena.Reserve("final_norm", n, c);
        Arena.Reserve("final_norm.mean", n);
        Arena.Reserve("final_norm.rstd", n);
        Arena.Reserve("logits", n, config.VocabSize);        // [N, V]
        Arena.Reserve("logits_grad", n, config.VocabSize);
        Arena.Reserve("losses", n);
        // Backward scratch.
        Arena.Reserve("grad.residual", n, c);
        Arena.Reserve("grad.normed", n, c);
        Arena.Reserve("grad.scratch", n, c);
        Arena.Reserve("grad.q", n, q);
        Arena.Reserve("grad.k", n, kv);
        Arena.Reserve("grad.v", n, kv);
        Arena.Reserve("grad.heads", n, q);
        Arena.Reserve("grad.up", n, Math.Max(f, 1));
        Arena.Reserve("grad.gate", n, Math.Max(f, 1));
        Arena.Reserve("grad.hidden", n, Math.Max(f, 1));
        Arena.Allocate();
    }

    public int Batch { get; }

    public int Tokens { get; }

    public Arena Arena { get; }

    public Span<float> this[string name] => Arena.Get(name).Span;

    public Span<float> Layer(int layer, string name) => Arena.Get($"layers.{layer}.{name}").Span;
}
