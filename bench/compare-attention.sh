#!/usr/bin/env bash
# HeadLens's attention variants and PyTorch's naive attention (../shared/peers/baselines.py --sections attn),
# measured back to back in one run; prints both and the ratio of fused to naive.
# Usage: bash bench/compare-attention.sh   (from the repository root; needs Debian's python3-torch)
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build src/HeadLens.Cli -c Release -o out/bench >/dev/null
OURS=$(mktemp); PEER=$(mktemp); trap 'rm -f "$OURS" "$PEER"' EXIT
dotnet out/bench/HeadLens.Cli.dll bench attention --json >"$OURS"
OPENBLAS_CORETYPE=SkylakeX LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
  /usr/bin/python3 ../shared/peers/baselines.py --sections attn --out "$PEER" >/dev/null 2>&1
/usr/bin/python3 - "$OURS" "$PEER" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))["results"]
peer = {r["T"]: r["median_ms"] for r in map(json.loads, open(sys.argv[2])) if r.get("section") == "attn" and r.get("impl") == "naive"}
print(f"{'variant':10} {'T':>6} {'median ms':>10} {'GFLOP/s':>8} {'working MB':>11} {'torch naive ms':>15} {'speed-up':>9}")
for r in ours:
    c = r["config"]; t = c["T"]
    p = peer.get(t)
    ratio = f"{p / r['median_ms']:.2f}x" if p else "-"
    print(f"{c['variant']:10} {t:6} {r['median_ms']:10.1f} {r['gflops']:8.0f} {r['peak_bytes'] / 1e6:11.1f} {p if p else float('nan'):15.1f} {ratio:>9}")
PY
