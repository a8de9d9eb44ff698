#!/usr/bin/env python3
"""Sums an Nsight Compute source page (ncu -i REPORT --page source --csv --print-source sass) by SASS opcode:
executed warp instructions per opcode and the warp stall samples by reason. Usage: ncu_opcodes.py FILE.csv [...]"""
import collections
import csv
import sys


def summarize(path, top=20):
    rows = list(csv.reader(open(path)))
    header, data = rows[1], rows[2:]
    source = header.index("Source")
    executed = header.index("Instructions Executed")
    stalls = [i for i, h in enumerate(header) if h.startswith("stall_") and "Not Issued" not in h]
    by_opcode, by_stall, total = collections.Counter(), collections.Counter(), 0
    for row in data:
        try:
            count = int(row[executed].replace(",", ""))
        except ValueError:
            continue
        words = row[source].split()
        opcode = (words[1] if words and words[0].startswith("@") else words[0] if words else "").split(".")[0]
        by_opcode[opcode] += count
        total += count
        for i in stalls:
            by_stall[header[i]] += int(row[i] or 0)
    print(f"{path}: {total:,} warp instructions executed")
    for opcode, count in by_opcode.most_common(top):
        print(f"  {opcode:8s} {count:14,d} {100 * count / total:5.1f}%")
    print("  stall samples: " + ", ".join(f"{k[6:]} {v}" for k, v in by_stall.most_common(8)))


for f in sys.argv[1:]:
    summarize(f)
