#!/usr/bin/env bash
# Accuracy report from a recorded campaign (bench/accuracy/data, see campaign.sh), by the honest
# protocol of `migwatt evaluate --train-first N`: each VM's first N migrations (repetition 1 of
# a campaign with N links: default 2) train the gamma model and are the history of the rest;
# only the later, held-out migrations are reported (sim, base, refined with history and the
# hot-set cap; the refined model without the cap, trained gamma and gamma = 0, for
# comparison), with MAPE by report.py. Needs no QEMU.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# MIGWATT_ACCURACY_DATA: another recorded campaign (e.g. bench/accuracy/fresh).
data=${MIGWATT_ACCURACY_DATA:-bench/accuracy/data}
train_first=${MIGWATT_TRAIN_FIRST:-2}
out=bench/out/$(basename "$(dirname "$data/x")")-accuracy
rm -rf "$out" && mkdir -p "$out"
mw=${MIGWATT:-target/release/migwatt}
"$mw" evaluate --migrations-dir "$data" --train-first "$train_first" --refined \
  --out "$out/evaluation.parquet" --decision-trials 1000 --seed 1 --candidates 8
# Comparison rows: the refined model as published (eqs 11-13, no hot-set cap), with the
# gamma trained on the same migrations and with gamma = 0.
"$mw" evaluate --migrations-dir "$data" --train-first "$train_first" --refined --no-hot-set \
  --out "$out/evaluation-nocap.parquet" >/dev/null
"$mw" evaluate --migrations-dir "$data" --refined --no-hot-set --out "$out/evaluation-gamma0.parquet" >/dev/null
.venv/bin/python bench/accuracy/report.py "$data" "$out/evaluation.parquet" \
  "$out/evaluation-nocap.parquet" "$out/evaluation-gamma0.parquet"
