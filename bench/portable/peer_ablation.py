#!/usr/bin/env python3
"""The peer of `headlens ablate`: a GPT-2 Hugging Face directory (bench/random_gpt2.py) in plain PyTorch, float32,
every head zero-ablated in turn (its z = softmax(QKᵀ/√d)·V set to 0, as TransformerLens's hook_z does) and the mean
next-token loss over the ids measured. Two ways, both timed after a warm-up:
  full        - every ablated run from the embedding (what run_with_hooks does);
  from_block  - each ablated run from the stream entering the head's block, kept from the clean run (HeadLens's way).
Prints "# ..." notes, then "full SECONDS", "from_block SECONDS" and one "head LAYER HEAD CHANGE" line per head
(loss change in nats/token, for checking HeadLens's numbers on the same weights).
Usage: python3 peer_ablation.py MODEL_DIR IDS(1,2,3) THREADS"""
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F

directory, ids, threads = sys.argv[1], [int(i) for i in sys.argv[2].split(",")], int(sys.argv[3])
torch.set_num_threads(threads)
config = json.load(open(os.path.join(directory, "config.json")))
with open(os.path.join(directory, "model.safetensors"), "rb") as f:
    size = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(size))
    data = bytearray(f.read())
p = {}
for name, entry in header.items():
    if name != "__metadata__":
        start, end = entry["data_offsets"]
        p[name] = torch.frombuffer(data, dtype=torch.float32, offset=start, count=(end - start) // 4).reshape(entry["shape"])
c, heads, layers = config["n_embd"], config["n_head"], config["n_layer"]
d = c // heads
ids_t = torch.tensor(ids)
t = len(ids)
fused = hasattr(F, "scaled_dot_product_attention")
print(f"# torch {torch.__version__}, {threads} threads, {layers} layers x {heads} heads, T = {t}, "
      f"attention {'scaled_dot_product_attention' if fused else 'matmul + softmax'}")


def block(x, l, ablate_head=None):
    n = f"transformer.h.{l}."
    a = F.layer_norm(x, (c,), p[n + "ln_1.weight"], p[n + "ln_1.bias"], 1e-5)
    q, k, v = (y.reshape(t, heads, d).transpose(0, 1) for y in (a @ p[n + "attn.c_attn.weight"] + p[n + "attn.c_attn.bias"]).split(c, -1))
    if fused:
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        scores = scores.masked_fill(torch.ones(t, t).triu(1).bool(), float("-inf"))
        z = torch.softmax(scores, -1) @ v
    if ablate_head is not None:
        z[ablate_head] = 0.0
    x = x + z.transpose(0, 1).reshape(t, c) @ p[n + "attn.c_proj.weight"] + p[n + "attn.c_proj.bias"]
    m = F.layer_norm(x, (c,), p[n + "ln_2.weight"], p[n + "ln_2.bias"], 1e-5)
    return x + F.gelu(m @ p[n + "mlp.c_fc.weight"] + p[n + "mlp.c_fc.bias"], approximate="tanh") @ p[n + "mlp.c_proj.weight"] + p[n + "mlp.c_proj.bias"]


def loss_from(x, first, ablation=None, keep=None):
    for l in range(first, layers):
        if keep is not None:
            keep.append(x)
        x = block(x, l, ablation[1] if ablation and ablation[0] == l else None)
    x = F.layer_norm(x, (c,), p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], 1e-5)
    return float(F.cross_entropy(x[:-1] @ p["transformer.wte.weight"].T, ids_t[1:]))


def embed():
    return p["transformer.wte.weight"][ids_t] + p["transformer.wpe.weight"][:t]


with torch.no_grad():
    loss_from(embed(), 0)  # warm-up
    start = time.perf_counter()
    clean = loss_from(embed(), 0)
    full = {(l, h): loss_from(embed(), 0, (l, h)) - clean for l in range(layers) for h in range(heads)}
    full_s = time.perf_counter() - start
    start = time.perf_counter()
    streams = []
    clean = loss_from(embed(), 0, keep=streams)
    from_block = {(l, h): loss_from(streams[l], l, (l, h)) - clean for l in range(layers) for h in range(heads)}
    from_block_s = time.perf_counter() - start
print(f"full {full_s:.3f}")
print(f"from_block {from_block_s:.3f}")
for (l, h), change in full.items():
    print(f"head {l} {h} {change:.6f} {from_block[(l, h)]:.6f}")
