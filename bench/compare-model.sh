#!/usr/bin/env bash
# GPT-2 124M against both peers, back to back in one run: HeadLens's training step (B=4, T=64 and 256, forward +
# backward + AdamW) and KV-cache greedy decoding (prompt 16, 64 new tokens; fp32 and bf16 weights), and the same
# model in ../shared/peers/baselines.py --sections gpt under Debian 12's PyTorch 1.13 and PyTorch 2.6 (SDPA,
# ../shared/peers/modern-torch). Prints each figure with both ratios (HeadLens's speed / the peer's).
# Usage: bash bench/compare-model.sh   (from the repository root; see ../shared/peers/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build src/HeadLens.Cli -c Release -o out/bench >/dev/null
TRAIN=$(mktemp); GEN=$(mktemp); OLD=$(mktemp); NEW=$(mktemp); ERR=$(mktemp); trap 'rm -f "$TRAIN" "$GEN" "$OLD" "$NEW" "$ERR"' EXIT
# A peer that fails stops the script with its last line (never silently, as set -e alone would).
peer_failed() { echo "compare-model: $1 failed: $(tail -1 "$ERR")" >&2; exit 1; }
dotnet out/bench/HeadLens.Cli.dll bench train --context 64,256 --json >"$TRAIN"
dotnet out/bench/HeadLens.Cli.dll bench generate --dtype bf16 --json >"$GEN"
OPENBLAS_CORETYPE=SkylakeX LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
  /usr/bin/python3 ../shared/peers/baselines.py --sections gpt --gpt-ctx 64,256 --out "$OLD" >/dev/null 2>"$ERR" \
  || peer_failed "PyTorch 1.13"
../shared/peers/modern-torch python3 ../shared/peers/baselines.py --sections gpt --gpt-ctx 64,256 --out "$NEW" >/dev/null 2>"$ERR" \
  || peer_failed "PyTorch 2.6"
/usr/bin/python3 - "$TRAIN" "$GEN" "$OLD" "$NEW" <<'PY'
import json, sys
train = json.load(open(sys.argv[1]))["results"]
gen = json.load(open(sys.argv[2]))["results"]
old = [json.loads(l) for l in open(sys.argv[3])]
new = [json.loads(l) for l in open(sys.argv[4])]
def step(rows, t): return next((r["median_ms"] for r in rows if r.get("what") == "train_step" and r.get("T") == t), None)
def decode(rows): return next((r["tokens_per_s"] for r in rows if r.get("what") == "generate_kvcache"), None)
for r in train:
    t = r["config"]["context"]; ms = r["median_ms"]; a, b = step(old, t), step(new, t)
    print(f"training step gpt2 B=4 T={t}: HeadLens {ms:.0f} ms; PyTorch 1.13 {a:.0f} ms -> {a / ms:.2f}x; PyTorch 2.6 {b:.0f} ms -> {b / ms:.2f}x; HeadLens peak {r['peak_bytes'] / 1e9:.2f} GB")
a, b = decode(old), decode(new)
for r in gen:
    tps = r["tokens_per_s"]
    print(f"KV-cache greedy decode gpt2 ({r['config'].get('dtype', 'fp32')}): HeadLens {tps:.1f} tokens/s; PyTorch 1.13 {a:.1f} -> {tps / a:.2f}x; PyTorch 2.6 {b:.1f} -> {tps / b:.2f}x")
PY
