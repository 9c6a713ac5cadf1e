#!/usr/bin/env bash
# Build the migwatt test guest's initramfs and its workload manifest (called by
# scripts/setup-qemu.sh when this folder or that script changed).
#  - busybox (the host's busybox-static) as /bin, the dirtier (dirtier.c, static);
#  - the workloads' programs, taken the Debian way: each workload script's header names its
#    packages (`# packages:`), the files to take (`# programs:`, `# data:`); the packages are
#    fetched with `apt-get download` and unpacked with `dpkg-deb -x` into a staging tree, never
#    installed; the shared libraries they need are found from the ELF files' NEEDED entries in
#    the unpacked packages, fetching the packages' library dependencies until all resolve;
#  - /init (init), /lib/migwatt.sh (lib.sh), /workloads/*.sh, /etc/migwatt/packages.
# The files taken from each Debian package go to one payload, /payload/PACKAGE.cpio.xz, in an
# uncompressed second archive after the gzip one (the kernel unpacks both). /init deletes the
# payloads the chosen workload does not use (/workloads/NAME.packages lists those it does) and
# unpacks the others, so the guest's memory holds one workload's files, the kernel does not
# inflate every program at boot (slow under TCG), and a library shared by several workloads is
# stored once.
# Writes OUT/initramfs.cpio.gz and OUT/workloads.json (each through a temp file and a rename).
# Usage: build-initramfs.sh OUT_DIR
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-initramfs.sh OUT_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log="$work/log"
die() { echo "build-initramfs: $*" >&2; exit 1; }
# Run quietly; on failure show what the command said.
quiet() { "$@" >"$log" 2>&1 || { cat "$log" >&2; die "failed: $*"; }; }
header() { sed -n "s/^# $2: //p" "$1"; }

root="$work/root"
pool="$work/pool"
mkdir -p "$root"/{bin,usr/bin,usr/lib/x86_64-linux-gnu,usr/lib64,usr/lib/migwatt,proc,sys,dev,tmp,etc/migwatt,workloads} \
  "$pool" "$work/debs" "$work/payloads/payload"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$root/usr/lib64/ld-linux-x86-64.so.2"
# Payload trees (unpacked over / at boot), one per package.
pl="$work/payloads"

