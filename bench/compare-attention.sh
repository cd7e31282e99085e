#!/usr/bin/env bash
# HeadLens's attention variants against both peers, measured back to back in one run: Debian 12's PyTorch 1.13
# (naive attention: it has no fused kernel) and PyTorch 2.6's fused scaled_dot_product_attention (under
# ../shared/peers/modern-torch). Prints each variant with both ratios (peer time / HeadLens's time); the fused
# backward (variant `backward`) is set against SDPA's backward (autograd through scaled_dot_product_attention,
# timed by the script below under the same PyTorch 2.6; torch 1.13 has no fused backward to compare).
# Usage: bash bench/compare-attention.sh [T list, default 256,1024,4096]   (from the repository root; see
#        ../shared/peers/README.md for the peers' setup)
#        ISA=avx2 bash bench/compare-attention.sh   runs all three without AVX-512 (HeadLens with .NET's AVX-512
#        switched off, PyTorch with ATEN_CPU_CAPABILITY=avx2, OpenBLAS as Haswell): the AVX2-only machine class
#        (most laptops and desktops, AMD before Zen 4), measured on an AVX-512 machine.
set -euo pipefail
cd "$(dirname "$0")/.."
LENGTHS=${1:-256,1024,4096}
CORETYPE=SkylakeX
if [ "${ISA:-}" = avx2 ]; then
  export DOTNET_EnableAVX512F=0 DOTNET_EnableAVX512=0 ATEN_CPU_CAPABILITY=avx2
  CORETYPE=Haswell
elif [ -n "${ISA:-}" ]; then
  echo "compare-attention: ISA must be avx2 or unset, got '$ISA'" >&2; exit 2
fi
dotnet build src/HeadLens.Cli -c Release -o out/bench >/dev/null
OURS=$(mktemp); OLD=$(mktemp); NEW=$(mktemp); BACK=$(mktemp); trap 'rm -f "$OURS" "$OLD" "$NEW" "$BACK"' EXIT
dotnet out/bench/HeadLens.Cli.dll bench attention --T "$LENGTHS" --json >"$OURS"
OPENBLAS_CORETYPE=$CORETYPE LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
  /usr/bin/python3 ../shared/peers/baselines.py --sections attn --attn-seqs "$LENGTHS" --out "$OLD" >/dev/null 2>&1
../shared/peers/modern-torch python3 ../shared/peers/baselines.py --sections attn --attn-seqs "$LENGTHS" --out "$NEW" >/dev/null 2>&1
../shared/peers/modern-torch python3 - "$LENGTHS" >"$BACK" 2>/dev/null <<'PY'
import sys, time, statistics, torch, torch.nn.functional as F
torch.set_num_threads(2)
for T in map(int, sys.argv[1].split(",")):
    q, k, v = (torch.randn(1, 12, T, 64, requires_grad=True) for _ in range(3))
    g = torch.randn(1, 12, T, 64)
    ts = []
    for i in range(max(3, min(30, int(2e8 / T / T))) + 2):
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        t = time.perf_counter(); o.backward(g); dt = time.perf_counter() - t
        if i >= 2: ts.append(dt)
    print(T, statistics.median(ts) * 1000)
PY
/usr/bin/python3 - "$OURS" "$OLD" "$NEW" "$BACK" "${ISA:-default}" <<'PY'
import json, sys
ours = [r for r in json.load(open(sys.argv[1]))["results"] if r["config"].get("batch", 1) == 1]
backward = {int(t): float(ms) for t, ms in (line.split() for line in open(sys.argv[4]) if line.strip())}
def peer(path, impl):
    return {r["T"]: r["median_ms"] for r in map(json.loads, open(path)) if r.get("section") == "attn" and r.get("impl") == impl and "median_ms" in r}
naive, sdpa = peer(sys.argv[2], "naive"), peer(sys.argv[3], "sdpa")
print(f"# instruction set: {'AVX2 (AVX-512 off in all three)' if sys.argv[5] == 'avx2' else 'the machine default'}")
print(f"{'variant':10} {'T':>6} {'ms':>9} {'GFLOP/s':>8} {'work MB':>8} {'torch1.13 naive':>16} {'ratio':>7} {'torch2.6 sdpa':>14} {'ratio':>7}")
for r in ours:
    c = r["config"]; t = c["T"]; ms = r["median_ms"]
    a, b = (None, backward.get(t)) if c["variant"] == "backward" else (naive.get(t), sdpa.get(t))
    ra = f"{a / ms:.2f}x" if a else "-"
    rb = f"{b / ms:.2f}x" if b else "-"
    print(f"{c['variant']:10} {t:6} {ms:9.2f} {r['gflops']:8.0f} {r['peak_bytes'] / 1e6:8.1f} {a or float('nan'):16.2f} {ra:>7} {b or float('nan'):14.2f} {rb:>7}")
PY
