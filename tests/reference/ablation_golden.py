#!/usr/bin/env python3
"""Golden values for head ablation (HeadAblation, `headlens ablate`), from PyTorch (Debian's python3-torch).

Reads three committed fixtures (tiny-gpt2, tiny-llama-gqa, tiny-bert: written by model_golden.py and bert_golden.py)
and runs each in float64 with its own forward, once intact and once per head with that head's z (softmax(QKᵀ/√d)·V,
[T, D]) replaced: by zeros, or by its mean over the text's positions in the intact run. Records, per head and method:
  decoders: the mean next-token loss over the T - 1 predictions and each prediction's probability of the actual token,
  and -log p(TARGET) after the text (the last position's prediction of token id TARGET = 7);
  the encoder: 1 - cosine between the intact and the ablated sentence embedding (the last layer's hidden states
  averaged over the tokens), and per token 1 - cosine of its hidden state.
Regenerate: /usr/bin/python3 tests/reference/ablation_golden.py
"""
import json
import math
import os

import torch
import torch.nn.functional as F

from model_golden_io import read_safetensors

torch.set_default_dtype(torch.float64)
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "HeadLens.Tests", "Fixtures")


def attend(q, k, v, causal):
    # q [T, H, D], k/v [T, G, D] -> z [T, H, D]; grouped-query by repeating each key/value head.
    repeat = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(repeat, 1), v.repeat_interleave(repeat, 1)
    scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(q.shape[-1])
    if causal:
        t = q.shape[0]
        scores = scores.masked_fill(~torch.ones(t, t).tril().bool(), float("-inf"))
    return torch.einsum("hts,shd->thd", torch.softmax(scores, -1), v)


def edit(z, layer, ablation, record):
    """Applies ('zero' | 'mean', layer, head) to z [T, H, D]; record collects the intact z per layer."""
    if record is not None:
        record[layer] = z.clone()
    if ablation is not None and ablation[1] == layer:
        method, _, head, means = ablation
        z = z.clone()
        z[:, head] = 0.0 if method == "zero" else means[layer][head]
    return z


