#!/usr/bin/env bash
# HeadLens's attention variants against both peers, measured back to back in one run: Debian 12's PyTorch 1.13
# (naive attention: it has no fused kernel; batch 1 and T <= 4096 only, its T x T scores need 12.9 GB at 16384) and
# PyTorch 2.6's fused scaled_dot_product_attention (under ../shared/peers/modern-torch), forward (no_grad) and
# backward (autograd through scaled_dot_product_attention, set against HeadLens's variant `backward`). Prints each
# variant with both ratios (peer time / HeadLens's time).
# Usage: bash bench/compare-attention.sh [T list, default 256,1024,4096] [batch list, default 1]
#        (from the repository root; see ../shared/peers/README.md for the peers' setup)
#        bash bench/compare-attention.sh 64,256,1024,4096,16384 1,8   the issue's whole grid (~25 minutes)
#        KV_HEADS=1 bash bench/compare-attention.sh 1024,4096   the 12 query heads share 1 (or 2, 3, 4, 6) kv heads:
#        multi-query and grouped-query attention against SDPA after Hugging Face's repeat_kv (see peer_attention.py;
#        torch 1.13's naive attention is skipped)
#        ISA=avx2 bash bench/compare-attention.sh   runs all three without AVX-512 (HeadLens with .NET's AVX-512
#        switched off, PyTorch with ATEN_CPU_CAPABILITY=avx2, OpenBLAS as Haswell): the AVX2-only machine class
#        (most laptops and desktops, AMD before Zen 4), measured on an AVX-512 machine.
#        ISA=sse bash bench/compare-attention.sh   the same with AVX off too (HeadLens's Vector128 paths, PyTorch's
#        default kernels, OpenBLAS as Nehalem): the width .NET gives Arm's NEON, measured on x86.
#        ROUNDS=3 bash bench/compare-attention.sh   HeadLens and SDPA alternately, 3 times each: each side's median
#        over the rounds, and the range of the rounds' own ratios. On a shared host one slow phase on one side moved
#        a single round's ratio by 20-30%.
set -euo pipefail
cd "$(dirname "$0")/.."
LENGTHS=${1:-256,1024,4096}
BATCHES=${2:-1}
KV_HEADS=${KV_HEADS:-12}
ROUNDS=${ROUNDS:-1}
case "$ROUNDS" in ''|*[!0-9]*|0) echo "compare-attention: ROUNDS must be a positive whole number, got '$ROUNDS'" >&2; exit 2 ;; esac
NAIVE=$(/usr/bin/python3 -c "import sys; print(','.join(t for t in sys.argv[1].split(',') if int(t) <= 4096 and sys.argv[2] == '12'))" "$LENGTHS" "$KV_HEADS")
CORETYPE=SkylakeX
if [ "${ISA:-}" = avx2 ]; then
  # OPENBLAS_CORETYPE is exported for PyTorch 2.6 too: its SDPA multiplies its blocks with OpenBLAS, which without it
  # picked its AVX-512 kernels (until the twenty-ninth session: T = 4096 forward ~1.2x faster than with Haswell's).
  export DOTNET_EnableAVX512F=0 DOTNET_EnableAVX512=0 ATEN_CPU_CAPABILITY=avx2 OPENBLAS_CORETYPE=Haswell
  CORETYPE=Haswell
elif [ "${ISA:-}" = sse ]; then
  # Vector128 only (Arm's width, measured on x86): HeadLens with AVX off, PyTorch's default (non-AVX) kernels and
  # OpenBLAS's Nehalem (SSE) kernels.
  export DOTNET_EnableAVX=0 ATEN_CPU_CAPABILITY=default OPENBLAS_CORETYPE=Nehalem
  CORETYPE=Nehalem
elif [ -n "${ISA:-}" ]; then
  echo "compare-attention: ISA must be avx2, sse or unset, got '$ISA'" >&2; exit 2
fi
dotnet build src/HeadLens.Cli -c Release -o out/bench >/dev/null
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
OLD=$WORK/naive.jsonl; ERR=$WORK/err
# A peer that fails stops the script with its last line (never silently, as set -e alone would).
peer_failed() { echo "compare-attention: $1 failed: $(tail -1 "$ERR")" >&2; exit 1; }
if [ -n "$NAIVE" ]; then
  OPENBLAS_CORETYPE=$CORETYPE LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
    /usr/bin/python3 ../shared/peers/baselines.py --sections attn --attn-seqs "$NAIVE" --out "$OLD" >/dev/null 2>"$ERR" \
    || peer_failed "torch 1.13's naive attention"
