#!/usr/bin/env python3
"""The peer of `headlens circuits`: the Q-, K- and V-composition scores of every head of a GPT-2 Hugging Face
directory (bench/random_gpt2.py) with every head of a later layer, in plain PyTorch, two ways, each timed:
  factored - TransformerLens's way (HookedTransformer.all_composition_scores over FactoredMatrix): each head's
             W_QK and W_OV kept as [C, D]·[D, C] factors, the product of two of them re-factored the way FactoredMatrix's
             `@` does it, and its Frobenius norm read from its singular values (an SVD of each factor, then one of the
             [D, D] middle), batched over the pairs; here only the pairs it keeps (earlier layer first), one sending
             layer at a time so that the batch fits in memory (TransformerLens forms every [L, H, L, H] pair at once);
  whitened - the algorithm HeadLens uses (Circuits.Compositions): each factor's Gram matrix's Cholesky factor folded
             into the other factor in float64, then per receiving layer one float32 product of every receiver's
             [3·H·D, C] rows with every earlier head's [C, D] columns, and each pair's [D, D] block's norm.
The norm's scale γ (ln_1) is folded into W_Q, W_K and W_V as TransformerLens's fold_ln does (its centring is not:
HeadLens leaves it out too). Prints "# ..." notes, "factored SECONDS", "whitened SECONDS" and one
"pair L1 H1 L2 H2 Q K V" line per pair (from the factored way).
Usage: python3 peer_compositions.py MODEL_DIR THREADS"""
import sys
import time

import torch

from gpt2_hooked import Gpt2

directory, threads = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(threads)
model = Gpt2(directory)
L, H, C = model.layers, model.heads, model.c
D = C // H
print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {L} layers x {H} heads, C = {C}")

# TransformerLens's row convention (x @ W): W_Q, W_K, W_V [L, H, C, D], W_O [L, H, D, C], γ folded into the inputs.
W_Q, W_K, W_V, W_O = [], [], [], []
for l in range(L):
    n = f"transformer.h.{l}."
    gamma = model.p[n + "ln_1.weight"]
    q, k, v = model.p[n + "attn.c_attn.weight"].split(C, -1)                  # [C, C] each, x @ W
    W_Q.append((gamma[:, None] * q).reshape(C, H, D).permute(1, 0, 2))
    W_K.append((gamma[:, None] * k).reshape(C, H, D).permute(1, 0, 2))
    W_V.append((gamma[:, None] * v).reshape(C, H, D).permute(1, 0, 2))
    W_O.append(model.p[n + "attn.c_proj.weight"].reshape(H, D, C))
W_Q, W_K, W_V, W_O = (torch.stack(w).contiguous() for w in (W_Q, W_K, W_V, W_O))
T = lambda x: x.transpose(-1, -2)


def factored_norm(a, b):
    """‖a @ b‖_F from singular values, as FactoredMatrix.norm(): svd(a), svd(b), then svd of the middle."""
    ua, sa, va = torch.svd(a)
    ub, sb, vb = torch.svd(b)
    middle = sa[..., :, None] * T(va) @ ub * sb[..., None, :]
    return torch.svd(middle)[1].pow(2).sum(-1).sqrt()


def product(left, right):
    """FactoredMatrix's `left @ right` for [C, D]·[D, C] factors: (left @ right.A) @ right.B, re-factored."""
    (la, lb), (ra, rb) = left, right
    return la @ (lb @ ra), rb   # [.., C, D], [.., D, C]


def factored():
    ov = (W_V, W_O)                 # x @ W_V @ W_O: what a head writes
    qk = (W_Q, T(W_K))              # x_q @ W_Q @ W_Kᵀ @ x_kᵀ
    qk_t = (W_K, T(W_Q))
    ov_norm, qk_norm = factored_norm(*ov), factored_norm(*qk)     # [L, H]
    scores = {}
    for l1 in range(L - 1):
        # Senders: layer l1's heads [H, 1, 1, ...]; receivers: every head of the layers after it [1, L - l1 - 1, H].
        sender = tuple(w[l1][:, None, None] for w in ov)
        for mode, right in (("Q", qk), ("K", qk_t), ("V", ov)):
            receiver = tuple(w[l1 + 1:][None] for w in right)
            norms = factored_norm(*product(sender, receiver))       # [H, L - l1 - 1, H]
            below = ov_norm[l1][:, None, None] * (ov_norm if mode == "V" else qk_norm)[l1 + 1:][None]
            scores[mode, l1] = norms / below
    return scores


def whitened():
    def cholesky_upper(gram):
        return T(torch.linalg.cholesky(gram))      # U with UᵀU = G

    def left_whitened(left, right):
        """X = U·R [D, C] for A = L·R, UᵀU = LᵀL: ‖A·B‖_F = ‖X·B‖_F."""
        return cholesky_upper(T(left) @ left) @ right

    # Column convention (HeadLens's) in float64: W_QKᵀ = W_K·W_Qᵀ, W_QK = W_Q·W_Kᵀ, W_OV = W_Oᵀ·W_Vᵀ as [C, D]·[D, C].
    q, k, v, o = (w.double() for w in (W_Q, W_K, W_V, W_O))
    readers = torch.stack([left_whitened(k, T(q)), left_whitened(q, T(k)), left_whitened(T(o), T(v))], 2)   # [L, H, 3, D, C]
    reader_norms = readers.norm(dim=(-2, -1))                                                               # [L, H, 3]
    # Writers: W_OV = W_Oᵀ·W_Vᵀ, Y = W_Oᵀ·Uᵀ with UᵀU = W_Vᵀ·W_V: ‖A·W_OV‖_F = ‖A·Y‖_F.
    writers = (T(o) @ T(cholesky_upper(T(v) @ v))).float()                                                 # [L, H, C, D]
    readers = readers.float()
    ov_norm = reader_norms[:, :, 2]
    scores = {}
    for l2 in range(1, L):
        x = readers[l2].permute(1, 0, 2, 3).reshape(3 * H * D, C)
        y = writers[:l2].permute(2, 0, 1, 3).reshape(C, l2 * H * D)
        blocks = (x @ y).reshape(3, H, D, l2, H, D).pow(2).sum((2, 5)).double().sqrt()     # [3, H2, l2, H1]
        scores[l2] = blocks / (reader_norms[l2].T[:, :, None, None] * ov_norm[:l2][None, None])
    return scores


def timed(function, runs=3, warmup=True):
    if warmup:
        function()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], result


# The factored way takes about a minute: one run, no warm-up (its first call's set-up is a sliver of that).
factored_s, factored_scores = timed(factored, runs=1, warmup=False)
whitened_s, whitened_scores = timed(whitened)
worst = max(abs(float(factored_scores[mode, l1][h1, l2 - l1 - 1, h2]) - float(whitened_scores[l2][i, h2, l1, h1]))
            for i, mode in enumerate("QKV") for l2 in range(1, L) for l1 in range(l2) for h1 in range(H) for h2 in range(H))
print(f"# the two ways differ by at most {worst:.1e}")
print(f"factored {factored_s:.3f}")
print(f"whitened {whitened_s:.3f}")
for l1 in range(L - 1):
    for h1 in range(H):
        for l2 in range(l1 + 1, L):
            for h2 in range(H):
                q, k, v = (float(factored_scores[mode, l1][h1, l2 - l1 - 1, h2]) for mode in "QKV")
                print(f"pair {l1} {h1} {l2} {h2} {q:.6f} {k:.6f} {v:.6f}")
