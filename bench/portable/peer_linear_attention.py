# Causal linear attention (Katharopoulos et al. 2020, feature map elu(x) + 1) in PyTorch, the function
# `headlens bench attention` times as `linear` and `linear-backward`: 12 heads x 64, batch 1, forward under no_grad
# and backward through autograd, the same sample counts as HeadLens's bench. Two ways people write it in PyTorch:
#   quadratic  the masked T x T form, out = (tril(phi(q) phi(k)^T) v) / rowsum   (O(T^2) memory)
#   cumsum     the prefix sums, S_i = cumsum_j phi(k_j) v_j^T, out = phi(q_i) S_i / phi(q_i) z_i   (O(T D Dv) memory)
# Usage: python3 peer_linear_attention.py T,T,... THREADS [quadratic,cumsum]
#        (prints "linear|linear-backward IMPL T median_ms"; a form whose tensors would pass MAX_GB is skipped)
import statistics, sys, time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[2]))
forms = sys.argv[3].split(",") if len(sys.argv) > 3 else ["quadratic", "cumsum"]
MAX_GB = 6


def phi(x):
    return F.elu(x) + 1


def quadratic(q, k, v):  # [H, T, D]
    a = torch.tril(phi(q) @ phi(k).transpose(1, 2))
    return (a @ v) / a.sum(-1, keepdim=True)


def cumsum(q, k, v):
    pq, pk = phi(q), phi(k)
    s = torch.cumsum(pk.unsqueeze(-1) * v.unsqueeze(-2), dim=1)  # [H, T, D, Dv]
    z = torch.cumsum(pk, dim=1)
    return torch.einsum("htd,htde->hte", pq, s) / (pq * z).sum(-1, keepdim=True)


def gigabytes(form, t):
    # The largest tensors autograd keeps: the scores (quadratic) or the prefix sums (cumsum), a few copies each.
    return 4 * 12 * t * (t if form == "quadratic" else 64 * 64) * 4 / 1e9


for T in map(int, sys.argv[1].split(",")):
    reps = 3 if T >= 16384 else 9 if T >= 4096 else 30 if T >= 1024 else 200
    for form in forms:
        if gigabytes(form, T) > MAX_GB:
            print(f"# {form} at T = {T} skipped: its tensors would take about {gigabytes(form, T):.0f} GB", flush=True)
            continue
        attend = quadratic if form == "quadratic" else cumsum
        q, k, v = ((torch.rand(12, T, 64) * 2 - 1).requires_grad_() for _ in range(3))
        g = torch.rand(12, T, 64) * 2 - 1
        with torch.no_grad():
            times = []
            for i in range(reps + 1):
                start = time.perf_counter()
                attend(q, k, v)
                if i >= 1:
                    times.append(time.perf_counter() - start)
        print("linear", form, T, statistics.median(times) * 1000, flush=True)
        times = []
        for i in range(reps + 1):
            o = attend(q, k, v)
            start = time.perf_counter()
            o.backward(g)
            if i >= 1:
                times.append(time.perf_counter() - start)
        print("linear-backward", form, T, statistics.median(times) * 1000, flush=True)
