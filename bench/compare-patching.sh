#!/usr/bin/env bash
# `headlens patch` (every head of GPT-2 124M patched in turn from a clean run of 64 tokens into a corrupted one, the
# logit difference at the last position) against the same sweep in plain PyTorch (bench/portable/peer_patching.py) on
# the same random weights, back to back in one run: Debian 12's PyTorch 1.13 and PyTorch 2.6
# (../shared/peers/modern-torch). HeadLens's times: the sweep (its last progress line) and the whole command's wall
# time (start-up, load, the head kinds it also prints); the peers' include their clean and corrupted runs, both ways
# (every patched run from the embedding with the whole logits, as TransformerLens's run_with_hooks does it; and from
# the head's block with the last position's logits, as HeadLens does it). Also checks that every head's metric agrees.
# With `paths` second: path patching into head 9.9 instead (`patch --over paths --receiver 9.9`: 108 senders × query,
# key and value) against bench/portable/peer_paths.py, the same two ways. With `attribution`: every head estimated by
# attribution patching (`patch --attribution`: one backward pass) against bench/portable/peer_attribution.py, with the
# parameters' gradients (as a TransformerLens model computes them) and without.
# Usage: bash bench/compare-patching.sh [THREADS, default 2] [heads|paths|attribution, default heads]
#        (from the repository root; ../shared/peers/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
MODE=${2:-heads}
RECEIVER=9.9
case "$MODE" in
  heads) OVER=(); PEER=bench/portable/peer_patching.py; PEER_ARGS=() ;;
  paths) OVER=(--over paths --receiver "$RECEIVER"); PEER=bench/portable/peer_paths.py; PEER_ARGS=("$RECEIVER") ;;
  attribution) OVER=(--attribution); PEER=bench/portable/peer_attribution.py; PEER_ARGS=() ;;
  *) echo "compare-patching: the second argument is heads, paths or attribution, not '$MODE'" >&2; exit 2 ;;
esac
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
  --answer-id "$ANSWER" --wrong-id "$WRONG" "${OVER[@]}" --threads "$THREADS" --json >"$WORK/ours.json" 2>"$WORK/ours.err" \
  || { cp "$WORK/ours.err" "$ERR"; peer_failed "headlens patch"; }
end=$(date +%s.%N)
echo "$start $end" >"$WORK/ours.time"
OPENBLAS_CORETYPE=SkylakeX LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
  /usr/bin/python3 "$PEER" "$WORK/gpt2" "$CLEAN" "$CORRUPTED" "$ANSWER" "$WRONG" "$THREADS" "${PEER_ARGS[@]}" \
  >"$WORK/torch113.txt" 2>"$ERR" || peer_failed "PyTorch 1.13"
../shared/peers/modern-torch python3 "$PWD/$PEER" "$WORK/gpt2" "$CLEAN" "$CORRUPTED" "$ANSWER" "$WRONG" \
  "$THREADS" "${PEER_ARGS[@]}" >"$WORK/torch26.txt" 2>"$ERR" || peer_failed "PyTorch 2.6"
/usr/bin/python3 - "$WORK" "$MODE" <<'PY'
import json, sys
work, mode = sys.argv[1], sys.argv[2]
start, end = map(float, open(f"{work}/ours.time").read().split())
whole_s = end - start
# The sweep alone: the last progress line on stderr, "patched 144/144 heads (8.2 s)".
sweep_s = float(open(f"{work}/ours.err").read().strip().splitlines()[-1].split("(")[1].split()[0])
result = json.load(open(f"{work}/ours.json"))
inputs = {"query": "q", "key": "k", "value": "v"}
ours = {(p["layer"], p["head"]) + ((inputs[p["input"]],) if mode == "paths" else ()): p["value"] for p in result["patches"]}
what = f"{len(ours)} paths into head {result['receivers'][0]['layer']}.{result['receivers'][0]['head']}" if mode == "paths" else f"{len(ours)} heads"
print(f"headlens patch, GPT-2 124M, {what}, 64 tokens: sweep {sweep_s:.2f} s, whole command {whole_s:.2f} s "
      f"(start-up, load, the heads' kinds); clean {result['clean']:.4f}, corrupted {result['corrupted']:.4f}; "
      "ratios: peer's sweep / ours (sweep, whole command)")
for name in ("torch113", "torch26"):
    lines = open(f"{work}/{name}.txt").read().splitlines()
    note = next(line[2:] for line in lines if line.startswith("# "))
    times = {line.split()[0]: float(line.split()[1]) for line in lines if line.split()[0] in ("full", "from_block")}
    rows = [line.split() for line in lines if line.startswith(("head ", "path "))]
    worst = max(abs(ours[(int(row[1]), int(row[2])) + tuple(row[3:-2])] - float(row[-2])) for row in rows)
    ways = {"full": "with parameter gradients", "from_block": "activation gradients only"} if mode == "attribution" else {"full": "full", "from_block": "from_block"}
    cells = "; ".join(f"{ways[way]} {times[way]:.2f} s -> {times[way] / sweep_s:.2f}x, {times[way] / whole_s:.2f}x" for way in ("full", "from_block"))
    print(f"{note}: {cells}; largest difference in a {'path' if mode == 'paths' else 'head'}'s logit difference {worst:.2e}")
PY
