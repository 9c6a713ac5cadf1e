#!/usr/bin/env bash
# Create (or update) the project's Python virtual environment at .venv with everything the
# benchmarks, notebooks and tests (sushy-tools' Redfish emulator) need. Idempotent: re-installs only when a requirements file changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
reqs=()
for f in "$root/bench/requirements.txt" "$root/notebooks/requirements.txt" "$root/tests/requirements.txt"; do
  [ -f "$f" ] && reqs+=("$f")
done
if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    echo "setup-python: python3 -m venv failed; installing python3-venv" >&2
    apt-get update -qq && apt-get install -y -qq python3-venv
    python3 -m venv "$venv"
  fi
fi
stamp="$venv/.requirements.sha256"
want=$(cat "${reqs[@]}" 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  for f in "${reqs[@]}"; do
    "$venv/bin/python" -m pip install --quiet -r "$f"
  done
  echo "$want" > "$stamp"
fi
echo "$venv/bin/python"
