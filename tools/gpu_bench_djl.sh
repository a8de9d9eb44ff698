#!/usr/bin/env bash
# Runs on the GPU machine after tools/gpu_bench.sh (same machine, still warm) and after the DJL chunks
# (tools/stage-djl-cuda.sh) are in /root/kvq-djl: the same demo-model perplexity check and bench through kvq's DJL
# runtime (CUDA, and the same libtorch on the CPU). Results go to $OUT.
set -uo pipefail
source .gpu/boot/unpack.sh
source .gpu-djl/boot/unpack-djl.sh
kvq() {
  "$KVQ_JAVA" -XX:+UseParallelGC --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
    -Dai.djl.offline=true -DOPT_OUT_TRACKING=true \
    -cp ".gpu-app/lib/*:$KVQ_ORT_CLASSES" dev.kvq.cli.Main "$@" 2> >(grep -v "incubator modules" >&2)
}
demo=models/kvq-demo-char
kvq eval ppl --model $demo --runtime djl --device cuda --data $demo/sample.txt --length 6000 --sweep pertoken,kivi \
  --pairs 8-8,4-4,4-2,2-2 2>&1 | tee "$OUT/demo-ppl-djl-cuda.txt"
model=/root/bench-model
[ -f $model/model.torchscript.pt ] || (cd tools && python3 make_bench_model.py --torchscript --out $model) || exit 1
for device in cuda cpu; do
  kvq bench --model $model --runtime djl --device $device --contexts ${KVQ_CONTEXTS:-512,2048} --decode-steps 32 \
    --repeats 2 --sweep pertoken,kivi --pairs 8-8,4-4,4-2 --kv-config $model/mixed.yaml 2>&1 | tee "$OUT/bench-djl-$device.txt"
done