else
  : >"$OLD"
fi
for round in $(seq "$ROUNDS"); do
  dotnet out/bench/HeadLens.Cli.dll bench attention --T "$LENGTHS" --batch "$BATCHES" --kv-heads "$KV_HEADS" --json \
    >"$WORK/ours.$round.json"
  # SDPA's forward and backward, as many samples as HeadLens's bench takes at the same B·T² (200, 30, 9, 3): the
  # script that bench/portable/run.sh runs on other machines.
  ../shared/peers/modern-torch python3 "$PWD/bench/portable/peer_attention.py" "$LENGTHS" "$BATCHES" 2 "$KV_HEADS" \
    >"$WORK/sdpa.$round.txt" 2>"$ERR" || peer_failed "PyTorch 2.6's SDPA"
done
/usr/bin/python3 - "$WORK" "$ROUNDS" "${ISA:-default}" "$KV_HEADS" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
runs = [json.load(open(f"{work}/ours.{r}.json"))["results"] for r in range(1, rounds + 1)]
def key(r):
    c = r["config"]
    return (c["variant"], c.get("batch", 1), c["T"])
# Each side's median over the rounds, per configuration; the first round's other fields (GFLOP/s, working memory)
# come along with the median time.
ours_ms = {key(r): [] for r in runs[0]}
for run in runs:
    for r in run:
        ours_ms[key(r)].append(r["median_ms"])
sdpa_ms = {}
for r in range(1, rounds + 1):
    for line in open(f"{work}/sdpa.{r}.txt"):
        if line.strip():
            v, b, t, ms = line.split()
            sdpa_ms.setdefault((v, int(b), int(t)), []).append(float(ms))
ours = runs[0]
naive = {r["T"]: r["median_ms"] for r in map(json.loads, open(f"{work}/naive.jsonl"))
         if r.get("section") == "attn" and r.get("impl") == "naive" and "median_ms" in r}
isa = {'avx2': 'AVX2 (AVX-512 off in all three)', 'sse': 'Vector128 only (AVX off in all three)'}.get(sys.argv[3], 'the machine default')
print(f"# instruction set: {isa}; 12 query heads, {sys.argv[4]} kv heads; {rounds} round(s)")
spread = rounds > 1
print(f"{'variant':10} {'B':>2} {'T':>6} {'ms':>9} {'GFLOP/s':>8} {'work MB':>8} {'torch1.13 naive':>16} {'ratio':>7} {'torch2.6 sdpa':>14} {'ratio':>7}"
      + (f" {'rounds':>13}" if spread else ""))
for r in ours:
    c = r["config"]; b, t = c.get("batch", 1), c["T"]
    times = ours_ms[key(r)]
    ms = statistics.median(times)
    # Every forward variant against the peers' causal forward (as the issue's tables do), the backwards against SDPA's
    # (linear attention is another function: bench/compare-linear-attention.sh sets it against itself in PyTorch).
    backward = c["variant"] in ("backward", "linear-backward")
    a = naive.get(t) if not backward and b == 1 else None
    peer = sdpa_ms.get(("backward" if backward else "fused", b, t))
    s = statistics.median(peer) if peer else None
    ra = f"{a / ms:.2f}x" if a else "-"
    rs = f"{s / ms:.2f}x" if s else "-"
    # The rounds' own ratios (SDPA over ours, each round's pair): how far one phase of the host moved them.
    ratios = [p / o for p, o in zip(peer, times)] if peer else []
    rounds_column = f" {min(ratios):.2f}-{max(ratios):.2f}x".rjust(14) if spread and ratios else (" " * 14 if spread else "")
    gflops = r["gflops"] * r["median_ms"] / ms
    print(f"{c['variant']:10} {b:2} {t:6} {ms:9.2f} {gflops:8.0f} {r['peak_bytes'] / 1e6:8.1f} {a or float('nan'):16.2f} {ra:>7} {s or float('nan'):14.2f} {rs:>7}{rounds_column}")
PY
