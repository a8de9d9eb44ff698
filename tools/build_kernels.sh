#!/usr/bin/env bash
# Compiles kvq's CUDA kernels (kvq-runtime-onnx/src/main/cuda/*.cu) to the PTX that kvq-runtime-onnx ships as
# resources; the GPU's driver compiles that PTX for the GPU at hand when the kernel is first loaded. Needs nvcc (CUDA
# 12 or later). The PTX is declared at ISA version 7.0 (drivers of CUDA 11.0 and later accept it; ONNX Runtime's CUDA
# provider needs CUDA 12 anyway) after ptxas has checked that the kernel assembles at that version.
# Usage: tools/build_kernels.sh [--check]     (--check: fail if a shipped PTX differs from what the source gives)
set -euo pipefail
cd "$(dirname "$0")/.."
src=kvq-runtime-onnx/src/main/cuda
dst=kvq-runtime-onnx/src/main/resources/dev/kvq/runtime/onnx/nativeapi
mkdir -p "$dst"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
status=0
for cu in "$src"/*.cu; do
  name=$(basename "$cu" .cu)
  nvcc -ptx -arch=compute_75 -o "$work/$name.raw.ptx" "$cu"
  # the compiler's banner names its build; drop it so the PTX depends on the source only. Newer compilers mark partly
  # used vector loads with a hint pragma (used_bytes_mask) that ISA 7.0 does not know; a hint changes no result
  sed -e '/^\/\//d' -e 's/^\.version [0-9.]*$/.version 7.0/' -e '/^\s*\.pragma "used_bytes_mask [0-9]*";$/d' \
    "$work/$name.raw.ptx" | sed '/./,$!d' > "$work/$name.ptx"
  ptxas -arch=sm_75 "$work/$name.ptx" -o /dev/null
  if [ "${1:-}" = --check ]; then
    cmp -s "$work/$name.ptx" "$dst/$name.ptx" || { echo "$dst/$name.ptx is not what $cu compiles to" >&2; status=1; }
  else
    cp "$work/$name.ptx" "$dst/$name.ptx"
    echo "$dst/$name.ptx"
  fi
done
exit $status
