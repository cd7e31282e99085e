#!/usr/bin/env python3
"""Golden values for direct logit attribution (DirectLogitAttribution, `headlens attribute`), from PyTorch (Debian's
python3-torch).

Reads two committed decoder fixtures (tiny-gpt2, tiny-llama-gqa) and runs each in float64 with its own forward
(hooked_models.py), keeping every block's z and MLP output. The stream at the end is a sum of what each component
wrote: the embeddings, each head's z_h · W_O[h] (rows h·D..(h+1)·D of the output projection), each layer's output
bias, each MLP's output. With the final norm's scale at POSITION fixed to the value the run had (LayerNorm also
centres), each component's share in logit(TOKEN) is W_U[TOKEN] · (γ ⊙ centre(v) / scale), plus W_U[TOKEN] · β for
the norm's bias; recorded too for the direction W_U[TOKEN] - W_U[WRONG] (a logit difference).
Regenerate: /usr/bin/python3 tests/reference/dla_golden.py
"""
import json
import os

import torch

from hooked_models import FIXTURES, FORWARDS, load

POSITION, TOKEN, WRONG = 7, 5, 9


def case(name, ids):
    p, cfg = load(name)
    forward, layers_key, heads_key = FORWARDS[name]
    gpt2 = name == "tiny-gpt2"
    layers, heads = cfg[layers_key], cfg[heads_key]
    ids = torch.tensor(ids)
    kept = {}

    def keep(point):
        def record(layer, x):
            kept[(point, layer)] = x.clone()
            return x
        return record

    hooks = {(point, l): keep(point) for point in ("z", "mlp_out", "resid_post") for l in range(layers)}
    logits = forward(p, cfg, ids, hooks)
    x = kept[("resid_post", layers - 1)][POSITION]
    if gpt2:
        gamma, beta, unembed = p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], p["transformer.wte.weight"]
        scale = torch.sqrt(x.var(unbiased=False) + 1e-5)
        centre = lambda v: v - v.mean()
    else:
        gamma, beta, unembed = p["model.norm.weight"], None, p["lm_head.weight"]
        scale = torch.sqrt((x * x).mean() + cfg["rms_norm_eps"])
        centre = lambda v: v

    def shares(direction):
        share = lambda v: float(direction @ (gamma * centre(v) / scale))
        d = cfg["n_embd" if gpt2 else "hidden_size"] // heads
        out = {"heads": [], "mlps": [], "output_biases": []}
        for l in range(layers):
            w_o = p[f"transformer.h.{l}.attn.c_proj.weight"] if gpt2 else p[f"model.layers.{l}.self_attn.o_proj.weight"].T  # [C_in, C_out]
            z = kept[("z", l)][POSITION]  # [H, D]
            out["heads"].append([share(z[h] @ w_o[h * d:(h + 1) * d]) for h in range(heads)])
            out["mlps"].append(share(kept[("mlp_out", l)][POSITION]))
            out["output_biases"].append(share(p[f"transformer.h.{l}.attn.c_proj.bias"]) if gpt2 else 0.0)
        embed = p["transformer.wte.weight"][ids[POSITION]] + p["transformer.wpe.weight"][POSITION] if gpt2 else p["model.embed_tokens.weight"][ids[POSITION]]
        out["embeddings"] = share(embed)
        out["final_bias"] = float(direction @ beta) if beta is not None else 0.0
        return out

    row = logits[POSITION]
    return {"model": name, "ids": ids.tolist(), "position": POSITION, "token": TOKEN, "wrong": WRONG,
            "logit": float(row[TOKEN]), "difference": float(row[TOKEN] - row[WRONG]),
            "token_shares": shares(unembed[TOKEN]), "difference_shares": shares(unembed[TOKEN] - unembed[WRONG])}


cases = [
    case("tiny-gpt2", [3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 9, 3]),
    case("tiny-llama-gqa", [1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9]),
]
os.makedirs(os.path.join(FIXTURES, "attribution"), exist_ok=True)
with open(os.path.join(FIXTURES, "attribution", "golden.json"), "w") as f:
    json.dump(cases, f)
for c in cases:
    s = c["token_shares"]
    total = sum(map(sum, s["heads"])) + sum(s["mlps"]) + sum(s["output_biases"]) + s["embeddings"] + s["final_bias"]
    print(f"{c['model']}: logit {c['logit']:.6f}, sum of shares {total:.6f}")
