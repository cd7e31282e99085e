"""A GPT-2 Hugging Face directory (bench/random_gpt2.py) in plain PyTorch, float32, with hooks on each block's
queries, keys and values and on its z (softmax(QKᵀ/√d)·V, [H, T, D], as TransformerLens's hook_q/k/v and hook_z),
shared by the peers of `headlens ablate` and `headlens patch`. Attention by scaled_dot_product_attention where the torch has it (2.x), else matmul + softmax."""
import json
import math
import os
import struct
import time

import torch
import torch.nn.functional as F


class Gpt2:
    def __init__(self, directory):
        config = json.load(open(os.path.join(directory, "config.json")))
        with open(os.path.join(directory, "model.safetensors"), "rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(size))
            self.data = bytearray(f.read())
        self.p = {}
        for name, entry in header.items():
            if name != "__metadata__":
                start, end = entry["data_offsets"]
                self.p[name] = torch.frombuffer(self.data, dtype=torch.float32, offset=start, count=(end - start) // 4).reshape(entry["shape"])
        self.c, self.heads, self.layers = config["n_embd"], config["n_head"], config["n_layer"]
        self.fused = hasattr(F, "scaled_dot_product_attention")

    def describe(self, t):
        return (f"torch {torch.__version__}, {torch.get_num_threads()} threads, {self.layers} layers x {self.heads} heads, T = {t}, "
                f"attention {'scaled_dot_product_attention' if self.fused else 'matmul + softmax'}")

    def embed(self, ids):
        return self.p["transformer.wte.weight"][ids] + self.p["transformer.wpe.weight"][:len(ids)]

    def block(self, x, l, edit_z=None, edit_qkv=None):
        """One block on the stream x [T, C]; edit_qkv(q, k, v) may change the queries, keys and values [H, T, D] in
        place (hook_q, hook_k, hook_v), edit_z(z) z [H, T, D]."""
        p, c, h = self.p, self.c, self.heads
        t, d = x.shape[0], c // h
        n = f"transformer.h.{l}."
        a = F.layer_norm(x, (c,), p[n + "ln_1.weight"], p[n + "ln_1.bias"], 1e-5)
        q, k, v = (y.reshape(t, h, d).transpose(0, 1) for y in (a @ p[n + "attn.c_attn.weight"] + p[n + "attn.c_attn.bias"]).split(c, -1))
        if edit_qkv is not None:
            edit_qkv(q, k, v)
        if self.fused:
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
            scores = scores.masked_fill(torch.ones(t, t).triu(1).bool(), float("-inf"))
            z = torch.softmax(scores, -1) @ v
        if edit_z is not None:
            edit_z(z)
        x = x + z.transpose(0, 1).reshape(t, c) @ p[n + "attn.c_proj.weight"] + p[n + "attn.c_proj.bias"]
        m = F.layer_norm(x, (c,), p[n + "ln_2.weight"], p[n + "ln_2.bias"], 1e-5)
        return x + F.gelu(m @ p[n + "mlp.c_fc.weight"] + p[n + "mlp.c_fc.bias"], approximate="tanh") @ p[n + "mlp.c_proj.weight"] + p[n + "mlp.c_proj.bias"]

    def logits(self, x):
        """The final norm and the tied output head on x [R, C] -> [R, V]."""
        x = F.layer_norm(x, (self.c,), self.p["transformer.ln_f.weight"], self.p["transformer.ln_f.bias"], 1e-5)
        return x @ self.p["transformer.wte.weight"].T


def patching_arguments(argv):
    """The patching peers' first six arguments, MODEL_DIR CLEAN_IDS(1,2,3) CORRUPTED_IDS ANSWER WRONG THREADS: the model
    (computing on THREADS threads), the clean and corrupted ids as tensors, the answer and the wrong token."""
    clean_ids, corrupted_ids = (torch.tensor([int(i) for i in arg.split(",")]) for arg in argv[2:4])
    torch.set_num_threads(int(argv[6]))
    return Gpt2(argv[1]), clean_ids, corrupted_ids, int(argv[4]), int(argv[5])


def timed_sweeps(sweep, warm_up):
    """The peers' timing: warm_up(), then sweep(from_block=False) and sweep(from_block=True), each returning
    (clean, corrupted, values), timed without gradients. Prints the "# clean ..., corrupted ...", "full SECONDS" and
    "from_block SECONDS" lines and returns the two sweeps' values."""
    with torch.no_grad():
        warm_up()
        start = time.perf_counter()
        clean, corrupted, full = sweep(from_block=False)
        full_s = time.perf_counter() - start
        start = time.perf_counter()
        _, _, from_block = sweep(from_block=True)
        from_block_s = time.perf_counter() - start
    print(f"# clean {clean:.6f}, corrupted {corrupted:.6f}")
    print(f"full {full_s:.3f}")
    print(f"from_block {from_block_s:.3f}")
    return full, from_block
