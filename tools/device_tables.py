"""Prints the README's tables of the device-resident cache from the files tools/gpu_device_session.sh writes:
kvq-1b-device.jsonl (kvq bench --json, placement device), kvq-1b-host.jsonl (placement host) and torch-1b.jsonl
(tools/torch_decode_bench.py).

  python3 tools/device_tables.py docs/results/gpu/device
"""
import json
import os
import sys


def docs(path):
    if not os.path.exists(path):
        return []
    text = open(path).read()
    dec = json.JSONDecoder()
    i, out = 0, []
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            break
        if text[i] != "{":
            i = text.find("\n", i) + 1 or len(text)
            continue
        d, i = dec.raw_decode(text, i)
        out.append(d)
    return out


def main(folder):
    rows = [r for d in docs(os.path.join(folder, "kvq-1b-device.jsonl")) for r in d["results"]]
    rows += [r for d in docs(os.path.join(folder, "kvq-1b-host.jsonl")) for r in d["results"]]
    torch = {(d["batch"], d["context"]): d for d in docs(os.path.join(folder, "torch-1b.jsonl"))}
    print("| cache | placement | batch x context | KV bytes held | on the GPU | moved per step | forward ms/step "
          "| decode tok/s | PyTorch fp16 tok/s |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    names = {"kv4.yaml": "KV4 per-token", "kivi-k4v2.yaml": "KIVI K4V2", "kivi-kv8.yaml": "KIVI KV8",
             "mixed.yaml": "mixed 3.5 bits", "full precision": "float16 (full precision)", "fp32": "float32 (host)",
             "KV4": "KV4 per-token"}
    for r in sorted(rows, key=lambda r: (r["placement"] != "device", r["batch"], r["context"])):
        t = torch.get((r["batch"], r["context"]))
        print(f"| {names.get(r['config'], r['config'])} | {r['placement']} | {r['batch']} x {r['context']} "
              f"| {r['kv_bytes']:,} | {r['kv_device_bytes']:,} | {r['transfer_bytes_per_step']:,.0f} "
              f"| {r['forward_ms_per_step']:.2f} | {r['decode_tokens_per_s']:.1f} "
              f"| {t['decode_tokens_per_s']:.1f} |" if t else "| |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/results/gpu/device")
