#!/usr/bin/env python3
"""Cost of `migwatt calibrate migrate --verify`: seconds per GiB of guest RAM to compare the
paused source's and destination's memory page by page after a migration.

For each guest size, boots the test guest of scripts/setup-qemu.sh twice (a source running the
dirtier, a destination waiting with -incoming ... -S), migrates it over a unix socket (no
bandwidth limit) with `migwatt calibrate migrate --verify`, and reads the `verify` line of the
raw log: bytes compared per side and the wall time of the whole check (memory layout of both
sides, both pmemsave dumps streamed through pipes at once, the page comparison). The
destination is then checked alive (a new console line after `cont`).

Usage: bench/verify/run.py [--sizes 128,256,512,1024] [--reps 3] [--methods process-memory,pmemsave]
       [--migwatt PATH]
Needs MIGWATT_QEMU_GUEST_DIR (scripts/setup-qemu.sh prints it) or target/qemu-guest.
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]


def qemu(guest, mem_mib, name, d, accel, incoming=None):
    cmd = [
        "qemu-system-x86_64", "-accel", accel, "-cpu", "qemu64", "-m", f"{mem_mib}M",
        "-nodefaults", "-display", "none", "-no-reboot",
        "-kernel", str(guest / "vmlinuz"), "-initrd", str(guest / "initramfs.cpio.gz"),
        "-append", "console=ttyS0 rdinit=/init quiet dirty_pages_per_s=1024 dirty_hot_mib=32",
        "-serial", f"file:{d / (name + '.serial')}",
        "-qmp", f"unix:{d / (name + '.qmp')},server=on,wait=off",
    ]
    if incoming:
        cmd += ["-incoming", f"unix:{incoming}", "-S"]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(d / f"{name}.stderr", "w"))


def wait_for(path, text, proc, guard_s=600):
    deadline = time.time() + guard_s
    while time.time() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            sys.exit(f"QEMU exited: {proc.returncode}")
        time.sleep(0.2)
    sys.exit(f"{path}: no '{text}'")


def one(migwatt, guest, mem_mib, accel, method):
    d = pathlib.Path(tempfile.mkdtemp(prefix="mw-verify-bench-"))
    procs = []
    try:
        dst = qemu(guest, mem_mib, "dst", d, accel, incoming=d / "in.sock")
        procs.append(dst)
        src = qemu(guest, mem_mib, "src", d, accel)
        procs.append(src)
        wait_for(d / "src.serial", "dirtier: ready", src)
        r = subprocess.run(
            [migwatt, "calibrate", "migrate", "--qmp", d / "src.qmp", "--dest-qmp", d / "dst.qmp",
             "--uri", f"unix:{d / 'in.sock'}", "--verify", "--verify-method", method, "--timeout", "300s", "--out-dir", d / "out"],
            capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"migrate exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
        raw = next((d / "out" / "raw").iterdir())
        v = [json.loads(line) for line in raw.read_text().splitlines()]
        v = [x for x in v if x["type"] == "verify"][0]
        assert v["verified"] is True, v
        # Alive: a new dirtier heartbeat on the destination after `cont`.
        before = (d / "dst.serial").read_text(errors="replace")
        deadline = time.time() + 120
        while (d / "dst.serial").read_text(errors="replace") == before:
            if time.time() > deadline or dst.poll() is not None:
                sys.exit("the destination guest did not print after the check")
            time.sleep(0.2)
        return v["bytes"], v["elapsed_s"], v["method"]
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="128,256,512,1024")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--migwatt", default=str(ROOT / "target/release/migwatt"))
    ap.add_argument("--accel", default="tcg", help="kvm or tcg (KVM does not run guests here)")
    ap.add_argument("--methods", default="process-memory,pmemsave",
                    help="--verify-method values, taking turns within each size")
    a = ap.parse_args()
    guest = pathlib.Path(os.environ.get("MIGWATT_QEMU_GUEST_DIR", ROOT / "target/qemu-guest"))
    version = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                             text=True).stdout.splitlines()[0]
    print(f"{version}; accelerator {a.accel}; {os.cpu_count()} CPUs; migwatt {a.migwatt}")
    print(f"{'guest':>8} {'method':>15} {'compared MiB':>13} {'check s (each run)':>28} "
          f"{'median s':>9} {'s/GiB':>7} {'load1':>6}")
    methods = a.methods.split(",")
    for mem in [int(s) for s in a.sizes.split(",")]:
        # The methods take turns, so that a change in the machine's load hits both alike.
        runs = {m: [] for m in methods}
        for _ in range(a.reps):
            for m in methods:
                runs[m].append(one(a.migwatt, guest, mem, a.accel, m))
        for m in methods:
            secs = [r[1] for r in runs[m]]
            gib = runs[m][0][0] / 2**30
            med = statistics.median(secs)
            used = runs[m][0][2]
            print(f"{mem:>5}MiB {used:>15} {runs[m][0][0] / 2**20:>13.1f} "
                  f"{', '.join(f'{s:.2f}' for s in secs):>28} {med:>9.2f} {med / gib:>7.2f} "
                  f"{os.getloadavg()[0]:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
