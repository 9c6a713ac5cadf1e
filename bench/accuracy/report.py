"""MAPE of T_mig, V_mig, T_down on the held-out migrations, per model and overall, from the
evaluation datasets written by `migwatt evaluate --out`. Held out: the file's `held_out` column
where evaluate split the data (--train-first), else the runs not ending in -r1.
Usage: report.py DATA_DIR EVAL.parquet [EVAL2.parquet ...]"""
import glob
import os
import sys

import polars as pl

data = sys.argv[1]
runs = []
for f in sorted(glob.glob(os.path.join(data, "migrations", "*.parquet"))):
    run = os.path.basename(f)[: -len(".parquet")]
    ids = pl.read_parquet(f)["migration_id"].to_list()
    runs += [(i, run, run.rsplit("-r", 1)[1] != "1") for i in ids]
split = pl.DataFrame(runs, schema=["migration_id", "run", "held_out"], orient="row")
# The refined model of each file, side by side (names of the files run.sh writes).
LABELS = {
    "evaluation.parquet": "refined (hot-set cap; gamma = 0 once H is known)",
    "evaluation-nocap.parquet": "refined, no cap, trained gamma (eqs 11-13)",
    "evaluation-gamma0.parquet": "refined, no cap, gamma = 0",
}
summary = []
for path in sys.argv[2:]:
    ev = pl.read_parquet(path)
    if "held_out" in ev.columns and ev["held_out"].null_count() < ev.height:
        ev = ev.join(split.drop("held_out"), on="migration_id")
    else:
        ev = ev.drop("held_out", strict=False).join(split, on="migration_id")
    test = ev.filter(pl.col("held_out") & pl.col("measured_converged"))
    print(f"\n{os.path.basename(path)}: {test['migration_id'].n_unique()} held-out converged migrations")
    agg = (
        test.group_by("model")
        .agg(
            pl.len().alias("n"),
            (pl.col("rel_err_t_mig").abs().mean() * 100).round(1).alias("MAPE_T_mig_%"),
            (pl.col("rel_err_v_mig").abs().mean() * 100).round(1).alias("MAPE_V_mig_%"),
            (pl.col("rel_err_t_down").abs().mean() * 100).round(1).alias("MAPE_T_down_%"),
            (pl.col("rel_err_t_mig").mean() * 100).round(1).alias("bias_T_mig_%"),
            (pl.col("rel_err_v_mig").mean() * 100).round(1).alias("bias_V_mig_%"),
            (pl.col("rel_err_t_down").mean() * 100).round(1).alias("bias_T_down_%"),
        )
        .sort("model")
    )
    ref = agg.filter(pl.col("model") == "refined")
    if ref.height:
        summary.append((LABELS.get(os.path.basename(path), os.path.basename(path)), ref.row(0, named=True)))
    with pl.Config(tbl_rows=50, tbl_cols=20, tbl_width_chars=200):
        print(agg)
        if "evaluation.parquet" == os.path.basename(path):
            per = (
                test.filter(pl.col("model") == "refined")
                .group_by("workload")
                .agg(
                    pl.len().alias("n"),
                    (pl.col("rel_err_t_mig").abs().mean() * 100).round(1).alias("T_mig_%"),
                    (pl.col("rel_err_v_mig").abs().mean() * 100).round(1).alias("V_mig_%"),
                    (pl.col("rel_err_t_down").abs().mean() * 100).round(1).alias("T_down_%"),
                )
                .sort("workload")
            )
            print("refined model, per workload (held out):")
            print(per)

if summary:
    print("\nrefined model variants, held-out MAPE %:")
    print(f"{'variant':52s} {'n':>3s} {'T_mig':>6s} {'V_mig':>6s} {'T_down':>6s} {'biasT':>6s} {'biasV':>6s}")
    for label, r in summary:
        print(
            f"{label:52s} {r['n']:3d} {r['MAPE_T_mig_%']:6.1f} {r['MAPE_V_mig_%']:6.1f} {r['MAPE_T_down_%']:6.1f}"
            f" {r['bias_T_mig_%']:+6.1f} {r['bias_V_mig_%']:+6.1f}"
        )
