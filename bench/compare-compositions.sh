#!/usr/bin/env bash
# `headlens bench circuits` (every Q-, K- and V-composition score of GPT-2 124M: 9,504 head pairs, Circuits.Compositions)
# against the same scores in plain PyTorch (bench/portable/peer_compositions.py) on the same random weights, back to
# back in one run: Debian 12's PyTorch 1.13 and PyTorch 2.6 (../shared/peers/modern-torch), each two ways: as
# TransformerLens computes them (FactoredMatrix: singular values of every pair's product) and by HeadLens's algorithm
# (whitened factors, one product per receiving layer). Also checks that `headlens circuits --json` gives the scores
# the peers do.
# Usage: bash bench/compare-compositions.sh [THREADS, default 2]   (from the repository root; ../shared/peers/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
dotnet build src/HeadLens.Cli -c Release -o out/bench >/dev/null
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
ERR=$WORK/err
peer_failed() { echo "compare-compositions: $1 failed: $(tail -1 "$ERR")" >&2; exit 1; }
/usr/bin/python3 bench/random_gpt2.py "$WORK/gpt2" >/dev/null
dotnet out/bench/HeadLens.Cli.dll bench circuits --model "$WORK/gpt2" --threads "$THREADS" --json >"$WORK/bench.json" 2>"$ERR" \
  || peer_failed "headlens bench circuits"
dotnet out/bench/HeadLens.Cli.dll circuits --model "$WORK/gpt2" --threads "$THREADS" --json >"$WORK/ours.json" 2>"$ERR" \
  || peer_failed "headlens circuits"
OPENBLAS_CORETYPE=SkylakeX LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
  /usr/bin/python3 bench/portable/peer_compositions.py "$WORK/gpt2" "$THREADS" >"$WORK/torch113.txt" 2>"$ERR" \
  || peer_failed "PyTorch 1.13"
../shared/peers/modern-torch python3 "$PWD/bench/portable/peer_compositions.py" "$WORK/gpt2" "$THREADS" \
  >"$WORK/torch26.txt" 2>"$ERR" || peer_failed "PyTorch 2.6"
/usr/bin/python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
ours_s = json.load(open(f"{work}/bench.json"))["results"][0]["median_ms"] / 1000
ours = {tuple(p["sender"] + p["receiver"]): (p["query"], p["key"], p["value"]) for p in json.load(open(f"{work}/ours.json"))["compositions"]}
print(f"headlens bench circuits, GPT-2 124M, {len(ours)} head pairs x Q, K, V: {ours_s:.2f} s (median of 3); ratios: peer / ours")
for name in ("torch113", "torch26"):
    lines = open(f"{work}/{name}.txt").read().splitlines()
    notes = [line[2:] for line in lines if line.startswith("# ")]
    times = {line.split()[0]: float(line.split()[1]) for line in lines if line.split()[0] in ("factored", "whitened")}
    rows = [line.split() for line in lines if line.startswith("pair ")]
    assert len(rows) == len(ours), f"{name}: {len(rows)} pairs, ours {len(ours)}"
    worst = max(abs(ours[tuple(map(int, row[1:5]))][i] - float(row[5 + i])) for row in rows for i in range(3))
    cells = "; ".join(f"{way} {times[way]:.2f} s -> {times[way] / ours_s:.1f}x" for way in ("factored", "whitened"))
    print(f"{notes[0]}: {cells}; largest difference in a score {worst:.1e} ({notes[1]})")
PY
