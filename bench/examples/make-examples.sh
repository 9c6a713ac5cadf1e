#!/usr/bin/env bash
# Regenerate the shipped example datasets under datasets/examples/campaign/:
#  1. a real QEMU 10 migration campaign run by `migwatt calibrate run` with the config
#     bench/examples/campaign.toml: the launch kind (two local QEMU processes per migration,
#     TCG), every migration verified page by page before its destination ran, a rate-limiting
#     relay link, the guest workloads of scripts/setup-qemu.sh (the dirtier at three rates and
#     real programs), and two EMULATED Watts up? PRO meters whose power follows the host
#     activity model (CPU time of each host's QEMU from /proc, bytes through the relay)
#     -> raw/ (with the activity samples), migrations/, rounds/, samples/, campaign.toml,
#     journal.jsonl (the campaign's own analysis, summary and report stay in its folder);
#  2. derived datasets, with the same commands a user would run: windows.parquet
#     (`calibrate windows`), baselines/p0-HOST.json (`meter baseline`), energy.parquet +
#     energy.quality.parquet (`integrate`), models/ (`train energy`, `train gamma`),
#     evaluation/ (`evaluate`), then `datasets check`.
# Usage: bench/examples/make-examples.sh [OUT]   (default datasets/examples/campaign)
#   MIGWATT_EXAMPLES_CAMPAIGN=DIR  reuse a campaign folder already recorded by
#                                  `migwatt calibrate run` with that config (no QEMU run)
# Needs: scripts/setup-qemu.sh (QEMU 10 + guest), scripts/setup-python.sh (for the notebooks
# only). One QEMU campaign at a time on a machine: the campaign holds the lock file
# ${MIGWATT_QEMU_LOCK:-/tmp/migwatt-qemu.lock} (flock).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${1:-datasets/examples/campaign}
lock=${MIGWATT_QEMU_LOCK:-/tmp/migwatt-qemu.lock}

cargo build -q --workspace
mw="$root/target/debug/migwatt"
version=$("$mw" --version)

if [ -n "${MIGWATT_EXAMPLES_CAMPAIGN:-}" ]; then
  rec=$(cd "$MIGWATT_EXAMPLES_CAMPAIGN" && pwd)
else
  guest=$(scripts/setup-qemu.sh | tail -n1)
  rec="$root/target/examples-rec/campaign"
  rm -rf "$rec"
  mkdir -p "$(dirname "$rec")"
  sed -e "s#GUEST_DIR#$guest#g" -e "s#OUT_DIR#$rec#" bench/examples/campaign.toml \
    > "$(dirname "$rec")/campaign.toml"
  flock "$lock" "$mw" calibrate run "$(dirname "$rec")/campaign.toml"
fi

rm -rf "$out.tmp"
mkdir -p "$out.tmp"
cp -r "$rec"/{raw,migrations,rounds,samples,journal.jsonl} "$out.tmp/"
# Only the migrations the config plans (a campaign resumed after a plan change keeps the
# records of runs it no longer plans in its folder; its own analysis leaves them out too).
python3 - "$rec/campaign.toml" "$out.tmp" <<'PY'
import pathlib, sys, tomllib
c = tomllib.loads(pathlib.Path(sys.argv[1]).read_text())
out = pathlib.Path(sys.argv[2])
runs = c["plan"]["runs"]
ids = {f"{r['vm']}-{r['workload']}-{r['bandwidth'].replace('/', 'p')}-r{k}"
       for r in runs for k in range(1, c["plan"].get("repetitions", 1) + 1)}
for sub, ext in (("raw", ".qmp.jsonl"), ("migrations", ".parquet"), ("rounds", ".parquet")):
    for f in (out / sub).iterdir():
        if f.name.removesuffix(ext) not in ids:
            print(f"left out (not in the plan): {sub}/{f.name}", file=sys.stderr)
            f.unlink()
PY
# The config as run, with this machine's paths made relative again.
sed -e "s#$root/target/qemu-guest#GUEST_DIR#g" -e "s#$rec#OUT_DIR#g" "$rec/campaign.toml" \
  > "$out.tmp/campaign.toml"

# Derived datasets, run inside the folder so the files record paths relative to it.
(
  cd "$out.tmp"
  "$mw" calibrate windows --migrations migrations --out windows.parquet
  mkdir -p baselines
  # P_0 over the campaign's idle stretch (its journal's `baseline` entry; Unix seconds).
  read -r from to < <(python3 -c 'import json,sys
b=[json.loads(l) for l in open("journal.jsonl") if "\"baseline\"" in l][0]
print(b["start_utc_ns"]/1e9, b["end_utc_ns"]/1e9)')
  for h in hostA hostB; do
    "$mw" meter baseline --samples-dir samples --host "$h" --from "$from" --to "$to" \
      --out "baselines/p0-$h.json" >/dev/null
  done
  "$mw" integrate --samples-dir samples --windows windows.parquet \
    --baseline baselines/p0-hostA.json baselines/p0-hostB.json --out energy.parquet
  "$mw" train energy --data energy.parquet --out-dir models --name energy --per-side
  "$mw" train gamma --data rounds --migrations migrations --out-dir models --name gamma-qemu
  # Model accuracy and decision trials (`migwatt evaluate`, Figures 10-14).
  # evaluate refuses to write inside its input folder: write beside it, then move in.
  ev=$(mktemp -d)
  "$mw" evaluate --migrations-dir . --energy-model models/energy --gamma-model models/gamma-qemu \
    --hypervisor qemu --downtime-limit 100ms --refined --decision-trials 20 --candidates 8 --seed 1 \
    --energy energy.parquet --out "$ev/evaluation.parquet" --format json > "$ev/evaluate.json"
  mkdir -p evaluation
  mv "$ev"/evaluation.parquet "$ev"/evaluate.json evaluation/
  rmdir "$ev"
  "$mw" datasets check .
)

cat > "$out.tmp/PROVENANCE" <<PROV
command: bench/examples/make-examples.sh $out${MIGWATT_EXAMPLES_CAMPAIGN:+ (campaign reused from $MIGWATT_EXAMPLES_CAMPAIGN)}
date: $(date -u +%Y-%m-%dT%H:%M:%SZ)
toolkit: $version (git $(git rev-parse --short HEAD 2>/dev/null || echo unknown))
campaign: migwatt calibrate run bench/examples/campaign.toml (recorded in $rec)
qemu: $(qemu-system-x86_64 --version | head -n1)
guest: $(cat "$root/target/qemu-guest/kernel-package" 2>/dev/null || echo unknown), initramfs $(stat -c %s "$root/target/qemu-guest/initramfs.cpio.gz" 2>/dev/null || echo '?') bytes
PROV
[ ! -f "$out/README.md" ] || cp "$out/README.md" "$out.tmp/README.md"
rm -rf "$out"
mv "$out.tmp" "$out"
du -sh "$out"
