#!/usr/bin/env python3
"""Per probe window: the dirty data the probe measured against what the dirtier was told to
write (BENCHMARKS.md, probe), from the raw logs of bench/probe/record.py.

Expected dirty data after w seconds at R bytes/s: seq over H: min(R w, H); cycle over a
buffer B: min(R w, B); random over H: H (1 - exp(-R w / H)) (uniform pages).
Also: the probe's non-zero share x RAM against what round 1 sent (QEMU sends zero pages as a
few bytes, so round 1 ~ the non-zero memory).

Usage: bench/probe/windows.py OUT   (OUT of bench/probe/record.py)
"""
import glob
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from record import CONFIGS, MIB  # noqa: E402

OUT = sys.argv[1]
cfg = {c[0]: c for c in CONFIGS}
per_window = {}
print("vm        D_probe  D_set  H_probe  H_set  | nonzero_share x RAM  round1_sent  (MiB, MiB/s)")
for f in sorted(glob.glob(os.path.join(OUT, "raw", "*.qmp.jsonl"))):
    lines = [json.loads(x) for x in open(f)]
    start = next(x for x in lines if x["type"] == "start")
    vm = start["vm"]
    probe = next((x["probe"] for x in lines if x["type"] == "probe"), None)
    if probe is None or vm not in cfg:
        continue
    _, mem, rate, pattern, hot, buf, _, _ = cfg[vm]
    r = rate * 4096
    size = (buf or hot) * MIB
    for w in probe["windows"]:
        t = w["window_s"]
        if pattern == "random":
            want = size * (1 - math.exp(-r * t / size)) if size else 0
        else:
            want = min(r * t, size)
        if want > 0:
            per_window.setdefault(t, []).append((w["dirty_bytes"] - want) / want)
    # Round 1's bytes: transferred at the second dirty sync (the first is at setup).
    first = None
    for x in lines:
        if x["type"] == "reply" and "ram" in x["reply"]:
            ram = x["reply"]["ram"]
            if ram["dirty-sync-count"] >= 2:
                first = ram["transferred"]
                break
    z = probe.get("nonzero_share")
    h = probe.get("hot_set_bytes")
    set_h = size if pattern != "cycle" and size < r * 8 else None
    print(f"{vm:8} {probe['dirty_rate_bytes_per_s'] / MIB:8.2f} {r / MIB:6.2f} "
          f"{(h or 0) / MIB:8.1f} {(set_h or 0) / MIB:6.1f}  | "
          f"{(z or 0) * probe['vm_mem_bytes'] / MIB:19.1f} {(first or 0) / MIB:12.1f}")
print()
print("window_s  n  mean_rel_err_%  mean_abs_rel_err_%  (dirty data vs expected)")
for t in sorted(per_window):
    e = per_window[t]
    print(f"{t:8} {len(e):2} {100 * sum(e) / len(e):15.1f} {100 * sum(map(abs, e)) / len(e):19.1f}")
