#!/usr/bin/env python3
"""Run a short real-QEMU migration campaign recorded by `migwatt calibrate migrate`.

One source guest is booted per (memory size, dirtying rate); it is then migrated back and
forth between two "hosts" (hostA, hostB: QEMU processes on this machine) once per
(bandwidth, repetition), each time into a fresh destination QEMU started with -incoming, so a
guest boots once and serves several migrations. The link is a rate-limiting relay (as in
tests/qemu_migrate.rs: QEMU lifts its own max-bandwidth at stop-and-copy, so only a relay
gives realistic downtimes). Standard library only.

Usage: campaign.py --guest DIR --migwatt BIN --out DIR [--plan small|full]
Writes OUT/raw/*.qmp.jsonl, OUT/migrations/*.parquet, OUT/rounds/*.parquet (via migwatt) and
OUT/campaign.jsonl (one line per migration: plan and migwatt's summary).
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def relay(listen_path, target_path, rate_bytes_per_s, done):
    """Accept one connection; forward source -> destination at rate, the return path unlimited."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(listen_path)
    srv.listen(1)

    def run():
        src, _ = srv.accept()
        dst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dst.connect(target_path)

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
        start = time.monotonic()
        sent = 0
        try:
            while True:
                b = src.recv(65536)
                if not b:
                    break
                dst.sendall(b)
                sent += len(b)
                wait = sent / rate_bytes_per_s - (time.monotonic() - start)
                if wait > 0:
                    time.sleep(wait)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        done.append(sent)
        srv.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def start_qemu(guest, d, name, mem_mib, rate, hot_mib, incoming=None):
    serial = os.path.join(d, f"{name}.serial")
    cmd = [
        "qemu-system-x86_64", "-accel", "tcg", "-cpu", "qemu64", "-m", f"{mem_mib}M",
        "-nodefaults", "-display", "none", "-no-reboot",
        "-kernel", os.path.join(guest, "vmlinuz"),
        "-initrd", os.path.join(guest, "initramfs.cpio.gz"),
        "-append", f"console=ttyS0 rdinit=/init quiet dirty_pages_per_s={rate} dirty_hot_mib={hot_mib}",
        "-serial", f"file:{serial}",
        "-qmp", f"unix:{os.path.join(d, name + '.qmp')},server=on,wait=off",
    ]
    if incoming:
        cmd += ["-incoming", f"unix:{incoming}"]
    err = open(os.path.join(d, f"{name}.stderr"), "w")
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    return p, serial


def wait_file(path, text, proc, guard_s=600):
    end = time.monotonic() + guard_s
    while time.monotonic() < end:
        try:
            with open(path, errors="replace") as f:
                if text in f.read():
                    return
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            sys.exit(f"QEMU exited ({proc.returncode}) before '{text}' in {path}")
        time.sleep(0.2)
    sys.exit(f"'{text}' never appeared in {path}")


