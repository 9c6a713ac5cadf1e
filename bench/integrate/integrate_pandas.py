#!/usr/bin/env python3
"""`migwatt integrate` written the way a notebook user would with pandas + numpy.

Same definitions as meter/src/integrate.rs: trapezoid between samples, windows clipped at
their edges by linear interpolation, a spacing above 1.5 x the host's median spacing (or a
flagged sample) is a gap that is never bridged, coverage = covered share of the window,
windows under 0.95 coverage are left out, E_mig = E_source + E_destination (eq 14).
The per-window loop uses np.searchsorted on each host's sorted arrays (a mask over all
samples per window would take hours).

Usage: integrate_pandas.py SAMPLES_DIR WINDOWS.parquet P0.json OUT.parquet
"""
import json
import sys

import numpy as np
import pandas as pd

MIN_COVERAGE = 0.95


def integrate_window(t, w, ok, a, b, p0):
    """Energy (J), covered ns, largest uncovered ns and sample count of one window."""
    i_first = np.searchsorted(t, a, "left")
    i_after = np.searchsorted(t, b, "right")
    i_before_end = np.searchsorted(t, b, "left")
    k0 = max(i_first - 1, 0)
    k1 = min(i_before_end, len(t) - 1)
    if k1 <= k0:
        return 0.0, 0, b - a, i_after - i_first
    ta, tb = t[k0:k1], t[k0 + 1:k1 + 1]
    wa, wb = w[k0:k1], w[k0 + 1:k1 + 1]
    lo = np.maximum(ta, a)
    hi = np.minimum(tb, b)
    use = ok[k0:k1] & (hi > lo)
    span = (tb - ta).astype(np.float64)
    span[span == 0] = 1.0
    pa_ = wa + (wb - wa) * ((lo - ta) / span)
    pb_ = wa + (wb - wa) * ((hi - ta) / span)
    length = np.where(use, hi - lo, 0)
    energy = float(np.sum((0.5 * (pa_ + pb_) - p0) * length * 1e-9))
    covered = int(length.sum())
    # Largest uncovered stretch: distances between consecutive covered pieces.
    lo_u, hi_u = lo[use], hi[use]
    if len(lo_u) == 0:
        largest = b - a
    else:
        edges_lo = np.concatenate([[a], hi_u])
        edges_hi = np.concatenate([lo_u, [b]])
        largest = int((edges_hi - edges_lo).max())
    return energy, covered, largest, int(i_after - i_first)


def main():
    samples_dir, windows_path, p0_path, out = sys.argv[1:5]
    p0 = json.load(open(p0_path))
    samples = pd.read_parquet(samples_dir, columns=["host", "utc_ns", "watts", "flags",
                                                    "gap_before_ns"])
    samples = samples.dropna(subset=["watts"])
    windows = pd.read_parquet(windows_path)

    energy = np.zeros(len(windows))
    coverage = np.zeros(len(windows))
    largest = np.zeros(len(windows))
    count = np.zeros(len(windows), dtype=np.int64)
    for host, s in samples.groupby("host", observed=True):
        s = s.sort_values("utc_ns", kind="stable")
        t = s["utc_ns"].to_numpy()
        w = s["watts"].to_numpy()
        after_gap = ((s["flags"].to_numpy() & 1) != 0) | s["gap_before_ns"].notna().to_numpy()
        d = np.diff(t)
        interval = np.median(d[d > 0])
        ok = (d <= int(interval * 1.5)) & ~after_gap[1:]
        idx = np.flatnonzero(windows["host"].to_numpy() == host)
        starts = windows["start_utc_ns"].to_numpy()[idx]
        ends = windows["end_utc_ns"].to_numpy()[idx]
        for j, a, b in zip(idx, starts, ends):
            e, cov, gap, n = integrate_window(t, w, ok, int(a), int(b), p0[host])
            energy[j] = e
            coverage[j] = cov / (b - a)
            largest[j] = gap / 1e9
            count[j] = n

    windows["energy_j"] = energy
    windows["coverage"] = coverage
    windows["largest_gap_s"] = largest
    windows["sample_count"] = count
    windows["p0_w"] = windows["host"].map(p0)
    windows["usable"] = windows["coverage"] >= MIN_COVERAGE
    windows.loc[windows["coverage"] == 0, "energy_j"] = np.nan

    src = windows[windows["role"] == "source"].set_index("migration_id")
    dst = windows[windows["role"] == "destination"].set_index("migration_id")
    both = src.merge(dst, left_index=True, right_index=True, suffixes=("_s", "_d"))
    good = both[both["usable_s"] & both["usable_d"]]
    obs = pd.DataFrame({
        "migration_id": good.index,
        "v_mig_bytes": good["v_mig_bytes_s"].to_numpy(),
        "e_source_j": good["energy_j_s"].to_numpy(),
        "e_destination_j": good["energy_j_d"].to_numpy(),
        "e_mig_j": (good["energy_j_s"] + good["energy_j_d"]).to_numpy(),
        "coverage": np.minimum(good["coverage_s"], good["coverage_d"]).to_numpy(),
        "p0_source_w": good["p0_w_s"].to_numpy(),
        "p0_destination_w": good["p0_w_d"].to_numpy(),
        "source_host": good["host_s"].to_numpy(),
        "destination_host": good["host_d"].to_numpy(),
        "start_utc_ns": np.minimum(good["start_utc_ns_s"], good["start_utc_ns_d"]).to_numpy(),
        "end_utc_ns": np.maximum(good["end_utc_ns_s"], good["end_utc_ns_d"]).to_numpy(),
        "workload": good["workload_s"].to_numpy(),
        "vm": good["vm_s"].to_numpy(),
        "vm_mem_bytes": good["vm_mem_bytes_s"].to_numpy(),
    })
    obs.to_parquet(out, index=False)
    excluded = set(both.index[~(both["usable_s"] & both["usable_d"])])
    windows["included"] = ~windows["migration_id"].isin(excluded)
    windows.drop(columns=["usable"]).to_parquet(out.replace(".parquet", ".quality.parquet"),
                                                index=False)
    print(f"pandas: {len(obs)} observations, {int((~windows['included']).sum())} windows out")


if __name__ == "__main__":
    main()
