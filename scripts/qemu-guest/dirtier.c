/* migwatt test guest workload: write RATE pages per second, cycling sequentially over a hot
 * region of HOT_MIB MiB, so the pages dirtied in an interval T are min(RATE*T, hot pages).
 * Usage: dirtier RATE_PAGES_PER_S HOT_MIB. Ticks every 10 ms; prints a heartbeat every 5 s. */
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

int main(int argc, char **argv) {
    long rate = argc > 1 ? atol(argv[1]) : 0;
    long hot_mib = argc > 2 ? atol(argv[2]) : 16;
    long page = sysconf(_SC_PAGESIZE);
    long pages = hot_mib * 1024 * 1024 / page;
    if (pages < 1) pages = 1;
    unsigned char *buf = malloc((size_t)pages * page);
    if (!buf) { puts("dirtier: malloc failed"); return 1; }
    /* Touch the hot region once so it is resident and non-zero. */
    for (long p = 0; p < pages; p++) memset(buf + p * page, 1, (size_t)page);
    printf("dirtier: ready rate=%ld pages/s hot=%ld pages\n", rate, pages);
    fflush(stdout);
    const long long tick = 10000000LL;
    long long start = now_ns(), next = start, beat = start;
    long long written = 0;
    long cursor = 0;
    unsigned char v = 2;
    for (;;) {
        next += tick;
        long long due = rate * (next - start) / 1000000000LL;
        for (; written < due; written++) {
            buf[cursor * page + (written % 61) * 64] = v;
            if (++cursor == pages) { cursor = 0; v++; }
        }
        long long n = now_ns();
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
