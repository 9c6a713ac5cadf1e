"""migwatt guest workload: a Python program that allocates and frees.

A long-lived cache of LIVE_MIB MiB of objects (dicts holding strings, lists of ints and byte
buffers) where random entries are replaced, plus short-lived garbage every step, and every
PHASE_S seconds a phase change that frees half of the cache and builds it again (an allocation
burst, like a collector's). Imports only built-in modules: the guest has Python's minimal
standard library. Usage: alloc.py LIVE_MIB ENTRY_BYTES PHASE_S
"""

import sys
import time

live_mib, entry_bytes, phase_s = (int(a) for a in sys.argv[1:4])
entry_bytes = max(entry_bytes, 256)
n = max(1, live_mib * 1024 * 1024 // entry_bytes)
state = 0x9E3779B97F4A7C15


def rand(k):
    """xorshift64: uniform-ish integers below k (the random module needs more of the stdlib)."""
    global state
    state ^= (state << 13) & 0xFFFFFFFFFFFFFFFF
    state ^= state >> 7
    state ^= (state << 17) & 0xFFFFFFFFFFFFFFFF
    return state % k


SEED = bytes(range(256)) * 2


def entry(i):
    # About entry_bytes: a byte buffer (distinct per entry, built by slicing: a byte-by-byte
    # generator made start-up slow under TCG), a string and a small list of ints, in one dict.
    k = i & 0xFF
    blob = SEED[k:k + 64] * (entry_bytes // 128)
    return {"id": i, "name": "entry-%d" % i, "blob": blob, "refs": [i, i * 3, i * 7]}


def say(msg):
    sys.stdout.write("migwatt-workload: %s\n" % msg)
    sys.stdout.flush()


cache = [entry(i) for i in range(n)]
say("ready python live=%d MiB entries=%d entry_bytes=%d" % (live_mib, n, entry_bytes))
replaced = garbage = phases = 0
start = last = phase_at = time.monotonic()
while True:
    for _ in range(200):
        i = rand(n)
        cache[i] = entry(i + replaced)
        replaced += 1
    # Short-lived garbage: built, summed and dropped at once.
    tmp = [{"k": k, "v": str(k) * 8} for k in range(500)]
    garbage += len(tmp)
    del tmp
    now = time.monotonic()
    if now - phase_at >= phase_s:
        # Phase change: free every other entry, then build them again.
        for i in range(0, n, 2):
            cache[i] = None
        for i in range(0, n, 2):
            cache[i] = entry(i + replaced)
        replaced += (n + 1) // 2
        phases += 1
        phase_at = now
    if now - last >= 1.0:
        say("python replaced=%d garbage=%d phases=%d elapsed=%.1f s"
            % (replaced, garbage, phases, now - start))
        last = now
