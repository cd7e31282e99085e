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
set -euo pipefail
cd "$(dirname "$0")/.."
LENGTHS=${1:-256,1024,4096}
BATCHES=${2:-1}
KV_HEADS=${KV_HEADS:-12}
NAIVE=$(/usr/bin/python3 -c "import sys; print(','.join(t for t in sys.argv[1].split(',') if int(t) <= 4096 and sys.argv[2] == '12'))" "$LENGTHS" "$KV_HEADS")
CORETYPE=SkylakeX
if [ "${ISA:-}" = avx2 ]; then
  export DOTNET_EnableAVX512F=0 DOTNET_EnableAVX512=0 ATEN_CPU_CAPABILITY=avx2
  CORETYPE=Haswell
elif [ -n "${ISA:-}" ]; then
  echo "compare-attention: ISA must be avx2 or unset, got '$ISA'" >&2; exit 2
fi
dotnet build src/HeadLens.Cli -c Release -o out/bench >/dev/null
OURS=$(mktemp); OLD=$(mktemp); NEW=$(mktemp); ERR=$(mktemp); trap 'rm -f "$OURS" "$OLD" "$NEW" "$ERR"' EXIT
dotnet out/bench/HeadLens.Cli.dll bench attention --T "$LENGTHS" --batch "$BATCHES" --kv-heads "$KV_HEADS" --json >"$OURS"
# A peer that fails stops the script with its last line (never silently, as set -e alone would).
peer_failed() { echo "compare-attention: $1 failed: $(tail -1 "$ERR")" >&2; exit 1; }
if [ -n "$NAIVE" ]; then
  OPENBLAS_CORETYPE=$CORETYPE LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
    /usr/bin/python3 ../shared/peers/baselines.py --sections attn --attn-seqs "$NAIVE" --out "$OLD" >/dev/null 2>"$ERR" \
    || peer_failed "torch 1.13's naive attention"
fi
# SDPA's forward and backward, as many samples as HeadLens's bench takes at the same B·T² (200, 30, 9, 3): the script
# that bench/portable/run.sh runs on other machines.
../shared/peers/modern-torch python3 "$PWD/bench/portable/peer_attention.py" "$LENGTHS" "$BATCHES" 2 "$KV_HEADS" >"$NEW" 2>"$ERR" \
  || peer_failed "PyTorch 2.6's SDPA"
/usr/bin/python3 - "$OURS" "$OLD" "$NEW" "${ISA:-default}" "$KV_HEADS" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))["results"]
naive = {r["T"]: r["median_ms"] for r in map(json.loads, open(sys.argv[2]))
         if r.get("section") == "attn" and r.get("impl") == "naive" and "median_ms" in r}
sdpa = {(v, int(b), int(t)): float(ms) for v, b, t, ms in (line.split() for line in open(sys.argv[3]) if line.strip())}
print(f"# instruction set: {'AVX2 (AVX-512 off in all three)' if sys.argv[4] == 'avx2' else 'the machine default'}; 12 query heads, {sys.argv[5]} kv heads")
print(f"{'variant':10} {'B':>2} {'T':>6} {'ms':>9} {'GFLOP/s':>8} {'work MB':>8} {'torch1.13 naive':>16} {'ratio':>7} {'torch2.6 sdpa':>14} {'ratio':>7}")
for r in ours:
    c = r["config"]; b, t = c.get("batch", 1), c["T"]; ms = r["median_ms"]
    # Every forward variant against the peers' causal forward (as the issue's tables do), the backward against SDPA's.
    a = naive.get(t) if c["variant"] != "backward" and b == 1 else None
    s = sdpa.get(("backward" if c["variant"] == "backward" else "fused", b, t))
    ra = f"{a / ms:.2f}x" if a else "-"
    rs = f"{s / ms:.2f}x" if s else "-"
    print(f"{c['variant']:10} {b:2} {t:6} {ms:9.2f} {r['gflops']:8.0f} {r['peak_bytes'] / 1e6:8.1f} {a or float('nan'):16.2f} {ra:>7} {s or float('nan'):14.2f} {rs:>7}")
PY
