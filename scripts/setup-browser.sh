#!/usr/bin/env bash
# Install what the browser tests (tests/cli/report_browser.rs) need, idempotently: Debian's
# `chromium` (headless use only). Runs apt-get update only when the install fails without
# it. Prints the Chromium version on its last line. Needs root for apt-get.
# Usage: scripts/setup-browser.sh
set -euo pipefail

bin=${MIGWATT_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$bin" ]; then
  echo "setup-browser: installing chromium" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Fonts come with chromium's dependencies; --no-install-recommends keeps the rest out.
  if ! apt-get install -y -qq --no-install-recommends chromium >&2; then
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends chromium >&2
  fi
  bin=/usr/bin/chromium
fi
[ -x "$bin" ] || { echo "setup-browser: $bin missing after install" >&2; exit 1; }
"$bin" --version
