# workload: redis
# command: redis-server --save '' --appendonly no, loaded by redis-benchmark -t set,get -r KEYS -d BYTES -c CLIENTS -P PIPELINE -l
# param: redis_keys 10000 keys in the keyspace (preloaded before ready)
# param: redis_value_bytes 1024 bytes per value
# param: redis_clients 4 benchmark connections
# param: redis_pipeline 1 requests per round trip
# packages: redis-server redis-tools
# programs: /usr/bin/redis-server /usr/bin/redis-benchmark /usr/bin/redis-cli
# memory: A key-value store whose SETs replace values of random keys (jemalloc reuses the freed slots), so writes land on random pages of a heap the size of the keyspace, plus small churn in client and reply buffers.
# min_mem_mib: 128
keys=$(mw_int redis_keys 10000)
bytes=$(mw_int redis_value_bytes 1024)
clients=$(mw_int redis_clients 4)
pipeline=$(mw_int redis_pipeline 1)
redis-server --port 6379 --bind 127.0.0.1 --protected-mode no --save '' --appendonly no \
  --daemonize no --loglevel warning --logfile /tmp/redis.log &
mw_wait_for 120 redis-cli ping
# Fill the keyspace (SETs over 3 x KEYS random keys cover ~95 % of it) before ready.
redis-benchmark -q -t set -n $((keys * 3)) -r "$keys" -d "$bytes" -P 16 >/dev/null 2>&1 \
  || mw_fail "preload failed: $(tail -n 3 /tmp/redis.log)"
redis_progress() {
  redis-cli info 2>/dev/null | tr -d '\r' | awk -F: '
    /^total_commands_processed:/ {ops=$2} /^used_memory:/ {mem=$2} /^db0:keys=/ {split($2, a, "[=,]"); k=a[2]}
    END {printf "ops=%s keys=%s used_memory=%d KiB", ops, k, mem / 1024}'
}
mw_ready "keys=$keys value_bytes=$bytes"
mw_progress redis_progress
redis-benchmark -q -t set,get -n 2000000000 -r "$keys" -d "$bytes" -c "$clients" -P "$pipeline" -l >/dev/null 2>&1
mw_fail "redis-benchmark exited: $(tail -n 3 /tmp/redis.log)"
