"""Per-workload view of accuracy campaign W (bench/accuracy/workloads): the refined model's
held-out MAPE with and without the hot-set cap, and the campaign's own evidence for the cap's
premise (round 1 dirties a fixed hot set H, so the rounds after it are bounded by H): what
round 1 dirtied against D x T_1, how it varies between repetitions, and the probe's H.
Usage: workloads_report.py DATA_DIR OUT_DIR   (OUT_DIR: where bench/accuracy/run.sh wrote the
evaluation files, e.g. bench/out/workloads-accuracy)"""
import os
import sys

import polars as pl

data, out = sys.argv[1], sys.argv[2]
MB = 1e6
m = pl.read_parquet(os.path.join(data, "migrations", "*.parquet"))
r = pl.read_parquet(os.path.join(data, "rounds", "*.parquet"))

variants = {
    "cap": "evaluation.parquet",
    "nocap": "evaluation-nocap.parquet",
    "gamma0": "evaluation-gamma0.parquet",
}
rows = []
for name, f in variants.items():
    ev = pl.read_parquet(os.path.join(out, f)).filter(
        # Held out: repetitions 2 and 3 (run.sh trains on each VM's repetition 1, one per link).
        (pl.col("model") == "refined")
        & ~pl.col("migration_id").str.ends_with("-r1")
        & pl.col("measured_converged")
    )
    rows.append(
        ev.group_by("workload").agg(
            pl.len().alias("n"),
            (pl.col("rel_err_t_mig").abs().mean() * 100).round(1).alias(f"T_mig_{name}_%"),
            (pl.col("rel_err_t_mig").mean() * 100).round(1).alias(f"bias_{name}_%"),
        )
    )
acc = rows[0]
for extra in rows[1:]:
    acc = acc.join(extra.drop("n"), on="workload")

# Round 1 (the first pre-copy pass) and what it dirtied: the data round 2 had to send is the
# dirty set left by round 1 (dirtied_pages of round 1 when the log gives it).
first = r.filter(pl.col("round") == 1).select(
    "migration_id",
    pl.col("duration_s").alias("t1_s"),
    (pl.col("dirtied_pages") * 4096 / MB).alias("dirtied_r1_mb"),
)
per = (
    m.join(first, on="migration_id")
    .with_columns(
        (pl.col("pre_dirty_rate_bytes_per_s") * pl.col("t1_s") / MB).alias("d_x_t1_mb"),
        (pl.col("probe_hot_set_bytes") / MB).alias("probe_h_mb"),
    )
    .group_by("workload")
    .agg(
        pl.col("rounds").min().alias("rounds_min"),
        pl.col("rounds").max().alias("rounds_max"),
        (pl.col("v_mig_bytes").min() / MB).round(0).alias("v_mig_min_mb"),
        (pl.col("v_mig_bytes").max() / MB).round(0).alias("v_mig_max_mb"),
        pl.col("dirtied_r1_mb").min().round(1).alias("r1_dirtied_min_mb"),
        pl.col("dirtied_r1_mb").max().round(1).alias("r1_dirtied_max_mb"),
        pl.col("d_x_t1_mb").median().round(1).alias("D_x_T1_median_mb"),
        pl.col("probe_h_mb").median().round(1).alias("probe_H_median_mb"),
    )
)
with pl.Config(tbl_rows=50, tbl_cols=20, tbl_width_chars=220):
    print("refined model, held-out T_mig MAPE and bias per workload: hot-set cap (default), no cap with trained gamma, no cap with gamma = 0")
    print(acc.sort("workload"))
    print("what round 1 dirtied (MB), against D x T_1 (pre-migration dirty rate x round-1 time) and the probe's H")
    print(per.sort("workload"))

# Guest boot to the workload's ready line, from the campaign's own log (calibrate-run.log, its
# stderr): "starting source and destination QEMU" to "pre-migration dirty rate", less the 1 s
# dirty-rate sample.
log = os.path.join(data, "calibrate-run.log")
if os.path.exists(log):
    import re
    from collections import defaultdict

    started, boot = {}, defaultdict(list)
    for line in open(log):
        m = re.match(r"(\d+):(\d+):(\d+) (\S+): (starting source|pre-migration dirty rate)", line)
        if not m:
            continue
        t = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
        if m[5] == "starting source":
            started[m[4]] = t
        elif m[4] in started:
            boot[m[4].split("-256m")[0]].append(t - started[m[4]] - 1)
    print("guest boot to ready (s, whole-second log stamps): workload min max")
    for w, v in sorted(boot.items()):
        print(f"  {w:16s} {min(v):3d} {max(v):3d}  {sorted(v)}")
