#!/usr/bin/env bash
# kvq serve against kvq generate: a server with the caches where PLACEMENT says (default device) answers six greedy
# requests of different prompt and answer lengths sent at once, under a budget that runs only some at a time (so
# sequences join and leave the batch while others decode), and each answer must equal kvq generate's for its prompt
# alone. Exits 1 on a difference.
# Usage: tools/serve_check.sh [cpu|cuda] [onnx|djl]      (the demo model, per-token KV4 and KIVI K4V2)
# A caller may define and export a shell function kvq (tools/gpu_device_session.sh does, for the staged Java).
set -uo pipefail
cd "$(dirname "$0")/.."
device=${1:-cpu}
runtime=${2:-onnx}
placement=${PLACEMENT:-device}
model=models/kvq-demo-char
if ! declare -F kvq >/dev/null; then
  kvq() { ./kvq "$@"; }
fi
# the server runs under a shell function or the launcher script: stop the whole process tree, java included
kill_tree() {
  local child
  for child in $(pgrep -P "$1"); do kill_tree "$child"; done
  kill "$1" 2>/dev/null
}
work=$(mktemp -d)
server=
trap '[ -n "$server" ] && kill_tree $server; rm -rf "$work"' EXIT
prompts="$work/prompts.json"
python3 - "$model/sample.txt" > "$prompts" <<'PY'
import json, sys
text = open(sys.argv[1], encoding="utf-8").read()
print(json.dumps([text[i * 97:i * 97 + n] for i, n in enumerate([5, 60, 17, 120, 33, 9])]))
PY
status=0
for cache in "--scheme pertoken --k-bits 4 --v-bits 4" "--scheme kivi --k-bits 4 --v-bits 2"; do
  # shellcheck disable=SC2086
  kvq serve --model $model --device "$device" --runtime "$runtime" --placement "$placement" $cache \
    --kv-memory 320KiB --port 0 > "$work/serve.out" 2> "$work/serve.err" &
  server=$!
  for _ in $(seq 1 120); do grep -q listening "$work/serve.out" && break; sleep 1; done
  url=$(grep -o 'http://[^ ]*/v1' "$work/serve.out") || { cat "$work/serve.err" >&2; exit 1; }
  python3 - "$url" "$prompts" > "$work/served.json" <<'PY'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
url, prompts = sys.argv[1], json.load(open(sys.argv[2]))
new = [40, 12, 30, 20, 40, 7]
def complete(p):
    body = json.dumps({"prompt": p, "max_tokens": new[prompts.index(p)], "temperature": 0}).encode()
    req = urllib.request.Request(url + "/completions", body, {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))["choices"][0]["text"]
with ThreadPoolExecutor(len(prompts)) as pool:
    print(json.dumps(list(pool.map(complete, prompts))))
PY
  kill_tree $server; wait $server 2>/dev/null; server=
  new=(40 12 30 20 40 7)
  for i in 0 1 2 3 4 5; do
    prompt=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[$i], end='')" "$prompts")
    # shellcheck disable=SC2086
    alone=$(kvq generate --model $model --device "$device" --runtime "$runtime" --placement "$placement" $cache \
      --prompt "$prompt" --max-new-tokens "${new[$i]}" --json 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['text'], end='')")
    served=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[$i], end='')" "$work/served.json")
    if [ "$alone" == "$served" ]; then
      echo "same  [$cache] prompt $i (${#prompt} chars): $(printf '%q' "${served:0:30}")"
    else
      echo "DIFF  [$cache] prompt $i: served $(printf '%q' "$served") | generate $(printf '%q' "$alone")"
      status=1
    fi
  done
done
exit $status
