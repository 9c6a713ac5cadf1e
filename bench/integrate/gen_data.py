#!/usr/bin/env python3
"""Generate the integration benchmark's input: a samples dataset and a migration-windows file.

Writes OUT/samples/host=NAME/date=YYYY-MM-DD/part-0.parquet (the full samples schema of
datasets/src/samples.rs: meter_id, utc_ns, mono_ns, seq, connection, gap_before_ns, flags and
the 18 meter fields, with migwatt key-value metadata), OUT/windows.parquet (the
migration-windows schema of datasets/src/windows.rs) and OUT/p0.json (host -> static power W).

Power: each host idles at its own P_0 with +-0.3 W noise in 0.1 W steps; every migration
window adds a burst. Stamps are 1 s apart with a few ms jitter. About 0.05 % of records are
lost (a 2 s spacing, which integration must not bridge) and each host has a few capture
restarts (30-300 s gaps, flagged). Deterministic for a given --seed.

Usage: gen_data.py OUT [--samples 10000000] [--hosts 4] [--windows 100000] [--seed 1]
"""
import argparse
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

T0_NS = 1_764_028_800 * 10**9  # 2025-11-25T00:00:00Z
DAY_NS = 86_400 * 10**9
FIELDS = [
    "watts", "volts", "amps", "watt_hours", "cost", "watt_hours_per_month", "cost_per_month",
    "watts_max", "volts_max", "amps_max", "watts_min", "volts_min", "amps_min",
    "power_factor", "duty_cycle", "power_cycles", "hertz", "volt_amps",
]


