#!/usr/bin/env python3
"""A/B timing of `migwatt train linear` builds: runs each binary in turn, RUNS times, on the
same Parquet file, removing the output folder and calling sync() before every run (outside
the timing), and prints p10, median, p90 and maximum wall time per binary.

Alternating the binaries spreads the shared machine's drift over all of them; use it to
measure one change at a time (BENCHMARKS.md, "Trainer").

Usage (from the repository root):
    .venv/bin/python bench/train/ab.py --runs 25 OLD_BINARY NEW_BINARY [--data FILE.parquet]

Without --data, the 1M-row file of bench/train/run.py is generated (same seed), which needs
numpy and pyarrow (the .venv of scripts/setup-python.sh).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--data")
    ap.add_argument("--features", default="x1,x2,x3")
    ap.add_argument("--target", default="y")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="migwatt-ab-")
    try:
        data = args.data
        if data is None:
            import sys

            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import run

            data = os.path.join(work, "data.parquet")
            run.make_data(data, 1_000_000)
        out = os.path.join(work, "models")
        times = {b: [] for b in args.binaries}
        env = dict(os.environ, MIGWATT_QUIET="1")
        for _ in range(args.runs):
            for b in args.binaries:
                shutil.rmtree(out, ignore_errors=True)
                os.sync()
                t0 = time.perf_counter()
                subprocess.run(
                    [b, "train", "linear", "--data", data, "--target", args.target,
                     "--features", args.features, "--out-dir", out, "--name", "bench"],
                    env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times[b].append((time.perf_counter() - t0) * 1e3)
        for b, v in times.items():
            v.sort()
            q = lambda p: v[min(len(v) - 1, int(p * len(v)))]  # noqa: E731
            print(f"{b}: p10 {q(0.1):.1f} ms, median {statistics.median(v):.1f} ms, "
                  f"p90 {q(0.9):.1f} ms, max {v[-1]:.1f} ms ({len(v)} runs)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
