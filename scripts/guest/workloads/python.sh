# workload: python
# command: python3.11 -S -u /lib/migwatt/alloc.py LIVE_MIB ENTRY_BYTES PHASE_S (scripts/guest/alloc.py)
# param: python_live_mib 24 long-lived cache (MiB of entries)
# param: python_entry_bytes 2048 bytes per cache entry
# param: python_phase_s 10 seconds between phase changes (free half of the cache, build it again)
# packages: python3.11-minimal libpython3.11-minimal
# programs: /usr/bin/python3.11
# data: /usr/lib/python3.11
# drop: lib-dynload/_ssl.* lib-dynload/_hashlib.* test/* */__pycache__
# memory: An interpreter heap under allocation churn: random cache entries replaced through pymalloc and malloc free lists, short-lived garbage every step, and a burst that frees and rebuilds half of the cache every phase, so the dirty set is spread over the heap and jumps at phase changes.
# min_mem_mib: 128
live=$(mw_int python_live_mib 24)
entry=$(mw_int python_entry_bytes 2048)
phase=$(mw_int python_phase_s 10)
python3.11 -S -u /lib/migwatt/alloc.py "$live" "$entry" "$phase"
mw_fail "python3.11 exited with status $?"
