#!/usr/bin/env bash
# Prepare what the real-QEMU migration tests need, idempotently:
#  - Debian packages qemu-system-x86, busybox-static, cpio, gcc + libc6-dev (only when missing);
#  - a tiny guest: Debian's stock kernel (from the linux-image-amd64 .deb) and an initramfs
#    (scripts/guest/build-initramfs.sh) with busybox, `dirtier` (a static C program that writes
#    a set number of pages per second over a hot region: dirty_pages_per_s=N dirty_hot_mib=M)
#    and real programs from Debian packages, one workload chosen by `workload=NAME` on the
#    kernel command line (scripts/guest/README.md; manifest: GUEST_DIR/workloads.json).
# Prints the guest directory (kernel `vmlinuz`, `initramfs.cpio.gz`, `workloads.json`) on its
# last line; the tests read it from MIGWATT_QEMU_GUEST_DIR.
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
command -v xz >/dev/null || need+=(xz-utils)
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

# Initramfs and workload manifest: rebuilt when this script or the guest's files change
# (scripts/guest: its /init, the dirtier's source, the workload scripts; not its docs or the
# host-side measure.py).
guest_src="$root/scripts/guest"
stamp=$( { sha256sum < "$0"; find "$guest_src" -type f ! -name '*.md' ! -name measure.py -print0 \
  | LC_ALL=C sort -z | xargs -0 sha256sum | sed "s| $guest_src/| |"; } | sha256sum | cut -d' ' -f1)
if [ ! -s "$out/initramfs.cpio.gz" ] || [ ! -s "$out/workloads.json" ] \
  || [ "$(cat "$out/initramfs.stamp" 2>/dev/null)" != "$stamp" ]; then
  "$guest_src/build-initramfs.sh" "$out"
  echo "$stamp" > "$out/initramfs.stamp"
fi
qemu-system-x86_64 --version | head -n1 >&2
echo "$out"
