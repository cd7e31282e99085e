#!/usr/bin/env python3
"""Golden values for head ablation (HeadAblation, `headlens ablate`), from PyTorch (Debian's python3-torch).

Reads three committed fixtures (tiny-gpt2, tiny-llama-gqa, tiny-bert: written by model_golden.py and bert_golden.py)
and runs each in float64 with its own forward (hooked_models.py), once intact and once per head with that head's z (softmax(QKᵀ/√d)·V,
[T, D]) replaced: by zeros, or by its mean over the text's positions in the intact run. Records, per head and method:
  decoders: the mean next-token loss over the T - 1 predictions and each prediction's probability of the actual token,
  and -log p(TARGET) after the text (the last position's prediction of token id TARGET = 7);
  the encoder: 1 - cosine between the intact and the ablated sentence embedding (the last layer's hidden states
  averaged over the tokens), and per token 1 - cosine of its hidden state.
Regenerate: /usr/bin/python3 tests/reference/ablation_golden.py
"""
import json
import os

import torch
import torch.nn.functional as F

from hooked_models import FIXTURES, FORWARDS, load


def ablate(method, head, means):
    """A z hook replacing one head's z [T, D] by zeros or by its mean over the text (means: [H, D] per layer)."""
    def edit(layer, z):
        z = z.clone()
        z[:, head] = 0.0 if method == "zero" else means[layer][head]
        return z
    return edit


def recorder(record):
    def keep(layer, z):
        record[layer] = z.clone()
        return z
    return keep


TARGET = 7


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def case(name, ids):
    p, cfg = load(name)
    forward, layers_key, heads_key = FORWARDS[name]
    ids = torch.tensor(ids)
    decoder = name != "tiny-bert"

    def measure(output):
        if decoder:
            losses = F.cross_entropy(output[:-1], ids[1:], reduction="none")
            target = float(-torch.log_softmax(output[-1], -1)[TARGET])
            return {"loss": float(losses.mean()), "probabilities": [float(f"{v:.10g}") for v in torch.exp(-losses).tolist()],
                    "target_loss": target}
        return {"hidden": output}

    record = {}
    clean = measure(forward(p, cfg, ids, {("z", l): recorder(record) for l in range(cfg[layers_key])}))
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
                ablated = measure(forward(p, cfg, ids, {("z", layer): ablate(method, head, means)}))
                if decoder:
                    entry[method] = ablated
                else:
                    sentence = 1 - float((unit(clean["hidden"].mean(0)) * unit(ablated["hidden"].mean(0))).sum())
                    tokens = 1 - (unit(clean["hidden"]) * unit(ablated["hidden"])).sum(-1)
                    entry[method] = {"drift": sentence, "token_drift": [float(f"{v:.10g}") for v in tokens.tolist()]}
            result["heads"].append(entry)
    return result


cases = [
    case("tiny-gpt2", [3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 9, 3]),
    case("tiny-llama-gqa", [1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9]),
    case("tiny-bert", [2, 7, 18, 28, 18, 28, 4, 5, 9, 3]),
]
os.makedirs(os.path.join(FIXTURES, "ablation"), exist_ok=True)
with open(os.path.join(FIXTURES, "ablation", "golden.json"), "w") as f:
    json.dump(cases, f)
for c in cases:
    worst = max(c["heads"], key=lambda e: e["zero"].get("loss", e["zero"].get("drift")))
    print(f"{c['model']}: {len(c['heads'])} heads; largest zero-ablation effect at {worst['layer']}.{worst['head']}")
