#!/usr/bin/env bash
# Compiles the CUDA kernels to PTX (compute_90: H100/H200) and records the source's SHA-256 in the PTX, so the
# tests can check that the committed PTX was built from the committed source. Needs nvcc (CUDA 12+).
set -euo pipefail
cd "$(dirname "$0")"
src=src/main/cuda/r3_kernels.cu
out=src/main/resources/dev/routingreplay/cuda/r3_kernels.ptx
sum=$(sha256sum "$src" | cut -d' ' -f1)
tmp=$(mktemp)
nvcc --ptx -arch=compute_90 -O3 -o "$tmp" "$src"
{ echo "// r3-source-sha256: $sum"; cat "$tmp"; } > "$out"
rm -f "$tmp"
echo "wrote $out (source sha256 $sum)"
