#!/usr/bin/env bash
# kvq serve under load (kvq serve-bench): the float32 cache beside per-token KV4 (vanilla) under one --kv-memory,
# each at several numbers of concurrent clients, as a table and as JSON.
# Usage:
#   tools/serve_bench.sh cpu [OUT_DIR]   the demo model (caches on the host, then in ONNX Runtime's memory) and
#                                        ../shared's shakespeare-char-llama on the CPU
#                                        (what docs/results/serve holds; a few minutes on 2 cores)
#   MODEL=DIR tools/serve_bench.sh gpu [OUT_DIR]
#                                        a model of your own on ONNX Runtime's CUDA execution provider, e.g. an
#                                        Optimum export of Llama-3.2-1B on an H200; set KV_MEMORY, CONCURRENCY,
#                                        PROMPT_TOKENS, MAX_TOKENS, REQUESTS to size the load.
# On the GPU the caches live on the device (PLACEMENT=device, the default there; host also works): the device store is
# laid out again whenever a sequence joins or leaves, and --kv-memory bounds what it takes.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-cpu}
out=${2:-docs/results/serve}
shared=${KVQ_SHARED:-../shared}
mkdir -p "$out"

# The kvq command: the launcher, or on the GPU machine the staged Java and ONNX Runtime CUDA of tools/gpu_session.sh
# (.gpu/boot/unpack.sh and .gpu-app/lib, see that script) where they are.
kvq() {
  if [ "$which" = gpu ] && [ -f .gpu/boot/unpack.sh ]; then
    "$KVQ_JAVA" -Xss4m -XX:+UseParallelGC --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
      -Donnxruntime.native.path="$KVQ_ORT_NATIVE" -Dai.djl.offline=true -DOPT_OUT_TRACKING=true \
      -cp ".gpu-app/lib/*:$KVQ_ORT_CLASSES" dev.kvq.cli.Main "$@"
  else
    ./kvq "$@"
  fi
}
if [ "$which" = gpu ] && [ -f .gpu/boot/unpack.sh ]; then
  source .gpu/boot/unpack.sh
fi

# bench NAME ARGS...: the table to NAME.txt and the JSON to NAME.json, each headed by the command that made it
bench() {
  local name=$1; shift
  { echo "\$ ./kvq serve-bench $*"; kvq serve-bench "$@"; } > "$out/$name.txt"
  kvq serve-bench "$@" --json > "$out/$name.json"
  cat "$out/$name.txt"
}

case "$which" in
  cpu)
    kv4=(--scheme pertoken --k-bits 4 --v-bits 4 --backend vanilla)
    bench demo --model models/kvq-demo-char --kv-memory 4MiB "${kv4[@]}" \
      --concurrency 1,4,16,32 --requests-per-client 2 --prompt-tokens 64 --max-tokens 128
    bench demo-device --model models/kvq-demo-char --kv-memory 4MiB "${kv4[@]}" --placement device \
      --concurrency 1,4,16,32 --requests-per-client 2 --prompt-tokens 64 --max-tokens 128
    bench shakespeare --model "$shared/models/shakespeare-char-llama" --data "$shared/data/tinyshakespeare/input.txt" \
      --kv-memory 8MiB "${kv4[@]}" --concurrency 1,4,16,32 --requests-per-client 2 --prompt-tokens 64 --max-tokens 128
    ;;
  gpu)
    : "${MODEL:?set MODEL to the model directory}"
    bench "gpu-$(basename "$MODEL")" --model "$MODEL" --runtime onnx --device cuda --placement "${PLACEMENT:-device}" \
      --kv-memory "${KV_MEMORY:-4GiB}" --scheme pertoken --k-bits 4 --v-bits 4 --backend vanilla \
      --concurrency "${CONCURRENCY:-1,8,32,64,128}" --requests-per-client "${REQUESTS:-4}" \
      --prompt-tokens "${PROMPT_TOKENS:-512}" --max-tokens "${MAX_TOKENS:-256}"
    ;;
  *)
    echo "usage: tools/serve_bench.sh cpu|gpu [OUT_DIR]" >&2
    exit 2
    ;;
esac
