/* migwatt test guest workload: write RATE pages per second over a buffer of BUF_MIB MiB.
 *   seq    (default) cycle sequentially over the first HOT_MIB MiB (the hot set): the pages
 *          dirtied in an interval T are min(RATE*T, hot pages);
 *   random uniform random pages of the hot set: the dirty set grows as
 *          hot * (1 - exp(-RATE*T/hot)), approaching the hot set but never reaching it in a
 *          finite window;
 *   cycle  cycle sequentially over the whole buffer (hot set = buffer; HOT_MIB is ignored).
 * The whole buffer is touched once at start, so the cold part is resident and non-zero (it is
 * sent once by the first pre-copy round and never again).
 * Usage: dirtier RATE_PAGES_PER_S HOT_MIB [seq|random|cycle [BUF_MIB]]
 * Ticks every 10 ms and catches up after a late tick (a TCG vCPU is often descheduled), so the
 * rate holds on average. Prints `migwatt-workload: dirtier ...` every second and the older
 * `dirtier: N pages written` heartbeat every 5 s. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* xorshift64*: a fast, well-spread generator; the pattern needs uniform pages, not security. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static int usage(const char *why) {
    printf("dirtier: %s; usage: dirtier RATE_PAGES_PER_S HOT_MIB [seq|random|cycle [BUF_MIB]]\n", why);
    return 2;
}

int main(int argc, char **argv) {
    long rate = argc > 1 ? atol(argv[1]) : 0;
    long hot_mib = argc > 2 ? atol(argv[2]) : 16;
    const char *pattern = argc > 3 ? argv[3] : "seq";
    long buf_mib = argc > 4 ? atol(argv[4]) : 0;
    int mode;
    if (strcmp(pattern, "seq") == 0) mode = 0;
    else if (strcmp(pattern, "random") == 0) mode = 1;
    else if (strcmp(pattern, "cycle") == 0) mode = 2;
    else return usage("pattern must be seq, random or cycle");
    if (rate < 0) return usage("RATE_PAGES_PER_S must be >= 0");
    if (hot_mib < 0) return usage("HOT_MIB must be >= 0");
    if (buf_mib <= 0) buf_mib = hot_mib;
    if (buf_mib < hot_mib) return usage("BUF_MIB must be >= HOT_MIB");
    long page = sysconf(_SC_PAGESIZE);
    long buf_pages = buf_mib * 1024 * 1024 / page;
    if (buf_pages < 1) buf_pages = 1;
    long pages = mode == 2 ? buf_pages : hot_mib * 1024 * 1024 / page;
    if (pages < 1) pages = 1;
    unsigned char *buf = malloc((size_t)buf_pages * page);
    if (!buf) { puts("dirtier: malloc failed"); return 1; }
    /* Touch the whole buffer once so it is resident and non-zero. */
    for (long p = 0; p < buf_pages; p++) memset(buf + p * page, 1, (size_t)page);
    printf("dirtier: ready rate=%ld pages/s hot=%ld pages\n", rate, pages);
    printf("migwatt-workload: ready dirtier pattern=%s rate=%ld pages/s hot=%ld pages buffer=%ld pages\n",
           pattern, rate, pages, buf_pages);
    fflush(stdout);
    const long long tick = 10000000LL;
    long long start = now_ns(), next = start, beat = start, progress = start;
    long long written = 0;
    long cursor = 0;
    unsigned char v = 2;
    for (;;) {
        next += tick;
        long long due = rate * (next - start) / 1000000000LL;
        for (; written < due; written++) {
            long p;
            if (mode == 1) {
                p = (long)(rng_next() % (uint64_t)pages);
            } else {
                p = cursor;
                if (++cursor == pages) { cursor = 0; v++; }
            }
            /* A different byte each time round, so a page is really rewritten. */
            buf[p * page + (written % 61) * 64] = (unsigned char)(v + written);
        }
        long long n = now_ns();
        if (n - progress >= 1000000000LL) {
            printf("migwatt-workload: dirtier written=%lld pages elapsed=%.1f s\n", written,
                   (double)(n - start) / 1e9);
            fflush(stdout);
            progress = n;
        }
        if (n - beat > 5000000000LL) {
            printf("dirtier: %lld pages written\n", written);
            fflush(stdout);
            beat = n;
        }
        if (next > n) {
            struct timespec d = { (time_t)((next - n) / 1000000000LL), (long)((next - n) % 1000000000LL) };
            nanosleep(&d, NULL);
        }
    }
}
