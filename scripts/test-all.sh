#!/usr/bin/env bash
# Run every test of migwatt: Rust unit, property and end-to-end tests (the real binary, the
# meter emulator on real pseudo-terminals, real Parquet), and the migration tests that drive
# real QEMU processes, and the campaign report checked in headless Chromium. Installs what the
# tests need first (Debian packages through scripts/setup-qemu.sh, scripts/setup-browser.sh and
# scripts/setup-ipmi.sh, Python packages into .venv through scripts/setup-python.sh).
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
# --workspace keeps the feature set of the run above, so nothing is rebuilt. The recorder of
# accuracy campaigns (predict_campaign) runs on demand only: bench/accuracy/campaign.sh.
MIGWATT_QEMU_GUEST_DIR="$guest" cargo test --workspace --locked --test migration -- --ignored --test-threads=1 --skip predict_campaign::

step "the campaign report in headless Chromium (installs Debian's chromium when missing)"
scripts/setup-browser.sh
cargo test --workspace --locked --test cli -- --ignored report_browser::

step "Redfish source against sushy-tools' static emulator (installed into .venv)"
venv_python=$(scripts/setup-python.sh | tail -n1)
MIGWATT_SUSHY_STATIC="$(dirname "$venv_python")/sushy-static" cargo test --workspace --locked --test capture -- --ignored sources::redfish_

step "IPMI source against OpenIPMI's ipmi_sim (installs Debian's openipmi and ipmitool when missing)"
ipmi_sim=$(scripts/setup-ipmi.sh | tail -n1)
MIGWATT_IPMI_SIM="$ipmi_sim" cargo test --workspace --locked --test capture -- --ignored sources::ipmi_

step "notebooks (executed with nbclient on datasets/examples)"
scripts/test-notebooks.sh

echo
echo "all tests passed"
