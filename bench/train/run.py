#!/usr/bin/env python3
"""Trainer benchmark: fit y ~ x1 + x2 + x3 (+ intercept) on 1 million rows, end to end from
one Parquet file, with `migwatt train linear`, numpy.linalg.lstsq and statsmodels OLS, in
the same run; print a table of median times and the agreement of the coefficients.

Usage (from the repository root):
    cargo build --release --bin migwatt
    ./scripts/setup-python.sh
    .venv/bin/python bench/train/run.py [--rows 1000000] [--repeat 15] [--binary target/release/migwatt]

The tools take turns: every round times each tool once (after an os.sync()), so that a drift
of a shared machine falls on all of them alike.

Timings:
- migwatt: wall time of the whole process (start-up, Parquet read, SHA-256 of the input,
  guards, centred/scaled QR fit, statistics, 5-fold cross-validation, residuals Parquet,
  coefficient file written with fsync).
- numpy / statsmodels: inside one Python process (imports excluded), from reading the
  Parquet file (pyarrow) to having the coefficients (numpy) or the fitted results with
  standard errors (statsmodels); they write nothing.
- "numpy, the same job": migwatt's whole job written with numpy and pyarrow (hash, centred
  and scaled QR, standard errors, R^2, 5-fold cross-validation, residuals Parquet and JSON
  coefficient file with fsync), in-process, imports excluded (see numpy_same_job).
- "as a process": the same fits as a Python script run per fit (interpreter start-up and
  imports included, coefficients written to a JSON file), which is how a lab pipeline runs
  them next to `migwatt train`.
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def make_data(path, rows, seed=20240501):
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(1e8, 4e9, rows)          # e.g. bytes
    x2 = rng.uniform(0.1, 30.0, rows)         # e.g. seconds
    x3 = rng.normal(5e7, 1e7, rows)           # e.g. bytes/s
    y = 20.165 + 0.512e-6 * x1 - 0.75 * x2 + 3e-8 * x3 + rng.normal(0, 5.0, rows)
    pq.write_table(pa.table({"y": y, "x1": x1, "x2": x2, "x3": x3}), path)


def read(path):
    t = pq.read_table(path, columns=["y", "x1", "x2", "x3"])
    y = t.column("y").to_numpy()
    X = np.column_stack([t.column(c).to_numpy() for c in ("x1", "x2", "x3")])
    return y, X


def fit_numpy(path):
    y, X = read(path)
    A = np.column_stack([X, np.ones(len(y))])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return list(coef)  # x1, x2, x3, intercept


def fit_numpy_scaled(path):
    """lstsq on columns divided by their norms (what a careful numpy user does)."""
    y, X = read(path)
    A = np.column_stack([X, np.ones(len(y))])
    norms = np.linalg.norm(A, axis=0)
    coef, *_ = np.linalg.lstsq(A / norms, y, rcond=None)
    return list(coef / norms)


def reference(path):
    """Centred and scaled normal equations in extended precision (np.longdouble): the
    centred, scaled design has condition ~1, so this is accurate to ~18 digits."""
    y, X = read(path)
    X = X.astype(np.longdouble)
    y = y.astype(np.longdouble)
    m, s = X.mean(axis=0), X.std(axis=0)
    Z = (X - m) / s
    yc = y - y.mean()
    b = np.linalg.solve(np.asarray(Z.T @ Z, dtype=np.float64), np.asarray(Z.T @ yc, dtype=np.float64))
    # One refinement step with extended-precision residuals.
    r = yc - Z @ b.astype(np.longdouble)
    b = b.astype(np.longdouble) + np.linalg.solve(np.asarray(Z.T @ Z, dtype=np.float64),
                                                  np.asarray(Z.T @ r, dtype=np.float64)).astype(np.longdouble)
    slopes = b / s
    return [float(v) for v in slopes] + [float(y.mean() - (slopes * m).sum())]


def fit_statsmodels(path):
    import statsmodels.api as sm  # imported here so that the numpy job does not pay for it

    y, X = read(path)
    res = sm.OLS(y, sm.add_constant(X, prepend=False)).fit()
    _ = res.bse, res.rsquared
    return list(res.params)


def numpy_same_job(path, out_dir):
    """What `migwatt train linear` does, written with numpy and pyarrow as a careful user
    would: SHA-256 of the input, centred and scaled least squares (QR), standard errors,
    R^2, 5-fold cross-validation (lstsq per fold), a residuals Parquet file (the same six
    columns, uncompressed) and a JSON coefficient file, both fsynced and renamed into place."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    y, X = read(path)
    n, p = X.shape
    m, s, ym = X.mean(axis=0), X.std(axis=0), y.mean()
    A = np.column_stack([np.ones(n), (X - m) / s])
    Q, R = np.linalg.qr(A)
    b = np.linalg.solve(R, Q.T @ (y - ym))
    fitted = ym + A @ b
    res = y - fitted
    rss = float(res @ res)
    dof = n - (p + 1)
    Rinv = np.linalg.inv(R)
    J = np.zeros((p + 1, p + 1))  # scaled -> original units, intercept last
    J[:p, 1:] = np.diag(1 / s)
    J[p, 0] = 1.0
    J[p, 1:] = -m / s
    cov = (rss / dof) * J @ (Rinv @ Rinv.T) @ J.T
    coef = list(b[1:] / s) + [ym + b[0] - float((b[1:] / s) @ m)]
    se = np.sqrt(np.diag(cov))
    r2 = 1 - rss / float(((y - ym) ** 2).sum())
    fold = np.random.default_rng(1).permutation(n) % 5
    cv = np.empty(n)
    for k in range(5):
        tr = fold != k
        bk = np.linalg.lstsq(A[tr], y[tr] - ym, rcond=None)[0]
        cv[~tr] = ym + A[~tr] @ bk
    os.makedirs(out_dir, exist_ok=True)
    table = pa.table({"input_file": np.zeros(n, np.uint32), "input_row": np.arange(n, dtype=np.uint64),
                      "observed": y, "fitted": fitted, "residual": res, "cv_predicted": cv})
    resid = os.path.join(out_dir, "v1.residuals.parquet")
    with open(resid + ".tmp", "wb") as f:
        pq.write_table(table, f, compression="none")
        f.flush()
        os.fsync(f.fileno())
    os.rename(resid + ".tmp", resid)
    doc = {"input_sha256": h.hexdigest(), "r_squared": r2, "coefficients": [
        {"estimate": float(c), "std_error": float(e)} for c, e in zip(coef, se)]}
    with open(os.path.join(out_dir, "v1.json.tmp"), "w") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(os.path.join(out_dir, "v1.json.tmp"), os.path.join(out_dir, "v1.json"))
    return coef


