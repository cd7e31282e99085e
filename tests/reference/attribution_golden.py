#!/usr/bin/env python3
"""Golden values for attribution patching (AttributionPatching, `headlens patch --attribution`), from PyTorch's
autograd (Debian's python3-torch).

Reads two committed decoder fixtures (tiny-gpt2, tiny-llama-gqa) and runs each in float64 with its own forward
(hooked_models.py): the clean sequence, keeping each block's z (softmax(QKᵀ/√d)·V per head, [T, H, D]), the stream
entering it (resid_pre, [T, C]) and its attention and MLP outputs (attn_out, mlp_out, [T, C], before they join the
stream); then the corrupted one with the same points kept in the graph (retain_grad), the
metric at the last position, and its gradient by autograd. Attribution patching's estimate of copying a point from
the clean run is (clean − corrupted) · ∂metric/∂point, summed:
  heads:          over a head's positions and dimensions, per layer and head;
  head_positions: over a head's dimensions, per layer, head and position;
  stream, attention, mlp: over the channels, per layer and position.
For two metrics: logit(ANSWER) − logit(WRONG), and log p(ANSWER). The clean and corrupted ids are those of
patching_golden.py.
Regenerate: /usr/bin/python3 tests/reference/attribution_golden.py
"""
import json
import os

import torch

from hooked_models import FIXTURES, FORWARDS, load

ANSWER, WRONG = 7, 9
POINTS = ("z", "resid_pre", "attn_out", "mlp_out")
METRICS = {"logit_difference": lambda last: last[ANSWER] - last[WRONG],
           "log_probability": lambda last: torch.log_softmax(last, -1)[ANSWER]}


def keep(store, point, retain):
    def hook(layer, x):
        if retain:
            x.retain_grad()
        store[(point, layer)] = x
        return x
    return hook


def case(name, clean_ids, corrupted_ids):
    p, cfg = load(name)
    forward, layers_key, heads_key = FORWARDS[name]
    layers, heads = cfg[layers_key], cfg[heads_key]
    for tensor in p.values():
        tensor.requires_grad_(True)   # every activation then carries the graph its gradient is read from
    clean_ids, corrupted_ids = torch.tensor(clean_ids), torch.tensor(corrupted_ids)
    clean = {}
    with torch.no_grad():
        clean_last = forward(p, cfg, clean_ids, {(point, l): keep(clean, point, False) for point in POINTS for l in range(layers)})[-1]
    result = {"model": name, "clean_ids": clean_ids.tolist(), "corrupted_ids": corrupted_ids.tolist(), "answer": ANSWER, "wrong": WRONG}
    for metric, measure in METRICS.items():
        corrupted = {}
        last = forward(p, cfg, corrupted_ids, {(point, l): keep(corrupted, point, True) for point in POINTS for l in range(layers)})[-1]
        value = measure(last)
        value.backward()
        estimates = {"clean": float(measure(clean_last)), "corrupted": float(value), "heads": [], "head_positions": [], "stream": [],
                     "attention": [], "mlp": []}
        for l in range(layers):
            z = corrupted[("z", l)]
            by_head = ((clean[("z", l)] - z) * z.grad).sum(-1)             # [T, H]
            estimates["heads"].append(by_head.sum(0).tolist())
            estimates["head_positions"].append(by_head.T.tolist())          # [H][T]
            for site, point in (("stream", "resid_pre"), ("attention", "attn_out"), ("mlp", "mlp_out")):
                x = corrupted[(point, l)]
                estimates[site].append(((clean[(point, l)] - x) * x.grad).sum(-1).tolist())
        result[metric] = estimates
        for tensor in p.values():
            tensor.grad = None
    return result


cases = [
    case("tiny-gpt2", [3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 9, 3], [3, 14, 15, 9, 26, 5, 35, 8, 22, 7, 9, 3]),
    case("tiny-llama-gqa", [1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9], [1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 2, 9, 7, 9]),
]
os.makedirs(os.path.join(FIXTURES, "attribution-patching"), exist_ok=True)
with open(os.path.join(FIXTURES, "attribution-patching", "golden.json"), "w") as f:
    json.dump(cases, f)
for c in cases:
    print(c["model"], "logit difference", round(c["logit_difference"]["clean"], 4), round(c["logit_difference"]["corrupted"], 4),
          "head 1.0 estimate", round(c["logit_difference"]["heads"][1][0], 5))
