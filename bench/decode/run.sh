#!/usr/bin/env bash
# Decoder throughput, Rust vs a pyserial-style Python parser, over the same real captures
# repeated to ~1.5 M records. Usage: bench/decode/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
py=$(./scripts/setup-python.sh)
data=tests/data/wattsup
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
cargo bench -p meter --bench decode -- --noplot 2>&1 | grep -E "decode/|time:|thrpt:"
# 15113 records per pass over the three files; 99 passes = 1,496,187 records (as the Rust bench).
"$py" bench/decode/pyserial_style.py $data/fan.raw $data/iphone3gs.raw $data/iphone4.raw --repeat 99
