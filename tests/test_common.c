/* test_common.c - thread pool, range splitting, RNG, errors. */
#include <criterion/criterion.h>

#include <stdio.h>

#include "../src/common/lf_common.h"

#include <math.h>
#include <stdatomic.h>

typedef struct count_job {
    atomic_int calls;
    atomic_int seen_mask;
    int nth_seen;
} count_job;

static void count_worker(void *ctx, int ith, int nth) {
    count_job *j = ctx;
    atomic_fetch_add(&j->calls, 1);
    atomic_fetch_or(&j->seen_mask, 1 << ith);
    j->nth_seen = nth;
}

Test(common, pool_runs_every_index_once_per_job) {
    for (int n = 1; n <= 5; n++) {
        lf_pool *pool;
        cr_assert_eq(lf__pool_create(n, &pool), LF_OK);
        cr_assert_eq(lf__pool_size(pool), n);
        for (int rep = 0; rep < 300; rep++) {
            count_job job;
            atomic_init(&job.calls, 0);
            atomic_init(&job.seen_mask, 0);
            lf__pool_run(pool, count_worker, &job);
            cr_assert_eq(atomic_load(&job.calls), n);
            cr_assert_eq(atomic_load(&job.seen_mask), (1 << n) - 1);
            cr_assert_eq(job.nth_seen, n);
        }
        lf__pool_destroy(pool);
    }
    lf__pool_destroy(NULL);
}

Test(common, split_range_partitions_exactly) {
    for (uint64_t n = 0; n < 300; n += 7)
        for (int nth = 1; nth <= 6; nth++)
            for (uint64_t grain = 1; grain <= 32; grain *= 4) {
                uint64_t next = 0;
                for (int i = 0; i < nth; i++) {
                    uint64_t b, e;
                    lf__split_range(n, i, nth, grain, &b, &e);
                    cr_assert_eq(b, next, "n=%lu nth=%d grain=%lu", (unsigned long)n, nth, (unsigned long)grain);
                    cr_assert(e >= b);
                    if (e < n) cr_assert_eq(e % grain, 0);
                    next = e;
                }
                cr_assert_eq(next, n);
            }
}

Test(common, rng_is_seeded_and_bounded) {
    lf_rng a, b;
    lf__rng_seed(&a, 7);
    lf__rng_seed(&b, 7);
    double sum = 0.0, sq = 0.0;
    for (int i = 0; i < 100000; i++) {
        const float u = lf__rng_uniform(&a);
        cr_assert(u >= 0.0f && u < 1.0f);
        cr_assert_eq(lf__rng_next(&b) >> 40, (uint64_t)(u * 16777216.0f));
        const float g = lf__rng_normal(&a);
        lf__rng_next(&b);
        sum += g;
        sq += g * g;
    }
    cr_assert(fabs(sum / 100000) < 0.02, "mean %g", sum / 100000);
    cr_assert(fabs(sq / 100000 - 1.0) < 0.03, "variance %g", sq / 100000);
}

Test(common, errors_have_names_and_details) {
    cr_assert(strstr(lf_strerror(LF_E_GGUF_OVERLAP), "overlap"));
    cr_assert_not_null(lf_strerror((lf_status)-999));
    lf_err e;
    cr_assert_eq(lf__err_set(&e, LF_E_IO, "read %d", 5), LF_E_IO);
    cr_assert_str_eq(e.msg, "read 5");
    char buf[4];
    lf__err_copy_out(&e, buf, sizeof buf);
    cr_assert_str_eq(buf, "rea");
}

Test(common, memory_bandwidth_is_positive) {
    const double bw = lf_memory_read_bandwidth(1, 64 << 20);
    cr_assert(bw > 1e8, "%g bytes/s", bw);
}

Test(common, err_set_may_quote_its_own_message) {
    /* "writing X: %s", err.msg - formatting a message into itself was
     * undefined (synth's disk-full path did it) */
    lf_err e = {{0}};
    lf__err_set(&e, LF_E_IO, "No space left on device");
    cr_assert_eq(lf__err_set(&e, LF_E_IO, "writing tensor '%s' to %s: %s", "blk.0.ffn_up.weight", "/x.gguf", e.msg), LF_E_IO);
    cr_assert_str_eq(e.msg, "writing tensor 'blk.0.ffn_up.weight' to /x.gguf: No space left on device");
}

/* The version is written once, in the header: the library agrees with it. */
Test(common, version_matches_the_header) {
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", LF_VERSION_MAJOR, LF_VERSION_MINOR, LF_VERSION_PATCH);
    cr_assert_str_eq(lf_version(), want);
    cr_assert_eq(lf_version_number(), (unsigned)LF_VERSION_NUMBER);
    cr_assert_eq(lf_version_number(), (unsigned)(LF_VERSION_MAJOR * 10000 + LF_VERSION_MINOR * 100 + LF_VERSION_PATCH));
}
