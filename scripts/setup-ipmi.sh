#!/usr/bin/env bash
# Install what the IPMI source tests (tests/capture/sources.rs, ipmi_*) need, idempotently: Debian's
# `ipmitool` (what ipmi:// sources run) and `openipmi` (its `ipmi_sim`, a BMC simulator
# serving RMCP+ on loopback). Runs apt-get update only when the install fails without it.
# Prints the path of ipmi_sim on its last line. Needs root for apt-get.
# Usage: scripts/setup-ipmi.sh
set -euo pipefail

missing=()
command -v ipmitool > /dev/null || missing+=(ipmitool)
command -v ipmi_sim > /dev/null || missing+=(openipmi)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-ipmi: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
fi
command -v ipmitool > /dev/null || { echo "setup-ipmi: ipmitool missing after install" >&2; exit 1; }
command -v ipmi_sim || { echo "setup-ipmi: ipmi_sim missing after install" >&2; exit 1; }
