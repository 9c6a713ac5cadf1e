#!/usr/bin/env bash
# Run every test of migwatt: Rust unit, property and end-to-end tests (the real binary, the
# meter emulator on real pseudo-terminals, real Parquet), and the migration tests that drive
# real QEMU processes. Installs what the tests need first (Debian packages through
# scripts/setup-qemu.sh, Python packages into .venv through scripts/setup-python.sh).
# This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain: $(cargo --version)"

step "Rust tests (unit, property, end-to-end)"
cargo test --workspace --all-targets --locked

step "doc tests"
cargo test --workspace --doc --locked

step "real QEMU migrations (installs qemu-system-x86 and builds a tiny guest when missing)"
guest=$(scripts/setup-qemu.sh | tail -n1)
# --workspace keeps the feature set of the run above, so nothing is rebuilt.
MIGWATT_QEMU_GUEST_DIR="$guest" cargo test --workspace --locked --test qemu_migrate -- --ignored --test-threads=1

step "notebooks (executed with nbclient on datasets/examples)"
scripts/test-notebooks.sh

echo
echo "all tests passed"
