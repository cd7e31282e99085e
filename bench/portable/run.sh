#!/usr/bin/env bash
# HeadLens against the PyTorch installed on this machine (python3), same run, on two cores pinned with taskset, then on
# one thread per core: the FMA peak, matrix products (squares and a GPT-2 training step's 15 products; torch.mm on its
# BLAS, numpy on its own), fused causal attention (12 × 64 heads, SDPA forward and backward), and GPT-2 124M's
# training step and KV-cache decoding (ours in fp32 and bf16; baselines.py). Run it inside the folder that
# bench/portable/pack.sh writes. Logs and JSON go to $OUT (default ./results). The peer runs with jemalloc preloaded
# when libjemalloc.so.2 is beside this script (the traps of ../shared/peers/README.md).
# Usage: bash run.sh [quick | gguf]   (quick: two-core part only; gguf: only `bench gguf` against llama.cpp, pinned pair)
set -uo pipefail
cd "$(dirname "$0")"; HERE=$PWD; O=${OUT:-$HERE/results}; mkdir -p "$O"
exec > >(tee "$O/log.txt") 2>&1
export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 PYTHONUNBUFFERED=1
lscpu | grep -v -e "^Vulnerability" -e "^Flags"; grep -m1 -o -w -e amx_tile -e avx512f /proc/cpuinfo | sort -u | tr '\n' ' '; echo
python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__); print(torch.__config__.show())" | head -12
HL_DIR=$(mktemp -d); trap 'rm -rf "$HL_DIR"' EXIT
tar xJf headlens.tar.xz -C "$HL_DIR" || { echo "run: cannot unpack headlens.tar.xz"; exit 1; }
HL=$HL_DIR/HeadLens.Cli
# One CPU per physical core, in order: the first two are the pinned pair.
CORES=$(lscpu -p=CPU,CORE,SOCKET | grep -v '^#' | awk -F, '!seen[$2","$3]++ {print $1}')
PAIR=$(echo "$CORES" | head -2 | paste -sd,); ALL=$(echo "$CORES" | paste -sd,); NALL=$(echo "$CORES" | wc -l)
echo "pinned pair: $PAIR; one CPU per core: $ALL ($NALL)"
peer() {
  if [ -f "$HERE/libjemalloc.so.2" ]; then
    LD_PRELOAD="$HERE/libjemalloc.so.2" MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 "$@"
  else
    "$@"
  fi
}
PEAK=""
if [ -f peak_fma.c ] && gcc -O2 -mavx512f -mfma -fopenmp peak_fma.c -o "$HL_DIR/peak_fma" 2>/dev/null; then PEAK="$HL_DIR/peak_fma"
elif [ -x peak_fma ]; then PEAK=./peak_fma; fi
section() {
  local n=$1 cpus=$2
  local pin="taskset -c $cpus"
  echo "== $n threads on CPUs $cpus"
  [ -n "$PEAK" ] && OMP_NUM_THREADS=$n timeout 30 $pin "$PEAK"
  timeout 120 $pin "$HL" bench matmul --threads "$n" --json >"$O/matmul$n.json"
  OPENBLAS_NUM_THREADS=$n OMP_NUM_THREADS=$n timeout 120 $pin python3 peer_matmul.py "$n" | tee "$O/peer_matmul$n.txt"
  timeout 180 $pin "$HL" bench attention --T 256,1024,4096 --threads "$n" --json >"$O/attention$n.json"
  OMP_NUM_THREADS=$n peer timeout 180 $pin python3 peer_attention.py 256,1024,4096 1 "$n" | tee "$O/peer_attention$n.txt"
  # Two kv heads shared by the 12 query heads (Qwen2-0.5B's grouping): the backward's split of each pair's queries.
  timeout 180 $pin "$HL" bench attention --T 1024,4096 --kv-heads 2 --threads "$n" --json >"$O/attention_kv2_$n.json"
  OMP_NUM_THREADS=$n peer timeout 180 $pin python3 peer_attention.py 1024,4096 1 "$n" 2 | tee "$O/peer_attention_kv2_$n.txt"
  timeout 180 $pin "$HL" bench train --context 64,256 --threads "$n" --json >"$O/train$n.json"
  timeout 120 $pin "$HL" bench generate --dtype bf16 --threads "$n" --json >"$O/generate$n.json"
  if [ -f baselines.py ]; then
    OMP_NUM_THREADS=$n peer timeout 240 $pin python3 baselines.py --sections gpt --gpt-ctx 64,256 --gpt-steps 3 \
      --gen-reps 1 --threads "$n" --out "$O/peer_gpt$n.jsonl" >/dev/null
    grep -h -e train_step -e forward_nograd -e generate_kvcache "$O/peer_gpt$n.jsonl"
  fi
}
if [ "${1:-}" = gguf ]; then
  # GGUF decoding and prompts against llama.cpp (in-process, 2 threads): both on the pinned pair. The four files are
  # generated first (GPT-2 124M F32/F16, 1.1B Llama Q8_0/Q4_K_M: ~9 GB of memory, a few minutes). GGUF_ARGS adds
  # options (e.g. "--layers 2": a quick check of the script).
  echo "== bench gguf, 2 threads on CPUs $PAIR"
  HEADLENS_THREADS=2 timeout "${GGUF_TIMEOUT:-900}" taskset -c "$PAIR" "$HL" bench gguf --prompt 16 --new-tokens 32 --keep "$HL_DIR/gguf" ${GGUF_ARGS:-}
  echo "== done: $O"
  exit 0
fi
section 2 "$PAIR"
[ "${1:-}" = quick ] || section "$NALL" "$ALL"
echo "== done: $O"