def gpt2(p, cfg, ids, ablation=None, record=None):
    t, c, h = len(ids), cfg["n_embd"], cfg["n_head"]
    x = p["transformer.wte.weight"][ids] + p["transformer.wpe.weight"][:t]
    for l in range(cfg["n_layer"]):
        n = f"transformer.h.{l}."
        a = F.layer_norm(x, (c,), p[n + "ln_1.weight"], p[n + "ln_1.bias"], 1e-5)
        q, k, v = (y.reshape(t, h, c // h) for y in (a @ p[n + "attn.c_attn.weight"] + p[n + "attn.c_attn.bias"]).split(c, -1))
        z = edit(attend(q, k, v, True), l, ablation, record)
        x = x + z.reshape(t, c) @ p[n + "attn.c_proj.weight"] + p[n + "attn.c_proj.bias"]
        m = F.layer_norm(x, (c,), p[n + "ln_2.weight"], p[n + "ln_2.bias"], 1e-5)
        x = x + F.gelu(m @ p[n + "mlp.c_fc.weight"] + p[n + "mlp.c_fc.bias"], approximate="tanh") @ p[n + "mlp.c_proj.weight"] + p[n + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (c,), p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], 1e-5)
    return x @ p["transformer.wte.weight"].T


def rope(x, theta):
    t, d = x.shape[0], x.shape[-1]
    angles = torch.arange(t, dtype=torch.float64)[:, None] * theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)[None, :]
    cos, sin = (torch.cat([f(angles), f(angles)], -1)[:, None, :] for f in (torch.cos, torch.sin))
    return x * cos + torch.cat([-x[..., d // 2:], x[..., : d // 2]], -1) * sin


def llama(p, cfg, ids, ablation=None, record=None):
    t, c, h, g = len(ids), cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d, eps = c // h, cfg["rms_norm_eps"]
    rms = lambda x, w: x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w
    x = p["model.embed_tokens.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        n = f"model.layers.{l}.self_attn."
        a = rms(x, p[f"model.layers.{l}.input_layernorm.weight"])
        q = rope((a @ p[n + "q_proj.weight"].T).reshape(t, h, d), cfg["rope_theta"])
        k = rope((a @ p[n + "k_proj.weight"].T).reshape(t, g, d), cfg["rope_theta"])
        v = (a @ p[n + "v_proj.weight"].T).reshape(t, g, d)
        z = edit(attend(q, k, v, True), l, ablation, record)
        x = x + z.reshape(t, c) @ p[n + "o_proj.weight"].T
        m = rms(x, p[f"model.layers.{l}.post_attention_layernorm.weight"])
        n = f"model.layers.{l}.mlp."
        x = x + (F.silu(m @ p[n + "gate_proj.weight"].T) * (m @ p[n + "up_proj.weight"].T)) @ p[n + "down_proj.weight"].T
    return rms(x, p["model.norm.weight"]) @ p["lm_head.weight"].T


def bert(p, cfg, ids, ablation=None, record=None):
    t, c, h = len(ids), cfg["hidden_size"], cfg["num_attention_heads"]
    eps = cfg["layer_norm_eps"]
    ln = lambda x, name: F.layer_norm(x, (c,), p[name + ".weight"], p[name + ".bias"], eps)
    linear = lambda x, name: x @ p[name + ".weight"].T + p[name + ".bias"]
    x = p["embeddings.word_embeddings.weight"][ids] + p["embeddings.position_embeddings.weight"][:t] \
        + p["embeddings.token_type_embeddings.weight"][0]
    x = ln(x, "embeddings.LayerNorm")
    for l in range(cfg["num_hidden_layers"]):
        n = f"encoder.layer.{l}."
        q, k, v = (linear(x, n + "attention.self." + w).reshape(t, h, c // h) for w in ("query", "key", "value"))
        z = edit(attend(q, k, v, False), l, ablation, record)
        x = ln(x + linear(z.reshape(t, c), n + "attention.output.dense"), n + "attention.output.LayerNorm")
        x = ln(x + linear(F.gelu(linear(x, n + "intermediate.dense")), n + "output.dense"), n + "output.LayerNorm")
    return x


TARGET = 7


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def case(name, forward, layers_key, heads_key, ids):
    directory = os.path.join(FIXTURES, "models", name)
    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)
    p = read_safetensors(os.path.join(directory, "model.safetensors"))
    ids = torch.tensor(ids)
    decoder = forward is not bert

    def measure(output):
        if decoder:
            losses = F.cross_entropy(output[:-1], ids[1:], reduction="none")
            target = float(-torch.log_softmax(output[-1], -1)[TARGET])
            return {"loss": float(losses.mean()), "probabilities": [float(f"{v:.10g}") for v in torch.exp(-losses).tolist()],
                    "target_loss": target}
        return {"hidden": output}

    record = {}
    clean = measure(forward(p, cfg, ids, record=record))
    means = {l: z.mean(0) for l, z in record.items()}  # [H, D] per layer
    result = {"model": name, "ids": ids.tolist(), "heads": []}
    if decoder:
        result["clean_loss"] = clean["loss"]
        result["clean_probabilities"] = clean["probabilities"]
        result["target"] = TARGET
        result["clean_target_loss"] = clean["target_loss"]
    for layer in range(cfg[layers_key]):
        for head in range(cfg[heads_key]):
            entry = {"layer": layer, "head": head}
            for method in ("zero", "mean"):
                ablated = measure(forward(p, cfg, ids, ablation=(method, layer, head, means)))
                if decoder:
                    entry[method] = ablated
                else:
                    sentence = 1 - float((unit(clean["hidden"].mean(0)) * unit(ablated["hidden"].mean(0))).sum())
                    tokens = 1 - (unit(clean["hidden"]) * unit(ablated["hidden"])).sum(-1)
                    entry[method] = {"drift": sentence, "token_drift": [float(f"{v:.10g}") for v in tokens.tolist()]}
            result["heads"].append(entry)
    return result


cases = [
    case("tiny-gpt2", gpt2, "n_layer", "n_head", [3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 9, 3]),
    case("tiny-llama-gqa", llama, "num_hidden_layers", "num_attention_heads", [1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9]),
    case("tiny-bert", bert, "num_hidden_layers", "num_attention_heads", [2, 7, 18, 28, 18, 28, 4, 5, 9, 3]),
]
os.makedirs(os.path.join(FIXTURES, "ablation"), exist_ok=True)
with open(os.path.join(FIXTURES, "ablation", "golden.json"), "w") as f:
    json.dump(cases, f)
for c in cases:
    worst = max(c["heads"], key=lambda e: e["zero"].get("loss", e["zero"].get("drift")))
    print(f"{c['model']}: {len(c['heads'])} heads; largest zero-ablation effect at {worst['layer']}.{worst['head']}")
