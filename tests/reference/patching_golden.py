#!/usr/bin/env python3
"""Golden values for activation patching (ActivationPatching, `headlens patch`), from PyTorch (Debian's python3-torch).

Reads three committed fixtures (tiny-gpt2, tiny-llama-gqa, tiny-bert) and runs each in float64 with its own forward
(hooked_models.py) on a clean and a corrupted sequence of the same length, then once per patch on the corrupted one
with one activation copied from the clean run:
  heads:     one head's z (softmax(QKᵀ/√d)·V, [T, D]) at every position;
  stream:    the stream entering one block (hook_resid_pre, [C]) at one position;
  attention: one block's attention output (hook_attn_out, [C]) at one position;
  mlp:       one block's MLP output (hook_mlp_out, [C]) at one position;
  head_positions: one head's z at one position;
  queries, keys, values: one head's queries, or one key/value head's keys or values (before RoPE), at every position;
  patterns:  one head's attention pattern [T, T];
  paths:     path patching: per sending head of layer 0, the corrupted sequence run with that head's z clean and every
             other head's z held at its corrupted value, the receivers' queries, keys and values read there; then the
             corrupted sequence again with the receivers' queries (keys, values) replaced by those (receivers = [] is
             the path to the output: the first run's metric).
Records, for every run, the decoders' last-position logit(ANSWER) - logit(WRONG) and log p(ANSWER), and each run's
top next token at the last position; for the encoder, the cosine between the run's sentence embedding (the last
hidden states averaged over the tokens) and the clean one.
Regenerate: /usr/bin/python3 tests/reference/patching_golden.py
"""
import json
import os

import torch

from hooked_models import FIXTURES, FORWARDS, load

ANSWER, WRONG = 7, 9
POINTS = {"heads": "z", "stream": "resid_pre", "attention": "attn_out", "mlp": "mlp_out"}


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def recorder(record, point):
    def keep(layer, x):
        record[(point, layer)] = x.clone()
        return x
    return keep


def replace(source, head=None, position=None):
    """A hook writing the clean activation into the corrupted run: one head's rows ([T, H, D]) at every position or
    at one, or one row ([T, C]) at one position."""
    if position is None:
        return replace_heads(source, [head])
    def edit(layer, x):
        x = x.clone()
        if head is not None:
            x[position, head] = source[position, head]
        else:
            x[position] = source[position]
        return x
    return edit


def replace_heads(source, heads, axis=1):
    """Every position of the given heads (axis 1 of queries [T, H, D], or of key/value heads), or their patterns
    (axis 0 of [H, T, T]), from source."""
    def edit(layer, x):
        x = x.clone()
        for head in heads:
            x.select(axis, head).copy_(source.select(axis, head))
        return x
    return edit


