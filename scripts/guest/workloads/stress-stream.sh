# workload: stress-stream
# command: stress-ng --stream 1 --stream-l3-size L3 (STREAM copy, scale, add and triad over three arrays)
# param: stress_stream_l3_mib 4 assumed L3 size (MiB); stress-ng sizes its arrays from it (4 x L3 each)
# packages: stress-ng
# programs: /usr/bin/stress-ng
# memory: The STREAM kernels: every pass reads two arrays and rewrites the third sequentially, so all three arrays are dirtied over and over at memory bandwidth with no hot subset.
# min_mem_mib: 192
l3=$(mw_int stress_stream_l3_mib 4)
cd /tmp
stress-ng --stream 1 --stream-l3-size "${l3}m" --timeout 0 --quiet > /tmp/stress.log 2>&1 &
# Three arrays of 4 x L3 each.
stress_resident() { [ "$(mw_rss_kib stress-ng)" -ge $((l3 * 12 * 1024 * 9 / 10)) ]; }
mw_wait_for 120 stress_resident
stress_progress() { echo "cpu=$(mw_cpu_ms stress-ng) ms rss=$(mw_rss_kib stress-ng) KiB"; }
mw_ready "l3=$l3 MiB"
mw_progress stress_progress
wait
mw_fail "stress-ng exited: $(tail -n 3 /tmp/stress.log)"
