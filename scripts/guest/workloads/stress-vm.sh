# workload: stress-vm
# command: stress-ng --vm 1 --vm-bytes MIB --vm-method METHOD --vm-keep --vm-populate
# param: stress_vm_mib 48 buffer the stressor works over (MiB)
# param: stress_vm_method rand-set access pattern, any stress-ng --vm-method (e.g. rand-set, flip, walk-1d, incdec, zero-one, galpat-0, prime-incdec, read64)
# packages: stress-ng
# programs: /usr/bin/stress-ng
# memory: A memory stressor that sweeps its whole buffer as fast as the vCPU allows with the chosen pattern (rand-set: random cache lines; flip, zero-one: sequential rewrites of every page; read64: reads only), so there is no hot set smaller than the buffer and the dirty rate is set by CPU speed.
# min_mem_mib: 192
mib=$(mw_int stress_vm_mib 48)
method=$(mw_word stress_vm_method rand-set)
cd /tmp
stress-ng --vm 1 --vm-bytes "${mib}m" --vm-method "$method" --vm-keep --vm-populate \
  --timeout 0 --quiet > /tmp/stress.log 2>&1 &
# Ready once the stressor's buffer is resident.
stress_resident() { [ "$(mw_rss_kib stress-ng)" -ge $((mib * 1024 * 9 / 10)) ]; }
mw_wait_for 120 stress_resident
stress_progress() { echo "cpu=$(mw_cpu_ms stress-ng) ms rss=$(mw_rss_kib stress-ng) KiB"; }
mw_ready "bytes=$mib MiB method=$method"
mw_progress stress_progress
wait
mw_fail "stress-ng exited: $(tail -n 3 /tmp/stress.log)"
