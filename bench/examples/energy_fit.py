#!/usr/bin/env python3
"""How well E_mig = alpha V_mig + beta explains the energy of a campaign, per workload.

Reads a campaign folder's energy.parquet (energy observations: V_mig, E_mig per migration)
and, for each workload and for all together, fits E_mig = alpha V_mig + beta by ordinary
least squares, reporting n, alpha (J/MB), beta (J), R^2 and the leave-one-out MAPE of E_mig.
With the raw logs (raw/ID.qmp.jsonl) it also reports each workload's mean busy cores of the
source's QEMU during its migrations (from the `activity` lines), which the activity power model
turns into power that V_mig does not explain.

Usage: energy_fit.py CAMPAIGN_DIR   (prints a Markdown table)
"""
import json
import pathlib
import sys

import numpy as np
import polars as pl


def fit(v, e):
    X = np.column_stack([v, np.ones_like(v)])
    coef, *_ = np.linalg.lstsq(X, e, rcond=None)
    pred = X @ coef
    ss_res = float(((e - pred) ** 2).sum())
    ss_tot = float(((e - e.mean()) ** 2).sum())
    r2 = 1 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    loo = []
    for i in range(len(v)):
        m = np.arange(len(v)) != i
        c, *_ = np.linalg.lstsq(X[m], e[m], rcond=None)
        loo.append(abs((X[i] @ c - e[i]) / e[i]))
    return coef[0], coef[1], r2, 100 * float(np.mean(loo))


def source_cores(raw, mid, start, end):
    p = raw / f"{mid}.qmp.jsonl"
    if not p.is_file():
        return None
    a = [json.loads(l) for l in p.read_text().splitlines() if '"activity"' in l]
    a = [x for x in a if x.get("type") == "activity" and x.get("source_cpu_s") is not None]
    a.sort(key=lambda x: x["utc_ns"])
    inside = [x for x in a if start <= x["utc_ns"] <= end]
    if len(inside) < 2:
        return None
    dt = (inside[-1]["utc_ns"] - inside[0]["utc_ns"]) / 1e9
    return (inside[-1]["source_cpu_s"] - inside[0]["source_cpu_s"]) / dt


def main():
    d = pathlib.Path(sys.argv[1])
    e = pl.read_parquet(d / "energy.parquet")
    rows = []
    groups = sorted(e["workload"].unique().to_list()) + ["(all)"]
    for w in groups:
        g = e if w == "(all)" else e.filter(pl.col("workload") == w)
        v = g["v_mig_bytes"].to_numpy().astype(float)
        y = g["e_mig_j"].to_numpy()
        cores = [
            source_cores(d / "raw", m, s, t)
            for m, s, t in zip(g["migration_id"], g["start_utc_ns"], g["end_utc_ns"])
        ]
        cores = [c for c in cores if c is not None]
        if len(g) >= 3:
            a, b, r2, mape = fit(v, y)
            rows.append((w, len(g), a * 1e6, b, r2, mape, np.mean(cores) if cores else None,
                         v.min() / 1e6, v.max() / 1e6))
        else:
            rows.append((w, len(g), None, None, None, None, np.mean(cores) if cores else None,
                         v.min() / 1e6, v.max() / 1e6))
    print("| workload | n | V_mig range (MB) | alpha (J/MB) | beta (J) | R^2 | LOO MAPE E_mig (%) | source QEMU busy cores |")
    print("|---|---|---|---|---|---|---|---|")
    f = lambda x, p: "-" if x is None else f"{x:.{p}f}"
    for w, n, a, b, r2, mape, c, lo, hi in rows:
        print(f"| {w} | {n} | {lo:.0f}-{hi:.0f} | {f(a, 3)} | {f(b, 2)} | {f(r2, 3)} | {f(mape, 1)} | {f(c, 2)} |")


if __name__ == "__main__":
    main()
