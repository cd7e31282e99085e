"""Float64 forwards of the three golden fixtures' families with TransformerLens-style hook points, shared by the
intervention golden scripts (ablation_golden.py, patching_golden.py).

Each forward takes `hooks`, a dict that may map ("resid_pre" | "q" | "k" | "v" | "pattern" | "z" | "attn_out" |
"mlp_out" | "resid_post", layer) to a function of (layer, activation) returning the activation to go on with: the
stream entering a block [T, C], a block's queries [T, H, D], keys and values [T, G, D] (before RoPE, as HeadLens's
hook_q and hook_k), attention pattern [H, T, T], z (pattern·V per head, [T, H, D], before the output projection), the attention's and the MLP's
outputs [T, C] (before they join the stream; BERT's before its post-norms), and the stream leaving a block. Decoders return logits [T, V], the encoder
its last hidden states [T, C].
"""
import json
import math
import os

import torch
import torch.nn.functional as F

from model_golden_io import read_safetensors

torch.set_default_dtype(torch.float64)
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "HeadLens.Tests", "Fixtures")


def load(name):
    directory = os.path.join(FIXTURES, "models", name)
    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)
    return read_safetensors(os.path.join(directory, "model.safetensors")), cfg


def hook(hooks, point, layer, x):
    function = (hooks or {}).get((point, layer))
    return x if function is None else function(layer, x)


def attend(q, k, v, causal, hooks=None, layer=None):
    # q [T, H, D], k/v [T, G, D] -> z [T, H, D]; grouped-query by repeating each key/value head.
    repeat = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(repeat, 1), v.repeat_interleave(repeat, 1)
    scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(q.shape[-1])
    if causal:
        t = q.shape[0]
        scores = scores.masked_fill(~torch.ones(t, t).tril().bool(), float("-inf"))
    return torch.einsum("hts,shd->thd", hook(hooks, "pattern", layer, torch.softmax(scores, -1)), v)


def qkv(hooks, layer, q, k, v):
    """The three hook points of a block's queries, keys and values, in that order."""
    return hook(hooks, "q", layer, q), hook(hooks, "k", layer, k), hook(hooks, "v", layer, v)