def host_samples(rng, n):
    """Stamps (ns) and after-gap flags for one host: 1 s steps, jitter, losses, restarts."""
    step = np.full(n, 10**9, dtype=np.int64)
    step += rng.integers(-3_000_000, 3_000_001, n)  # a few ms of jitter
    lost = rng.random(n) < 0.0005
    step[lost] += 10**9  # one record lost: 2 s spacing, not flagged
    restarts = rng.choice(n, size=5, replace=False)
    gap_ns = rng.integers(30, 301, size=5).astype(np.int64) * 10**9
    step[restarts] += gap_ns
    step[0] = 0
    utc = T0_NS + np.cumsum(step)
    gap_before = np.full(n, None, dtype=object)
    gap_before[restarts] = step[restarts]
    flags = np.zeros(n, dtype=np.uint32)
    flags[restarts] = 1
    return utc, flags, gap_before


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--samples", type=int, default=10_000_000)
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--windows", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    hosts = [f"node{i:02d}" for i in range(a.hosts)]
    per_host = a.samples // a.hosts
    p0 = {h: round(95.0 + 10.0 * i + rng.integers(0, 10) / 10.0, 1) for i, h in enumerate(hosts)}

    stamps = {}
    for h in hosts:
        stamps[h] = host_samples(rng, per_host)
    span_lo = max(s[0][0] for s in stamps.values())
    span_hi = min(s[0][-1] for s in stamps.values())

    # Migrations: a source and a destination window each (100,000 windows = 50,000 migrations).
    n_mig = a.windows // 2
    src = rng.integers(0, a.hosts, n_mig)
    dst = (src + rng.integers(1, a.hosts, n_mig)) % a.hosts
    dur = rng.integers(10_000, 120_001, n_mig).astype(np.int64) * 10**6  # 10-120 s
    start = rng.integers(span_lo, span_hi - 200 * 10**9, n_mig)
    d_start = start + rng.integers(0, 2_000, n_mig) * 10**6
    d_end = start + dur + rng.integers(0, 2_000, n_mig) * 10**6
    v_mig = rng.integers(200, 4_000, n_mig).astype(np.uint64) * 1_048_576
    workloads = np.array(["avrora", "batik", "eclipse", "fop", "h2", "jython", "luindex",
                          "lusearch", "pmd", "sunflow", "tomcat", "tradebeans", "xalan"])
    wl = workloads[rng.integers(0, len(workloads), n_mig)]
    ids = np.array([f"mig-{i:06d}" for i in range(n_mig)])
    windows = pa.table({
        "migration_id": np.concatenate([ids, ids]),
        "host": np.concatenate([np.array(hosts)[src], np.array(hosts)[dst]]),
        "role": np.concatenate([np.full(n_mig, "source"), np.full(n_mig, "destination")]),
        "start_utc_ns": np.concatenate([start, d_start]).astype(np.int64),
        "end_utc_ns": np.concatenate([start + dur, d_end]).astype(np.int64),
        "v_mig_bytes": np.concatenate([v_mig, v_mig]),
        "workload": np.concatenate([wl, wl]),
        "vm": np.concatenate([np.char.add("vm-", (src * 7 + 3).astype(str))] * 2),
        "vm_mem_bytes": np.full(2 * n_mig, 1 << 30, dtype=np.uint64),
    })
    meta = {b"migwatt.dataset": b"migration_windows", b"migwatt.schema_version": b"1.0.0"}
    os.makedirs(a.out, exist_ok=True)
    pq.write_table(windows.replace_schema_metadata(meta), os.path.join(a.out, "windows.parquet"),
                   compression="zstd")

    burst = rng.integers(200, 800, n_mig) / 10.0  # 20-80 W above idle
    for hi, h in enumerate(hosts):
        utc, flags, gap_before = stamps[h]
        n = len(utc)
        watts = p0[h] + rng.integers(-3, 4, n) / 10.0
        # Bursts: a difference array over sample indexes of every window on this host.
        delta = np.zeros(n + 1)
        for sel, ws, we in ((src == hi, start, start + dur), (dst == hi, d_start, d_end)):
            i0 = np.searchsorted(utc, ws[sel])
            i1 = np.searchsorted(utc, we[sel])
            np.add.at(delta, i0, burst[sel])
            np.add.at(delta, i1, -burst[sel])
        watts = np.round(watts + np.cumsum(delta)[:n], 1)
        volts = np.round(230.0 + rng.integers(-5, 6, n) / 10.0, 1)
        cols = {
            "meter_id": np.full(n, f"PRO hw5.2 fw3.14 {h}"),
            "utc_ns": utc,
            "mono_ns": utc - T0_NS + 12_345_000_000,
            "seq": np.arange(n, dtype=np.uint64),
            "connection": (1 + np.cumsum(flags)).astype(np.uint32),
            "gap_before_ns": pa.array(gap_before, type=pa.int64()),
            "flags": flags,
        }
        fields = {f: np.full(n, np.nan) for f in FIELDS}
        fields["watts"] = watts
        fields["volts"] = volts
        fields["amps"] = np.round(watts / volts, 3)
        fields["watt_hours"] = np.round(np.cumsum(watts) / 3600.0, 1)
        fields["watts_max"] = watts
        fields["watts_min"] = watts
        fields["volts_max"] = volts
        fields["volts_min"] = volts
        fields["power_factor"] = np.full(n, 0.95)
        fields["hertz"] = np.full(n, 50.0)
        fields["volt_amps"] = np.round(watts / 0.95, 1)
        table = pa.table({**cols, **{f: pa.array(v, from_pandas=True) for f, v in fields.items()}})
        day = (utc - T0_NS) // DAY_NS
        meta_h = {b"migwatt.dataset": b"samples", b"migwatt.schema_version": b"1.0.0",
                  b"migwatt.host": h.encode()}
        for d in np.unique(day):
            lo, hi_ = np.searchsorted(day, [d, d + 1])
            date = np.datetime64(T0_NS + int(d) * DAY_NS, "ns").astype("datetime64[D]")
            part = os.path.join(a.out, "samples", f"host={h}", f"date={date}")
            os.makedirs(part, exist_ok=True)
            pq.write_table(table.slice(lo, hi_ - lo).replace_schema_metadata(meta_h),
                           os.path.join(part, "part-0.parquet"), compression="zstd")
    with open(os.path.join(a.out, "p0.json"), "w") as f:
        json.dump(p0, f, indent=1)
    print(f"{a.out}: {a.hosts} hosts x {per_host} samples, {2 * n_mig} windows, P_0 {p0}")


if __name__ == "__main__":
    main()
