/* membw.c - DRAM read bandwidth, the limit of single-token generation. */
#include "lf_common.h"

#include <stdlib.h>

typedef struct membw_job {
    const uint64_t *buf;
    uint64_t n;          /* words */
    uint64_t sums[64];   /* one per thread, keeps the reads alive */
} membw_job;

static void membw_worker(void *ctx, int ith, int nth) {
    membw_job *j = ctx;
    uint64_t b, e;
    lf__split_range(j->n, ith, nth, 4096, &b, &e);
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (uint64_t i = b; i + 4 <= e; i += 4) {
        s0 += j->buf[i];
        s1 += j->buf[i + 1];
        s2 += j->buf[i + 2];
        s3 += j->buf[i + 3];
    }
    j->sums[ith % 64] = s0 + s1 + s2 + s3;
}

double lf_memory_read_bandwidth(int n_threads, uint64_t bytes) {
    if (n_threads <= 0) n_threads = lf__cpu_count();
    if (n_threads > LF_THREADS_PER_CORE_MAX * lf__cpu_count() || bytes > lf__memory_available()) return 0.0;
    bytes = LF_MAX(bytes, (uint64_t)64 << 20);
    const uint64_t n = bytes / 8;
    uint64_t *buf = lf__alloc_aligned(n * 8, 4096);
    lf_pool *pool = NULL;
    if (!buf || lf__pool_create(n_threads, &pool)) {
        lf__free_aligned(buf);
        return 0.0;
    }
    for (uint64_t i = 0; i < n; i++) buf[i] = i; /* touch every page */
    membw_job job = {.buf = buf, .n = n};
    lf__pool_run(pool, membw_worker, &job); /* warm-up */
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
        const uint64_t t0 = lf__now_ns();
        lf__pool_run(pool, membw_worker, &job);
        const double s = (double)(lf__now_ns() - t0) / 1e9;
        if (s > 0 && (double)bytes / s > best) best = (double)bytes / s;
    }
    lf__pool_destroy(pool);
    lf__free_aligned(buf);
    return best;
}
