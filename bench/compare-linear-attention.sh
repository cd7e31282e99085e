#!/usr/bin/env bash
# HeadLens's causal linear attention (φ = elu + 1, 12 heads × 64, batch 1) against the same function in PyTorch,
# forward (no_grad) and backward (autograd), measured back to back in one run, in both peers: Debian 12's PyTorch
# 1.13 and PyTorch 2.6 (under ../shared/peers/modern-torch). Each peer runs the two forms people write
# (bench/portable/peer_linear_attention.py: the masked T × T form and the cumsum prefix-sum form); the ratio is
# against the faster of the two at each length (peer time / HeadLens's time).
# Usage: bash bench/compare-linear-attention.sh [T list, default 256,1024,4096]   (from the repository root; see
#        ../shared/peers/README.md for the peers' setup)
set -euo pipefail
cd "$(dirname "$0")/.."
LENGTHS=${1:-256,1024,4096}
dotnet build src/HeadLens.Cli -c Release -o out/bench >/dev/null
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
ERR=$WORK/err
peer_failed() { echo "compare-linear-attention: $1 failed: $(tail -1 "$ERR")" >&2; exit 1; }
dotnet out/bench/HeadLens.Cli.dll bench attention --T "$LENGTHS" --json >"$WORK/ours.json"
OPENBLAS_CORETYPE=SkylakeX LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
  /usr/bin/python3 bench/portable/peer_linear_attention.py "$LENGTHS" 2 >"$WORK/torch113.txt" 2>"$ERR" \
  || peer_failed "PyTorch 1.13"
../shared/peers/modern-torch python3 "$PWD/bench/portable/peer_linear_attention.py" "$LENGTHS" 2 \
  >"$WORK/torch26.txt" 2>"$ERR" || peer_failed "PyTorch 2.6"
/usr/bin/python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
ours = {(r["config"]["variant"], r["config"]["T"]): r for r in json.load(open(f"{work}/ours.json"))["results"]
        if r["config"]["variant"] in ("linear", "linear-backward")}
def peer(name):
    best = {}
    for line in open(f"{work}/{name}.txt"):
        if line.strip() and not line.startswith("#"):
            variant, form, t, ms = line.split()
            key = (variant, int(t))
            if key not in best or float(ms) < best[key][0]:
                best[key] = (float(ms), form)
    return best
peers = {"torch 1.13": peer("torch113"), "torch 2.6": peer("torch26")}
print(f"{'variant':16} {'T':>6} {'ms':>9} {'work MB':>8}" + "".join(f" {name + ' (form)':>24} {'ratio':>7}" for name in peers))
for (variant, t), r in sorted(ours.items(), key=lambda item: (item[0][1], item[0][0])):
    ms = r["median_ms"]
    cells = ""
    for best in peers.values():
        p = best.get((variant, t))
        cells += f" {p[0]:14.2f} ({p[1]:>9}) {p[0] / ms:6.2f}x" if p else f" {'-':>24} {'-':>7}"
    print(f"{variant:16} {t:6} {ms:9.2f} {r['peak_bytes'] / 1e6:8.1f}{cells}")
PY
