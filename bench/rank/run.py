"""Ranking benchmark (issue 6): rank N candidate VMs end to end from a Parquet file with
`migwatt rank` (release build) and with a vectorized numpy implementation of the same model
(Algorithm 1, QEMU stop rule, the paper's gamma and energy models, eq 18 cost), in the same run,
both pinned to one core. Checks that both pick the same top 10.

Usage: .venv/bin/python bench/rank/run.py [--n 1000000] [--repeat 3]
"""
import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "bench", "out", "rank")
RATE = 125e6  # 1 Gbit/s
LIMIT_S = 0.3
WEIGHTS = (0.25, 0.25, 0.25, 0.25)
# Paper models in SI: gamma = omega T + xi D + psi, E = alpha V + beta.
OMEGA, XI, PSI = -0.0463, -0.0001 / 1e6, 0.3586
ALPHA, BETA = 0.512 / 1e6, 20.165
T_RESUME = 0.020


def generate(path, n, seed=6):
    rng = np.random.default_rng(seed)
    mem = rng.choice(np.array([512, 1024, 2048, 4096, 8192, 16384], dtype=np.float64), n) * 2**20
    dirty = rng.uniform(0.0, 140e6, n)  # some candidates dirty faster than the 125 MB/s link
    names = pa.array([f"vm{i:07d}" for i in range(n)])
    t = pa.table({"vm": names, "vm_mem_bytes": mem, "dirty_rate_bytes_per_s": dirty})
    pq.write_table(t, path, compression="zstd")


def numpy_rank(path):
    t0 = time.perf_counter()
    t = pq.read_table(path, columns=["vm", "vm_mem_bytes", "dirty_rate_bytes_per_s"])
    names = t.column("vm")
    mem = t.column("vm_mem_bytes").to_numpy()
    d = t.column("dirty_rate_bytes_per_s").to_numpy()
    t1 = time.perf_counter()
    n = len(mem)
    vmig = np.full(n, np.nan)
    tmig = np.full(n, np.nan)
    tdown = np.full(n, np.nan)
    cls = np.full(n, 2, dtype=np.int8)  # 0 converged, 2 never
    idx = np.arange(n)
    v = mem.copy()
    tot_v = np.zeros(n)
    tot_t = np.zeros(n)
    dd = d
    thd = RATE * LIMIT_S
    rounds = 0
    while idx.size:
        rounds += 1
        tt = v / RATE
        tot_v += v
        tot_t += tt
        dirty = tt * dd
        g = np.clip(OMEGA * tt + XI * dd + PSI, 0.0, 1.0)
        nxt = (1.0 - g) * dirty
        conv = nxt <= thd
        never = ~conv & (nxt >= v * (1.0 - 1e-12))
        if conv.any():
            ci = idx[conv]
            tl = dirty[conv] / RATE
            vmig[ci] = tot_v[conv] + dirty[conv]
            tmig[ci] = tot_t[conv] + tl
            tdown[ci] = tl + T_RESUME
            cls[ci] = 0
        keep = ~(conv | never)
        idx, v, dd, tot_v, tot_t = idx[keep], nxt[keep], dd[keep], tot_v[keep], tot_t[keep]
        if rounds >= 100_000:
            break
    emig = ALPHA * vmig + BETA
    t2 = time.perf_counter()
    a, b, c, e = WEIGHTS
    cost = (a * tdown / np.nanmax(tdown) + b * tmig / np.nanmax(tmig)
            + c * vmig / np.nanmax(vmig) + e * emig / np.nanmax(emig))
    order = np.lexsort((np.nan_to_num(cost, nan=0.0), cls))
    top = [(names[int(i)].as_py(), float(cost[i])) for i in order[:10]]
    t3 = time.perf_counter()
    return {"read_s": t1 - t0, "predict_s": t2 - t1, "rank_s": t3 - t2, "total_s": t3 - t0,
            "top": top, "never": int((cls == 2).sum())}


def rust_rank(path, models):
    exe = os.path.join(ROOT, "target", "release", "migwatt")
    cmd = ["taskset", "-c", "0", exe, "rank", "--vms", path,
           "--weights", ",".join(map(str, WEIGHTS)),
           "--energy-model", os.path.join(models, "paper-energy"),
           "--gamma-model", os.path.join(models, "paper-gamma"),
           "--hypervisor", "qemu", "--rate", "1Gbit/s", "--downtime-limit", "300ms",
           "--top", "10", "--format", "json", "--timings"]
    env = dict(os.environ, POLARS_MAX_THREADS="1")
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - t0
    top = [(r["vm"], r["cost"]) for r in json.loads(p.stdout)]
    return {"wall_s": wall, "timings": p.stderr.strip(), "top": top}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    os.sched_setaffinity(0, {0})
    path = os.path.join(OUT, f"candidates-{args.n}.parquet")
    if not os.path.exists(path):
        generate(path, args.n)
    models = os.path.join(OUT, "models")
    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "rank", "paper_models.py"), models], check=True)
    rs, ns = [], []
    for _ in range(args.repeat):
        rs.append(rust_rank(path, models))
        ns.append(numpy_rank(path))
    best_r = min(rs, key=lambda r: r["wall_s"])
    best_n = min(ns, key=lambda r: r["total_s"])
    same = [a for a, _ in best_r["top"]] == [a for a, _ in best_n["top"]]
    costs_close = all(abs(x - y) <= 1e-9 * max(abs(x), 1e-300) for (_, x), (_, y) in zip(best_r["top"], best_n["top"]))
    print(f"candidates: {args.n}  (file {os.path.getsize(path) / 1e6:.1f} MB), best of {args.repeat}, one core")
    print(f"migwatt rank: process wall {best_r['wall_s'] * 1e3:.1f} ms; {best_r['timings']}")
    print(f"numpy:        read {best_n['read_s'] * 1e3:.1f} ms  predict {best_n['predict_s'] * 1e3:.1f} ms "
          f"({args.n / best_n['predict_s'] / 1e6:.2f} M predictions/s)  cost+sort {best_n['rank_s'] * 1e3:.1f} ms  "
          f"end-to-end {best_n['total_s'] * 1e3:.1f} ms ({args.n / best_n['total_s'] / 1e6:.2f} M candidates/s)")
    print(f"never converging: {best_n['never']}; same top 10: {same}; top-10 costs equal to 1e-9: {costs_close}")
    print(f"best: {best_r['top'][0]}")


if __name__ == "__main__":
    main()
