#!/usr/bin/env bash
# Integration benchmark: migwatt integrate (release) vs the same computation in pandas and in
# polars (Python), over the same Parquet files, in the same run. Prints a table with wall time
# and peak RSS (from /usr/bin/time -v), the ratios, and checks that all three agree.
#
# Usage: bench/integrate/run.sh [DATA_DIR] [SAMPLES] [WINDOWS]
#   defaults: bench/out/integrate 10000000 100000 (data generated once, then reused)
# Needs: cargo build --release; ./scripts/setup-python.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
data=${1:-$root/bench/out/integrate}
n_samples=${2:-10000000}
n_windows=${3:-100000}
py="$root/.venv/bin/python"
bin="$root/target/release/migwatt"
here="$root/bench/integrate"
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -x "$py" ] || { echo "run ./scripts/setup-python.sh first" >&2; exit 1; }

if [ ! -f "$data/windows.parquet" ]; then
  "$py" "$here/gen_data.py" "$data" --samples "$n_samples" --windows "$n_windows"
fi
p0_args=$("$py" -c "import json,sys; print(' '.join(f'{k}={v}' for k,v in json.load(open(sys.argv[1])).items()))" "$data/p0.json")
out="$data/results"
mkdir -p "$out"
sync

run() { # name command...
  local name=$1; shift
  /usr/bin/time -v -o "$out/$name.time" "$@" > "$out/$name.log" 2>&1 || {
    echo "$name failed:" >&2; cat "$out/$name.log" >&2; exit 1; }
}
# Warm the page cache once so that no tool pays for the first read alone.
cat "$data"/samples/*/*/*.parquet "$data/windows.parquet" > /dev/null

run migwatt "$bin" integrate --samples-dir "$data/samples" --windows "$data/windows.parquet" \
  --p0 $p0_args --out "$out/energy-rust.parquet"
run polars "$py" "$here/integrate_polars.py" "$data/samples" "$data/windows.parquet" \
  "$data/p0.json" "$out/energy-polars.parquet"
run pandas "$py" "$here/integrate_pandas.py" "$data/samples" "$data/windows.parquet" \
  "$data/p0.json" "$out/energy-pandas.parquet"

"$py" - "$out" <<'EOF'
import re, sys
import numpy as np
import pandas as pd

out = sys.argv[1]
def stat(name):
    text = open(f"{out}/{name}.time").read()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(":"))))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return secs, rss / 1024
rows = {n: stat(n) for n in ("migwatt", "polars", "pandas")}
rs_t, rs_m = rows["migwatt"]
print(f"{'tool':<10}{'wall s':>10}{'peak RSS MiB':>15}{'time / migwatt':>16}{'RSS / migwatt':>15}")
for n, (t, m) in rows.items():
    print(f"{n:<10}{t:>10.2f}{m:>15.0f}{t / rs_t:>16.1f}{m / rs_m:>15.1f}")
ref = pd.read_parquet(f"{out}/energy-rust.parquet").set_index("migration_id").sort_index()
for n in ("polars", "pandas"):
    o = pd.read_parquet(f"{out}/energy-{n}.parquet").set_index("migration_id").sort_index()
    same_ids = len(o) == len(ref) and (o.index == ref.index).all()
    diff = np.abs(o["e_mig_j"] - ref["e_mig_j"]).max() if same_ids else float("nan")
    print(f"{n}: {len(o)} observations (migwatt {len(ref)}), same migrations: {same_ids}, "
          f"max |e_mig_j difference| {diff:.2e} J")
EOF
