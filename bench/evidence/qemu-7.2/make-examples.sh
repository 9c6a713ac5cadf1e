#!/usr/bin/env bash
# Regenerate the shipped example datasets under datasets/examples/campaign/:
#  1. a real QEMU migration campaign (bench/examples/campaign.py: TCG guests, several dirtying
#     rates, link bandwidths and memory sizes, with repetitions) recorded by
#     `migwatt calibrate migrate` -> raw/, migrations/, rounds/;
#  2. EMULATED power: traces derived from those migrations' start/end
#     (bench/examples/power_trace.py), played by two `migwatt meter emulate --profile trace:`
#     meters and recorded by `migwatt meter capture` -> samples/. The capture runs under
#     libfaketime with its clock set to the campaign's time, 10x faster (the emulators run
#     at --speed 10), so the samples carry the UTC times of the real migrations;
#  3. derived datasets: windows.parquet (`calibrate windows`), baselines/p0-HOST.json
#     (`meter baseline`), energy.parquet + energy.quality.parquet (`integrate`), models/
#     (`train energy`, `train gamma`).
# Usage: bench/examples/make-examples.sh [OUT]   (default datasets/examples/campaign)
#   MIGWATT_EXAMPLES_CAMPAIGN=DIR  reuse a campaign already recorded in DIR (raw/, migrations/,
#                                  rounds/, campaign.jsonl) instead of running QEMU
#   MIGWATT_EXAMPLES_PLAN=small    a 2-migration campaign (for trying the script)
# Needs: scripts/setup-qemu.sh (QEMU + guest), scripts/setup-python.sh (.venv with pyarrow),
# faketime (Debian package, installed when missing). One QEMU campaign at a time on a machine:
# the campaign holds the lock file ${MIGWATT_QEMU_LOCK:-/tmp/migwatt-qemu.lock} (flock).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${1:-datasets/examples/campaign}
speed=10
plan=${MIGWATT_EXAMPLES_PLAN:-full}
lock=${MIGWATT_QEMU_LOCK:-/tmp/migwatt-qemu.lock}

command -v faketime >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime
}
py=$(scripts/setup-python.sh | tail -n1)
cargo build -q -p migwatt
mw="$root/target/debug/migwatt"
version=$("$mw" --version)

rm -rf "$out.tmp"
mkdir -p "$out.tmp"
if [ -n "${MIGWATT_EXAMPLES_CAMPAIGN:-}" ]; then
  cp -r "$MIGWATT_EXAMPLES_CAMPAIGN"/{raw,migrations,rounds,campaign.jsonl} "$out.tmp/"
  cp "$MIGWATT_EXAMPLES_CAMPAIGN/campaign.provenance" "$out.tmp/"
else
  guest=$(scripts/setup-qemu.sh | tail -n1)
  flock "$lock" python3 bench/examples/campaign.py --guest "$guest" --migwatt "$mw" \
    --out "$out.tmp" --plan "$plan"
  echo "campaign: bench/examples/campaign.py --plan $plan, recorded by $version, $(qemu-system-x86_64 --version | head -n1), finished $(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    > "$out.tmp/campaign.provenance"
fi

# Emulated power following the migrations.
read -r t0_ns duration_s < <("$py" bench/examples/power_trace.py "$out.tmp/migrations" "$out.tmp/power-traces")
pty=$(mktemp -d)
"$mw" meter emulate --profile "trace:$out.tmp/power-traces/trace-hostA.csv" --speed $speed \
  --link "$pty/hostA" >/dev/null 2>"$pty/emA.err" &
ea=$!
"$mw" meter emulate --profile "trace:$out.tmp/power-traces/trace-hostB.csv" --speed $speed \
  --link "$pty/hostB" >/dev/null 2>"$pty/emB.err" &
eb=$!
emu_start=$(date +%s.%N)
while [ ! -e "$pty/hostA" ] || [ ! -e "$pty/hostB" ]; do sleep 0.05; done
# The emulators' time 0 is T0; start the capture's fake clock where the emulators are now.
fake=$("$py" -c "import datetime,sys,time;t=$t0_ns/1e9+(time.time()-$emu_start)*$speed;print(datetime.datetime.fromtimestamp(t,datetime.timezone.utc).strftime('@%Y-%m-%d %H:%M:%S.%f'))")
TZ=UTC faketime -f "$fake x$speed" "$mw" meter capture --port "hostA=$pty/hostA" \
  --port "hostB=$pty/hostB" --out "$out.tmp/samples" --duration "${duration_s}s" --settle 0s \
  --report "$out.tmp/capture-report.json" 2>"$pty/capture.err" || { cat "$pty/capture.err" >&2; exit 1; }
kill "$ea" "$eb" 2>/dev/null || true
wait "$ea" "$eb" 2>/dev/null || true
rm -rf "$pty"

# Derived datasets, run inside the folder so the files record paths relative to it.
(
  cd "$out.tmp"
  "$mw" calibrate windows --migrations migrations --out windows.parquet
  mkdir -p baselines
  for h in hostA hostB; do
    "$mw" meter baseline --samples samples --host "$h" --out "baselines/p0-$h.json" >/dev/null
  done
  "$mw" integrate --samples samples --windows windows.parquet \
    --baseline baselines/p0-hostA.json baselines/p0-hostB.json --out energy.parquet
  "$mw" train energy --data energy.parquet --out models --name energy --per-side
  "$mw" train gamma --data rounds --migrations migrations --out models --name gamma-qemu
  # Model accuracy and decision trials (`migwatt evaluate`, Figures 10-14).
  mkdir -p evaluation
  "$mw" evaluate --migrations . --energy-model models/energy --gamma-model models/gamma-qemu \
    --hypervisor qemu --downtime-limit 50ms --history --decision-trials 20 --candidates 8 --seed 1 \
    --energy energy.parquet --out evaluation/evaluation.parquet --format json > evaluation/evaluate.json
  "$mw" datasets check .
)
sed -i "s#$out.tmp/#$out/#g" "$out.tmp/campaign.jsonl"

cat > "$out.tmp/PROVENANCE" <<PROV
command: bench/examples/make-examples.sh $out${MIGWATT_EXAMPLES_CAMPAIGN:+ (campaign reused from $MIGWATT_EXAMPLES_CAMPAIGN)}
date: $(date -u +%Y-%m-%dT%H:%M:%SZ)
toolkit: $version (git $(git rev-parse --short HEAD 2>/dev/null || echo unknown))
$(cat "$out.tmp/campaign.provenance")
capture: faketime x$speed from $fake, emulators at --speed $speed
PROV
[ ! -f "$out/README.md" ] || cp "$out/README.md" "$out.tmp/README.md"
rm -rf "$out"
mv "$out.tmp" "$out"
du -sh "$out"
