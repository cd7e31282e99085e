#!/usr/bin/env python3
"""The peer of `headlens patch --attribution`: attribution patching of every head of a GPT-2 Hugging Face directory
(bench/random_gpt2.py) in plain PyTorch, float32 (gpt2_hooked.py): the clean run's z (softmax(QKᵀ/√d)·V) kept, the
corrupted run's z kept in the graph (retain_grad), logit(ANSWER) - logit(WRONG) at the last position backpropagated,
and per head Σ (z_clean - z_corrupted) · ∂metric/∂z. Two ways, both timed after a warm-up, each including both runs:
  full        - every parameter requiring a gradient, as a TransformerLens HookedTransformer's do (their gradients are
                computed too, as HeadLens's backward pass computes them);
  from_block  - parameters frozen, so that autograd takes the gradient only down to the first layer's z (the least
                work it can do).
Prints "# ..." notes, "full SECONDS", "from_block SECONDS" and one "head LAYER HEAD VALUE VALUE" line per head (the
corrupted metric plus the estimate, both ways).
Usage: python3 peer_attribution.py MODEL_DIR CLEAN_IDS(1,2,3) CORRUPTED_IDS ANSWER WRONG THREADS"""
import sys
import time

import torch

from gpt2_hooked import patching_arguments

model, clean_ids, corrupted_ids, answer, wrong = patching_arguments(sys.argv)
print(f"# {model.describe(len(clean_ids))}")


def run(ids, keep, retain):
    x = model.embed(ids)
    for l in range(model.layers):
        def edit(z, l=l):
            if retain:
                z.retain_grad()
            keep[l] = z
        x = model.block(x, l, edit_z=edit)
    last = model.logits(x[-1:])[0]
    return last[answer] - last[wrong]


def attribution(parameters_require_grad):
    for tensor in model.p.values():
        tensor.requires_grad_(parameters_require_grad)
        tensor.grad = None
    clean_z, corrupted_z = {}, {}
    with torch.no_grad():
        clean = run(clean_ids, clean_z, False)
    with torch.enable_grad():
        if not parameters_require_grad:
            # The graph must start somewhere below the first z: the embedding's output.
            embed = model.embed
            model.embed = lambda ids: embed(ids).requires_grad_(True)
        corrupted = run(corrupted_ids, corrupted_z, True)
        corrupted.backward()
        if not parameters_require_grad:
            model.embed = embed
    values = {}
    for l in range(model.layers):
        estimate = ((clean_z[l] - corrupted_z[l].detach()) * corrupted_z[l].grad).sum((1, 2))   # [H]
        for h in range(model.heads):
            values[(l, h)] = float(corrupted) + float(estimate[h])
    return float(clean), float(corrupted), values


attribution(True)
start = time.perf_counter()
clean, corrupted, full = attribution(True)
full_s = time.perf_counter() - start
attribution(False)
start = time.perf_counter()
_, _, frozen = attribution(False)
frozen_s = time.perf_counter() - start
print(f"# clean {clean:.6f}, corrupted {corrupted:.6f}")
print(f"full {full_s:.3f}")
print(f"from_block {frozen_s:.3f}")
for (l, h), value in full.items():
    print(f"head {l} {h} {value:.6f} {frozen[(l, h)]:.6f}")
