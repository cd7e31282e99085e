#!/usr/bin/env python3
"""The peer of `headlens ablate`: a GPT-2 Hugging Face directory (bench/random_gpt2.py) in plain PyTorch, float32
(gpt2_hooked.py), every head zero-ablated in turn (its z = softmax(QKᵀ/√d)·V set to 0, as TransformerLens's hook_z
does) and the mean next-token loss over the ids measured. Two ways, both timed after a warm-up:
  full        - every ablated run from the embedding (what run_with_hooks does);
  from_block  - each ablated run from the stream entering the head's block, kept from the clean run (HeadLens's way).
Prints "# ..." notes, then "full SECONDS", "from_block SECONDS" and one "head LAYER HEAD CHANGE" line per head
(loss change in nats/token, for checking HeadLens's numbers on the same weights).
Usage: python3 peer_ablation.py MODEL_DIR IDS(1,2,3) THREADS"""
import sys
import time

import torch
import torch.nn.functional as F

from gpt2_hooked import Gpt2

directory, ids, threads = sys.argv[1], [int(i) for i in sys.argv[2].split(",")], int(sys.argv[3])
torch.set_num_threads(threads)
model = Gpt2(directory)
ids_t = torch.tensor(ids)
print(f"# {model.describe(len(ids))}")


def zero(head):
    def edit(z):
        z[head] = 0.0
    return edit


def loss_from(x, first, ablation=None, keep=None):
    for l in range(first, model.layers):
        if keep is not None:
            keep.append(x)
        x = model.block(x, l, zero(ablation[1]) if ablation and ablation[0] == l else None)
    return float(F.cross_entropy(model.logits(x)[:-1], ids_t[1:]))


with torch.no_grad():
    loss_from(model.embed(ids_t), 0)  # warm-up
    start = time.perf_counter()
    clean = loss_from(model.embed(ids_t), 0)
    full = {(l, h): loss_from(model.embed(ids_t), 0, (l, h)) - clean for l in range(model.layers) for h in range(model.heads)}
    full_s = time.perf_counter() - start
    start = time.perf_counter()
    streams = []
    clean = loss_from(model.embed(ids_t), 0, keep=streams)
    from_block = {(l, h): loss_from(streams[l], l, (l, h)) - clean for l in range(model.layers) for h in range(model.heads)}
    from_block_s = time.perf_counter() - start
print(f"full {full_s:.3f}")
print(f"from_block {from_block_s:.3f}")
for (l, h), change in full.items():
    print(f"head {l} {h} {change:.6f} {from_block[(l, h)]:.6f}")
