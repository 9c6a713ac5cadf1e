# workload: zstd
# command: zstd -T1 -LEVEL --long=WINDOW_LOG over an in-memory file made of the guest's own programs and libraries, again and again, each pass a new process
# param: zstd_input_mib 24 size of the input file (MiB, in the guest's RAM file system)
# param: zstd_level 3 compression level (1-19)
# param: zstd_window_log 24 log2 of the match window (--long); memory grows with it
# packages: zstd
# programs: /usr/bin/zstd
# memory: A compressor that allocates its window and match tables anew in each pass and fills them while streaming through a static input, so a pass dirties memory proportional to the window and then frees it, plus the compressed output written to the page cache.
# min_mem_mib: 160
input_mib=$(mw_int zstd_input_mib 24)
level=$(mw_int zstd_level 3)
wlog=$(mw_int zstd_window_log 24)
in=/tmp/zstd.in
# Real data: the guest's own binaries, libraries and scripts, repeated up to the size (cut in
# place: a copy would need twice the memory).
: > "$in"
while [ "$(wc -c < "$in")" -lt $((input_mib * 1048576)) ]; do
  find /usr /bin/dirtier -type f -exec cat {} + >> "$in" 2>/dev/null
done
truncate -s $((input_mib * 1048576)) "$in"
echo 0 > /tmp/zstd.passes
zstd_progress() {
  passes=$(cat /tmp/zstd.passes)
  pid=$(cat /tmp/zstd.pid 2>/dev/null)
  cur=$(sed -n 's/^rchar: //p' "/proc/$pid/io" 2>/dev/null)
  echo "passes=$passes read=$(( (passes * input_mib * 1048576 + ${cur:-0}) / 1048576 )) MiB"
}
mw_ready "input=$input_mib MiB level=$level window_log=$wlog"
mw_progress zstd_progress
n=0
while :; do
  zstd -q -f -T1 "-$level" "--long=$wlog" "$in" -o /tmp/zstd.out.zst &
  echo $! > /tmp/zstd.pid
  wait $! || mw_fail "pass $n failed (exit $?)"
  n=$((n + 1))
  echo "$n" > /tmp/zstd.passes
done
