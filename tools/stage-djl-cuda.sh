#!/usr/bin/env bash
# Builds, on a development machine, what the GPU machine needs to run kvq's DJL runtime on CUDA, offline:
# libtorch 2.5.1 for CUDA 12.4 from ai.djl.pytorch:pytorch-native-cu124:2.5.1:linux-x86_64 (the complete offline
# CUDA set of DJL 0.33.0 on Maven Central), reduced to the libraries a decoder loads: the DT_NEEDED closure of
# libtorch.so, libtorch_cuda.so and libc10_cuda.so, plus NVRTC, which TorchScript's fuser loads at run time. cuDNN's engine libraries, which only convolutions load, are left
# out. DJL's JNI bridge for that flavor comes from the pytorch-jni jar on kvq's class path.
#
# Usage: tools/stage-djl-cuda.sh [DEST]   (DEST defaults to .gpu-djl, git-ignored)
# Result: DEST/d00 .. dNN (<= 45 MiB each) and DEST/boot/unpack-djl.sh. Copy each chunk to /root/kvq-djl/ on the
# GPU machine, then `source .gpu-djl/boot/unpack-djl.sh`, which assembles them once and exports PYTORCH_LIBRARY_PATH,
# PYTORCH_FLAVOR=cu124, PYTORCH_VERSION=2.5.1 and LD_LIBRARY_PATH for DJL.
set -euo pipefail
DEST=$(realpath -m "${1:-.gpu-djl}")
CACHE=${KVQ_GPU_CACHE:-$HOME/.cache/kvq-gpu}
M2=${M2_REPO:-$HOME/.m2/repository}
VERSION=2.5.1
JAR=$M2/ai/djl/pytorch/pytorch-native-cu124/$VERSION/pytorch-native-cu124-$VERSION-linux-x86_64.jar
mkdir -p "$CACHE" "$DEST"
if [ ! -f "$CACHE/djl-cu124.tar.zst" ]; then
  if [ ! -f "$JAR" ]; then
    echo "[1/4] fetching pytorch-native-cu124 $VERSION (2.5 GB)"
    mvn -q -B dependency:get -Dtransitive=false -Dartifact=ai.djl.pytorch:pytorch-native-cu124:$VERSION:jar:linux-x86_64 >/dev/null
  fi
  W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
  echo "[2/4] extracting the libraries libtorch needs"
  unzip -q -o "$JAR" 'native/lib/pytorch.properties' -d "$W/all"
  unzip -q -o "$JAR" 'pytorch/cu124/linux-x86_64/*' -d "$W/all"
  SRC="$W/all/pytorch/cu124/linux-x86_64"
  mkdir -p "$W/keep"
  queue="libtorch.so libtorch_cuda.so libc10_cuda.so libtorch_cpu.so libc10.so"
  seen=" "
  while [ -n "$queue" ]; do
    set -- $queue; lib=$1; shift; queue="$*"
    case "$seen" in *" $lib "*) continue ;; esac
    seen="$seen$lib "
    [ -f "$SRC/$lib" ] || continue
    cp "$SRC/$lib" "$W/keep/"
    for dep in $(readelf -d "$SRC/$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
      queue="$queue $dep"
    done
  done
  cp "$W/all/native/lib/pytorch.properties" "$W/keep/"
  du -sh "$W/keep"; ls "$W/keep"
  echo "[3/4] compressing"
  tar -C "$W/keep" -cf - . | zstd -q -10 -T0 -o "$CACHE/djl-cu124.tar.zst"
fi
if [ ! -f "$CACHE/djl-cu124-nvrtc.tar.zst" ]; then
  # TorchScript's CUDA fuser dlopens NVRTC at the first step (no DT_NEEDED entry names it)
  W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
  unzip -q -j "$JAR" 'pytorch/cu124/linux-x86_64/libnvrtc*' 'pytorch/cu124/linux-x86_64/libcaffe2_nvrtc.so' -d "$W"
  tar -C "$W" -cf - . | zstd -q -19 -T0 -o "$CACHE/djl-cu124-nvrtc.tar.zst"
fi
echo "[4/4] chunks in $DEST"
rm -f "$DEST"/d[0-9][0-9]
# two zstd frames, two tar archives: unpack reads them as one stream (tar -i skips the first end-of-archive)
cat "$CACHE/djl-cu124.tar.zst" "$CACHE/djl-cu124-nvrtc.tar.zst" | split -b 45M -d - "$DEST/d"
mkdir -p "$DEST/boot"
cp /usr/bin/zstd /lib/x86_64-linux-gnu/liblz4.so.1 "$DEST/boot/"
cat > "$DEST/boot/unpack-djl.sh" <<'UNPACK'
# source me on the GPU machine from the repository root, after every dNN chunk is in /root/kvq-djl/
_djl_boot="$(pwd)/$(dirname "${BASH_SOURCE[0]}")"; _djl_dir=/root/kvq-djl
if [ ! -f "$_djl_dir/libtorch/libtorch.so" ]; then
  mkdir -p "$_djl_dir/libtorch" && cat "$_djl_dir"/d[0-9][0-9] | LD_LIBRARY_PATH="$_djl_boot" "$_djl_boot/zstd" -dc \
    | tar -xi -C "$_djl_dir/libtorch" && rm -f "$_djl_dir"/d[0-9][0-9] || echo "djl unpack failed: $(ls $_djl_dir)"
fi
export PYTORCH_LIBRARY_PATH="$_djl_dir/libtorch" PYTORCH_FLAVOR=cu124 PYTORCH_VERSION=2.5.1
export LD_LIBRARY_PATH="$_djl_dir/libtorch${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "kvq-djl: libtorch $(ls $_djl_dir/libtorch | wc -l) files in $_djl_dir/libtorch"
UNPACK
ls -la "$DEST" | sed 's/^/  /'
echo "$(ls "$DEST"/d[0-9][0-9] | wc -l) chunks"
