#!/usr/bin/env bash
# The README's numbers for the device-resident cache (placement device) on the GPU machine, in calls of at most ten
# minutes each; run from the repository root there once these are in place:
#   /root/kvq-gpu/cNN   Java 25 + ONNX Runtime CUDA (../shared/device/stage-ort-cuda.sh, chunks re-split to 48 MiB)
#   /root/kvq-djl/dNN   libtorch 2.5.1 for CUDA 12.4 (tools/stage-djl-cuda.sh; phases djl and runtimes)
#   .gpu/boot, .gpu-djl/boot   the unpack scripts of those stagings
#   $KVQ_APP/lib        every jar of kvq-cli/target/lib except the CPU onnxruntime and pytorch-native-cpu jars
#                       (default .gpu-app; /root/kvq-app when copied there in a call of its own)
# Usage: tools/gpu_device_session.sh PHASE   (results go to $OUT); PHASE is one of $PHASES (below):
#   step: kvq's host work per decode step (kvq-bench's DeviceStepHostTime; with $KVQ_BEFORE, a folder of earlier jars
#      put first on the class path, before and after), AttentionKernelTest on the GPU, the demo model's perplexity on
#      CUDA under both placements, then 8 x 4k through kvq's operator beside PyTorch
#   warm: the capacity mode (--kv-memory $KV_MEMORY, default 2GiB) and 8 x 4k beside PyTorch, every row timed after
#      kvq bench's untimed warm-up steps (--warmup-steps, default 32)
#   serve-fused: CudaMemoryTest and tools/serve_check.sh on CUDA (served answers equal kvq generate's, attention
#      through kvq's operator), then kvq serve-bench on the 1B shape at $CONCURRENCY (default 64) clients
#   capacity-jfr: JFR over the capacity mode's full-precision and mixed rows, $STEPS (default 256) decode steps
#   kernel-alone: AttentionKernelTest on the GPU (every kernel variant, -Dkvq.cuda.attention=...) and
#      AttentionKernelBench (each variant timed alone on the same inputs)
#   kernel-rows: AttentionKernelTest on the GPU, then AttentionKernelBench's tensor-core kernel through its general
#      entry points (MMA_GENERAL) and through those compiled for the runs' bit pairs (MMA), side by side, for each
#      "shape cache" of $ROW_CASES (default: 111 and 31 x 4k, KV4, K4V2 and float16; token blocks of 32)
#   kernel-ahead: AttentionKernelTest on the GPU, then the entry points compiled for the runs' bit pairs from the PTX in
#      $PTX_BEFORE (a class-path folder holding an earlier dev/kvq/runtime/onnx/nativeapi/attention.ptx) and from the
#      current one, side by side, for each "shape cache" of $ROW_CASES, two rounds
#   profile-step: ONNX Runtime's own profile (-Dkvq.onnx.profile) of kvq bench's decode steps on the 1B shape at the
#      4 GiB capacity batches, full precision and KV4 at each of $PROFILE_BATCHES (default "31 110"), context 1k,
#      summarized by tools/ort_profile.py (host time per run, per operator type)
#   kernel-splits: AttentionKernelBench's sweep of the tensor-core kernel over split counts at 111, 31 and 8 x 4k (float16
#      and KV4), then DeviceStepHostTime at the 4 GiB capacity batches (fp16 31, kv4 111)
#   capacity-fused: the capacity mode through kvq's operator at each of $KV_MEMORIES (default "4GiB 2GiB"), one
#      kvq-1b-capacity-$mem.json each
#   ppl: the demo model's perplexity on CUDA under placement host and device (per-token and KIVI, KV4 and K4V2)
#   ppl-1b: the same on the float16 1B shape (the tensor-core kernel), 4 windows of 512 tokens
#   8x4k-kv4: full precision and KV4 at 8 x 4k through kvq's operator, PyTorch's DynamicCache beside them
#   kernel-ncu: Nsight Compute (ncu --set full) on one launch of the kernels $NCU_KERNEL names (default
#      kvq_attention_mma) at $NCU_SHAPE (32x4096) for each of $NCU_CACHES (float16 KV4), token block $NCU_BLOCK (32),
#      with the kernels' SASS for sm_90
#   kernel: the capacity mode (--kv-memory $KV_MEMORY, default 2GiB) through kvq's attention operator, then one layer's
#      attention through the kernel timed alone (AttentionKernelBench)
#   fused: attention over the codes (kvq's operator and CUDA kernel) against dequantizing before attention:
#      AttentionKernelTest on the GPU, the demo model's perplexity on CUDA under both placements and both paths, then
#      kvq bench at 8 x 4k on the 1B shape with -Dkvq.onnx.fusedAttention=true and =false, and PyTorch beside them
#   ab: kvq serve-bench on the 1B shape with the jars in $KVQ_BEFORE (kvq-api, kvq-generate and kvq-runtime-onnx of an
#      earlier commit, over a copy of $KVQ_APP) and with the current ones, side by side; first CudaMemoryTest and
#      tools/serve_check.sh on CUDA
#   profile: JFR over kvq serve-bench on the 1B shape at 96 clients (where a served step's time goes)
#   scatter: kvq's CUDA kernel (batched uploads): the device-memory contract on the GPU (CudaMemoryTest, through
#      JUnit's console launcher: .gpu-test/ holds kvq-runtime-onnx's test classes and junit-platform-console-standalone),
#      tools/serve_check.sh on CUDA, then kvq serve-bench on the 1B shape with one copy per piece
#      (-Dkvq.cuda.scatter=false) and with the kernel, side by side
#   serve: kvq serve under load (kvq serve-bench) on the 1B shape with the caches on the device, full precision
#      beside per-token KV4 at one --kv-memory; first the demo model's perplexity on CUDA under both placements and
#      tools/serve_check.sh (served greedy answers equal kvq generate's while sequences join and leave)
#   rerun: ONNX Runtime at batch 8 x 4k (full precision, KV4, the mixed file) beside PyTorch, then the capacity mode
#   runtimes: the 1B shape exported by kvq's exporter (ONNX and TorchScript, float16), batch 8 x 4k under placement
#      device: full precision, KV4 and the mixed file through DJL and through ONNX Runtime, and PyTorch's DynamicCache,
#      side by side; then DJL's capacity mode
#   long: 16k contexts (prefilled in chunks of 1,024) at batch 1 and 8 (BATCHES="1 8"), and PyTorch's DynamicCache
#      beside them
#   big: the Llama-3.1-8B shape at 32k (made in the background during runtimes), kvq and PyTorch
#   a: the Llama-3.2-1B-shape model in float16 (made here), PyTorch (transformers, DynamicCache) and kvq at batch 1 and
#      8 x 1k/4k/16k, full precision against KV4 per-token, KIVI K4V2, KIVI KV8 and a mixed 3.5-bit file, device
#      placement (and host placement where it finishes), plus the demo model's perplexity on CUDA under both placements
#   capacity: ONNX Runtime's capacity mode (largest batch whose caches fit --kv-memory, and its speed)
#   final: a's device rows, capacity and big in one go
set -uo pipefail
export PYTHONUNBUFFERED=1
PHASES="a final runtimes capacity rerun serve ab scatter profile long big fused step warm capacity-jfr serve-fused
  kernel-alone kernel-ncu kernel-rows kernel-ahead profile-step kernel-splits ppl ppl-1b 8x4k-kv4 capacity-fused kernel"
