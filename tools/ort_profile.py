#!/usr/bin/env python3
"""Summarizes ONNX Runtime's profile of a session (kvq ... -Dkvq.onnx.profile=PREFIX writes PREFIX_<date>.json per
session): the runs of one shape, their wall time, and where the host spent it, by operator type, kvq's attention
operator included. On CUDA a node's time is the host's: launching its kernels (and waiting, where a node copies to the
host), not the GPU's.

Usage: ort_profile.py FILE.json [--skip N]   (--skip: leave out the first N runs, e.g. prefill and warm-up)"""
import argparse
import collections
import json


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--skip", type=int, default=0)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    events = json.load(open(args.file))
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    if not runs:
        print(f"{args.file}: no runs")
        return
    runs = runs[args.skip:]
    nodes = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    nodes.sort(key=lambda e: e["ts"])
    # nodes belong to the run whose interval holds them
    per_run = collections.defaultdict(list)
    i = 0
    for run in runs:
        start, end = run["ts"], run["ts"] + run["dur"]
        while i < len(nodes) and nodes[i]["ts"] < start:
            i += 1
        j = i
        while j < len(nodes) and nodes[j]["ts"] <= end:
            per_run[id(run)].append(nodes[j])
            j += 1
        i = j
    wall = sum(r["dur"] for r in runs) / len(runs)
    busy = sum(sum(n["dur"] for n in per_run[id(r)]) for r in runs) / len(runs)
    count = sum(len(per_run[id(r)]) for r in runs) / len(runs)
    print(f"{args.file}: {len(runs)} runs (after {args.skip} skipped), {wall / 1000:.3f} ms per run, "
          f"nodes {busy / 1000:.3f} ms of it on the host ({count:.0f} nodes per run), "
          f"{(wall - busy) / 1000:.3f} ms outside nodes")
    by_type = collections.Counter()
    calls = collections.Counter()
    for r in runs:
        for n in per_run[id(r)]:
            op = n.get("args", {}).get("op_name", "?")
            provider = n.get("args", {}).get("provider", "")
            key = f"{op} ({provider.replace('ExecutionProvider', '')})"
            by_type[key] += n["dur"]
            calls[key] += 1
    print(f"  {'operator (provider)':40s} {'ms per run':>10s} {'nodes':>6s} {'us per node':>12s}")
    for key, total in by_type.most_common(args.top):
        print(f"  {key:40s} {total / len(runs) / 1000:10.3f} {calls[key] / len(runs):6.0f} "
              f"{total / calls[key]:12.1f}")


if __name__ == "__main__":
    main()
