#!/usr/bin/env bash
# The README's GPU numbers. Runs on the GPU machine from the repository root once these are in place:
#   /root/kvq-gpu/cNN   Java 25 + ONNX Runtime CUDA   (../shared/device/stage-ort-cuda.sh; chunks re-split to 45 MiB)
#   /root/kvq-djl/dNN   libtorch 2.5.1 for CUDA 12.4  (tools/stage-djl-cuda.sh)
#   .gpu-app/lib        every jar of kvq-cli/target/lib except the CPU onnxruntime and pytorch-native-cpu jars
# For each runtime (ONNX Runtime, DJL): greedy generation on CUDA, the demo model's perplexity under each cache on
# CUDA (compare with the CPU), and `kvq bench` on CPU and CUDA for a ~180M-parameter random Llama made here
# (tools/make_bench_model.py). Everything goes to $OUT.
set -uo pipefail
source .gpu/boot/unpack.sh
source .gpu-djl/boot/unpack-djl.sh
kvq() {
  "$KVQ_JAVA" -XX:+UseParallelGC --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
    -Donnxruntime.native.path="$KVQ_ORT_NATIVE" -Dai.djl.offline=true -DOPT_OUT_TRACKING=true \
    -cp ".gpu-app/lib/*:$KVQ_ORT_CLASSES" dev.kvq.cli.Main "$@" 2> >(grep -v "incubator modules" >&2)
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
demo=models/kvq-demo-char
model=/root/bench-model
[ -f $model/model.torchscript.pt ] || (cd tools && python3 make_bench_model.py --torchscript --out $model) || exit 1
for runtime in onnx djl; do
  kvq generate --model $demo --runtime $runtime --device cuda --prompt "ROMEO:" --max-new-tokens 120 \
    --kv-config $demo/kv-mixed.yaml 2>&1 | tee "$OUT/generate-$runtime-cuda.txt"
  kvq eval ppl --model $demo --runtime $runtime --device cuda --data $demo/sample.txt --length 6000 \
    --sweep pertoken,kivi --pairs 8-8,4-4,4-2,2-2 2>&1 | tee "$OUT/demo-ppl-$runtime-cuda.txt"
  for device in cuda cpu; do
    kvq bench --model $model --runtime $runtime --device $device --contexts ${KVQ_CONTEXTS:-256,1024} \
      --decode-steps 32 --repeats 3 --sweep pertoken --pairs 8-8,4-4 --kv-config $model/mixed.yaml 2>&1 \
      | tee "$OUT/bench-$runtime-$device.txt"
  done
done
