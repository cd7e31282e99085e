#!/usr/bin/env bash
# Measures HeadLens's matrix product and OpenBLAS (through PyTorch) back to back, in the same run, and prints the
# ratio. Usage: bash bench/compare-matmul.sh [bench matmul options, e.g. --tokens 256,1024]   (from the repository
# root; needs Debian's python3-torch, see ../shared/peers/README.md). The peer gets the fair settings: AVX-512
# OpenBLAS kernels, 2 threads.
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build src/HeadLens.Cli -c Release -o out/bench >/dev/null
OURS=$(mktemp); trap 'rm -f "$OURS"' EXIT
dotnet out/bench/HeadLens.Cli.dll bench matmul --json "$@" >"$OURS"
OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 - "$OURS" <<'PY'
import json, statistics, sys, time, torch
ours = json.load(open(sys.argv[1]))["results"]
print(f"{'op':12} {'m':>6} {'n':>6} {'k':>6} {'thr':>3} {'HeadLens GF/s':>14} {'OpenBLAS GF/s':>14} {'ratio':>6}")
for r in ours:
    c = r["config"]
    torch.set_num_threads(c["threads"])
    m, n, k = c["m"], c["n"], c["k"]
    a, b = torch.randn(m, k), torch.randn(k, n)
    if c["op"] == "forward":      # y = x·Wᵀ with W stored [n, k]
        w = torch.randn(n, k); f = lambda: a @ w.t()
    elif c["op"] == "weight-grad": # dW = dyᵀ·x with dy stored [k, m]
        dy = torch.randn(k, m); f = lambda: dy.t() @ b
    else:
        f = lambda: a @ b
    for _ in range(2): f()
    ts = []
    t_end = time.perf_counter() + 5
    for i in range(50):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        if i >= 4 and time.perf_counter() > t_end: break
    peer = 2 * m * n * k / statistics.median(ts) / 1e9
    print(f"{c['op']:12} {m:6} {n:6} {k:6} {c['threads']:3} {r['gflops']:14.0f} {peer:14.0f} {r['gflops']/peer:6.2f}")
PY
