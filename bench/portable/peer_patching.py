#!/usr/bin/env python3
"""The peer of `headlens patch`: a GPT-2 Hugging Face directory (bench/random_gpt2.py) in plain PyTorch, float32
(gpt2_hooked.py). A clean and a corrupted sequence; then every head in turn has its z (softmax(QKᵀ/√d)·V) copied from
the clean run into the corrupted one, and logit(ANSWER) - logit(WRONG) at the last position measured. Two ways, both
timed after a warm-up, each including the clean and corrupted runs:
  full        - every patched run from the embedding with the whole [T, V] logits (what run_with_hooks does);
  from_block  - each patched run from the corrupted stream entering the head's block, and only the last position's
                logits (HeadLens's way).
Prints "# ..." notes, "full SECONDS", "from_block SECONDS" and one "head LAYER HEAD VALUE VALUE" line per head (the
metric both ways, for checking HeadLens's numbers on the same weights).
Usage: python3 peer_patching.py MODEL_DIR CLEAN_IDS(1,2,3) CORRUPTED_IDS ANSWER WRONG THREADS"""
import sys

import torch

from gpt2_hooked import patching_arguments, timed_sweeps

model, clean_ids, corrupted_ids, answer, wrong = patching_arguments(sys.argv)
print(f"# {model.describe(len(clean_ids))}")


def copy_head(source, head):
    def edit(z):
        z[head] = source[head]
    return edit


def keep_z(store, l):
    def edit(z):
        store[l] = z.clone()
    return edit


def metric(logits):
    return float(logits[-1, answer] - logits[-1, wrong])


def run(x, first=0, edits=None, streams=None, last_only=False):
    for l in range(first, model.layers):
        if streams is not None:
            streams.append(x)
        x = model.block(x, l, (edits or {}).get(l))
    return model.logits(x[-1:] if last_only else x)


def sweep(from_block):
    clean_z = {}
    clean = metric(run(model.embed(clean_ids), edits={l: keep_z(clean_z, l) for l in range(model.layers)}))
    streams = []
    corrupted = metric(run(model.embed(corrupted_ids), streams=streams))
    values = {}
    for l in range(model.layers):
        for h in range(model.heads):
            edits = {l: copy_head(clean_z[l], h)}
            logits = run(streams[l], l, edits, last_only=True) if from_block else run(model.embed(corrupted_ids), 0, edits)
            values[(l, h)] = metric(logits)
    return clean, corrupted, values


full, from_block = timed_sweeps(sweep, lambda: run(model.embed(clean_ids)))
for (l, h), value in full.items():
    print(f"head {l} {h} {value:.6f} {from_block[(l, h)]:.6f}")
