#!/usr/bin/env python3
"""Measure the guest's workloads under TCG: boot time to ready, the smallest -m they run in, their
dirtying as QEMU sees it (calc-dirty-rate over several windows), and a live migration each.

Host-side tool for scripts/guest/README.md (not used by the tests). Needs only Python's
standard library and the guest built by scripts/setup-qemu.sh.

  scripts/guest/measure.py boot     [--mem 256] WORKLOAD[:PARAMS]...   seconds to `ready`
  scripts/guest/measure.py min-mem  WORKLOAD[:PARAMS]... [--sizes 64,96,128,...]
  scripts/guest/measure.py dirty    [--mem 256] [--mode page-sampling|dirty-bitmap] WORKLOAD...
  scripts/guest/measure.py migrate  [--mem 256] WORKLOAD[:PARAMS]...

PARAMS are extra kernel parameters, comma-separated: `dirtier:dirty_pages_per_s=4000,dirty_hot_mib=32`.
Guest directory: $MIGWATT_QEMU_GUEST_DIR or target/qemu-guest. Exit status 1 when a check fails.
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUEST = os.environ.get("MIGWATT_QEMU_GUEST_DIR", os.path.join(ROOT, "target", "qemu-guest"))
# Hang guard only: a guest that is not ready by then is reported as not ready.
READY_GUARD_S = 300


class Qmp:
    """A minimal QMP client over a unix socket: commands and the events seen meanwhile."""

    def __init__(self, path):
        for _ in range(600):
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"no QMP socket at {path}")
        self.buf = b""
        self.events = []
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise RuntimeError(f"{name}: {r['error']}")
            return r["return"]


class Guest:
    """One QEMU process running the test guest, its console in a file."""

    def __init__(self, workload, mem_mib, incoming=None, tag="src"):
        self.dir = tempfile.mkdtemp(prefix=f"migwatt-{tag}-")
        self.serial = os.path.join(self.dir, "serial")
        self.qmp_path = os.path.join(self.dir, "qmp")
        name, _, params = workload.partition(":")
        append = f"console=ttyS0 rdinit=/init quiet workload={name} " + params.replace(",", " ")
        cmd = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "qemu64", "-m", f"{mem_mib}M",
               "-nodefaults", "-display", "none", "-no-reboot",
               "-kernel", os.path.join(GUEST, "vmlinuz"),
               "-initrd", os.path.join(GUEST, "initramfs.cpio.gz"),
               "-append", append, "-serial", f"file:{self.serial}",
               "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        if incoming:
            cmd += ["-incoming", incoming, "-S"]
        self.name = name
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.qmp = Qmp(self.qmp_path)

    def console(self):
        try:
            with open(self.serial, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_ready(self):
        """Seconds from QEMU's start to the ready line, or None (with the reason) if it failed."""
        while time.monotonic() - self.started < READY_GUARD_S:
            text = self.console()
            if f"migwatt-workload: ready {self.name}" in text:
                return time.monotonic() - self.started, ""
            bad = failure(text)
            if bad:
                return None, bad
            if self.proc.poll() is not None:
                return None, f"QEMU exited ({self.proc.returncode})"
            time.sleep(0.1)
        return None, "not ready within the hang guard"

    def progress_lines(self):
        pat = re.compile(rf"^migwatt-workload: {re.escape(self.name)} ", re.M)
        return pat.findall(self.console())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def failure(text):
    for bad in ("migwatt-workload: failed", "Kernel panic", "Out of memory", "oom-kill",
                "segfault", "BUG:", "Oops"):
        if bad in text:
            line = next((l for l in text.splitlines() if bad in l), bad)
            return line.strip()
    return ""


