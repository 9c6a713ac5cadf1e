#!/usr/bin/env python3
"""Derive emulated power traces (time_s,watts CSV, one per host) from a migrations dataset.

EMULATED, not measured: each host idles at its static power P_0 with a small seeded noise
(peak-to-peak under 1 W, as the paper's stable stretches); while a migration runs, the source
draws extra setup_w + w_per_mib_s x throughput and the destination its own (smaller)
coefficients, throughput being V_mig / T_mig of that migration. Time 0 of each trace is
--t0-utc-ns (the emulator's start), so the trace lines up with the real migrations when the
capture's clock starts there too.

Usage: power_trace.py MIGRATIONS_DIR OUT_DIR --lead-s 100 --tail-s 20
Prints T0 (UTC ns) and the duration (s) on stdout: "T0_NS DURATION_S".
"""
import argparse
import glob
import os
import random

import pyarrow.parquet as pq

HOSTS = {
    # host: (P_0 W, source setup W, source W per MiB/s, destination setup W, destination W per MiB/s)
    "hostA": (98.0, 6.0, 0.50, 4.0, 0.35),
    "hostB": (101.5, 5.0, 0.45, 3.5, 0.30),
}
NOISE_W = 0.3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("migrations")
    ap.add_argument("out")
    ap.add_argument("--lead-s", type=float, default=100.0)
    ap.add_argument("--tail-s", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rows = []
    for f in sorted(glob.glob(os.path.join(a.migrations, "*.parquet"))):
        rows += pq.read_table(f).to_pylist()
    rows = [r for r in rows if r["start_utc_ns"] is not None and r["end_utc_ns"] is not None]
    rows.sort(key=lambda r: r["start_utc_ns"])
    t0 = rows[0]["start_utc_ns"] - int(a.lead_s * 1e9)
    t_end = (max(r["end_utc_ns"] for r in rows) - t0) / 1e9 + a.tail_s
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    for host, (p0, s_setup, s_per, d_setup, d_per) in HOSTS.items():
        # Extra watts over [start, end) of each migration touching this host.
        spans = []
        for r in rows:
            thr_mib_s = r["v_mig_bytes"] / max(r["t_mig_s"], 1e-3) / 2**20
            s = (r["start_utc_ns"] - t0) / 1e9
            e = (r["end_utc_ns"] - t0) / 1e9
            if r["source_host"] == host:
                spans.append((s, e, s_setup + s_per * thr_mib_s))
            elif r["destination_host"] == host:
                spans.append((s, e, d_setup + d_per * thr_mib_s))
        # Points every 0.5 s of idle noise, plus steps at every span edge (1 ms ramps).
        pts = {}
        t = 0.0
        while t <= t_end:
            pts[round(t, 3)] = rng.uniform(-NOISE_W, NOISE_W)
            t += 0.5
        for s, e, _ in spans:
            for x in (s - 0.001, s, e - 0.001, e):
                pts.setdefault(round(x, 3), 0.0)
        with open(os.path.join(a.out, f"trace-{host}.csv"), "w") as f:
            f.write("time_s,watts\n")
            for x in sorted(pts):
                w = p0 + pts[x] + sum(extra for s, e, extra in spans if s <= x < e)
                f.write(f"{x:.3f},{w:.3f}\n")
    print(t0, f"{t_end:.0f}")


if __name__ == "__main__":
    main()