def gpt2(p, cfg, ids, hooks=None):
    t, c, h = len(ids), cfg["n_embd"], cfg["n_head"]
    x = p["transformer.wte.weight"][ids] + p["transformer.wpe.weight"][:t]
    for l in range(cfg["n_layer"]):
        x = hook(hooks, "resid_pre", l, x)
        n = f"transformer.h.{l}."
        a = F.layer_norm(x, (c,), p[n + "ln_1.weight"], p[n + "ln_1.bias"], 1e-5)
        q, k, v = qkv(hooks, l, *(y.reshape(t, h, c // h) for y in (a @ p[n + "attn.c_attn.weight"] + p[n + "attn.c_attn.bias"]).split(c, -1)))
        z = hook(hooks, "z", l, attend(q, k, v, True, hooks, l))
        x = x + hook(hooks, "attn_out", l, z.reshape(t, c) @ p[n + "attn.c_proj.weight"] + p[n + "attn.c_proj.bias"])
        m = F.layer_norm(x, (c,), p[n + "ln_2.weight"], p[n + "ln_2.bias"], 1e-5)
        x = x + hook(hooks, "mlp_out", l, F.gelu(m @ p[n + "mlp.c_fc.weight"] + p[n + "mlp.c_fc.bias"], approximate="tanh") @ p[n + "mlp.c_proj.weight"] + p[n + "mlp.c_proj.bias"])
        x = hook(hooks, "resid_post", l, x)
    return gpt2_unembed(p, cfg, x)


def gpt2_unembed(p, cfg, x):
    """The final norm and the output head on a stream [T, C]: the logits [T, V] it stands for."""
    x = F.layer_norm(x, (cfg["n_embd"],), p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], 1e-5)
    return x @ p["transformer.wte.weight"].T


def rope(x, theta):
    t, d = x.shape[0], x.shape[-1]
    angles = torch.arange(t, dtype=torch.float64)[:, None] * theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)[None, :]
    cos, sin = (torch.cat([f(angles), f(angles)], -1)[:, None, :] for f in (torch.cos, torch.sin))
    return x * cos + torch.cat([-x[..., d // 2:], x[..., : d // 2]], -1) * sin


def llama(p, cfg, ids, hooks=None):
    t, c, h, g = len(ids), cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = c // h
    x = p["model.embed_tokens.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        x = hook(hooks, "resid_pre", l, x)
        n = f"model.layers.{l}.self_attn."
        a = rms(x, p[f"model.layers.{l}.input_layernorm.weight"], cfg)
        q, k, v = qkv(hooks, l, (a @ p[n + "q_proj.weight"].T).reshape(t, h, d), (a @ p[n + "k_proj.weight"].T).reshape(t, g, d),
                      (a @ p[n + "v_proj.weight"].T).reshape(t, g, d))
        z = hook(hooks, "z", l, attend(rope(q, cfg["rope_theta"]), rope(k, cfg["rope_theta"]), v, True, hooks, l))
        x = x + hook(hooks, "attn_out", l, z.reshape(t, c) @ p[n + "o_proj.weight"].T)
        m = rms(x, p[f"model.layers.{l}.post_attention_layernorm.weight"], cfg)
        n = f"model.layers.{l}.mlp."
        x = x + hook(hooks, "mlp_out", l, (F.silu(m @ p[n + "gate_proj.weight"].T) * (m @ p[n + "up_proj.weight"].T)) @ p[n + "down_proj.weight"].T)
        x = hook(hooks, "resid_post", l, x)
    return llama_unembed(p, cfg, x)


def rms(x, w, cfg):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + cfg["rms_norm_eps"]) * w


def llama_unembed(p, cfg, x):
    """The final norm and the output head on a stream [T, C]: the logits [T, V] it stands for."""
    return rms(x, p["model.norm.weight"], cfg) @ p["lm_head.weight"].T


def bert(p, cfg, ids, hooks=None):
    t, c, h = len(ids), cfg["hidden_size"], cfg["num_attention_heads"]
    eps = cfg["layer_norm_eps"]
    ln = lambda x, name: F.layer_norm(x, (c,), p[name + ".weight"], p[name + ".bias"], eps)
    linear = lambda x, name: x @ p[name + ".weight"].T + p[name + ".bias"]
    x = p["embeddings.word_embeddings.weight"][ids] + p["embeddings.position_embeddings.weight"][:t] \
        + p["embeddings.token_type_embeddings.weight"][0]
    x = ln(x, "embeddings.LayerNorm")
    for l in range(cfg["num_hidden_layers"]):
        x = hook(hooks, "resid_pre", l, x)
        n = f"encoder.layer.{l}."
        q, k, v = qkv(hooks, l, *(linear(x, n + "attention.self." + w).reshape(t, h, c // h) for w in ("query", "key", "value")))
        z = hook(hooks, "z", l, attend(q, k, v, False, hooks, l))
        x = ln(x + hook(hooks, "attn_out", l, linear(z.reshape(t, c), n + "attention.output.dense")), n + "attention.output.LayerNorm")
        x = ln(x + hook(hooks, "mlp_out", l, linear(F.gelu(linear(x, n + "intermediate.dense")), n + "output.dense")), n + "output.LayerNorm")
        x = hook(hooks, "resid_post", l, x)
    return x


UNEMBED = {"tiny-gpt2": gpt2_unembed, "tiny-llama-gqa": llama_unembed}
FORWARDS = {"tiny-gpt2": (gpt2, "n_layer", "n_head"), "tiny-llama-gqa": (llama, "num_hidden_layers", "num_attention_heads"),
            "tiny-bert": (bert, "num_hidden_layers", "num_attention_heads")}
