"""Prints the README's tables of the device-resident cache from the files tools/gpu_device_session.sh writes:
kvq-1b-device.jsonl (kvq bench --json, placement device), kvq-1b-host.jsonl (placement host) and torch-1b.jsonl
(tools/torch_decode_bench.py); runtimes-1b-8x4k.jsonl with torch-1b-8x4k.jsonl (both runtimes side by side, phase
runtimes); kvq-1b-capacity.json and djl-1b-capacity.json (capacity mode); kvq-8b-32k.json with torch-8b.jsonl.

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


NAMES = {"kv4.yaml": "KV4 per-token", "kivi-k4v2.yaml": "KIVI K4V2", "kivi-kv8.yaml": "KIVI KV8",
         "mixed.yaml": "mixed 3.5 bits", "full precision": "float16 (full precision)", "KV4": "KV4 per-token"}


def runtimes(folder):
    torch = docs(os.path.join(folder, "torch-1b-8x4k.jsonl"))
    reference = torch[0]["decode_tokens_per_s"] if torch else float("nan")
    print(f"\nBatch 8 x 4096, placement device; PyTorch fp16 DynamicCache in the same call: {reference:.1f} tok/s\n")
    print("| cache | runtime | on the GPU | moved per step | forward ms/step | append ms/step | decode tok/s | vs PyTorch |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for d in docs(os.path.join(folder, "runtimes-1b-8x4k.jsonl")):
        for r in d["results"]:
            print(f"| {NAMES.get(r['config'], r['config'])} | {d['runtime']} | {r['kv_device_bytes']:,} "
                  f"| {r['transfer_bytes_per_step']:,.0f} | {r['forward_ms_per_step']:.1f} | {r['append_ms_per_step']:.1f} "
                  f"| {r['decode_tokens_per_s']:.1f} | {r['decode_tokens_per_s'] / reference:.2f}x |")


def capacity(folder):
    for name in ("kvq-1b-capacity.json", "djl-1b-capacity.json"):
        for d in docs(os.path.join(folder, name)):
            budget = d["kv_memory_bytes"] / 2 ** 30
            print(f"\nCapacity mode, {d['runtime']}: --kv-memory {budget:.0f}GiB, context 4096 (+16 decode steps)\n")
            print("| cache | largest batch | on the GPU | forward ms/step | append ms/step | decode tok/s "
                  "| forward-only tok/s |")
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
            for r in d["results"]:
                forward_only = r["batch"] / (r["forward_ms_per_step"] / 1000)
                print(f"| {NAMES.get(r['config'], r['config'])} | {r['batch']} | {r['kv_device_bytes']:,} "
                      f"| {r['forward_ms_per_step']:.1f} | {r['append_ms_per_step']:.1f} "
                      f"| {r['decode_tokens_per_s']:.1f} | {forward_only:.1f} |")


def big(folder):
    torch = docs(os.path.join(folder, "torch-8b.jsonl"))
    for d in docs(os.path.join(folder, "kvq-8b-32k.json")):
        print(f"\nLlama-3.1-8B shape, batch 1 x 32768, {d['runtime']}; PyTorch fp16: "
              f"{torch[0]['decode_tokens_per_s']:.1f} tok/s, {torch[0]['kv_bytes']:,} KV bytes\n" if torch else "")
        print("| cache | KV bytes held | on the GPU | forward ms/step | append ms/step | decode tok/s |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for r in d["results"]:
            print(f"| {NAMES.get(r['config'], r['config'])} | {r['kv_bytes']:,} | {r['kv_device_bytes']:,} "
                  f"| {r['forward_ms_per_step']:.1f} | {r['append_ms_per_step']:.1f} | {r['decode_tokens_per_s']:.1f} |")


if __name__ == "__main__":
    where = sys.argv[1] if len(sys.argv) > 1 else "docs/results/gpu/device"
    main(where)
    runtimes(where)
    capacity(where)
    big(where)
