# workload: dirtier
# command: dirtier RATE HOT_MIB PATTERN BUF_MIB (static C program, scripts/guest/dirtier.c)
# param: dirty_pages_per_s 0 pages written per second, in total
# param: dirty_hot_mib 16 hot set (MiB) that seq and random write to
# param: dirty_pattern seq seq (sequential over the hot set), random (uniform pages of the hot set) or cycle (sequential over the whole buffer)
# param: dirty_buf_mib 0 buffer (MiB) allocated and touched once; 0 = the hot set (cycle: the hot set if 0)
# memory: A fixed number of page writes per second over a fixed region: the dirty set grows at the set rate until it covers the hot set (seq, cycle) or approaches it exponentially (random), and the rest of the buffer stays clean after its first copy.
# min_mem_mib: 112
rate=$(mw_int dirty_pages_per_s 0)
hot=$(mw_int dirty_hot_mib 16)
pattern=$(mw_word dirty_pattern seq)
buf=$(mw_int dirty_buf_mib 0)
echo "migwatt-guest: dirtying $rate pages/s over $hot MiB"
/bin/dirtier "$rate" "$hot" "$pattern" "$buf"
mw_fail "dirtier exited with status $?"
