#!/usr/bin/env bash
# GPT-2 124M: HeadLens's training step (B=4, T=64, forward + backward + AdamW) and KV-cache greedy generation
# (prompt 16, 64 new tokens), and PyTorch's (../shared/peers/baselines.py --sections gpt), measured back to back.
# Usage: bash bench/compare-model.sh   (from the repository root; needs Debian's python3-torch)
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build src/HeadLens.Cli -c Release -o out/bench >/dev/null
TRAIN=$(mktemp); GEN=$(mktemp); PEER=$(mktemp); trap 'rm -f "$TRAIN" "$GEN" "$PEER"' EXIT
dotnet out/bench/HeadLens.Cli.dll bench train --json >"$TRAIN"
dotnet out/bench/HeadLens.Cli.dll bench generate --json >"$GEN"
OPENBLAS_CORETYPE=SkylakeX LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
  /usr/bin/python3 ../shared/peers/baselines.py --sections gpt --out "$PEER" >/dev/null 2>&1
/usr/bin/python3 - "$TRAIN" "$GEN" "$PEER" <<'PY'
import json, sys
train = json.load(open(sys.argv[1]))["results"][0]
gen = json.load(open(sys.argv[2]))["results"][0]
peer = [json.loads(l) for l in open(sys.argv[3])]
step = next(r for r in peer if r.get("what") == "train_step" and r.get("T") == 64)
decode = next(r for r in peer if r.get("what") == "generate_kvcache")
print(f"training step gpt2 B=4 T=64: HeadLens {train['median_ms']:.0f} ms, PyTorch {step['median_ms']:.0f} ms -> {step['median_ms'] / train['median_ms']:.2f}x PyTorch's speed; HeadLens peak {train['peak_bytes'] / 1e9:.2f} GB")
print(f"KV-cache greedy decode gpt2: HeadLens {gen['tokens_per_s']:.1f} tokens/s, PyTorch {decode['tokens_per_s']:.1f} tokens/s -> {gen['tokens_per_s'] / decode['tokens_per_s']:.2f}x; HeadLens peak {gen['peak_bytes'] / 1e9:.2f} GB")
PY
