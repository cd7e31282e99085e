#!/usr/bin/env bash
# HeadLens's attention variants against both peers, measured back to back in one run: Debian 12's PyTorch 1.13
# (naive attention: it has no fused kernel) and PyTorch 2.6's fused scaled_dot_product_attention (under
# ../shared/peers/modern-torch). Prints each variant with both ratios (peer time / HeadLens's fused time).
# Usage: bash bench/compare-attention.sh [T list, default 256,1024,4096]   (from the repository root; see
#        ../shared/peers/README.md for the peers' setup)
set -euo pipefail
cd "$(dirname "$0")/.."
LENGTHS=${1:-256,1024,4096}
dotnet build src/HeadLens.Cli -c Release -o out/bench >/dev/null
OURS=$(mktemp); OLD=$(mktemp); NEW=$(mktemp); trap 'rm -f "$OURS" "$OLD" "$NEW"' EXIT
dotnet out/bench/HeadLens.Cli.dll bench attention --T "$LENGTHS" --json >"$OURS"
OPENBLAS_CORETYPE=SkylakeX LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
  /usr/bin/python3 ../shared/peers/baselines.py --sections attn --attn-seqs "$LENGTHS" --out "$OLD" >/dev/null 2>&1
../shared/peers/modern-torch python3 ../shared/peers/baselines.py --sections attn --attn-seqs "$LENGTHS" --out "$NEW" >/dev/null 2>&1
/usr/bin/python3 - "$OURS" "$OLD" "$NEW" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))["results"]
def peer(path, impl):
    return {r["T"]: r["median_ms"] for r in map(json.loads, open(path)) if r.get("section") == "attn" and r.get("impl") == impl and "median_ms" in r}
naive, sdpa = peer(sys.argv[2], "naive"), peer(sys.argv[3], "sdpa")
print(f"{'variant':10} {'T':>6} {'ms':>9} {'GFLOP/s':>8} {'work MB':>8} {'torch1.13 naive':>16} {'ratio':>7} {'torch2.6 sdpa':>14} {'ratio':>7}")
for r in ours:
    c = r["config"]; t = c["T"]; ms = r["median_ms"]
    a, b = naive.get(t), sdpa.get(t)
    ra = f"{a / ms:.2f}x" if a else "-"
    rb = f"{b / ms:.2f}x" if b else "-"
    print(f"{c['variant']:10} {t:6} {ms:9.2f} {r['gflops']:8.0f} {r['peak_bytes'] / 1e6:8.1f} {a or float('nan'):16.2f} {ra:>7} {b or float('nan'):14.2f} {rb:>7}")
PY