# --- Debian packages: fetched into $work/debs, unpacked into $pool/NAME -----------------------
declare -A pkg_ver=()
apt_updated=0
# fetch PKG...: download and unpack the packages not yet there; with --optional, packages that
# cannot be downloaded (virtual ones, say) are skipped instead of failing.
fetch() {
  local optional=0 p deb new=()
  if [ "$1" = --optional ]; then optional=1; shift; fi
  for p in "$@"; do [ -n "${pkg_ver[$p]:-}" ] || new+=("$p"); done
  [ ${#new[@]} -gt 0 ] || return 0
  download() { (cd "$work/debs" && apt-get download "$@") >"$log" 2>&1; }
  if ! download "${new[@]}"; then
    # Stale or missing package lists (a fresh machine): update them once and try again.
    if [ "$apt_updated" = 1 ] || { apt_updated=1; quiet apt-get update -qq; ! download "${new[@]}"; }; then
      [ "$optional" = 1 ] || { cat "$log" >&2; die "cannot download ${new[*]}"; }
      for p in "${new[@]}"; do download "$p" || true; done
    fi
  fi
  for p in "${new[@]}"; do
    deb=$(ls "$work/debs/${p}_"*.deb 2>/dev/null | head -n1)
    if [ -z "$deb" ]; then pkg_ver[$p]=none; continue; fi
    quiet dpkg-deb -x "$deb" "$pool/$p"
    pkg_ver[$p]=$(dpkg-deb -f "$deb" Version)
    # Index of the package's shared libraries: SONAME PACKAGE PATH.
    find "$pool/$p" \( -path '*/lib/x86_64-linux-gnu/*' -o -path '*/lib64/*' \) \
      \( -type f -o -type l \) -name '*.so*' -printf "%f $p %p\n" >> "$work/libindex"
  done
}

# lib_deps PKG...: the library packages the packages depend on (first alternative of each).
lib_deps() {
  local p
  for p in "$@"; do
    [ -d "$pool/$p" ] || continue
    { dpkg-deb -f "$work/debs/${p}_"*.deb Depends; dpkg-deb -f "$work/debs/${p}_"*.deb Pre-Depends; } | tr ',' '\n' | sed 's/|.*//; s/(.*//; s/:any//; s/[[:space:]]//g' \
      | grep -E '^(lib|zlib)' || true
  done | sort -u
}

lib_lookup() { [ ! -f "$work/libindex" ] || awk -v s="$1" '$1 == s { print; exit }' "$work/libindex"; }
is_elf() { [ "$(head -c4 "$1" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ]; }
needed() { readelf -d "$1" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'; }

# The real file behind a path in the pool (symlinks in packages may be absolute).
pool_real() {
  local base=$1 path=$2 t i
  for i in 1 2 3 4 5 6 7 8; do
    [ -L "$path" ] || { echo "$path"; return; }
    t=$(readlink "$path")
    case "$t" in /*) path="$base$t" ;; *) path="$(dirname "$path")/$t" ;; esac
  done
  die "symlink loop at $2"
}

# include_elf FILE OWNER: copy the shared libraries FILE (from package OWNER) needs, recursively,
# into the payload, adding their packages to `used`. A library missing from the pool is looked
# for in OWNER's library dependencies, then theirs, and so on.
declare -A used=() seen=()
include_elf() {
  local f=$1 owner=$2 so line p path round frontier
  for so in $(needed "$f"); do
    [ -z "${seen[$so]:-}" ] || continue
    line=$(lib_lookup "$so")
    frontier=$owner
    for round in 1 2 3 4 5 6; do
      [ -z "$line" ] || break
      frontier=$(lib_deps $frontier)
      [ -n "$frontier" ] || break
      # shellcheck disable=SC2086
      fetch --optional $frontier
      line=$(lib_lookup "$so")
    done
    [ -n "$line" ] || die "no package provides $so (needed by ${f#"$pl/"}, from $owner)"
    p=$(echo "$line" | cut -d' ' -f2)
    path=$(echo "$line" | cut -d' ' -f3-)
    seen[$so]=$p
    used[$p]=1
    if [ ! -e "$pl/$p/usr/lib/x86_64-linux-gnu/$so" ]; then
      mkdir -p "$pl/$p/usr/lib/x86_64-linux-gnu"
      cp "$(pool_real "$pool/$p" "$path")" "$pl/$p/usr/lib/x86_64-linux-gnu/$so"
    fi
    include_elf "$pl/$p/usr/lib/x86_64-linux-gnu/$so" "$p"
  done
}

# copy_program WORKLOAD PATH PKG...: copy PATH from the first of the packages that has it, with
# the libraries it needs; a symlink brings its target too (redis-server -> redis-check-rdb,
# which is in another package).
copy_program() {
  local w=$1 prog=$2 p t
  shift 2
  for p in "$@"; do
    [ -e "$pool/$p$prog" ] || [ -L "$pool/$p$prog" ] || continue
    mkdir -p "$pl/$p$(dirname "$prog")"
    cp -a "$pool/$p$prog" "$pl/$p$prog"
    used[$p]=1
    echo "$p ${pkg_ver[$p]}" >> "$work/program-packages"
    if [ -L "$pool/$p$prog" ]; then
      t=$(readlink "$pool/$p$prog")
      case "$t" in /*) ;; *) t="$(dirname "$prog")/$t" ;; esac
      copy_program "$w" "$t" "$@"
    elif is_elf "$pl/$p$prog"; then
      include_elf "$pl/$p$prog" "$p"
    fi
    return 0
  done
  die "$w: none of its packages ($*) has $prog"
}

# --- the base: busybox, dirtier, init --------------------------------------------------------
cp "$(dpkg -L busybox-static | grep -m1 '/busybox$')" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
echo "busybox-static $(dpkg-query -W -f '${Version}' busybox-static)" > "$work/program-packages"
quiet gcc -O2 -Wall -static -o "$root/bin/dirtier" "$src/dirtier.c"
cp "$src/init" "$root/init"
chmod +x "$root/init"
cp "$src/lib.sh" "$root/usr/lib/migwatt.sh"
cp "$src/alloc.py" "$root/usr/lib/migwatt/alloc.py"

# --- workloads ---------------------------------------------------------------------------------
for w in "$src"/workloads/*.sh; do
  name=$(header "$w" workload)
  [ "$name.sh" = "$(basename "$w")" ] || die "$w: its '# workload:' header must be its file name"
  cp "$w" "$root/workloads/$name.sh"
  used=()
  seen=()
  pkgs=$(header "$w" packages)
  # shellcheck disable=SC2086
  [ -z "$pkgs" ] || fetch $pkgs
  for prog in $(header "$w" programs); do
    copy_program "$w" "$prog" $pkgs
  done
  for dir in $(header "$w" data); do
    found=""
    for p in $pkgs; do
      [ -e "$pool/$p$dir" ] || continue
      found=$p
      dest="$pl/$p"
      mkdir -p "$dest$(dirname "$dir")"
      cp -a "$pool/$p$dir" "$dest$dir"
      # Files of the data the workload does not use (`# drop:` globs below the folder).
      read -ra globs <<< "$(header "$w" drop)"
      for g in "${globs[@]}"; do
        find "$dest$dir" -path "$dest$dir/$g" -prune -exec rm -rf {} +
      done
      while IFS= read -r -d '' f; do
        if is_elf "$f"; then include_elf "$f" "$p"; fi
      done < <(find "$dest$dir" -type f -name '*.so*' -print0)
      break
    done
    [ -n "$found" ] || die "$w: none of its packages ($pkgs) has $dir"
    used[$found]=1
    echo "$found ${pkg_ver[$found]}" >> "$work/program-packages"
  done
  # Busybox runs every workload's script.
  used[busybox-static]=1
  pkg_ver[busybox-static]=$(dpkg-query -W -f '${Version}' busybox-static)
  printf '%s\n' "${!used[@]}" | sort > "$work/used.$name"
  # The payloads /init unpacks for this workload.
  for p in $(cat "$work/used.$name"); do [ ! -d "$pl/$p" ] || echo "$p"; done > "$root/workloads/$name.packages"
done
[ -f "$root/workloads/dirtier.sh" ] || die "no dirtier workload (the default)"
sort -u "$work/program-packages" > "$root/etc/migwatt/packages"

# Payloads: xz'd cpio archives (a third smaller than gzip -9; busybox unxz reads them), stored
# in an uncompressed cpio after the gzip'd base. An 8 MiB dictionary: unxz allocates the whole
# dictionary, and preset 9's 64 MiB would not fit a small guest. CRC32 is cheaper to check under TCG than the default CRC64.
for d in "$pl"/*; do
  n=$(basename "$d")
  [ "$n" != payload ] || continue
  (cd "$d" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet | xz -T1 --check=crc32 --lzma2=preset=9,dict=8MiB) > "$pl/payload/$n.cpio.xz"
done
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -9) > "$work/base.cpio.gz"
{
  cat "$work/base.cpio.gz"
  # The kernel reads an uncompressed archive only at a 4-byte boundary; it skips NUL padding.
  head -c $(( (4 - $(stat -c %s "$work/base.cpio.gz") % 4) % 4 )) /dev/zero
  (cd "$work/payloads" && find payload | LC_ALL=C sort | cpio -o -H newc --quiet)
} > "$out/initramfs.cpio.gz.tmp"

# --- the manifest --------------------------------------------------------------------------------
json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
size() { stat -c %s "$1"; }
manifest="$work/workloads.json"
{
  printf '{\n  "kernel_package": %s,\n' "$(json_str "$(cat "$out/kernel-package" 2>/dev/null || echo unknown)")"
  printf '  "initramfs_bytes": %s,\n  "base_bytes": {"compressed": %s, "unpacked": %s},\n' \
    "$(size "$out/initramfs.cpio.gz.tmp")" "$(size "$work/base.cpio.gz")" "$(gzip -dc "$work/base.cpio.gz" | wc -c)"
  printf '  "workloads": ['
  sep=""
  for w in "$src"/workloads/*.sh; do
    name=$(header "$w" workload)
    defaults="workload=$name"
    while read -r pname pdefault _; do defaults="$defaults $pname=$pdefault"; done < <(header "$w" param)
    printf '%s\n    {\n      "name": %s,\n      "command": %s,\n' "$sep" "$(json_str "$name")" "$(json_str "$(header "$w" command)")"
    printf '      "ready_line": %s,\n      "progress_prefix": %s,\n' \
      "$(json_str "migwatt-workload: ready $name")" "$(json_str "migwatt-workload: $name ")"
    printf '      "kernel_command_line": %s,\n' "$(json_str "$defaults")"
    printf '      "kernel_parameters": [\n        {"name": "workload", "default": null, "meaning": %s}' \
      "$(json_str "workload=$name runs this workload$([ "$name" = dirtier ] && echo '; also the default when workload= is absent')")"
    while read -r pname pdefault pmeaning; do
      printf ',\n        {"name": %s, "default": %s, "meaning": %s}' "$(json_str "$pname")" "$(json_str "$pdefault")" "$(json_str "$pmeaning")"
    done < <(header "$w" param)
    printf '\n      ],\n      "packages": ['
    psep=""
    while read -r p; do
      printf '%s\n        {"name": %s, "version": %s}' "$psep" "$(json_str "$p")" "$(json_str "${pkg_ver[$p]}")"
      psep=","
    done < "$work/used.$name"
    printf '\n      ],\n'
    # What /init unpacks for this workload: one payload per package with files in it.
    printf '      "payloads": ['
    psep=""
    while read -r p; do
      printf '%s\n        {"file": %s, "compressed_bytes": %s, "unpacked_bytes": %s}' "$psep" \
        "$(json_str "/payload/$p.cpio.xz")" "$(size "$pl/payload/$p.cpio.xz")" "$(xz -dc "$pl/payload/$p.cpio.xz" | wc -c)"
      psep=","
    done < "$root/workloads/$name.packages"
    printf '\n      ],\n'
    printf '      "memory_behaviour": %s,\n      "min_guest_mem_mib": %s\n    }' \
      "$(json_str "$(header "$w" memory)")" "$(header "$w" min_mem_mib)"
    sep=","
  done
  printf '\n  ]\n}\n'
} > "$manifest"
cp "$manifest" "$out/workloads.json.tmp"
mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
mv "$out/workloads.json.tmp" "$out/workloads.json"
