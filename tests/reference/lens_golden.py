#!/usr/bin/env python3
"""Golden values for the logit lens (LogitLens, `headlens lens`), from PyTorch (Debian's python3-torch).

Reads two committed decoder fixtures (tiny-gpt2, tiny-llama-gqa) and runs each in float64 with its own forward
(hooked_models.py), keeping the stream after the embedding and after every block; each is read by the model's final
norm and output head as if it were the last. Records, per stage and position: the 3 most likely next tokens with their
probabilities and the probability of the actual next token; per stage the mean next-token loss over the T - 1
predictions. The last stage is the model's own output.
Regenerate: /usr/bin/python3 tests/reference/lens_golden.py
"""
import json
import os

import torch
import torch.nn.functional as F

from hooked_models import FIXTURES, FORWARDS, UNEMBED, load


def case(name, ids):
    p, cfg = load(name)
    forward, layers_key, _ = FORWARDS[name]
    ids = torch.tensor(ids)
    streams = {}

    def keep(point):
        def record(layer, x):
            streams[layer if point == "resid_post" else -1] = x.clone()
            return x
        return record

    hooks = {("resid_pre", 0): keep("resid_pre")}
    hooks.update({("resid_post", l): keep("resid_post") for l in range(cfg[layers_key])})
    output = forward(p, cfg, ids, hooks)
    stages = []
    for stage in range(-1, cfg[layers_key]):
        logp = torch.log_softmax(UNEMBED[name](p, cfg, streams[stage]), -1)
        losses = F.nll_loss(logp[:-1], ids[1:], reduction="none")
        top = torch.topk(logp, 3, -1)
        stages.append({"stage": stage, "loss": float(losses.mean()),
                       "next_probabilities": [float(f"{v:.10g}") for v in torch.exp(-losses).tolist()],
                       "top_ids": top.indices.tolist(), "top_probabilities": [[float(f"{v:.10g}") for v in row] for row in torch.exp(top.values).tolist()]})
    assert torch.allclose(torch.log_softmax(output, -1), logp)
    return {"model": name, "ids": ids.tolist(), "stages": stages}


cases = [
    case("tiny-gpt2", [3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 9, 3]),
    case("tiny-llama-gqa", [1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9]),
]
os.makedirs(os.path.join(FIXTURES, "lens"), exist_ok=True)
with open(os.path.join(FIXTURES, "lens", "golden.json"), "w") as f:
    json.dump(cases, f)
for c in cases:
    print(c["model"], "losses by stage:", " ".join(f"{s['loss']:.4f}" for s in c["stages"]))
