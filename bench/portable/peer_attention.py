# PyTorch's fused causal attention (scaled_dot_product_attention), forward under no_grad and backward through
# autograd, as bench/compare-attention.sh times it: 12 heads x 64, the same sample counts as HeadLens's bench.
# Usage: python3 peer_attention.py T,T,... B,B,... THREADS [KV_HEADS]   (prints "fused|backward B T median_ms")
# KV_HEADS below 12 shares each key/value head between query heads, as `headlens bench attention --kv-heads` does:
# repeated to 12 heads inside the timed call (Hugging Face's repeat_kv, as its Llama and Qwen2 run SDPA), then the
# fused kernel. SDPA's own enable_gqa=True ran PyTorch 2.6's math path on the CPU, 18x slower at T = 4096.
import statistics, sys, time

import torch
import torch.nn.functional as F

if not hasattr(F, "scaled_dot_product_attention"):
    sys.exit(f"peer_attention: PyTorch {torch.__version__} has no scaled_dot_product_attention (it needs 2.0 or later)")
torch.set_num_threads(int(sys.argv[3]))
kv_heads = int(sys.argv[4]) if len(sys.argv) > 4 else 12


def attend(q, k, v):
    if kv_heads != 12:
        k, v = (x.repeat_interleave(12 // kv_heads, dim=1) for x in (k, v))
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


for B in map(int, sys.argv[2].split(",")):
    for T in map(int, sys.argv[1].split(",")):
        work = B * T * T
        reps = 3 if work >= 16384 ** 2 else 9 if work >= 4096 ** 2 else 30 if work >= 1024 ** 2 else 200
        q = torch.randn(B, 12, T, 64, requires_grad=True)
        k, v = (torch.randn(B, kv_heads, T, 64, requires_grad=True) for _ in range(2))
        g = torch.randn(B, 12, T, 64)
        with torch.no_grad():
            times = []
            for i in range(reps + 1):
                start = time.perf_counter()
                attend(q, k, v)
                if i >= 1:
                    times.append(time.perf_counter() - start)
        print("fused", B, T, statistics.median(times) * 1000, flush=True)
        times = []
        for i in range(reps + 1):
            o = attend(q, k, v)
            start = time.perf_counter()
            o.backward(g)
            if i >= 1:
                times.append(time.perf_counter() - start)
        print("backward", B, T, statistics.median(times) * 1000, flush=True)
