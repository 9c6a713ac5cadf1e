#!/usr/bin/env python3
"""First migrations of fresh VMs, each probed before it migrates (BENCHMARKS.md, probe).

For every configuration below: boot a source guest (the dirtier at a set rate, pattern and
hot set) and a paused destination (-incoming, -S), join them with a rate-limited relay, and
run `migwatt calibrate migrate --verify` (which probes first: `calibrate probe`), one VM name
per configuration, so every migration is that VM's first. The recordings land in OUT
(migrations/, rounds/, raw/); evaluate them with
`migwatt evaluate --migrations-dir OUT --refined [--no-probe]` (the FIRST group).

Usage: bench/probe/record.py OUT [MIGWATT] [GUEST_DIR]
Needs scripts/setup-qemu.sh first; runs one migration at a time (TCG, two QEMUs).
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

OUT = os.path.abspath(sys.argv[1])
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIGWATT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "target/debug/migwatt")
GUEST = sys.argv[3] if len(sys.argv) > 3 else os.path.join(ROOT, "target/qemu-guest")
MIB = 1 << 20

# name, guest MiB, pages/s, pattern, hot MiB, buffer MiB, link MiB/s, downtime limit ms
CONFIGS = [
    ("seq16", 256, 2048, "seq", 16, 0, 16, 50),
    ("seq32", 256, 4096, "seq", 32, 0, 32, 100),
    ("rand24", 256, 2048, "random", 24, 0, 16, 50),
    ("cycle48", 256, 1024, "cycle", 48, 48, 16, 50),
    ("seq64", 384, 1024, "seq", 64, 0, 24, 300),
    ("idle", 128, 0, "seq", 16, 0, 32, 50),
    ("rand48", 512, 4096, "random", 48, 0, 32, 30),
    ("seq8", 128, 2048, "seq", 8, 0, 12, 50),
]


def relay(listen, target, rate):
    """Forward one connection source -> destination at `rate` bytes/s (return path free)."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(listen)
    srv.listen(1)

    def run():
        src, _ = srv.accept()
        dst = socket.socket(socket.AF_UNIX)
        dst.connect(target)

        def back():
            try:
                while True:
                    b = dst.recv(65536)
                    if not b:
                        break
                    src.sendall(b)
            except OSError:
                pass

        threading.Thread(target=back, daemon=True).start()
        start, sent = time.monotonic(), 0
        try:
            while True:
                b = src.recv(16384)
                if not b:
                    break
                dst.sendall(b)
                sent += len(b)
                wait = start + sent / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def qemu(d, name, mem, params, incoming=None):
    args = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "qemu64", "-m", f"{mem}M",
            "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", f"{GUEST}/vmlinuz", "-initrd", f"{GUEST}/initramfs.cpio.gz",
            "-append", f"console=ttyS0 rdinit=/init quiet {params}",
            "-serial", f"file:{d}/{name}.serial",
            "-qmp", f"unix:{d}/{name}.qmp,server=on,wait=off"]
    if incoming:
        args += ["-incoming", f"unix:{incoming}", "-S"]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(f"{d}/{name}.stderr", "w"))


def wait_ready(d, p):
    for _ in range(3000):
        try:
            t = open(f"{d}/src.serial", errors="replace").read()
        except FileNotFoundError:
            t = ""
        if "ready" in t:
            return
        if p.poll() is not None:
            raise SystemExit(f"source QEMU exited: {t}")
        time.sleep(0.2)
    raise SystemExit("guest never ready")


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, mem, rate, pattern, hot, buf, link, limit in CONFIGS:
        params = (f"dirty_pages_per_s={rate} dirty_hot_mib={hot} dirty_pattern={pattern}"
                  + (f" dirty_buf_mib={buf}" if buf else ""))
        with tempfile.TemporaryDirectory(prefix="mw-probe-") as d:
            dst = qemu(d, "dst", mem, params, incoming=f"{d}/in.sock")
            src = qemu(d, "src", mem, params)
            try:
                wait_ready(d, src)
                relay(f"{d}/relay.sock", f"{d}/in.sock", link * MIB)
                cmd = [MIGWATT, "calibrate", "migrate", "--qmp", f"{d}/src.qmp",
                       "--dest-qmp", f"{d}/dst.qmp", "--uri", f"unix:{d}/relay.sock",
                       "--bandwidth", f"{link}MiB/s", "--downtime-limit", f"{limit}ms",
                       "--dirty-rate-sample", "1s", "--verify", "--timeout", "4m",
                       "--vm", name, "--workload", f"{pattern}-{rate}pps-{hot}MiB",
                       "--out", OUT]
                r = subprocess.run(cmd, capture_output=True, text=True)
                print(f"== {name}: {' '.join(cmd[1:])}\nexit {r.returncode}\n{r.stderr}{r.stdout}",
                      flush=True)
            finally:
                src.kill()
                dst.kill()
                src.wait()
                dst.wait()


if __name__ == "__main__":
    main()
