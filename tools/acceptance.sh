#!/usr/bin/env bash
# Reproduces the README's tuning results on the shared models (../shared): for each scheme, calibrate on
# calibration data, tune, and evaluate the tuned configs beside the uniform ones on held-out data.
#   shakespeare-char-llama, objective ppl: calibration text = a slice of the first 90% of tiny-shakespeare,
#     evaluation = the last 10% (from character 1003854).
#   passkey-char-llama, objective passkey: calibration = prompts 150-299, evaluation = prompts 0-149.
# Usage: [SCHEMES=..] [TRIALS=120] [PASSKEY_TRIALS=80] [KL_WINDOWS=16] [TUNE_WINDOWS=96] tools/acceptance.sh [OUT_DIR] [shakespeare|passkey|all]
#   (a few hours on 2 cores)
# A step whose output exists is skipped, so an interrupted run resumes where it stopped (kvq refuses to write over
# results it finds, so a step that died after writing its files needs those files removed before it runs again).
# tools/acceptance_tables.py OUT_DIR prints the README's shakespeare tables from the outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/results}
which=${2:-all}
shared=${KVQ_SHARED:-../shared}
text=$shared/data/tinyshakespeare/input.txt
mkdir -p "$out"
# step OUTPUT COMMAND...: runs COMMAND with stdout to OUTPUT unless OUTPUT exists (written atomically)
step() {
  local target=$1; shift
  if [ -s "$target" ]; then echo "exists: $target"; return; fi
  echo "$(date +%T) $target"
  "$@" > "$target.partial" && mv "$target.partial" "$target"
}
schemes=${SCHEMES:-"per-token-asym per-channel-asym"}
trials=${TRIALS:-120}                  # NSGA-II budget for the perplexity search
passkey_trials=${PASSKEY_TRIALS:-80}  # and for the passkey search
kl_windows=${KL_WINDOWS:-16}           # calibration windows for the single-layer KL (the seeds' estimate)
tune_windows=${TUNE_WINDOWS:-96}       # windows of 256 characters each perplexity evaluation scores

if [ "$which" = all ] || [ "$which" = shakespeare ]; then
  model=$shared/models/shakespeare-char-llama
  for scheme in $schemes; do
    tag=shakespeare-$scheme
    sweep=$([ $scheme = per-token-asym ] && echo pertoken || echo kivi)
    step $out/$tag.calibrate.txt ./kvq calibrate --model $model --data $text --offset 0 --length 40000 \
      --kl-windows $kl_windows --scheme $sweep --out $out/$tag/profile.json
    step $out/$tag.tune.txt ./kvq tune --model $model --profile $out/$tag/profile.json --data $text --offset 100000 \
      --length 60000 --windows $tune_windows --objective ppl --max-avg-bits 4.0 --budgets 3.0,3.5,4.0 --trials $trials \
      --out-dir $out/$tag
    step $out/$tag.eval-uniform.json ./kvq eval ppl --model $model --data $text --offset 1003854 --length 60000 \
      --sweep $sweep --pairs 8-8,8-4,8-2,4-8,4-4,4-2,2-8,2-4,2-2 --json
    step $out/$tag.eval-tuned.json ./kvq eval ppl --model $model --data $text --offset 1003854 --length 60000 \
      --kv-config $out/$tag/best-3.00bits.kvq.yaml --kv-config $out/$tag/best-3.50bits.kvq.yaml \
      --kv-config $out/$tag/best-4.00bits.kvq.yaml --json
    # analysis, not tuning: the profile measured on the evaluation text itself, and its additive estimate's best
    # mixes evaluated there; what no calibration-based search can beat by more than chance
    step $out/$tag-heldout.calibrate.txt ./kvq calibrate --model $model --data $text --offset 1003854 --length 60000 \
      --windows 8 --kl-windows $kl_windows --scheme $sweep --out $out/$tag-heldout/profile.json
    step $out/$tag-heldout.eval-estimate.json ./kvq eval ppl --model $model --data $text --offset 1003854 \
      --length 60000 --kv-config $out/$tag-heldout/profile-estimates/estimate-3.00bits.kvq.yaml \
      --kv-config $out/$tag-heldout/profile-estimates/estimate-3.50bits.kvq.yaml --json
  done
fi

if [ "$which" = all ] || [ "$which" = passkey ]; then
  model=$shared/models/passkey-char-llama
  data=$shared/data/passkey/test.jsonl
  # calibration text for the attention errors: the calibration prompts themselves
  [ -s $out/passkey-calibration.txt ] || python3 -c "import json,sys; [print(json.loads(l)['prompt']+json.loads(l)['answer']) for l in open('$data').readlines()[150:300]]" > $out/passkey-calibration.txt
  for scheme in $schemes; do
    tag=passkey-$scheme
    sweep=$([ $scheme = per-token-asym ] && echo pertoken || echo kivi)
    step $out/$tag.calibrate.txt ./kvq calibrate --model $model --data $out/passkey-calibration.txt --length 0 \
      --window 384 --scheme $sweep --out $out/$tag/profile.json
    step $out/$tag.tune.txt ./kvq tune --model $model --profile $out/$tag/profile.json --data $data --offset 150 \
      --limit 150 --objective passkey --max-avg-bits 3.5 --budgets 3.0,3.5 --trials $passkey_trials --out-dir $out/$tag
    step $out/$tag.eval-uniform.json ./kvq eval passkey --model $model --data $data --limit 150 --sweep $sweep \
      --pairs 8-8,8-4,8-2,4-8,4-4,4-2,2-8,2-4,2-2 --json
    step $out/$tag.eval-tuned.json ./kvq eval passkey --model $model --data $data --limit 150 --no-fp \
      --kv-config $out/$tag/best-3.00bits.kvq.yaml --kv-config $out/$tag/best-3.50bits.kvq.yaml --json
  done
fi
echo "done: $out"
