#!/usr/bin/env python3
"""Golden values for HeadLens's attention, from PyTorch (Debian's python3-torch; run with /usr/bin/python3).

Writes tests/HeadLens.Tests/Fixtures/attention/golden.json: random q, k, v in HeadLens's token-major layout
[T, heads, D], the naive attention softmax(q·kᵀ/√d + mask)·v computed by torch, and the gradients of
sum(out * r) with respect to q, k and v. Cases: causal, causal + key padding, and grouped-query attention
(torch has no GQA in 1.13: K and V are repeated per group with repeat_interleave, as GQA models do).
Regenerate: /usr/bin/python3 tests/reference/attention_golden.py
"""
import json
import math
import os

import torch

torch.manual_seed(1234)
torch.set_default_dtype(torch.float64)  # golden values in float64; HeadLens (fp32) must match within 1e-5


def case(name, t, heads, kv_heads, d, padded=()):
    q = torch.rand(t, heads, d) * 2 - 1
    k = torch.rand(t, kv_heads, d) * 2 - 1
    v = torch.rand(t, kv_heads, d) * 2 - 1
    r = torch.rand(t, heads, d) * 2 - 1
    # Round inputs to float32 so both sides start from identical numbers.
    q, k, v, r = (x.float().double() for x in (q, k, v, r))
    q.requires_grad_(); k.requires_grad_(); v.requires_grad_()
    group = heads // kv_heads
    kh = k.repeat_interleave(group, dim=1).permute(1, 0, 2)  # [H, T, D]
    vh = v.repeat_interleave(group, dim=1).permute(1, 0, 2)
    qh = q.permute(1, 0, 2)
    scores = qh @ kh.transpose(1, 2) / math.sqrt(d)  # [H, T, T]
    mask = torch.ones(t, t).tril().bool()
    for j in padded:
        mask[:, j] = False
    scores = scores.masked_fill(~mask, float("-inf"))
    out = (torch.softmax(scores, dim=-1) @ vh).permute(1, 0, 2)  # [T, H, D]
    (out * r).sum().backward()
    flat = lambda x: [float(f"{v:.10g}") for v in x.detach().reshape(-1).tolist()]
    return {
        "name": name, "T": t, "heads": heads, "kv_heads": kv_heads, "head_dim": d, "padded": list(padded),
        "q": flat(q), "k": flat(k), "v": flat(v), "r": flat(r),
        "out": flat(out), "q_grad": flat(q.grad), "k_grad": flat(k.grad), "v_grad": flat(v.grad),
    }


cases = [
    case("causal", 33, 3, 3, 16),
    case("padding", 29, 2, 2, 8, padded=(5, 27, 28)),
    case("gqa", 21, 4, 2, 64),
]
path = os.path.join(os.path.dirname(__file__), "..", "HeadLens.Tests", "Fixtures", "attention", "golden.json")
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    json.dump({"torch": torch.__version__, "cases": cases}, f)
print(f"wrote {path}")
