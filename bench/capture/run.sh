#!/usr/bin/env bash
# CPU time and peak RSS of `migwatt meter capture` at 1 Hz for DURATION (default 10m), reading
# an emulated meter over a real pseudo-terminal. The emulator runs in its own process, so its
# cost is not counted. Usage: DURATION=10m bench/capture/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${DURATION:-10m}
cargo build --release -q -p migwatt
bin=target/release/migwatt
tmp=$(mktemp -d)
trap 'kill $emu 2>/dev/null || true; rm -rf "$tmp"' EXIT
$bin meter emulate --link "$tmp/meter0" --profile bursts --speed 1 > "$tmp/emu.out" 2>/dev/null &
emu=$!
while [ ! -s "$tmp/emu.out" ]; do sleep 0.1; done
/usr/bin/time -v $bin meter capture --port lab=$tmp/meter0 --out-dir "$tmp/data" --duration "$duration" \
  2> "$tmp/time.txt"
user=$(grep "User time" "$tmp/time.txt" | awk '{print $NF}')
sys=$(grep "System time" "$tmp/time.txt" | awk '{print $NF}')
rss=$(grep "Maximum resident" "$tmp/time.txt" | awk '{print $NF}')
wall=$(grep "Elapsed (wall" "$tmp/time.txt" | awk '{print $NF}')
samples=$(grep -Eo "[0-9]+ samples" "$tmp/time.txt" | tail -1)
python3 - "$user" "$sys" "$rss" "$wall" "$samples" <<'PY'
import sys
user, sys_, rss, wall, samples = sys.argv[1:]
parts = [float(p) for p in wall.split(":")]
secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
cpu = float(user) + float(sys_)
print(f"capture at 1 Hz: wall {secs:.1f} s, {samples}, CPU user {user} s + sys {sys_} s = {cpu:.2f} s "
      f"= {100 * cpu / secs:.4f} % of one core, peak RSS {int(rss) / 1024:.1f} MiB")
PY