def fit_migwatt(binary, path, out):
    env = dict(os.environ, MIGWATT_QUIET="1")
    subprocess.run(
        [binary, "train", "linear", "--data", path, "--target", "y",
         "--features", "x1,x2,x3", "--out-dir", out, "--name", "bench"],
        check=True, env=env, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "bench", open(os.path.join(out, "bench", "latest")).read().strip())) as f:
        doc = json.load(f)
    return [c["estimate"] for c in doc["coefficients"]]


# The same fits as whole processes, as a lab script would run them: interpreter start-up and
# imports included, coefficients written to a JSON file (without fsync).
PROCESS_SCRIPT = r"""
import json, sys
import numpy as np, pyarrow.parquet as pq
kind, path, out = sys.argv[1:4]
t = pq.read_table(path, columns=["y", "x1", "x2", "x3"])
y = t.column("y").to_numpy()
X = np.column_stack([t.column(c).to_numpy() for c in ("x1", "x2", "x3")])
A = np.column_stack([X, np.ones(len(y))])
if kind == "numpy-job":
    sys.path.insert(0, sys.argv[4])
    import run
    coef = run.numpy_same_job(path, out + ".d")
elif kind == "numpy":
    norms = np.linalg.norm(A, axis=0)
    coef = list(np.linalg.lstsq(A / norms, y, rcond=None)[0] / norms)
else:
    import statsmodels.api as sm
    res = sm.OLS(y, A).fit()
    _ = res.bse, res.rsquared
    coef = list(res.params)
json.dump({"coefficients": [float(c) for c in coef]}, open(out, "w"))
"""


