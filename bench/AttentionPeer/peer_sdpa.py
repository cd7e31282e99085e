# The peer side of bench/AttentionPeer: PyTorch's fused causal attention (scaled_dot_product_attention), driven one
# sample at a time over stdin/stdout so that HeadLens's samples and these alternate a few hundred milliseconds apart.
# Run by bench/compare-attention-interleaved.sh under ../shared/peers/modern-torch (PyTorch 2.6); any torch >= 2.0 works.
# Commands, one per line; each answer is one line:
#   load B T DIR    reads DIR/q.bin, k.bin, v.bin, dout.bin (float32, [B, T, 12, 64], HeadLens's layout), runs one
#                   forward and one backward, writes the forward's output to DIR/out.bin in the same layout -> "ok"
#   fused MS        forwards under no_grad until MS milliseconds of them are timed -> "CALLS SECONDS"
#   backward MS     backwards (each after an untimed forward) until MS milliseconds are timed -> "CALLS SECONDS"
#   quit
# A failure answers "error: WHAT" and exits.
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HEADS, HEAD_DIM = 12, 64


def fail(message):
    print(f"error: {message}", flush=True)
    sys.exit(1)


if not hasattr(F, "scaled_dot_product_attention"):
    fail(f"PyTorch {torch.__version__} has no scaled_dot_product_attention (it needs 2.0 or later)")
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)


def read(directory, name, batch, length):
    data = np.fromfile(f"{directory}/{name}.bin", dtype=np.float32)
    if data.size != batch * length * HEADS * HEAD_DIM:
        fail(f"{name}.bin holds {data.size} floats, expected {batch * length * HEADS * HEAD_DIM}")
    # [B, T, H, D] -> [B, H, T, D], contiguous, as a PyTorch model hands SDPA its heads.
    return torch.from_numpy(data).view(batch, length, HEADS, HEAD_DIM).transpose(1, 2).contiguous()


def attend(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


q = k = v = dout = None
for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    command = words[0]
    if command == "quit":
        break
    if command == "load":
        batch, length, directory = int(words[1]), int(words[2]), words[3]
        q, k, v, dout = (read(directory, name, batch, length) for name in ("q", "k", "v", "dout"))
        for x in (q, k, v):
            x.requires_grad_(True)
        with torch.no_grad():
            out = attend(q, k, v)
        attend(q, k, v).backward(dout)
        out.transpose(1, 2).contiguous().numpy().tofile(f"{directory}/out.bin")
        print("ok", flush=True)
    elif command in ("fused", "backward"):
        if q is None:
            fail(f"'{command}' before 'load'")
        budget, timed, calls = float(words[1]) / 1000, 0.0, 0
        while calls == 0 or timed < budget:
            if command == "fused":
                with torch.no_grad():
                    start = time.perf_counter()
                    attend(q, k, v)
                    timed += time.perf_counter() - start
            else:
                out = attend(q, k, v)
                start = time.perf_counter()
                out.backward(dout)
                timed += time.perf_counter() - start
            calls += 1
        print(calls, timed, flush=True)
    else:
        fail(f"unknown command '{command}'")
