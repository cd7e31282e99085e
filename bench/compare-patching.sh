#!/usr/bin/env bash
# `headlens patch` (every head of GPT-2 124M patched in turn from a clean run of 64 tokens into a corrupted one, the
# logit difference at the last position) against the same sweep in plain PyTorch (bench/portable/peer_patching.py) on
# the same random weights, back to back in one run: Debian 12's PyTorch 1.13 and PyTorch 2.6
# (../shared/peers/modern-torch). HeadLens's times: the sweep (its last progress line) and the whole command's wall
# time (start-up, load, the head kinds it also prints); the peers' include their clean and corrupted runs, both ways
# (every patched run from the embedding with the whole logits, as TransformerLens's run_with_hooks does it; and from
# the head's block with the last position's logits, as HeadLens does it). Also checks that every head's metric agrees.
# Usage: bash bench/compare-patching.sh [THREADS, default 2]   (from the repository root; ../shared/peers/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
dotnet build src/HeadLens.Cli -c Release -o out/bench >/dev/null
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
ERR=$WORK/err
peer_failed() { echo "compare-patching: $1 failed: $(tail -1 "$ERR")" >&2; exit 1; }
/usr/bin/python3 bench/random_gpt2.py "$WORK/gpt2" >/dev/null
# The corrupted text changes token 40; the metric is logit(clean token 40) - logit(its replacement) after the text.
read -r CLEAN CORRUPTED ANSWER WRONG < <(/usr/bin/python3 -c "
import random; random.seed(3); ids = [random.randrange(50257) for _ in range(64)]
corrupted = list(ids); corrupted[40] = 1000
print(','.join(map(str, ids)), ','.join(map(str, corrupted)), ids[40], 1000)")
start=$(date +%s.%N)
dotnet out/bench/HeadLens.Cli.dll patch --model "$WORK/gpt2" --clean-ids "$CLEAN" --corrupted-ids "$CORRUPTED" \
  --answer-id "$ANSWER" --wrong-id "$WRONG" --threads "$THREADS" --json >"$WORK/ours.json" 2>"$WORK/ours.err" \
  || { cp "$WORK/ours.err" "$ERR"; peer_failed "headlens patch"; }
end=$(date +%s.%N)
echo "$start $end" >"$WORK/ours.time"
OPENBLAS_CORETYPE=SkylakeX LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
  /usr/bin/python3 bench/portable/peer_patching.py "$WORK/gpt2" "$CLEAN" "$CORRUPTED" "$ANSWER" "$WRONG" "$THREADS" \
  >"$WORK/torch113.txt" 2>"$ERR" || peer_failed "PyTorch 1.13"
../shared/peers/modern-torch python3 "$PWD/bench/portable/peer_patching.py" "$WORK/gpt2" "$CLEAN" "$CORRUPTED" "$ANSWER" "$WRONG" \
  "$THREADS" >"$WORK/torch26.txt" 2>"$ERR" || peer_failed "PyTorch 2.6"
/usr/bin/python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
start, end = map(float, open(f"{work}/ours.time").read().split())
whole_s = end - start
# The sweep alone: the last progress line on stderr, "patched 144/144 heads (8.2 s)".
sweep_s = float(open(f"{work}/ours.err").read().strip().splitlines()[-1].split("(")[1].split()[0])
result = json.load(open(f"{work}/ours.json"))
ours = {(p["layer"], p["head"]): p["value"] for p in result["patches"]}
print(f"headlens patch, GPT-2 124M, {len(ours)} heads, 64 tokens: sweep {sweep_s:.2f} s, whole command {whole_s:.2f} s "
      f"(start-up, load, the heads' kinds); clean {result['clean']:.4f}, corrupted {result['corrupted']:.4f}; "
      "ratios: peer's sweep / ours (sweep, whole command)")
for name in ("torch113", "torch26"):
    lines = open(f"{work}/{name}.txt").read().splitlines()
    note = next(line[2:] for line in lines if line.startswith("# "))
    times = {line.split()[0]: float(line.split()[1]) for line in lines if line.split()[0] in ("full", "from_block")}
    worst = max(abs(ours[(int(l), int(h))] - float(full)) for _, l, h, full, _ in (line.split() for line in lines if line.startswith("head ")))
    cells = "; ".join(f"{way} {times[way]:.2f} s -> {times[way] / sweep_s:.2f}x, {times[way] / whole_s:.2f}x" for way in ("full", "from_block"))
    print(f"{note}: {cells}; largest difference in a head's logit difference {worst:.2e}")
PY