def fit_process(kind, path, work):
    import sys
    script = os.path.join(work, "fit.py")
    if not os.path.exists(script):
        with open(script, "w") as f:
            f.write(PROCESS_SCRIPT)
    out = os.path.join(work, f"{kind}.json")
    subprocess.run([sys.executable, script, kind, path, out, os.path.dirname(os.path.abspath(__file__))],
                   check=True)
    with open(out) as f:
        return json.load(f)["coefficients"]


def timed_rounds(tools, repeat):
    """Time every tool once per round, `repeat` rounds, so that a drift of the shared
    machine's speed falls on every tool alike. Returns (median, min, last result) per tool."""
    times = {name: [] for name, _ in tools}
    results = {}
    for _ in range(repeat):
        for name, fn in tools:
            # Flush earlier runs' (and the generated data's) dirty pages outside the timed
            # region, so that no run waits behind another's writeback.
            os.sync()
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(t), min(t), results[name]) for name, t in times.items()}


def digits(a, b):
    """Significant digits to which two coefficient vectors agree (worst coefficient)."""
    worst = 17.0
    for x, y in zip(a, b):
        if x == y:
            continue
        worst = min(worst, -math.log10(abs(x - y) / max(abs(x), abs(y))))
    return worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--binary", default="target/release/migwatt")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="migwatt-bench-train-")
    try:
        data = os.path.join(work, "data.parquet")
        make_data(data, args.rows)
        out = os.path.join(work, "models")
        fit_numpy(data)  # warm the page cache and the imports
        tools = [
            ("migwatt train linear", lambda: fit_migwatt(args.binary, data, out)),
            ("numpy.linalg.lstsq (raw columns, rcond=None)", lambda: fit_numpy(data)),
            ("numpy.linalg.lstsq (columns scaled by norm)", lambda: fit_numpy_scaled(data)),
            ("statsmodels OLS", lambda: fit_statsmodels(data)),
            ("numpy, the same job as migwatt",
             lambda: numpy_same_job(data, os.path.join(work, "job"))),
            ("numpy lstsq (scaled), as a process", lambda: fit_process("numpy", data, work)),
            ("numpy, the same job, as a process", lambda: fit_process("numpy-job", data, work)),
            ("statsmodels OLS, as a process", lambda: fit_process("statsmodels", data, work)),
        ]
        timings = timed_rounds(tools, args.repeat)
        ref = reference(data)
        cm = timings["migwatt train linear"][2]
        rows = [(name, *timings[name]) for name, _ in tools]
        print(f"{args.rows} rows x 3 features + intercept, {os.path.getsize(data) / 1e6:.1f} MB Parquet, "
              f"median of {args.repeat} rounds (every tool once per round), {os.cpu_count()} CPUs")
        print("| tool | median s | min s | coefficients (x1, x2, x3, intercept) | digits vs migwatt | digits vs reference |")
        print("|---|---:|---:|---|---:|---:|")
        for name, t, tmin_, c in rows:
            cs_ = ", ".join(f"{v:.12g}" for v in c)
            print(f"| {name} | {t:.3f} | {tmin_:.3f} | {cs_} | {digits(cm, c):.1f} | {digits(ref, c):.1f} |")
        print("reference (extended precision): " + ", ".join(f"{v:.15g}" for v in ref))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
