#!/usr/bin/env bash
# Fresh clone to first demo (issue 18 item 7): clone the repository at a commit, then
# `cargo run --release -- demo` with an empty CARGO_HOME (the index and every crate are
# downloaded too) and no target/. Prints build and demo wall times, the number of crates
# compiled and the machine's load before and after.
#
#   bench/first-demo/run.sh [COMMIT]      (default: HEAD of this checkout)
#
# Needs the rustup toolchain only; everything else is fetched. Writes under a fresh
# temporary folder that it removes afterwards (set KEEP=1 to keep it).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
commit=${1:-$(git -C "$repo" rev-parse HEAD)}
work=$(mktemp -d /tmp/migwatt-first-demo.XXXXXX)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
export CARGO_HOME="$work/cargo-home"
export PATH="$HOME/.cargo/bin:$PATH"
mkdir -p "$CARGO_HOME"
echo "commit $commit, work dir $work, $(nproc) cores"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
git clone -q "$repo" "$work/migwatt"
git -C "$work/migwatt" checkout -q "$commit"
cd "$work/migwatt"
t0=$(date +%s)
cargo build --release --locked 2> "$work/build.log"
t1=$(date +%s)
echo "load after build: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo run --release --locked -q -- demo > "$work/demo.log" 2>&1 || { tail -20 "$work/demo.log"; exit 1; }
t2=$(date +%s)
crates=$(grep -c '^ *Compiling ' "$work/build.log" || true)
printf 'build %.1f min, demo %.1f min, total %.1f min, %s crates compiled\n' \
  "$(echo "($t1-$t0)/60" | bc -l)" "$(echo "($t2-$t1)/60" | bc -l)" "$(echo "($t2-$t0)/60" | bc -l)" "$crates"
tail -3 "$work/demo.log"
