# The products HeadLens's `bench matmul` times, through torch (its BLAS: MKL in the pip wheels) and, for the squares,
# numpy (its own BLAS, OpenBLAS in the pip wheels): squares of 512, 1024 and 2048, then a GPT-2 124M training step's
# products at 256 tokens (forward y = x·Wᵀ, input-grad dx = dy·W, weight-grad dW += dyᵀ·x).
# Usage: python3 peer_matmul.py THREADS   (prints one line per product and engine, as bench matmul's text)
import statistics, sys, time

import numpy as np
import torch

threads = int(sys.argv[1])
torch.set_num_threads(threads)


def median_seconds(f, flops):
    reps = int(min(max(3e10 / flops, 15), 50))
    for _ in range(3):
        f()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(engine, op, m, n, k, seconds):
    flops = 2.0 * m * n * k
    print(f"{engine} {op:11} m={m} n={n} k={k} threads={threads}: {seconds * 1e3:.2f} ms, {flops / seconds / 1e9:.0f} GFLOP/s", flush=True)


for size in (512, 1024, 2048):
    a = np.random.rand(size, size).astype(np.float32)
    b = np.random.rand(size, size).astype(np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    report("torch", "square", size, size, size, median_seconds(lambda: torch.mm(ta, tb), 2.0 * size ** 3))
    report("numpy", "square", size, size, size, median_seconds(lambda: a @ b, 2.0 * size ** 3))

tokens = 256
for outputs, inputs in ((2304, 768), (768, 768), (3072, 768), (768, 3072), (50257, 768)):
    for op, transpose_a, transpose_b, m, n, k in (("forward", False, True, tokens, outputs, inputs),
                                                  ("input-grad", False, False, tokens, inputs, outputs),
                                                  ("weight-grad", True, False, outputs, inputs, tokens)):
        a = torch.rand(k, m).t() if transpose_a else torch.rand(m, k)
        b = torch.rand(n, k).t() if transpose_b else torch.rand(k, n)
        c = torch.zeros(m, n)
        product = (lambda: c.addmm_(a, b)) if op == "weight-grad" else (lambda: torch.mm(a, b, out=c))
        report("torch", op, m, n, k, median_seconds(product, 2.0 * m * n * k))
