#!/usr/bin/env bash
# Record accuracy campaign W (bench/accuracy/workloads.toml): the guest workloads, one VM per
# workload, 3 repetitions x 2 links, every migration verified, with `migwatt calibrate run`
# into bench/accuracy/workloads/ (MIGWATT_CAMPAIGN_OUT to record elsewhere). Then
# `MIGWATT_ACCURACY_DATA=bench/accuracy/workloads bench/accuracy/run.sh` reports it.
# One QEMU campaign at a time on a machine: holds ${MIGWATT_QEMU_LOCK:-/tmp/migwatt-qemu.lock}.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${MIGWATT_CAMPAIGN_OUT:-$root/bench/accuracy/workloads}
lock=${MIGWATT_QEMU_LOCK:-/tmp/migwatt-qemu.lock}
if [ -z "${MIGWATT:-}" ]; then
  cargo build -q --workspace
  MIGWATT="$root/target/debug/migwatt"
fi
guest=$(scripts/setup-qemu.sh | tail -n1)
if [ -e "$out" ]; then
  echo "workloads.sh: $out exists; remove it to record again" >&2
  exit 1
fi
mkdir -p "$(dirname "$out")"
config=$(mktemp --suffix=.toml)
trap 'rm -f "$config"' EXIT
sed -e "s#GUEST_DIR#$guest#g" -e "s#OUT_DIR#$out#" bench/accuracy/workloads.toml > "$config"
flock "$lock" "$MIGWATT" calibrate run "$config"
