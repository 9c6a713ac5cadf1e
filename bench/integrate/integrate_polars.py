#!/usr/bin/env python3
"""`migwatt integrate` written the way a notebook user would with polars (lazy, vectorised).

Same definitions as meter/src/integrate.rs (see integrate_pandas.py). Vectorised with prefix
sums: per host, the cumulative integral of the trapezoid interpolant and of covered time up to
every sample; each window edge finds its segment with join_asof and interpolates, so
E = G(end) - G(start) - P_0 (C(end) - C(start)). Largest gaps come from an inequality join
(join_where) of windows with the host's uncovered runs.

Usage: integrate_polars.py SAMPLES_DIR WINDOWS.parquet P0.json OUT.parquet
"""
import json
import sys

import polars as pl

MIN_COVERAGE = 0.95


def main():
    samples_dir, windows_path, p0_path, out = sys.argv[1:5]
    p0 = json.load(open(p0_path))
    p0_df = pl.DataFrame({"host": list(p0), "p0_w": list(p0.values())})

    s = (
        pl.scan_parquet(f"{samples_dir}/**/*.parquet", hive_partitioning=True)
        .select("host", "utc_ns", "watts", "flags", "gap_before_ns")
        .filter(pl.col("watts").is_not_null())
        .sort("host", "utc_ns")
        .with_columns(
            next_t=pl.col("utc_ns").shift(-1).over("host"),
            next_w=pl.col("watts").shift(-1).over("host"),
            next_gap=(
                ((pl.col("flags") & 1) != 0) | pl.col("gap_before_ns").is_not_null()
            ).shift(-1).over("host"),
        )
        .with_columns(step=pl.col("next_t") - pl.col("utc_ns"))
    )
    interval = (
        s.filter(pl.col("step") > 0).group_by("host").agg(interval=pl.col("step").median())
    )
    s = (
        s.join(interval, on="host", maintain_order="left")
        .with_columns(
            ok=((pl.col("step") <= (pl.col("interval") * 1.5).cast(pl.Int64))
                & ~pl.col("next_gap")).fill_null(False)
        )
        .with_columns(
            seg_area=pl.when("ok")
            .then((pl.col("watts") + pl.col("next_w")) * 0.5 * pl.col("step") * 1e-9)
            .otherwise(0.0),
            seg_cov=pl.when("ok").then(pl.col("step")).otherwise(0),
        )
        .with_columns(
            F=pl.col("seg_area").cum_sum().over("host") - pl.col("seg_area"),
            C=pl.col("seg_cov").cum_sum().over("host") - pl.col("seg_cov"),
        )
        .select("host", "utc_ns", "watts", "next_t", "next_w", "ok", "F", "C")
        .collect()
    )

    windows = pl.read_parquet(windows_path).with_row_index("row")
    # join_asof with `by` wants the right side sorted by time overall, not by (host, time).
    s_t = s.with_row_index("i").sort("utc_ns")

    def at_edge(col, tag):
        """Cumulative integral G and covered time C at each window's `col` edge."""
        j = windows.sort(col).join_asof(
            s_t, left_on=col, right_on="utc_ns", by="host", strategy="backward",
            check_sortedness=False,
        )
        x = pl.col(col)
        dt = (x - pl.col("utc_ns")).cast(pl.Float64)
        p = pl.col("watts") + (pl.col("next_w") - pl.col("watts")) * dt / (
            pl.col("next_t") - pl.col("utc_ns")
        )
        inside = pl.col("ok").fill_null(False) & (x < pl.col("next_t"))
        return j.select(
            "row",
            pl.when(inside)
            .then(pl.col("F") + (pl.col("watts") + p) * 0.5 * dt * 1e-9)
            .otherwise(pl.col("F").fill_null(0.0))
            .alias(f"G_{tag}"),
            pl.when(inside)
            .then(pl.col("C") + (x - pl.col("utc_ns")))
            .otherwise(pl.col("C").fill_null(0))
            .alias(f"C_{tag}"),
        )

    counts_lo = windows.sort("start_utc_ns").join_asof(
        s_t.select("host", "utc_ns", "i"), left_on="start_utc_ns",
        right_on="utc_ns", by="host", strategy="forward",
        check_sortedness=False).select("row", lo="i")
    counts_hi = windows.sort("end_utc_ns").join_asof(
        s_t.select("host", "utc_ns", "i"), left_on="end_utc_ns",
        right_on="utc_ns", by="host", strategy="backward",
        check_sortedness=False).select("row", hi="i")

    # Uncovered runs per host: merged consecutive gap segments, plus before/after the data.
    runs = (
        s.with_columns(run=(pl.col("ok") != pl.col("ok").shift(1)).fill_null(True).cum_sum())
        .filter(~pl.col("ok"))
        .group_by("host", "run")
        .agg(r_lo=pl.col("utc_ns").first(), r_hi=pl.col("next_t").last())
        .with_columns(pl.col("r_hi").fill_null(2**62))
    )
    firsts = s.group_by("host").agg(r_hi=pl.col("utc_ns").first()).with_columns(
        r_lo=pl.lit(-(2**62)))
    runs = pl.concat([runs.select("host", "r_lo", "r_hi"),
                      firsts.select("host", "r_lo", "r_hi")])
    gaps = []
    for (host,), w in windows.group_by("host"):
        r = runs.filter(pl.col("host") == host)
        g = w.join_where(r, pl.col("r_lo") < pl.col("end_utc_ns"),
                         pl.col("r_hi") > pl.col("start_utc_ns"))
        gaps.append(g.select(
            "row",
            gap=pl.min_horizontal("r_hi", "end_utc_ns") - pl.max_horizontal("r_lo", "start_utc_ns"),
        ))
    largest = pl.concat(gaps).group_by("row").agg(pl.col("gap").max())

    q = (
        windows.join(at_edge("start_utc_ns", "a"), on="row")
        .join(at_edge("end_utc_ns", "b"), on="row")
        .join(counts_lo, on="row", how="left")
        .join(counts_hi, on="row", how="left")
        .join(largest, on="row", how="left")
        .join(p0_df, on="host")
        .with_columns(width=pl.col("end_utc_ns") - pl.col("start_utc_ns"),
                      covered=pl.col("C_b") - pl.col("C_a"))
        .with_columns(
            energy_j=pl.when(pl.col("covered") > 0).then(
                pl.col("G_b") - pl.col("G_a") - pl.col("p0_w") * pl.col("covered") * 1e-9),
            coverage=pl.col("covered") / pl.col("width"),
            largest_gap_s=pl.col("gap").fill_null(0) / 1e9,
            sample_count=(pl.col("hi").cast(pl.Int64) - pl.col("lo").cast(pl.Int64) + 1)
            .clip(lower_bound=0)
            .fill_null(0),
        )
        .with_columns(usable=pl.col("coverage") >= MIN_COVERAGE)
        .sort("row")
    )
    src = q.filter(pl.col("role") == "source")
    dst = q.filter(pl.col("role") == "destination")
    both = src.join(dst, on="migration_id", suffix="_d")
    good = both.filter(pl.col("usable") & pl.col("usable_d"))
    obs = good.select(
        "migration_id",
        "v_mig_bytes",
        e_source_j="energy_j",
        e_destination_j="energy_j_d",
        e_mig_j=pl.col("energy_j") + pl.col("energy_j_d"),
        coverage=pl.min_horizontal("coverage", "coverage_d"),
        p0_source_w="p0_w",
        p0_destination_w="p0_w_d",
        source_host="host",
        destination_host="host_d",
        start_utc_ns=pl.min_horizontal("start_utc_ns", "start_utc_ns_d"),
        end_utc_ns=pl.max_horizontal("end_utc_ns", "end_utc_ns_d"),
        workload="workload",
        vm="vm",
        vm_mem_bytes="vm_mem_bytes",
    )
    obs.write_parquet(out)
    bad = both.filter(~(pl.col("usable") & pl.col("usable_d"))).select("migration_id")
    quality = q.with_columns(
        included=~pl.col("migration_id").is_in(bad["migration_id"].implode())
    ).select("migration_id", "host", "role", "start_utc_ns", "end_utc_ns", "sample_count",
             "coverage", "largest_gap_s", "p0_w", "energy_j", "included")
    quality.write_parquet(out.replace(".parquet", ".quality.parquet"))
    print(f"polars: {obs.height} observations, {quality.filter(~pl.col('included')).height} "
          "windows out")


if __name__ == "__main__":
    main()
