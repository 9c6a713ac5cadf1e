#!/usr/bin/env bash
# Accuracy report of issue 6 from the recorded campaign (bench/accuracy/data, see campaign.sh):
# train the gamma model on repetition 1 (runs *-r1), predict every migration with
# `migwatt evaluate` (sim, base, refined with history and the hot-set cap; the refined model
# without the cap, trained gamma and gamma = 0, for comparison), and report MAPE on the
# held-out repetitions (runs *-r2, *-r3...) with report.py. Needs no QEMU.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# MIGWATT_ACCURACY_DATA: another recorded campaign (e.g. bench/accuracy/validation).
data=${MIGWATT_ACCURACY_DATA:-bench/accuracy/data}
out=bench/out/$(basename "$(dirname "$data/x")")-accuracy
rm -rf "$out" && mkdir -p "$out/train/migrations" "$out/train/rounds"
for f in "$data"/migrations/*-r1.parquet; do cp "$f" "$out/train/migrations/"; done
for f in "$data"/rounds/*-r1.parquet; do cp "$f" "$out/train/rounds/"; done
mw=${MIGWATT:-target/release/migwatt}
MIGWATT_QUIET=1 "$mw" train gamma --data "$out/train/rounds" --migrations "$out"/train/migrations/*.parquet \
  --hypervisor qemu --out-dir "$out/models" --name qemu-gamma --folds 5
"$mw" models show "$out/models/qemu-gamma"
"$mw" evaluate --migrations-dir "$data" --gamma-model "$out/models/qemu-gamma" --refined \
  --out "$out/evaluation.parquet" --decision-trials 1000 --seed 1 --candidates 8
# Comparison rows: the refined model as published (eqs 11-13, no hot-set cap), with the
# trained gamma and with gamma = 0.
"$mw" evaluate --migrations-dir "$data" --gamma-model "$out/models/qemu-gamma" --refined --no-hot-set \
  --out "$out/evaluation-nocap.parquet" >/dev/null
"$mw" evaluate --migrations-dir "$data" --refined --no-hot-set --out "$out/evaluation-gamma0.parquet" >/dev/null
.venv/bin/python bench/accuracy/report.py "$data" "$out/evaluation.parquet" \
  "$out/evaluation-nocap.parquet" "$out/evaluation-gamma0.parquet"