def others_running(ours):
    """PIDs of QEMU processes not started by this campaign (another test or campaign)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in ours:
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().startswith("qemu-system"):
                    with open(f"/proc/{pid}/stat") as g:
                        if g.read().split(") ")[-1].startswith("Z"):
                            continue
                    found.append(int(pid))
        except OSError:
            pass
    return found


def wait_alone(ours):
    """One QEMU run at a time: others may not take our lock, so also wait for their QEMUs."""
    said = False
    while others_running(ours):
        if not said:
            print("waiting for other QEMU processes to finish", file=sys.stderr, flush=True)
            said = True
        time.sleep(1)


def wait_socket(path, guard_s=60):
    end = time.monotonic() + guard_s
    while time.monotonic() < end:
        if os.path.exists(path):
            return
        time.sleep(0.05)
    sys.exit(f"{path} never appeared")


PLANS = {
    # (memory MiB, dirtying rate pages/s, hot region MiB) x bandwidths (MiB/s) x repetitions
    "full": dict(guests=[(128, 256, 8), (128, 1024, 16), (128, 2048, 32),
                         (256, 256, 8), (256, 1024, 16), (256, 2048, 32)],
                 bandwidths_mib=[16, 32], reps=2),
    "small": dict(guests=[(128, 256, 8), (128, 2048, 32)], bandwidths_mib=[16], reps=1),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--guest", required=True)
    ap.add_argument("--migwatt", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--plan", default="full", choices=sorted(PLANS))
    ap.add_argument("--downtime-limit-ms", type=int, default=50)
    ap.add_argument("--timeout-s", type=int, default=60)
    a = ap.parse_args()
    plan = PLANS[a.plan]
    # SIGTERM runs the cleanup below (kills this campaign's QEMUs).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    os.makedirs(a.out, exist_ok=True)
    log = open(os.path.join(a.out, "campaign.jsonl"), "a")
    hosts = ["hostA", "hostB"]
    for (mem, rate, hot) in plan["guests"]:
        d = tempfile.mkdtemp(prefix="mw-campaign")
        procs = []
        try:
            wait_alone(set())
            n = 0
            cur, serial = start_qemu(a.guest, d, f"g{n}", mem, rate, hot)
            procs.append(cur)
            t_boot = time.monotonic()
            wait_file(serial, "dirtier: ready", cur)
            print(f"guest {mem} MiB, {rate} pages/s over {hot} MiB: ready after "
                  f"{time.monotonic() - t_boot:.1f} s", file=sys.stderr, flush=True)
            here = 0
            for bw in plan["bandwidths_mib"]:
                for rep in range(plan["reps"]):
                    wait_alone({p.pid for p in procs})
                    n += 1
                    inc = os.path.join(d, f"in{n}.sock")
                    rel = os.path.join(d, f"relay{n}.sock")
                    nxt, _ = start_qemu(a.guest, d, f"g{n}", mem, rate, hot, incoming=inc)
                    procs.append(nxt)
                    wait_socket(inc)
                    wait_socket(os.path.join(d, f"g{n}.qmp"))
                    done = []
                    rt = relay(rel, inc, bw << 20, done)
                    label = f"dirty{rate}"
                    cmd = [a.migwatt, "calibrate", "migrate",
                           "--qmp", os.path.join(d, f"g{n-1}.qmp"),
                           "--dest-qmp", os.path.join(d, f"g{n}.qmp"),
                           "--uri", f"unix:{rel}",
                           "--downtime-limit", f"{a.downtime_limit_ms}ms",
                           "--dirty-rate-sample", "1s",
                           "--timeout", f"{a.timeout_s}s",
                           "--workload", label, "--vm", f"tiny{mem}m",
                           "--source-host", hosts[here], "--dest-host", hosts[1 - here],
                           "--out-dir", a.out]
                    r = subprocess.run(cmd, capture_output=True, text=True)
                    if r.returncode != 0:
                        sys.exit(f"migwatt calibrate migrate failed:\n{r.stderr}\n{r.stdout}")
                    cur.kill()
                    cur.wait()
                    rt.join(timeout=30)
                    summary = r.stdout.strip()
                    print(summary, file=sys.stderr, flush=True)
                    log.write(json.dumps(dict(vm_mem_mib=mem, dirty_pages_per_s=rate,
                                              hot_mib=hot, link_mib_per_s=bw, repetition=rep + 1,
                                              source_host=hosts[here],
                                              destination_host=hosts[1 - here],
                                              relayed_bytes=(done or [None])[0],
                                              migwatt=summary)) + "\n")
                    log.flush()
                    if "completed" not in summary:
                        # Not converged: the source still runs; carry on from it, dropping
                        # the half-filled destination.
                        nxt.kill()
                        nxt.wait()
                        sys.exit("migration did not complete; the campaign keeps converging ones only")
                    cur = nxt
                    here = 1 - here
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
