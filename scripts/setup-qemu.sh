#!/usr/bin/env bash
# Prepare what the real-QEMU migration tests need, idempotently:
#  - Debian packages qemu-system-x86, busybox-static, cpio, gcc + libc6-dev (only when missing);
#  - a tiny guest: Debian's stock kernel (from the linux-image-amd64 .deb) and an initramfs
#    with busybox and `dirtier`, a static C program that writes a set number of pages per
#    second, cycling over a hot region (kernel command line: dirty_pages_per_s=N dirty_hot_mib=M).
# Prints the guest directory (kernel `vmlinuz`, `initramfs.cpio.gz`) on its last line; the
# tests read it from MIGWATT_QEMU_GUEST_DIR.
# Usage: scripts/setup-qemu.sh [GUEST_DIR]   (default: target/qemu-guest)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-"$root/target/qemu-guest"}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# QEMU 10 from bookworm-backports: QEMU 7.2 (bookworm main) loses dirty pages under TCG, so a
# busy guest arrives corrupt (../shared/notes/migration-logs.md). The backports source is
# added the Debian way (a deb822 file beside the existing sources) when missing.
qemu_major() { qemu-system-x86_64 --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\)\..*/\1/p'; }
if [ "$(qemu_major)" = "" ] || [ "$(qemu_major)" -lt 10 ]; then
  export DEBIAN_FRONTEND=noninteractive
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  if ! grep -rqs -- "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    mirror=$(sed -n 's/^URIs:[[:space:]]*\(.*debian\/*\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
    mirror=${mirror:-http://deb.debian.org/debian}
    echo "setup-qemu: adding ${codename}-backports ($mirror)" >&2
    cat > /etc/apt/sources.list.d/backports.sources <<SRC
Types: deb
URIs: $mirror
Suites: ${codename}-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  echo "setup-qemu: installing qemu-system-x86 from ${codename}-backports" >&2
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends -t "${codename}-backports" qemu-system-x86 >&2
  [ "$(qemu_major)" -ge 10 ] || { echo "setup-qemu: QEMU $(qemu_major) installed, need 10 or later" >&2; exit 1; }
fi

need=()
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v gcc >/dev/null || need+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup-qemu: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

# Kernel: the stock Debian kernel, extracted from its .deb (linux-image-amd64 is a
# metapackage; download the versioned package it depends on).
if [ ! -s "$out/vmlinuz" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  if [ -z "$pkg" ]; then
    apt-get update -qq >&2
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  fi
  [ -n "$pkg" ] || { echo "setup-qemu: cannot resolve linux-image-amd64" >&2; exit 1; }
  (cd "$work" && apt-get download "$pkg" >&2)
  dpkg-deb -x "$work"/*.deb "$work/x"
  cp "$(ls "$work"/x/boot/vmlinuz-* | head -n1)" "$out/vmlinuz.tmp"
  mv "$out/vmlinuz.tmp" "$out/vmlinuz"
  echo "$pkg" > "$out/kernel-package"
  rm -rf "$work"
  trap - EXIT
fi

# Initramfs: rebuilt when this script (which holds the dirtier's source) changes.
stamp=$(sha256sum < "$0" | cut -d' ' -f1)
if [ ! -s "$out/initramfs.cpio.gz" ] || [ "$(cat "$out/initramfs.stamp" 2>/dev/null)" != "$stamp" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/root/bin" "$work/root/proc" "$work/root/sys" "$work/root/dev"
  cp "$(dpkg -L busybox-static | grep -m1 '/busybox$')" "$work/root/bin/busybox"
  ln -s busybox "$work/root/bin/sh"
  cat > "$work/dirtier.c" <<'DIRTIER'
/* migwatt test guest workload: write RATE pages per second, cycling sequentially over a hot
 * region of HOT_MIB MiB, so the pages dirtied in an interval T are min(RATE*T, hot pages).
 * Usage: dirtier RATE_PAGES_PER_S HOT_MIB. Ticks every 10 ms; prints a heartbeat every 5 s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
    long rate = argc > 1 ? atol(argv[1]) : 0;
    long hot_mib = argc > 2 ? atol(argv[2]) : 16;
    long page = sysconf(_SC_PAGESIZE);
    long pages = hot_mib * 1024 * 1024 / page;
    if (pages < 1) pages = 1;
    unsigned char *buf = malloc((size_t)pages * page);
    if (!buf) { puts("dirtier: malloc failed"); return 1; }
    /* Touch the hot region once so it is resident and non-zero. */
    for (long p = 0; p < pages; p++) memset(buf + p * page, 1, (size_t)page);
    printf("dirtier: ready rate=%ld pages/s hot=%ld pages\n", rate, pages);
    fflush(stdout);
    const long long tick = 10000000LL;
    long long start = now_ns(), next = start, beat = start;
    long long written = 0;
    long cursor = 0;
    unsigned char v = 2;
    for (;;) {
        next += tick;
        long long due = rate * (next - start) / 1000000000LL;
        for (; written < due; written++) {
            buf[cursor * page + (written % 61) * 64] = v;
            if (++cursor == pages) { cursor = 0; v++; }
        }
        long long n = now_ns();
        if (n - beat > 5000000000LL) {
            printf("dirtier: %lld pages written\n", written);
            fflush(stdout);
            beat = n;
        }
        if (next > n) {
            struct timespec d = { (time_t)((next - n) / 1000000000LL), (long)((next - n) % 1000000000LL) };
            nanosleep(&d, NULL);
        }
    }
}
DIRTIER
  gcc -O2 -static -o "$work/root/bin/dirtier" "$work/dirtier.c"
  cat > "$work/root/init" <<'INIT'
#!/bin/sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
rate=0; hot=16
for a in $(/bin/busybox cat /proc/cmdline); do
  case "$a" in
    dirty_pages_per_s=*) rate=${a#*=} ;;
    dirty_hot_mib=*) hot=${a#*=} ;;
  esac
done
echo "migwatt-guest: dirtying $rate pages/s over $hot MiB"
exec /bin/dirtier "$rate" "$hot"
INIT
  chmod +x "$work/root/init"
  (cd "$work/root" && find . | cpio -o -H newc --quiet | gzip -9) > "$out/initramfs.cpio.gz.tmp"
  mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
  echo "$stamp" > "$out/initramfs.stamp"
  rm -rf "$work"
  trap - EXIT
fi
qemu-system-x86_64 --version | head -n1 >&2
echo "$out"
