#!/usr/bin/env bash
# Cache blockings of the matrix product on a machine class GemmBlocking was not measured on, against this machine's
# own choice and its BLAS, same run: 2048³ with each candidate (KC × MC × NC) on two pinned cores and on one, in
# ROUNDS rounds; then the GPT-2 training step's products with the three best candidates; then the peer (torch.mm on
# its BLAS, numpy on its own); then 2048³ on one thread per core. Run it inside the folder that bench/portable/pack.sh
# writes; logs and JSON go to $OUT (default ./results).
# Usage: bash sweep-matmul.sh [ROUNDS] [CANDIDATES]   (CANDIDATES: KCxMCxNC,... ; the default spans the L1 and L2
# rules of GemmBlocking for a 12 × 32 tile: depth 128–512, rows 240–2040, columns 1024–4096)
set -uo pipefail
cd "$(dirname "$0")"; HERE=$PWD; O=${OUT:-$HERE/results}; mkdir -p "$O"
exec > >(tee "$O/sweep.txt") 2>&1
export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 PYTHONUNBUFFERED=1
ROUNDS=${1:-2}
CANDIDATES=${2:-128x1020x4096,192x1020x4096,320x1020x4096,384x672x4096,512x504x4096,256x480x4096,256x240x4096,256x2040x4096,256x1020x1024,256x1020x2048,384x1020x4096,512x1020x4096,192x480x4096}
lscpu | grep -e "Model name" -e "^CPU(s)" -e "cache"
HL_DIR=$(mktemp -d); trap 'rm -rf "$HL_DIR"' EXIT
tar xJf headlens.tar.xz -C "$HL_DIR" || { echo "sweep: cannot unpack headlens.tar.xz"; exit 1; }
HL=$HL_DIR/HeadLens.Cli
CORES=$(lscpu -p=CPU,CORE,SOCKET | grep -v '^#' | awk -F, '!seen[$2","$3]++ {print $1}')
PAIR=$(echo "$CORES" | head -2 | paste -sd,); ALL=$(echo "$CORES" | paste -sd,); NALL=$(echo "$CORES" | wc -l)
if [ -x peak_fma ]; then
  for n in 1 2; do OMP_NUM_THREADS=$n timeout 30 taskset -c "$PAIR" ./peak_fma; done
fi
for round in $(seq "$ROUNDS"); do
  echo "== round $round: 2048³, $PAIR"
  timeout 300 taskset -c "$PAIR" "$HL" bench matmul --sizes 2048 --threads 2 --blocking "$CANDIDATES" --json \
    >"$O/sweep2048_r$round.json"
done
# The three candidates with the best geometric mean over both thread counts and all rounds.
BEST=$(python3 - "$O" <<'EOF'
import glob, json, math, sys
scores = {}
for path in glob.glob(sys.argv[1] + "/sweep2048_r*.json"):
    for row in json.load(open(path))["results"]:
        blocking = row["config"]["blocking"]
        if "machine" not in blocking:
            scores.setdefault(blocking, []).append(math.log(row["gflops"]))
ranked = sorted(scores, key=lambda b: -sum(scores[b]) / len(scores[b]))
for b in ranked:
    print(f"  {b}: {math.exp(sum(scores[b]) / len(scores[b])):.0f} GFLOP/s geometric mean", file=sys.stderr)
print(",".join(ranked[:3]))
EOF
)
echo "== best: $BEST; the training step's products, $PAIR"
timeout 300 taskset -c "$PAIR" "$HL" bench matmul --tokens 256 --threads 2 --blocking "$BEST" --json >"$O/shapes.json"
for n in 2 1; do
  OPENBLAS_NUM_THREADS=$n OMP_NUM_THREADS=$n MKL_NUM_THREADS=$n timeout 200 taskset -c "$PAIR" python3 peer_matmul.py "$n" \
    | tee "$O/peer_matmul$n.txt"
done
echo "== 2048³ on $NALL threads ($ALL)"
timeout 200 taskset -c "$ALL" "$HL" bench matmul --sizes 2048 --threads "$NALL" --blocking "$BEST" --json >"$O/sweep2048_all.json"
OPENBLAS_NUM_THREADS=$NALL OMP_NUM_THREADS=$NALL MKL_NUM_THREADS=$NALL timeout 200 taskset -c "$ALL" python3 - "$NALL" <<'EOF'
import statistics, sys, time
import numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
a = np.random.rand(2048, 2048).astype(np.float32); b = np.random.rand(2048, 2048).astype(np.float32)
ta, tb = torch.from_numpy(a), torch.from_numpy(b)
for name, f in (("torch", lambda: torch.mm(ta, tb)), ("numpy", lambda: a @ b)):
    for _ in range(3): f()
    times = []
    for _ in range(15):
        start = time.perf_counter(); f(); times.append(time.perf_counter() - start)
    print(f"{name} square 2048 threads={sys.argv[1]}: {2 * 2048 ** 3 / statistics.median(times) / 1e9:.0f} GFLOP/s")
EOF
echo "== done: $O"
