# Helpers for the guest's workload scripts (sourced by /init; busybox sh). MW_NAME is the
# workload's name. Console contract: `migwatt-workload: ready NAME` once, after warm-up, then a
# `migwatt-workload: NAME ...` progress line every second; `migwatt-workload: failed NAME: WHY`
# and a power-off when a workload cannot run (QEMU then exits instead of hanging).

mw_say() { echo "migwatt-workload: $*"; }
mw_ready() { mw_say "ready $MW_NAME${1:+ $1}"; }
mw_fail() {
  mw_say "failed $MW_NAME: $*"
  sync
  poweroff -f
  sleep 100000
}

# mw_int PARAM DEFAULT: the kernel parameter PARAM (a non-negative integer), or DEFAULT.
mw_int() {
  eval "v=\${p_$1:-$2}"
  case "$v" in ''|*[!0-9]*) mw_fail "$1=$v: expected a non-negative integer" ;; esac
  echo "$v"
}

# mw_word PARAM DEFAULT: the kernel parameter PARAM (letters, digits, - and _), or DEFAULT.
mw_word() {
  eval "v=\${p_$1:-$2}"
  case "$v" in ''|*[!A-Za-z0-9_-]*) mw_fail "$1=$v: expected a word of letters, digits, - and _" ;; esac
  echo "$v"
}

# mw_progress FUNCTION: print `migwatt-workload: NAME $(FUNCTION)` every second in the
# background while the workload runs.
mw_progress() {
  (
    while sleep 1; do
      mw_say "$MW_NAME $($1)"
    done
  ) &
}

# mw_cpu_ms COMM: CPU time (user + system, ms) summed over the processes whose command starts
# with COMM (utime and stime are fields 14 and 15 of /proc/PID/stat, in 1/100 s).
mw_cpu_ms() {
  comm=$1
  total=0
  for s in /proc/[0-9]*/stat; do
    read -r line < "$s" 2>/dev/null || continue
    c=${line#*(}
    c=${c%%)*}
    case "$c" in "$comm"*) ;; *) continue ;; esac
    set -- ${line##*) }
    total=$((total + ${12} + ${13}))
  done
  echo "$((total * 10))"
}

# mw_rss_kib COMM: resident memory (KiB) summed over the processes whose command starts with COMM.
mw_rss_kib() {
  total=0
  for d in /proc/[0-9]*; do
    read -r line < "$d/stat" 2>/dev/null || continue
    c=${line#*(}
    c=${c%%)*}
    case "$c" in "$1"*) ;; *) continue ;; esac
    r=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "$d/status" 2>/dev/null)
    total=$((total + ${r:-0}))
  done
  echo "$total"
}

# mw_wait_for SECONDS COMMAND...: retry COMMAND every 0.2 s until it succeeds; fail after SECONDS.
mw_wait_for() {
  limit=$(($1 * 5))
  shift
  i=0
  until "$@" >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -lt "$limit" ] || mw_fail "timed out waiting for: $*"
    sleep 0.2
  done
}