def paths(forward, p, cfg, record, corrupted_ids, heads, group, receivers, measure):
    """Path patching from each head of layer 0 to the receivers ([(layer, head)]; [] = the output)."""
    layers = len({l for (_, l) in record})
    last_held = layers - 1 if not receivers else max(l for l, _ in receivers) - 1
    entries = []
    for sender in range(heads):
        hooks, read = {}, {}
        for l in range(0, last_held + 1):
            def hold(layer, z, sender=sender):
                held = record[("z_corrupted", layer)].clone()
                if layer == 0:
                    held[:, sender] = record[("z", 0)][:, sender]
                return held
            hooks[("z", l)] = hold
        for l in {l for l, _ in receivers}:
            for point in ("q", "k", "v"):
                hooks[(point, l)] = recorder(read, point)
        sent = forward(p, cfg, corrupted_ids, hooks)
        if not receivers:
            entries.append({"layer": 0, "head": sender, "input": None, **measure(sent)})
            continue
        for point in ("q", "k", "v"):
            patched = {}
            for l in {l for l, _ in receivers}:
                columns = sorted({h if point == "q" else h // group for r, h in receivers if r == l})
                patched[(point, l)] = replace_heads(read[(point, l)], columns)
            entries.append({"layer": 0, "head": sender, "input": point, **measure(forward(p, cfg, corrupted_ids, patched))})
    return entries


def case(name, clean_ids, corrupted_ids):
    p, cfg = load(name)
    forward, layers_key, heads_key = FORWARDS[name]
    layers = cfg[layers_key]
    clean_ids, corrupted_ids = torch.tensor(clean_ids), torch.tensor(corrupted_ids)
    decoder = name != "tiny-bert"
    record = {}
    hooks = {}
    for l in range(layers):
        for point in list(POINTS.values()) + ["q", "k", "v", "pattern"]:
            hooks[(point, l)] = recorder(record, point)
    clean_output = forward(p, cfg, clean_ids, hooks)
    forward(p, cfg, corrupted_ids, {("z", l): recorder(record, "z_corrupted") for l in range(layers)})
    heads = cfg[heads_key]
    group = heads // cfg.get("num_key_value_heads", heads)

    def measure(output):
        if decoder:
            last = output[-1]
            return {"logit_difference": float(last[ANSWER] - last[WRONG]),
                    "log_probability": float(torch.log_softmax(last, -1)[ANSWER]), "top": int(last.argmax())}
        return {"similarity": float((unit(output.mean(0)) * unit(clean_output.mean(0))).sum())}

    result = {"model": name, "clean_ids": clean_ids.tolist(), "corrupted_ids": corrupted_ids.tolist(),
              "clean": measure(clean_output), "corrupted": measure(forward(p, cfg, corrupted_ids)), "heads": []}
    if decoder:
        result["answer"], result["wrong"] = ANSWER, WRONG
    for layer in range(layers):
        for head in range(cfg[heads_key]):
            patched = forward(p, cfg, corrupted_ids, {("z", layer): replace(record[("z", layer)], head=head)})
            result["heads"].append({"layer": layer, "head": head, **measure(patched)})
        for site, point in POINTS.items():
            if site == "heads":
                continue
            for position in range(len(corrupted_ids)):
                patched = forward(p, cfg, corrupted_ids, {(point, layer): replace(record[(point, layer)], position=position)})
                result.setdefault(site, []).append({"layer": layer, "position": position, **measure(patched)})
        for head in range(heads):
            for position in range(len(corrupted_ids)):
                patched = forward(p, cfg, corrupted_ids, {("z", layer): replace(record[("z", layer)], head=head, position=position)})
                result.setdefault("head_positions", []).append({"layer": layer, "head": head, "position": position, **measure(patched)})
        for site, point in (("queries", "q"), ("keys", "k"), ("values", "v"), ("patterns", "pattern")):
            for head in range(heads if point in ("q", "pattern") else heads // group):
                edit = replace_heads(record[(point, layer)], [head], axis=0 if point == "pattern" else 1)
                patched = forward(p, cfg, corrupted_ids, {(point, layer): edit})
                result.setdefault(site, []).append({"layer": layer, "head": head, **measure(patched)})
    result["paths"] = [{"receivers": receivers, "effects": paths(forward, p, cfg, record, corrupted_ids, heads, group, receivers, measure)}
                       for receivers in ([], [(1, 1)], [(1, 0), (1, heads - 1)])]
    return result


cases = [
    case("tiny-gpt2", [3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 9, 3], [3, 14, 15, 9, 26, 5, 35, 8, 22, 7, 9, 3]),
    case("tiny-llama-gqa", [1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9], [1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 2, 9, 7, 9]),
    case("tiny-bert", [2, 7, 18, 28, 18, 28, 4, 5, 9, 3], [2, 7, 18, 28, 11, 28, 4, 5, 9, 3]),
]
os.makedirs(os.path.join(FIXTURES, "patching"), exist_ok=True)
with open(os.path.join(FIXTURES, "patching", "golden.json"), "w") as f:
    json.dump(cases, f)
for c in cases:
    key = "logit_difference" if "answer" in c else "similarity"
    best = max(c["heads"], key=lambda e: e[key])
    print(f"{c['model']}: clean {c['clean'][key]:.4f}, corrupted {c['corrupted'][key]:.4f}; "
          f"best head {best['layer']}.{best['head']} {best[key]:.4f}; tops {c['clean'].get('top')} / {c['corrupted'].get('top')}")
