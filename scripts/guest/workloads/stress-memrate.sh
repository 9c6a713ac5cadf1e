# workload: stress-memrate
# command: stress-ng --memrate 1 --memrate-bytes MIB --memrate-wr-mbs WR [--memrate-rd-mbs RD]
# param: stress_memrate_mib 32 buffer (MiB)
# param: stress_memrate_wr_mbs 8 write rate cap (MB/s) of each write pass
# param: stress_memrate_rd_mbs 0 read rate cap (MB/s) of each read pass; 0 = uncapped, so the write passes take most of the time
# packages: stress-ng
# programs: /usr/bin/stress-ng
# memory: Sequential write passes of several widths (8 to 1024 bits) over one buffer at a capped rate, between faster read passes, so the dirty set grows linearly at about the write cap until it covers the whole buffer (no hot subset), and stops growing during read passes.
# min_mem_mib: 160
mib=$(mw_int stress_memrate_mib 32)
wr=$(mw_int stress_memrate_wr_mbs 8)
rd=$(mw_int stress_memrate_rd_mbs 0)
cd /tmp
rd_cap=""
[ "$rd" = 0 ] || rd_cap="--memrate-rd-mbs $rd"
# shellcheck disable=SC2086
stress-ng --memrate 1 --memrate-bytes "${mib}m" --memrate-wr-mbs "$wr" $rd_cap \
  --timeout 0 --quiet > /tmp/stress.log 2>&1 &
stress_resident() { [ "$(mw_rss_kib stress-ng)" -ge $((mib * 1024 * 9 / 10)) ]; }
mw_wait_for 120 stress_resident
stress_progress() { echo "cpu=$(mw_cpu_ms stress-ng) ms rss=$(mw_rss_kib stress-ng) KiB"; }
mw_ready "bytes=$mib MiB wr=$wr MB/s rd=$rd MB/s (0: uncapped)"
mw_progress stress_progress
wait
mw_fail "stress-ng exited: $(tail -n 3 /tmp/stress.log)"
