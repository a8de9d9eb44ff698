#!/usr/bin/env bash
# Runs on the GPU machine from the repository root, after the ONNX Runtime CUDA chunks are in /root/kvq-gpu
# (../shared/device/stage-ort-cuda.sh) and the application's jars are in .gpu-app/lib (every jar of
# kvq-cli/target/lib except the CPU onnxruntime and pytorch-native-cpu jars). Measures `kvq bench` on the CPU and
# CUDA providers for a ~180M-parameter random Llama (made here, tools/make_bench_model.py) and checks, on the demo
# model, that perplexity under each cache is the same on both providers. Results go to $OUT.
set -uo pipefail
source .gpu/boot/unpack.sh
kvq() {
  "$KVQ_JAVA" -XX:+UseParallelGC --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
    -Donnxruntime.native.path="$KVQ_ORT_NATIVE" -Dai.djl.offline=true -DOPT_OUT_TRACKING=true \
    -cp ".gpu-app/lib/*:$KVQ_ORT_CLASSES" dev.kvq.cli.Main "$@" 2> >(grep -v "incubator modules" >&2)
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
demo=models/kvq-demo-char
for device in cpu cuda; do
  kvq eval ppl --model $demo --device $device --data $demo/sample.txt --length 6000 --sweep pertoken,kivi \
    --pairs 8-8,4-4,4-2,2-2 2>&1 | tee "$OUT/demo-ppl-$device.txt"
done
model=/root/bench-model
[ -f $model/model.onnx ] || (cd tools && python3 make_bench_model.py --torchscript --out $model) || exit 1
for device in cuda cpu; do
  kvq bench --model $model --device $device --contexts ${KVQ_CONTEXTS:-512,2048} --decode-steps 32 --repeats 2 \
    --sweep pertoken,kivi --pairs 8-8,4-4,4-2 --kv-config $model/mixed.yaml 2>&1 | tee "$OUT/bench-$device.txt"
done
