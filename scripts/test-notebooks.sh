#!/usr/bin/env bash
# Execute every notebook in notebooks/ top to bottom with nbclient on the shipped examples
# (datasets/examples/campaign, or MIGWATT_DATA), headless (matplotlib Agg), and check that the
# committed notebooks carry no outputs. Each notebook ends with assertions that its numbers
# agree with the CLI's, so a failing assertion fails this script.
# Sets up .venv first (scripts/setup-python.sh). Last line: "N passed, M failed".
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=$(scripts/setup-python.sh | tail -n1)
export MPLBACKEND=Agg
export MIGWATT_DATA=${MIGWATT_DATA:-"$root/datasets/examples/campaign"}
"$py" - "$@" <<'PY'
import pathlib, re, sys, time
import nbformat
from nbclient import NotebookClient

root = pathlib.Path.cwd()
books = sorted((root / "notebooks").glob("*.ipynb"))
if len(sys.argv) > 1:
    books = [pathlib.Path(a).resolve() for a in sys.argv[1:]]
passed = failed = 0
for path in books:
    name = path.relative_to(root)
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    if dirty:
        print(f"FAIL {name}: committed with outputs in code cells {dirty} (strip them)", flush=True)
        failed += 1
        continue
    t = time.monotonic()
    try:
        NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    except Exception as e:
        plain = re.sub("\x1b\\[[0-9;]*m", "", str(e))
        print(f"FAIL {name}: {plain[-3000:]}", flush=True)
        failed += 1
        continue
    print(f"ok   {name} ({time.monotonic() - t:.1f} s)", flush=True)
    passed += 1
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or not books else 0)
PY
