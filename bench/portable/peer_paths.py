#!/usr/bin/env python3
"""The peer of `headlens patch --over paths`: path patching (Wang et al. 2022) on a GPT-2 Hugging Face directory
(bench/random_gpt2.py) in plain PyTorch, float32 (gpt2_hooked.py). For every head of the layers before the receiver:
the corrupted sequence with that head's z from the clean run and every other head's z, up to the receiver's layer,
held at the corrupted run's; the receiver's queries, keys and values read there; then the corrupted sequence three
times with the receiver's queries, keys or values replaced by those; logit(ANSWER) - logit(WRONG) at the last position.
Two ways, both timed after a warm-up, each including the clean and corrupted runs:
  full        - every run from the embedding with the whole [T, V] logits (run_with_hooks);
  from_block  - the first run from the corrupted stream entering the sender's block, stopped after the receiver's
                queries, keys and values; the other three from the receiver's block, with the last position's logits.
Prints "# ..." notes, "full SECONDS", "from_block SECONDS" and one "path LAYER HEAD INPUT VALUE VALUE" line per path.
Usage: python3 peer_paths.py MODEL_DIR CLEAN_IDS(1,2,3) CORRUPTED_IDS ANSWER WRONG THREADS RECEIVER(L.H)"""
import sys

import torch

from gpt2_hooked import patching_arguments, timed_sweeps

model, clean_ids, corrupted_ids, answer, wrong = patching_arguments(sys.argv)
receiver_layer, receiver_head = (int(part) for part in sys.argv[7].split("."))
print(f"# {model.describe(len(clean_ids))}, receiver {receiver_layer}.{receiver_head}")
INPUTS = ("q", "k", "v")


def metric(logits):
    return float(logits[-1, answer] - logits[-1, wrong])


def keep_z(store, l):
    def edit(z):
        store[l] = z.clone()
    return edit


def hold(corrupted_z, clean_z, l, sender):
    def edit(z):
        z.copy_(corrupted_z[l])
        if sender is not None:
            z[sender] = clean_z[l][sender]
    return edit


def read_qkv(store):
    def edit(q, k, v):
        store.update(q=q.clone(), k=k.clone(), v=v.clone())
    return edit


def replace(source, which):
    def edit(q, k, v):
        target = {"q": q, "k": k, "v": v}[which]
        target[receiver_head] = source[which][receiver_head]
    return edit


def run(x, first=0, last=None, edits=None, qkv=None, streams=None, last_only=False):
    for l in range(first, model.layers if last is None else last + 1):
        if streams is not None:
            streams.append(x)
        x = model.block(x, l, (edits or {}).get(l), (qkv or {}).get(l))
    return None if last is not None else model.logits(x[-1:] if last_only else x)


def sweep(from_block):
    clean_z, corrupted_z, streams = {}, {}, []
    clean = metric(run(model.embed(clean_ids), edits={l: keep_z(clean_z, l) for l in range(model.layers)}))
    corrupted = metric(run(model.embed(corrupted_ids), edits={l: keep_z(corrupted_z, l) for l in range(model.layers)}, streams=streams))
    values = {}
    for sl in range(receiver_layer):
        for sh in range(model.heads):
            read = {}
            held = {l: hold(corrupted_z, clean_z, l, sh if l == sl else None) for l in range(sl, receiver_layer)}
            if from_block:
                run(streams[sl], sl, receiver_layer, held, {receiver_layer: read_qkv(read)})
            else:
                run(model.embed(corrupted_ids), 0, None, held, {receiver_layer: read_qkv(read)})
            for which in INPUTS:
                patched = {receiver_layer: replace(read, which)}
                logits = run(streams[receiver_layer], receiver_layer, qkv=patched, last_only=True) if from_block \
                    else run(model.embed(corrupted_ids), qkv=patched)
                values[(sl, sh, which)] = metric(logits)
    return clean, corrupted, values


full, from_block = timed_sweeps(sweep, lambda: run(model.embed(clean_ids)))
for (l, h, which), value in full.items():
    print(f"path {l} {h} {which} {value:.6f} {from_block[(l, h, which)]:.6f}")
