#!/usr/bin/env bash
# CPU time and peak RSS of `migwatt meter capture` of one polled source at 1 Hz for DURATION
# (default 10m): SOURCE is a `--source` spelling, e.g.
#   SOURCE='bmc=redfish+http://127.0.0.1:8000/redfish/v1/Chassis/1' bench/capture/source.sh
# The source's server (sushy-static, an exporter, ipmi_sim) runs in its own process and is not
# counted; programs the capture itself runs (ipmitool, once per IPMI reading) are: time -v
# reports the capture's CPU with that of every child it waited for.
# BIN picks the binary (default: a release build, as run.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${DURATION:-10m}
: "${SOURCE:?SOURCE=NAME=KIND:TARGET}"
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p migwatt
  BIN=target/release/migwatt
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/time -v "$BIN" meter capture --source "$SOURCE" --out-dir "$tmp/data" --duration "$duration" \
  2> "$tmp/time.txt"
user=$(grep "User time" "$tmp/time.txt" | awk '{print $NF}')
sys=$(grep "System time" "$tmp/time.txt" | awk '{print $NF}')
rss=$(grep "Maximum resident" "$tmp/time.txt" | awk '{print $NF}')
wall=$(grep "Elapsed (wall" "$tmp/time.txt" | awk '{print $NF}')
samples=$(grep -Eo "[0-9]+ samples" "$tmp/time.txt" | tail -1)
python3 - "$user" "$sys" "$rss" "$wall" "$samples" "${SOURCE%%:*}" <<'PY'
import sys
user, sys_, rss, wall, samples, kind = sys.argv[1:]
parts = [float(p) for p in wall.split(":")]
secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
cpu = float(user) + float(sys_)
print(f"capture of {kind} at 1 Hz: wall {secs:.1f} s, {samples}, CPU user {user} s + sys {sys_} s = {cpu:.2f} s "
      f"= {100 * cpu / secs:.4f} % of one core, peak RSS {int(rss) / 1024:.1f} MiB")
PY
