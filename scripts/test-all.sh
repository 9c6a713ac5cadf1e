#!/usr/bin/env bash
# Run every test of migwatt: Rust unit, property and end-to-end tests (the real binary, the
# meter emulator on real pseudo-terminals, real Parquet). Installs what the tests need first.
# This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain: $(cargo --version)"

step "Rust tests (unit, property, end-to-end)"
cargo test --workspace --all-targets --locked

step "doc tests"
cargo test --workspace --doc --locked

echo
echo "all tests passed"
