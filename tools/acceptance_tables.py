#!/usr/bin/env python3
"""Prints the README's shakespeare tuning tables from the outputs of tools/acceptance.sh.

Usage: tools/acceptance_tables.py OUT_DIR
For each scheme: the tuned configurations against the uniform ones on held-out text; the additive estimate measured on
the held-out text against the KL measured for each uniform pair; the estimate's best mixes evaluated there.
"""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/tuning")
BUDGETS = ["3.00", "3.50", "4.00"]


def rows(name):
    f = out / name
    return json.loads(f.read_text())["results"] if f.exists() else []


def pair_bits(pair):
    k, v = (int(pair[2:]),) * 2 if pair.startswith("KV") else map(int, pair[1:].split("V"))
    return (k + v) / 2


for scheme in ["per-token-asym", "per-channel-asym"]:
    tag = f"shakespeare-{scheme}"
    search_file = out / tag / "search.json"
    if not search_file.exists():
        continue
    search = json.loads(search_file.read_text())
    uniform = {r["config"].split()[-1]: r for r in rows(f"{tag}.eval-uniform.json")}
    tuned = {r["config"]: r for r in rows(f"{tag}.eval-tuned.json")}
    fp = next(iter(uniform.values()))["fp_ppl"]

    def best_uniform(bits):
        ok = [(r["ppl"], p) for p, r in uniform.items() if pair_bits(p) <= bits + 1e-9]
        ppl, p = min(ok)
        return f"{p} {ppl:.4f} (KL {uniform[p]['mean_kl']:.5f})"

    print(f"\n**{tag}** ({search['evaluations']} of {search['space_size']:,} configurations evaluated; "
          f"full precision: calibration {search['fp_ppl']:.4f}, held-out {fp:.4f})\n")
    print("| budget | tuned per-layer bits | avg bits | ppl calibration | ppl held-out | KL held-out "
          "| best uniform within budget, held-out |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | --- |")
    for b in BUDGETS:
        pt = search["best"].get(b)
        r = tuned.get(f"best-{b}bits.kvq.yaml")
        if pt and r:
            print(f"| {b} | {pt['layers']} | {pt['avg_bits']:.3f} | {pt['ppl']:.4f} | {r['ppl']:.4f} "
                  f"| {r['mean_kl']:.5f} | {best_uniform(float(b))} |")

    held = out / f"{tag}-heldout" / "profile.json"
    if not held.exists():
        continue
    profile = json.loads(held.read_text())
    print(f"\nAdditive estimate on the held-out text ({tag}-heldout.calibrate.txt): summed single-layer KL against "
          "the KL measured with every layer quantized\n")
    print("| uniform pair | measured KL | estimated KL | estimate / measured |")
    print("| --- | ---: | ---: | ---: |")
    for p, r in uniform.items():
        est = sum(layer["errors"][p]["kl"] for layer in profile["layers"])
        ratio = est / r["mean_kl"] if r["mean_kl"] > 0 else float("nan")
        print(f"| {p} | {r['mean_kl']:.5f} | {est:.5f} | {ratio:.2f} |")
    estimates = {r["config"]: r for r in rows(f"{tag}-heldout.eval-estimate.json")}
    print("\nThe estimate's best mix per budget on the held-out text, evaluated there\n")
    print("| budget | best mix by the held-out estimate | ppl held-out | KL held-out | uniform KV4 | best uniform within budget |")
    print("| ---: | --- | ---: | ---: | ---: | --- |")
    for b in BUDGETS[:2]:
        r = estimates.get(f"estimate-{b}bits.kvq.yaml")
        # kvq calibrate writes the estimates into profile-estimates/; runs before it wrote them beside the profile
        layers_file = out / f"{tag}-heldout" / "profile-estimates" / f"estimate-{b}bits.yaml"
        if not layers_file.exists():
            layers_file = out / f"{tag}-heldout" / f"estimate-{b}bits.yaml"
        if r and layers_file.exists():
            text = layers_file.read_text().split("\n")
            bits = [(int(text[i + 1].split(":")[1]), int(text[i + 2].split(":")[1]))
                    for i in range(0, len(text) - 2, 3) if text[i].endswith(":")]
            names = " ".join(f"KV{k}" if k == v else f"K{k}V{v}" for k, v in bits)
            print(f"| {b} | {names} | {r['ppl']:.4f} | {r['mean_kl']:.5f} | {uniform['KV4']['ppl']:.4f} "
                  f"| {best_uniform(float(b))} |")