phase=${1:?a phase, one of: $PHASES}
case " $(echo $PHASES) " in
  *" $phase "*) ;;
  *) echo "unknown phase $phase: give one of" $PHASES >&2; exit 2 ;;
esac
source .gpu/boot/unpack.sh >/dev/null
case "$phase" in runtimes|big) source .gpu-djl/boot/unpack-djl.sh >/dev/null ;; esac
app=${KVQ_APP:-.gpu-app}
kvq() {
  "$KVQ_JAVA" ${KVQ_JVM_OPTS:-} -XX:+UseParallelGC -Xmx48g -XX:MaxDirectMemorySize=100g --add-modules jdk.incubator.vector \
    --enable-native-access=ALL-UNNAMED -Donnxruntime.native.path="$KVQ_ORT_NATIVE" -Dai.djl.offline=true \
    -DOPT_OUT_TRACKING=true -cp "$app/lib/*:$KVQ_ORT_CLASSES" dev.kvq.cli.Main "$@" 2> >(grep -v "incubator modules" >&2)
}
small=/root/bench-1b
big=/root/bench-8b
configs() {  # $1 = model dir: the five caches every table compares
  printf '%s\n' "placement: device" "axis_key: 1" "axis_value: 0" "q_group_size: 32" "residual_length: 32" "asym: true" \
    "nbits_key: 4" "nbits_value: 2" > "$1/kivi-k4v2.yaml"
  sed 's/nbits_key: 4/nbits_key: 8/; s/nbits_value: 2/nbits_value: 8/' "$1/kivi-k4v2.yaml" > "$1/kivi-kv8.yaml"
  printf '%s\n' "placement: device" "axis_key: 0" "axis_value: 0" "q_group_size: -1" "residual_length: 0" "asym: true" \
    "nbits_key: 4" "nbits_value: 4" > "$1/kv4.yaml"
}
device_bench() {  # one invocation per (batch, context), so one failure loses one row group; long prompts in chunks
  for batch in 1 8; do
    for context in 1024 4096 16384; do
      kvq bench --model $small --device cuda --json --batch $batch --contexts $context --decode-steps 32 --repeats 1 \
        --prefill-chunk 1024 --kv-config $small/kv4.yaml --kv-config $small/kivi-k4v2.yaml \
        --kv-config $small/kivi-kv8.yaml --kv-config $small/mixed.yaml --placement device 2>>"$OUT/log.txt" \
        | tee -a "$OUT/kvq-1b-device.jsonl"
    done
  done
}
make_small() {
  [ -f $small/config.json ] || (cd tools && python3 make_bench_model.py --out $small --hidden 2048 --heads 32 --kv-heads 8 \
    --intermediate 8192 --dtype float16 --max-positions 20480 --torchscript) 2>&1 | tail -1
  configs $small
}
make_big_in_background() {  # outlives the call that starts it
  [ -f $big/config.json ] || (cd tools && setsid nohup python3 make_bench_model.py --out $big --layers 32 --hidden 4096 \
    --heads 32 --kv-heads 8 --head-dim 128 --intermediate 14336 --dtype float16 --max-positions 40960 \
    > /root/make-8b.log 2>&1 &)
}
sample_text() {  # prompts in the bench model's vocabulary (256 characters from U+0100)
  [ -f $small/sample.txt ] || python3 -c "
import random; r = random.Random(7)
open('$small/sample.txt', 'w', encoding='utf-8').write(''.join(chr(0x100 + r.randrange(256)) for _ in range(200000)))"
}
capacity() {
  kvq bench --model $small --device cuda --json --kv-memory 4GiB --contexts 4096 --decode-steps 16 --repeats 0 \
    --kv-config $small/kv4.yaml --kv-config $small/kivi-kv8.yaml --kv-config $small/mixed.yaml \
    --kv-config $small/kivi-k4v2.yaml --placement device 2>>"$OUT/log.txt" | tee "$OUT/kvq-1b-capacity.json"
}
big_bench() {
  [ -f $big/config.json ] || { echo "8B model not ready: $(tail -2 /root/make-8b.log)" | tee -a "$OUT/log.txt"; return; }
  configs $big
  kvq bench --model $big --device cuda --json --batch 1 --contexts 32768 --decode-steps 16 --repeats 1 \
    --prefill-chunk 1024 --kv-config $big/kv4.yaml --placement device 2>>"$OUT/log.txt" | tee "$OUT/kvq-8b-32k.json"
}
if [ "$phase" = runtimes ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  make_big_in_background
  make_small
  for runtime in djl onnx; do
    kvq bench --model $small --runtime $runtime --device cuda --json --batch 8 --contexts 4096 --decode-steps 32 \
      --repeats 1 --prefill-chunk 1024 --kv-config $small/kv4.yaml --kv-config $small/mixed.yaml --placement device \
      2>>"$OUT/log.txt" | tee -a "$OUT/runtimes-1b-8x4k.jsonl"
  done
  python3 tools/torch_decode_bench.py --config $small/config.json --batch 8 --contexts 4096 --steps 32 \
    2>&1 | grep '^{' | tee "$OUT/torch-1b-8x4k.jsonl"
  kvq bench --model $small --runtime djl --device cuda --json --kv-memory 4GiB --contexts 4096 --decode-steps 16 \
    --repeats 0 --kv-config $small/kv4.yaml --kv-config $small/kivi-kv8.yaml --kv-config $small/mixed.yaml \
    --placement device 2>>"$OUT/log.txt" | tee "$OUT/djl-1b-capacity.json"
  exit 0
fi
if [ "$phase" = long ]; then
  make_small
  for batch in ${BATCHES:-1 8}; do
    kvq bench --model $small --device cuda --json --batch $batch --contexts 16384 --decode-steps 32 --repeats 1 \
      --prefill-chunk 1024 --kv-config $small/kv4.yaml --kv-config $small/kivi-k4v2.yaml \
      --kv-config $small/kivi-kv8.yaml --kv-config $small/mixed.yaml --placement device 2>>"$OUT/log.txt" \
      | tee -a "$OUT/kvq-1b-device-16k.jsonl"
  done
  batches=${BATCHES:-1 8}
  python3 tools/torch_decode_bench.py --config $small/config.json --batch "${batches// /,}" --contexts 16384 \
    --steps 32 2>&1 | grep '^{' | tee "$OUT/torch-1b-16k.jsonl"
  exit 0
fi
if [ "$phase" = big ]; then
  for i in $(seq 1 60); do [ -f $big/config.json ] && break; sleep 5; done
  tail -3 /root/make-8b.log | tee -a "$OUT/log.txt"
  big_bench
  python3 tools/torch_decode_bench.py --config $big/config.json --batch 1 --contexts 32768 --steps 16 --repeats 1 \
    2>&1 | grep '^{' | tee "$OUT/torch-8b.jsonl"
  exit 0
fi
if [ "$phase" = serve ]; then
  { for p in host device; do
      kvq eval ppl --model models/kvq-demo-char --device cuda --placement $p --data models/kvq-demo-char/sample.txt \
        --length 4000 --sweep pertoken,kivi --pairs 4-4,4-2
    done; } 2>&1 | grep -v "^kvq: " | tee "$OUT/demo-ppl-placements.txt"
  # served greedy answers equal kvq generate's, with sequences joining and leaving the device store on CUDA
  export app KVQ_JAVA KVQ_ORT_NATIVE KVQ_ORT_CLASSES
  export -f kvq
  bash tools/serve_check.sh cuda onnx 2>&1 | tee "$OUT/serve-check.txt"
  make_small
  sample_text
  kvq serve-bench --model $small --runtime onnx --device cuda --placement device --kv-memory 512MiB \
    --scheme pertoken --k-bits 4 --v-bits 4 --backend vanilla --concurrency 1,16,64 --requests-per-client 2 \
    --prompt-tokens 512 --max-tokens 128 --json 2>>"$OUT/log.txt" | tee "$OUT/serve-1b-device.json"
  exit 0
fi
gpu_test() {  # $1 = a test class of kvq-runtime-onnx's nativeapi package, run on the GPU (ONNX Runtime needs the stack)
  local log="$OUT/$(echo "$1" | sed 's/\([a-z]\)\([A-Z]\)/\1-\2/g' | tr 'A-Z' 'a-z').txt"
  "$KVQ_JAVA" -Xss16m --enable-native-access=ALL-UNNAMED -Dkvq.cuda=true -Donnxruntime.native.path="$KVQ_ORT_NATIVE" \
    -cp ".gpu-test/junit-platform-console-standalone.jar:.gpu-test/test-classes:$(ls "$app"/lib/*.jar | paste -sd:):$KVQ_ORT_CLASSES" \
    org.junit.platform.console.ConsoleLauncher execute --details=verbose --disable-ansi-colors \
    --select-class "dev.kvq.runtime.onnx.nativeapi.$1" > "$log" 2>&1
  echo "$1: exit $?, $(grep -c 'status: ✔ SUCCESSFUL' "$log") successful, $(grep -c 'status: ✘' "$log") failed" | tee -a "$log"
}
ppl_placements() {  # kvq eval ppl on CUDA of model $1 (its sample.txt) under placement host, then device, into
  # $OUT/$2; further arguments are eval ppl's
  local model=$1 out=$2 placement
  shift 2
  for placement in host device; do
    kvq eval ppl --model "$model" --device cuda --placement $placement --data "$model/sample.txt" "$@" \
      2>>"$OUT/log.txt"
  done | tee "$OUT/$out"
}
kernel_bench() {  # AttentionKernelBench [shape cache block], run by $WRAP (a profiler's command line) where set, with
  # $CP_FIRST (folders ending in :) first on the class path
  ${WRAP:-} "$KVQ_JAVA" -Xss16m --enable-native-access=ALL-UNNAMED -Donnxruntime.native.path="$KVQ_ORT_NATIVE" \
    ${KVQ_JVM_OPTS:-} -cp "${CP_FIRST:-}.gpu-test/test-classes:$(ls "$app"/lib/*.jar | paste -sd:):$KVQ_ORT_CLASSES" \
    dev.kvq.runtime.onnx.nativeapi.AttentionKernelBench "$@"
}
if [ "$phase" = profile ]; then  # where a served step's time goes: JFR over kvq serve-bench on the 1B shape
  make_small
  sample_text
  KVQ_JVM_OPTS="-XX:StartFlightRecording=filename=$OUT/serve.jfr,settings=profile -XX:FlightRecorderOptions=stackdepth=128" \
    kvq serve-bench --model $small --runtime onnx --device cuda --placement device --kv-memory 512MiB \
    --scheme pertoken --k-bits 4 --v-bits 4 --backend vanilla --concurrency 96 --requests-per-client 2 \
    --prompt-tokens 512 --max-tokens 128 --json 2>&1 | grep -E "^kvq: |tokens_per_second"
  exit 0
fi
serve_bench_1b() {  # $1 = output name; the full-precision cache beside per-token KV4 under one budget
  kvq serve-bench --model $small --runtime onnx --device cuda --placement device --kv-memory 512MiB --scheme pertoken \
    --k-bits 4 --v-bits 4 --backend vanilla --concurrency 1,16,64,96 --requests-per-client 2 --prompt-tokens 512 \
    --max-tokens 128 --json 2>>"$OUT/log.txt" | tee "$OUT/$1.json"
}
check_and_prepare() {  # the contract on the GPU, served answers against kvq generate, the model and its prompts
  gpu_test CudaMemoryTest  # the device-memory contract on the GPU, kvq's scatter kernel included
  export app KVQ_JAVA KVQ_ORT_NATIVE KVQ_ORT_CLASSES
  export -f kvq
  bash tools/serve_check.sh cuda onnx 2>&1 | tee "$OUT/serve-check.txt"
  make_small
  sample_text
}
if [ "$phase" = serve-fused ]; then  # served answers and kvq serve under load through kvq's attention operator
  check_and_prepare
  kvq serve-bench --model $small --runtime onnx --device cuda --placement device --kv-memory 512MiB --scheme pertoken \
    --k-bits 4 --v-bits 4 --backend vanilla --concurrency ${CONCURRENCY:-64} --requests-per-client 2 \
    --prompt-tokens 512 --max-tokens 128 --json 2>>"$OUT/log.txt" | tee "$OUT/serve-1b-fused.json"
  tail -20 "$OUT/log.txt" > "$OUT/log-tail.txt"
  exit 0
fi
if [ "$phase" = ab ]; then
  check_and_prepare
  before=/root/kvq-app-before
  rm -rf $before && mkdir -p $before/lib && cp "$app"/lib/*.jar $before/lib/ && cp "${KVQ_BEFORE:?}"/*.jar $before/lib/
  now=$app
  app=$before serve_bench_1b serve-1b-before
  app=$now serve_bench_1b serve-1b-after
  exit 0
fi
if [ "$phase" = scatter ]; then
  check_and_prepare
  KVQ_JVM_OPTS="-Dkvq.cuda.scatter=false" serve_bench_1b serve-1b-scatter-false
  KVQ_JVM_OPTS="-Dkvq.cuda.scatter=true" serve_bench_1b serve-1b-scatter-true
  exit 0
fi
if [ "$phase" = fused ]; then  # attention over the codes (kvq's operator) against dequantizing before attention
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  gpu_test AttentionKernelTest
  grep -E "split\(s\)" "$OUT/attention-kernel-test.txt" | sed 's/^ *//' | head -20
  make_small
  { for p in host device; do
      kvq eval ppl --model models/kvq-demo-char --device cuda --placement $p --data models/kvq-demo-char/sample.txt \
        --length 4000 --sweep pertoken,kivi --pairs 4-4,4-2
    done
    KVQ_JVM_OPTS="-Dkvq.onnx.fusedAttention=false" kvq eval ppl --model models/kvq-demo-char --device cuda \
      --placement device --data models/kvq-demo-char/sample.txt --length 4000 --sweep pertoken,kivi --pairs 4-4,4-2
  } 2>&1 | grep -v "^kvq: [a-z]* [0-9]*/" | tee "$OUT/demo-ppl-fused.txt"
  for fused in true false; do
    KVQ_JVM_OPTS="-Dkvq.onnx.fusedAttention=$fused" kvq bench --model $small --runtime onnx --device cuda --json \
      --batch 8 --contexts 4096 --decode-steps 32 --repeats 1 --prefill-chunk 1024 --kv-config $small/kv4.yaml \
      --kv-config $small/mixed.yaml --kv-config $small/kivi-kv8.yaml --kv-config $small/kivi-k4v2.yaml \
      --placement device 2>>"$OUT/log.txt" | tee "$OUT/bench-1b-8x4k-fused-$fused.jsonl"
  done
  python3 tools/torch_decode_bench.py --config $small/config.json --batch 8 --contexts 4096 --steps 32 \
    2>&1 | grep '^{' | tee "$OUT/torch-1b-8x4k.jsonl"
  exit 0
fi
bench_8x4k_fused() {  # $1 names bench-1b-8x4k-$1.jsonl; caches $2... (default every one) at 8 x 4k through kvq's
  # operator, and PyTorch's DynamicCache beside them
  local name=$1 configs=() c
  shift
  for c in ${*:-kv4 mixed kivi-kv8 kivi-k4v2}; do configs+=(--kv-config "$small/$c.yaml"); done
  kvq bench --model $small --runtime onnx --device cuda --json --batch 8 --contexts 4096 --decode-steps 32 \
    --repeats 1 --prefill-chunk 1024 "${configs[@]}" --placement device 2>>"$OUT/log.txt" \
    | tee "$OUT/bench-1b-8x4k-$name.jsonl"
  python3 tools/torch_decode_bench.py --config $small/config.json --batch 8 --contexts 4096 --steps 32 \
    2>&1 | grep '^{' | tee "$OUT/torch-1b-8x4k.jsonl"
  tail -20 "$OUT/log.txt" > "$OUT/log-tail.txt"
}
capacity_fused() {  # the capacity mode (--kv-memory $KV_MEMORY, default 2GiB) through kvq's operator; $STEPS timed
  # steps (default 32: KIVI quantizes its 32-token residual once in 32 steps, so fewer would leave that step out)
  kvq bench --model $small --device cuda --json --kv-memory ${KV_MEMORY:-2GiB} --contexts 4096 --decode-steps ${STEPS:-32} \
    --repeats 0 --kv-config $small/kv4.yaml --kv-config $small/mixed.yaml --kv-config $small/kivi-kv8.yaml \
    --placement device 2>>"$OUT/log.txt" | tee "$OUT/kvq-1b-capacity-fused.json"
}
host_step() {  # kvq's host work per decode step at the capacity mode's batches (kvq-bench's DeviceStepHostTime):
  # $HOST_STEPS, "configuration batch" pairs separated by commas
  local c
  echo "${HOST_STEPS:-fp16 15,kv4 56,mixed 63,kivi-kv8 27,kv4 8}" | tr ',' '\n' | while read -r c; do
    set -- $c
    "$KVQ_JAVA" --add-modules jdk.incubator.vector -Xmx48g -cp "${HOST_STEP_CP:-}$app/lib/*" \
      dev.kvq.bench.DeviceStepHostTime batch=$2 context=256 steps=64 configs=$1 2>&1 | grep -v -i warning
  done
}
if [ "$phase" = step ]; then  # a decode step's host work and the 8 x 4k decode through kvq's operator, beside PyTorch
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  { if [ -n "${KVQ_BEFORE:-}" ]; then echo "# before: the jars in KVQ_BEFORE"; HOST_STEP_CP="$KVQ_BEFORE/*:" host_step
      echo "# after"; fi
    host_step; } | tee "$OUT/device-step-host-time.txt"
  gpu_test AttentionKernelTest
  { kvq eval ppl --model models/kvq-demo-char --device cuda --placement host --data models/kvq-demo-char/sample.txt \
      --length 4000 --sweep pertoken,kivi --pairs 4-4,4-2
    kvq eval ppl --model models/kvq-demo-char --device cuda --placement device --data models/kvq-demo-char/sample.txt \
      --length 4000 --sweep pertoken,kivi --pairs 4-4,4-2
  } 2>&1 | grep -v "^kvq: [a-z]* [0-9]*/" | tee "$OUT/demo-ppl-fused.txt"
  make_small
  bench_8x4k_fused fused
  exit 0
fi
if [ "$phase" = kernel-alone ]; then  # both kernel variants checked against the Java operator, then timed alone
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  gpu_test AttentionKernelTest
  grep -E "split\(s\)" "$OUT/attention-kernel-test.txt" | sed 's/^ *//' | head -60
  kernel_bench 2>&1 | tee "$OUT/attention-kernel-bench.txt"
  exit 0
fi
row_rounds() {  # $1 = output file: AttentionKernelTest on the GPU, then AttentionKernelBench's general and compiled
  # entry points for each "shape cache" of $ROW_CASES, two rounds; where $PTX_BEFORE is set, each case runs first with
  # that folder's PTX ahead of the jars on the class path ("before"), then with the current one ("now")
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  gpu_test AttentionKernelTest
  local file=$1 round now
  local cases=${ROW_CASES:-111x4096 KV4,111x4096 K4V2,111x4096 float16,31x4096 KV4,31x4096 K4V2,31x4096 float16}
  for round in 1 2; do
    now="round $round: "
    [ -n "${PTX_BEFORE:-}" ] && now="round $round, now:    "
    echo "$cases" | tr ',' '\n' | while read -r c; do
      set -- $c
      if [ -n "${PTX_BEFORE:-}" ]; then
        CP_FIRST="$PTX_BEFORE:" kernel_bench "$1" "$2" 32 MMA 2>&1 | sed "s/^/round $round, before: /"
      fi
      kernel_bench "$1" "$2" 32 MMA_GENERAL,MMA 2>&1 | sed "s/^/$now/"
    done
  done | tee "$OUT/$file"
}
if [ "$phase" = kernel-rows ]; then  # the entry points for the runs' bit pairs against the general ones
  row_rounds attention-kernel-rows.txt
  exit 0
fi
if [ "$phase" = kernel-ahead ]; then  # the compiled entry points of an earlier PTX against the current ones
  : "${PTX_BEFORE:?a folder holding the earlier PTX}"
  row_rounds attention-kernel-ahead.txt
  exit 0
fi
if [ "$phase" = profile-step ]; then  # where a decode step's time goes, as ONNX Runtime sees it
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  make_small
  for batch in ${PROFILE_BATCHES:-31 110}; do
    mkdir -p /root/profile-$batch
    KVQ_JVM_OPTS="-Dkvq.onnx.profile=/root/profile-$batch/run" kvq bench --model $small --device cuda --json \
      --batch $batch --contexts 1024 --decode-steps 32 --repeats 0 --kv-config $small/kv4.yaml --placement device \
      2>>"$OUT/log.txt" | tee "$OUT/bench-1b-$batch-x-1k.json"
    for f in /root/profile-$batch/run_*.json; do
      python3 tools/ort_profile.py "$f" --skip 1 --top 25
    done | tee "$OUT/ort-profile-$batch.txt"
  done
  exit 0
fi
if [ "$phase" = kernel-splits ]; then  # the tensor-core kernel at every split count, and the host's work per step,
  # at the 4 GiB capacity batches
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  kernel_bench splits 2>&1 | tee "$OUT/attention-kernel-splits.txt"
  HOST_STEPS="fp16 31,kv4 111" host_step | tee "$OUT/device-step-host-time.txt"
  exit 0
fi
if [ "$phase" = capacity-fused ]; then  # the capacity mode through kvq's operator at each of $KV_MEMORIES (4GiB 2GiB)
  make_small
  for mem in ${KV_MEMORIES:-4GiB 2GiB}; do
    KV_MEMORY=$mem capacity_fused
    mv "$OUT/kvq-1b-capacity-fused.json" "$OUT/kvq-1b-capacity-$mem.json"
  done
  exit 0
fi
if [ "$phase" = ppl ]; then  # the demo model's perplexity on CUDA, placement host against device (kvq's operator)
  ppl_placements models/kvq-demo-char ppl-demo-cuda.txt --length 4000 --sweep pertoken,kivi --pairs 4-4,4-2
  exit 0
fi
if [ "$phase" = ppl-1b ]; then  # the float16 1B shape (tensor-core kernel), placement host against device
  make_small
  sample_text
  ppl_placements $small ppl-1b-cuda.txt --length 2100 --window 512 --sweep pertoken,kivi --pairs 4-4,4-2
  exit 0
fi
if [ "$phase" = 8x4k-kv4 ]; then  # full precision and KV4 at 8 x 4k through kvq's operator, and PyTorch beside them
  make_small
  bench_8x4k_fused kv4 kv4
  exit 0
fi
if [ "$phase" = kernel-ncu ]; then  # Nsight Compute on one launch per cache of the kernels $NCU_KERNEL names, and SASS
  ncu=/usr/local/cuda/bin/ncu
  ptxas -arch=sm_90 kvq-runtime-onnx/src/main/resources/dev/kvq/runtime/onnx/nativeapi/attention.ptx -o "$OUT/attention.cubin"
  cuobjdump -sass "$OUT/attention.cubin" > "$OUT/attention.sass" || true
  for cache in ${NCU_CACHES:-float16 KV4}; do
    WRAP="$ncu --set full -k regex:${NCU_KERNEL:-kvq_attention_mma} -s 20 -c 1 -f -o $OUT/ncu-$cache" \
      kernel_bench ${NCU_SHAPE:-32x4096} "$cache" ${NCU_BLOCK:-32} > "$OUT/ncu-$cache.log" 2>&1
    "$ncu" -i "$OUT/ncu-$cache.ncu-rep" --page details > "$OUT/ncu-$cache.txt" 2>&1
    "$ncu" -i "$OUT/ncu-$cache.ncu-rep" --page source --csv --print-source sass > "$OUT/ncu-$cache-sass.csv" 2>&1
    tail -3 "$OUT/ncu-$cache.log"
  done
  exit 0
fi
if [ "$phase" = kernel ]; then  # the capacity mode through kvq's operator, then the kernel timed alone
  make_small
  capacity_fused
  tail -20 "$OUT/log.txt" > "$OUT/log-tail.txt"
  kernel_bench 2>&1 | tee "$OUT/attention-kernel-bench.txt"
  exit 0
fi
if [ "$phase" = warm ]; then  # the capacity mode and 8 x 4k beside PyTorch, timed after kvq bench's warm-up steps
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  make_small
  capacity_fused
  bench_8x4k_fused fused
  exit 0
fi
if [ "$phase" = capacity-jfr ]; then  # where a capacity run's decode step goes: JFR over the full-precision and mixed rows
  make_small
  KVQ_JVM_OPTS="-XX:StartFlightRecording=filename=$OUT/capacity.jfr,settings=profile" kvq bench --model $small \
    --device cuda --json --kv-memory ${KV_MEMORY:-2GiB} --contexts 4096 --decode-steps ${STEPS:-256} --repeats 0 \
    --kv-config $small/mixed.yaml --placement device 2>>"$OUT/log.txt" | tee "$OUT/capacity-jfr.json"
  exit 0
fi
if [ "$phase" = rerun ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  make_small
  kvq bench --model $small --runtime onnx --device cuda --json --batch 8 --contexts 4096 --decode-steps 32 \
    --repeats 1 --prefill-chunk 1024 --kv-config $small/kv4.yaml --kv-config $small/mixed.yaml --placement device \
    2>>"$OUT/log.txt" | tee -a "$OUT/runtimes-1b-8x4k.jsonl"
  python3 tools/torch_decode_bench.py --config $small/config.json --batch 8 --contexts 4096 --steps 32 \
    2>&1 | grep '^{' | tee "$OUT/torch-1b-8x4k.jsonl"
  capacity
  exit 0
fi
if [ "$phase" = capacity ]; then
  configs $small
  capacity
  exit 0
fi
if [ "$phase" = final ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  make_big_in_background
  make_small
  device_bench
  capacity
  big_bench
  exit 0
fi
if [ "$phase" = a ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  make_big_in_background
  make_small
  { for p in host device; do
      kvq eval ppl --model models/kvq-demo-char --device cuda --placement $p --data models/kvq-demo-char/sample.txt \
        --length 4000 --sweep pertoken,kivi --pairs 4-4,4-2 --kv-config models/kvq-demo-char/kv-mixed.yaml
    done; } 2>&1 | tee "$OUT/demo-ppl-placements.txt"
  python3 tools/torch_decode_bench.py --config $small/config.json --batch 1,8 --contexts 1024,4096,16384 --steps 32 \
    2>&1 | grep '^{' | tee "$OUT/torch-1b.jsonl"
  device_bench
  kvq bench --model $small --device cuda --json --batch 1 --contexts 1024,4096 --decode-steps 16 --repeats 1 \
    --kv-config $small/kv4.yaml --placement host 2>>"$OUT/log.txt" | tee -a "$OUT/kvq-1b-host.jsonl"
  exit 0
fi
