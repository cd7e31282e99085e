#!/usr/bin/env bash
# HeadLens's matrix product against OpenBLAS's cblas_sgemm in ONE process, same operands, samples interleaved
# (HeadLens, OpenBLAS, HeadLens, ...), medians and the per-shape ratio, at 1 and 2 threads, over the shapes of
# `headlens bench matmul` (squares and the GPT-2 124M training step). Noise-robust where compare-matmul.sh (two
# processes, one after the other) is not: see bench/MatmulPeer/Program.cs.
# Usage: bash bench/compare-matmul-interleaved.sh [--threads 1,2] [--samples 15] [--sample-ms 20] [--gap-ms 20]
#        [--only square|forward|input-grad|weight-grad] [--sizes 2048] [--shapes 256x3072x768,512x512x512]
#        [--tokens 1024]   (from anywhere; --shapes keeps only those m×n×k; --tokens times the GPT-2 step's products
#        at these token counts instead of the squares and the 256 tokens of B = 4, T = 64: 1024 is T = 256)
#        ISA=avx2 bash bench/compare-matmul-interleaved.sh ...   both without AVX-512 (.NET's AVX-512 off, OpenBLAS
#        as Haswell): the AVX2-only machine class, measured on an AVX-512 machine.
#        ISA=sse bash bench/compare-matmul-interleaved.sh ...   both with AVX off too (.NET's Vector128 paths,
#        OpenBLAS as Nehalem: SSE kernels): the width .NET gives Arm's NEON, measured on x86.
# Needs Debian's libopenblas0-openmp (the OpenBLAS PyTorch uses in ../shared/checks/matmul-vs-openblas).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
dotnet build bench/MatmulPeer -c Release -o "$out" >"$out/build.log" 2>&1 || { tail -20 "$out/build.log" >&2; exit 1; }
# The peer gets its AVX-512 kernels where the CPU has them, as the check gives it (the machine's environment may
# force Haswell's); OpenBLAS reads the variable when it loads, so it is set for the process, not inside it.
if [ "${ISA:-}" = avx2 ]; then
  export DOTNET_EnableAVX512F=0 DOTNET_EnableAVX512=0 OPENBLAS_CORETYPE=Haswell
elif [ "${ISA:-}" = sse ]; then
  export DOTNET_EnableAVX=0 OPENBLAS_CORETYPE=Nehalem
elif [ -n "${ISA:-}" ]; then
  echo "compare-matmul-interleaved: ISA must be avx2, sse or unset, got '$ISA'" >&2; exit 2
elif grep -qw avx512f /proc/cpuinfo 2>/dev/null; then export OPENBLAS_CORETYPE=SkylakeX; else unset OPENBLAS_CORETYPE; fi
dotnet "$out/MatmulPeer.dll" "$@"
