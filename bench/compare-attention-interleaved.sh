#!/usr/bin/env bash
# HeadLens's fused causal attention against PyTorch 2.6's scaled_dot_product_attention, samples interleaved: a sample
# of HeadLens, one of SDPA (a peer process under ../shared/peers/modern-torch, fed over a pipe), one of HeadLens, ...
# on the same q, k, v (the peer's output checked against HeadLens's first); per configuration the medians, the
# median of the adjacent pairs' ratios and their middle half. Noise-robust where compare-attention.sh (each side's
# whole run in turn) is not: see bench/AttentionPeer/Program.cs. 12 heads x 64, forward and backward.
# Usage: bash bench/compare-attention-interleaved.sh [--T 256,1024,4096] [--batch 1] [--samples 9] [--sample-ms 300]
#        [--gap-ms 30] [--only fused|backward]   (from anywhere)
#        ISA=avx2 bash bench/compare-attention-interleaved.sh ...   both without AVX-512 (.NET's AVX-512 off, PyTorch
#        with ATEN_CPU_CAPABILITY=avx2, OpenBLAS as Haswell): the AVX2-only machine class, measured on an AVX-512 one.
# Needs the PyTorch 2.6 peer (../shared/peers/README.md); the first call of modern-torch builds its chroot.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${ISA:-}" = avx2 ]; then
  export DOTNET_EnableAVX512F=0 DOTNET_EnableAVX512=0 ATEN_CPU_CAPABILITY=avx2 OPENBLAS_CORETYPE=Haswell
elif [ -n "${ISA:-}" ]; then
  echo "compare-attention-interleaved: ISA must be avx2 or unset, got '$ISA'" >&2; exit 2
else
  export OPENBLAS_CORETYPE=SkylakeX
  grep -qw avx512f /proc/cpuinfo 2>/dev/null || unset OPENBLAS_CORETYPE
fi
PEERS=$(cd ../shared/peers 2>/dev/null && pwd) || { echo "compare-attention-interleaved: ../shared/peers not found (run from a checkout beside shared/)" >&2; exit 2; }
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
dotnet build bench/AttentionPeer -c Release -o "$out" >"$out/build.log" 2>&1 || { tail -20 "$out/build.log" >&2; exit 1; }
# modern-torch builds its chroot on first use (minutes): done here, before the samples start.
"$PEERS/modern-torch" python3 -c "import torch" || { echo "compare-attention-interleaved: the PyTorch 2.6 peer did not start" >&2; exit 1; }
dotnet "$out/AttentionPeer.dll" --peer "$PEERS/modern-torch python3 $PWD/bench/AttentionPeer/peer_sdpa.py 2" "$@"
