#!/usr/bin/env bash
# The accuracy campaign: real QEMU migrations (128 MiB TCG guest, `dirtier` at
# 256/1024/2048/3072 pages/s over a 32 MiB hot region, relay at 16 and 24 MiB/s, downtime
# limit 50 ms, 1 s pre-migration dirty-rate sample), each verified page by page before its
# destination runs (a mismatch fails the campaign), MIGWATT_CAMPAIGN_REPS repetitions
# (default 2; the recorded campaigns have 3). Raw QMP logs and the migrations/rounds datasets
# go to MIGWATT_CAMPAIGN_OUT (default bench/accuracy/data/; runs already there are skipped).
# One QEMU at a time.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
guest=$(scripts/setup-qemu.sh | tail -n1)
MIGWATT_QEMU_GUEST_DIR="$guest" MIGWATT_CAMPAIGN_OUT="${MIGWATT_CAMPAIGN_OUT:-$root/bench/accuracy/data}" \
  cargo test --workspace --test migration -- --ignored predict_campaign:: --test-threads=1 --nocapture