def wait_progress(g, n, guard_s=120):
    """Wait for n more progress lines; False if the guest fails first."""
    base = len(g.progress_lines())
    end = time.monotonic() + guard_s
    while time.monotonic() < end:
        if len(g.progress_lines()) >= base + n:
            return True
        if failure(g.console()) or g.proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def qemu_cpu_s(pid):
    """CPU time (user + system) QEMU has used: a boot's cost less the waiting for a busy host's
    cores (TCG runs the one vCPU in one thread, so on an idle host this is close to wall time)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load():
    return os.getloadavg()[0]


def cmd_boot(a):
    ok = True
    for w in a.workloads:
        g = Guest(w, a.mem)
        try:
            t, why = g.wait_ready()
            cpu_s = qemu_cpu_s(g.proc.pid)
            prog = t is not None and wait_progress(g, 2)
            print(f"{w}\tmem={a.mem}MiB\tready={'%.1f s' % t if t else 'NO (' + why + ')'}"
                  f"\tqemu_cpu_at_ready={cpu_s:.1f} s"
                  f"\tprogress={'ok' if prog else 'NO'}\tload1={load():.1f}", flush=True)
            ok &= bool(prog)
        finally:
            g.stop()
    return ok


def cmd_min_mem(a):
    sizes = [int(s) for s in a.sizes.split(",")]
    for w in a.workloads:
        smallest = None
        for m in sizes:
            g = Guest(w, m)
            try:
                t, why = g.wait_ready()
                # Runs = ready and 5 more progress lines without a failure (OOM, panic).
                good = t is not None and wait_progress(g, 5) and not failure(g.console())
                why = why or failure(g.console())
            finally:
                g.stop()
            print(f"  {w}\t-m {m}\t{'runs' if good else 'fails: ' + why}", flush=True)
            if good:
                smallest = m
                break
        print(f"{w}\tsmallest -m {smallest} MiB", flush=True)
    return True


def dirty_rate(g, calc_s, mode, sample_pages):
    args = {"calc-time": calc_s}
    if mode == "page-sampling":
        args["sample-pages"] = sample_pages
    else:
        args["mode"] = mode
    g.qmp.cmd("calc-dirty-rate", **args)
    time.sleep(calc_s)
    while True:
        r = g.qmp.cmd("query-dirty-rate")
        if r.get("status") == "measured":
            return r
        time.sleep(0.2)


def cmd_dirty(a):
    windows = [int(s) for s in a.windows.split(",")]
    print(f"workload\tmode\t" + "\t".join(f"{w} s MiB/s" for w in windows) + "\tload1")
    for w in a.workloads:
        g = Guest(w, a.mem)
        try:
            t, why = g.wait_ready()
            if t is None:
                print(f"{w}\tnot ready: {why}")
                continue
            time.sleep(a.settle)
            rates = []
            for cs in windows:
                r = dirty_rate(g, cs, a.mode, a.sample_pages)
                rates.append(r.get("dirty-rate"))
            print(f"{w}\t{a.mode}\t" + "\t".join(str(x) for x in rates) + f"\t{load():.1f}",
                  flush=True)
        finally:
            g.stop()
    return True


def cmd_migrate(a):
    ok = True
    for w in a.workloads:
        src = Guest(w, a.mem, tag="src")
        sock = os.path.join(src.dir, "mig.sock")
        dst = Guest(w, a.mem, incoming=f"unix:{sock}", tag="dst")
        verdict = ""
        try:
            t, why = src.wait_ready()
            if t is None:
                verdict = f"source not ready: {why}"
                raise StopIteration
            wait_progress(src, 2)
            src.qmp.cmd("migrate-set-capabilities", capabilities=[
                {"capability": "auto-converge", "state": True},
                {"capability": "events", "state": True}])
            src.qmp.cmd("migrate-set-parameters", **{"downtime-limit": 300,
                                                     "max-bandwidth": 64 << 20})
            t0 = time.monotonic()
            src.qmp.cmd("migrate", uri=f"unix:{sock}")
            while True:
                st = src.qmp.cmd("query-migrate")
                if st.get("status") in ("completed", "failed", "cancelled"):
                    break
                if time.monotonic() - t0 > 600:
                    src.qmp.cmd("migrate_cancel")
                time.sleep(0.1)
            if st["status"] != "completed":
                verdict = f"migration {st['status']}"
                raise StopIteration
            src_lines = [l for l in src.console().splitlines()
                         if l.startswith(f"migwatt-workload: {src.name} ")]
            before = len(dst.progress_lines())
            dst.qmp.cmd("cont")
            alive = wait_progress(dst, 3)
            bad = failure(dst.console())
            ram = st.get("ram", {})
            verdict = (f"{'INTACT' if alive and not bad else 'BROKEN'}"
                       f"\ttotal={st.get('total-time')} ms downtime={st.get('downtime')} ms"
                       f" sent={ram.get('transferred', 0) / 2**20:.0f} MiB"
                       f" syncs={ram.get('dirty-sync-count')}"
                       f" throttle={st.get('cpu-throttle-percentage', 0)} %"
                       f"\tdest progress lines {before} -> {len(dst.progress_lines())}"
                       f"{' ' + bad if bad else ''}")
            # The counters must go on from where the source left them.
            last_src = src_lines[-1] if src_lines else ""
            dst_lines = [l for l in dst.console().splitlines()
                         if l.startswith(f"migwatt-workload: {src.name} ")]
            verdict += f"\n    source last: {last_src}\n    dest last:   {dst_lines[-1] if dst_lines else ''}"
            if not alive or bad:
                ok = False
                print(dst.console()[-2000:], file=sys.stderr)
        except StopIteration:
            ok = False
        finally:
            src.stop()
            dst.stop()
        print(f"{w}\tmem={a.mem}MiB\t{verdict}\tload1={load():.1f}", flush=True)
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("boot", "min-mem", "dirty", "migrate"):
        s = sub.add_parser(name)
        s.add_argument("workloads", nargs="+")
        s.add_argument("--mem", type=int, default=256, help="guest memory (MiB)")
        if name == "min-mem":
            s.add_argument("--sizes", default="48,64,80,96,128,160,192,256,384,512")
        if name == "dirty":
            s.add_argument("--mode", default="page-sampling",
                           choices=["page-sampling", "dirty-bitmap", "dirty-ring"])
            s.add_argument("--windows", default="1,2,4,8", help="calc-time values (s)")
            s.add_argument("--sample-pages", type=int, default=4096,
                           help="page-sampling: pages sampled per GiB (QEMU allows 128-4096)")
            s.add_argument("--settle", type=float, default=3, help="seconds after ready")
    a = p.parse_args()
    fn = {"boot": cmd_boot, "min-mem": cmd_min_mem, "dirty": cmd_dirty, "migrate": cmd_migrate}[a.cmd]
    sys.exit(0 if fn(a) else 1)


if __name__ == "__main__":
    main()
