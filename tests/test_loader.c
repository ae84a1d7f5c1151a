/* test_loader.c - the async loader: exact bytes at random offsets in every
 * back-end, coalescing, compression and checksums, every error path through
 * the fault-injecting back-end, batches in flight, closing mid-flight. */
#include <criterion/criterion.h>

#include "../loader/loader.h"
#include "test_support.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define FILE_BYTES (24u << 20)

static char path[64];
static uint8_t *content;

static void make_file(void) {
    snprintf(path, sizeof path, "/var/tmp/lf_test_loader_%d.bin", (int)getpid());
    content = malloc(FILE_BYTES);
    lf_rng rng;
    lf__rng_seed(&rng, 1234);
    for (size_t i = 0; i < FILE_BYTES; i += 8) {
        const uint64_t v = lf__rng_next(&rng);
        memcpy(content + i, &v, 8);
    }
    const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, content, FILE_BYTES), (ssize_t)FILE_BYTES);
    close(fd);
}

static void remove_file(void) {
    unlink(path);
    free(content);
}

TestSuite(loader, .init = make_file, .fini = remove_file);

static lf_loader *open_loader(lf_io_backend_kind kind, bool coalesce) {
    lf_loader_params p = lf__loader_default_params();
    p.backend = kind;
    p.coalesce = coalesce;
    p.queue_depth = 8;
    p.max_unit = 256u << 10;
    lf_loader *ld;
    lf_err err = {{0}};
    cr_assert_eq(lf__loader_open(path, &p, &ld, &err), LF_OK, "%s", err.msg);
    return ld;
}

/* n random units of up to max_len bytes, non-overlapping destinations. */
static lf_load_req *random_reqs(size_t n, uint32_t max_len, uint64_t seed, uint8_t **dst_out) {
    lf_rng rng;
    lf__rng_seed(&rng, seed);
    lf_load_req *r = calloc(n, sizeof *r);
    uint8_t *dst = malloc(n * (size_t)max_len);
    for (size_t i = 0; i < n; i++) {
        r[i].stored = r[i].raw = 1 + (uint32_t)(lf__rng_next(&rng) % max_len);
        r[i].offset = lf__rng_next(&rng) % (FILE_BYTES - r[i].stored);
        r[i].dst = dst + i * max_len;
        r[i].checksum = lf__checksum64(content + r[i].offset, r[i].stored);
        r[i].verify = (i % 2) == 0;
        r[i].layer = 1;
        r[i].first = i;
        r[i].count = 1;
    }
    *dst_out = dst;
    return r;
}

static void check_exact(lf_io_backend_kind kind, bool coalesce) {
    lf_loader *ld = open_loader(kind, coalesce);
    for (int round = 0; round < 3; round++) {
        uint8_t *dst;
        const size_t n = 300;
        lf_load_req *r = random_reqs(n, round == 2 ? 200000 : 20000, 77 + round, &dst);
        lf_load_batch *b;
        lf_err err = {{0}};
        cr_assert_eq(lf__loader_submit(ld, r, n, &b, &err), LF_OK, "%s", err.msg);
        cr_assert_eq(lf__loader_wait(ld, b, &err), LF_OK, "%s: %s", lf__loader_backend_name(ld), err.msg);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(memcmp(r[i].dst, content + r[i].offset, r[i].stored), 0, "%s unit %zu at %lu (%u bytes)",
                         lf__loader_backend_name(ld), i, (unsigned long)r[i].offset, r[i].stored);
        free(r);
        free(dst);
    }
    lf_loader_stats st;
    lf__loader_get_stats(ld, &st);
    cr_assert_eq(st.units, 900);
    /* random units overlap; merged, their shared bytes are read once */
    if (!coalesce) cr_assert(st.bytes_read >= st.bytes_requested);
    if (coalesce) cr_assert(st.reads < 900, "coalescing merged neighbours: %lu reads", (unsigned long)st.reads);
    /* the queue's time integrals: busy while reads ran, 1 to 8 deep on average then */
    cr_assert(st.busy_ns > 0, "busy for %lu ns", (unsigned long)st.busy_ns);
    const double depth = (double)st.depth_ns / (double)st.busy_ns;
    cr_assert(depth >= 1.0 && depth <= 8.0, "mean depth while busy %.2f, queue of 8", depth);
    uint64_t by_size = 0;
    for (int b = 0; b < LF_HIST_BUCKETS; b++) by_size += st.size_bytes_hist[b];
    cr_assert_eq(by_size, st.bytes_read, "bytes by read size add up to the bytes read");
    lf__loader_close(ld);
}

Test(loader, uring_exact_bytes) {
    require_uring();
    check_exact(LF_IO_URING, true);
}
Test(loader, uring_exact_bytes_no_coalescing) {
    require_uring();
    check_exact(LF_IO_URING, false);
}
Test(loader, pread_exact_bytes) { check_exact(LF_IO_PREAD, true); }
Test(loader, pread_exact_bytes_no_coalescing) { check_exact(LF_IO_PREAD, false); }

Test(loader, compressed_units_decode) {
    /* write a file of compressed frames and load them back */
    const lf_compression codecs[] = {LF_COMPRESS_LZ4, LF_COMPRESS_ZSTD, LF_COMPRESS_NONE};
    char cpath[80];
    snprintf(cpath, sizeof cpath, "%s.frames", path);
    const int fd = open(cpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const size_t n = 60;
    lf_load_req r[60];
    uint8_t *raw = malloc(n * 8192), *dst = calloc(n, 8192);
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        /* compressible: runs of the random content */
        for (size_t k = 0; k < 8192; k++) raw[i * 8192 + k] = content[i * 64 + k / 16];
        const lf_compression c = codecs[i % 3];
        size_t cap = lf__codec_bound(c, 8192);
        uint8_t *frame = malloc(cap);
        const size_t sz = lf__codec_compress(c, 0, raw + i * 8192, 8192, frame, cap);
        cr_assert(sz > 0);
        cr_assert_eq(pwrite(fd, frame, sz, (off_t)off), (ssize_t)sz);
        r[i] = (lf_load_req){.offset = off, .stored = (uint32_t)sz, .raw = 8192, .checksum = lf__checksum64(frame, sz),
                             .dst = dst + i * 8192, .compression = c, .verify = true, .first = i, .count = 1};
        off += sz + (i % 5) * 100; /* gaps of several sizes */
        free(frame);
    }
    close(fd);
    /* each back-end twice: decoding shared by the I/O threads and the
     * waiter, then by the waiter alone (the I/O threads only read) */
    for (int kind = uring_usable() ? LF_IO_URING : LF_IO_PREAD; kind <= LF_IO_PREAD; kind++)
        for (int waiter_only = 0; waiter_only < 2; waiter_only++) {
            lf_loader_params p = lf__loader_default_params();
            p.backend = (lf_io_backend_kind)kind;
            p.waiters_decode_only = waiter_only;
            p.max_read = 64u << 10; /* several spans */
            lf_loader *ld;
            lf_err err = {{0}};
            cr_assert_eq(lf__loader_open(cpath, &p, &ld, &err), LF_OK, "%s", err.msg);
            memset(dst, 0, n * 8192);
            lf_load_batch *b;
            cr_assert_eq(lf__loader_submit(ld, r, n, &b, &err), LF_OK);
            cr_assert_eq(lf__loader_wait(ld, b, &err), LF_OK, "%s", err.msg);
            cr_assert_eq(memcmp(dst, raw, n * 8192), 0);
            lf_loader_stats st;
            lf__loader_get_stats(ld, &st);
            cr_assert_gt(st.spans_decoded, 1);
            if (waiter_only)
                cr_assert_eq(st.spans_decoded_by_waiters, st.spans_decoded, "%s: the I/O thread decoded",
                             lf__loader_backend_name(ld));
            else
                cr_assert_leq(st.spans_decoded_by_waiters, st.spans_decoded);
            lf__loader_close(ld);
        }
    unlink(cpath);
    free(raw);
    free(dst);
}

static lf_loader *open_faulty(lf_fault_kind f, uint64_t nth, uint32_t count) {
    lf_loader_params p = lf__loader_default_params();
    p.backend = LF_IO_FAULT;
    p.fault = f;
    p.fault_nth = nth;
    p.fault_count = count;
    p.fault_delay_us = 20000;
    p.queue_depth = 4;
    p.pread_threads = 1; /* reads are issued in offset order: the Nth is predictable */
    p.max_gap = 0;
    lf_loader *ld;
    lf_err err = {{0}};
    cr_assert_eq(lf__loader_open(path, &p, &ld, &err), LF_OK, "%s", err.msg);
    return ld;
}

/* 8 units far apart (one read each), 64 KiB each, all verified. */
static void spaced_reqs(lf_load_req *r, uint8_t *dst) {
    for (size_t i = 0; i < 8; i++) {
        r[i] = (lf_load_req){.offset = i * (2u << 20) + 100, .stored = 65536, .raw = 65536, .dst = dst + i * 65536,
                             .verify = true, .layer = 3, .first = 16 * i, .count = 16};
        r[i].checksum = lf__checksum64(content + r[i].offset, 65536);
    }
}

Test(loader, eio_mid_batch_fails_only_its_unit) {
    lf_loader *ld = open_faulty(LF_FAULT_EIO, 3, 1);
    lf_load_req r[8];
    uint8_t *dst = calloc(8, 65536);
    spaced_reqs(r, dst);
    lf_load_batch *b;
    lf_err err = {{0}};
    cr_assert_eq(lf__loader_submit(ld, r, 8, &b, &err), LF_OK);
    /* read unit statuses before wait frees the batch */
    while (!lf__loader_done(ld, b)) usleep(1000);
    int failed = -1;
    for (size_t i = 0; i < 8; i++)
        if (lf__loader_unit_status(b, i) != LF_OK) {
            cr_assert_eq(failed, -1, "only one unit fails");
            failed = (int)i;
            cr_assert_eq(lf__loader_unit_status(b, i), LF_E_IO);
        }
    cr_assert_eq(failed, 3);
    cr_assert_eq(lf__loader_wait(ld, b, &err), LF_E_IO);
    cr_assert(strstr(err.msg, "layer 3, units 48-63") && strstr(err.msg, "offset 6291556") &&
              strstr(err.msg, "Input/output error"), "%s", err.msg);
    for (size_t i = 0; i < 8; i++)
        if ((int)i != failed) cr_assert_eq(memcmp(dst + i * 65536, content + r[i].offset, 65536), 0, "unit %zu", i);
    lf__loader_close(ld);
    free(dst);
}

Test(loader, short_reads_and_eagain_are_retried) {
    const lf_fault_kind kinds[] = {LF_FAULT_SHORT, LF_FAULT_EAGAIN, LF_FAULT_DELAY};
    for (size_t k = 0; k < 3; k++) {
        lf_loader *ld = open_faulty(kinds[k], 1, 3);
        lf_load_req r[8];
        uint8_t *dst = calloc(8, 65536);
        spaced_reqs(r, dst);
        lf_load_batch *b;
        lf_err err = {{0}};
        cr_assert_eq(lf__loader_submit(ld, r, 8, &b, &err), LF_OK);
        cr_assert_eq(lf__loader_wait(ld, b, &err), LF_OK, "fault %zu: %s", k, err.msg);
        for (size_t i = 0; i < 8; i++) cr_assert_eq(memcmp(dst + i * 65536, content + r[i].offset, 65536), 0);
        lf_loader_stats st;
        lf__loader_get_stats(ld, &st);
        if (kinds[k] != LF_FAULT_DELAY) cr_assert(st.retries >= 1, "fault %zu retried", k);
        if (kinds[k] == LF_FAULT_SHORT) cr_assert(st.short_reads >= 1);
        lf__loader_close(ld);
        free(dst);
    }
}

Test(loader, checksum_failure_is_corrupt) {
    lf_loader *ld = open_faulty(LF_FAULT_CORRUPT, 5, 1);
    lf_load_req r[8];
    uint8_t *dst = calloc(8, 65536);
    spaced_reqs(r, dst);
    lf_load_batch *b;
    lf_err err = {{0}};
    cr_assert_eq(lf__loader_submit(ld, r, 8, &b, &err), LF_OK);
    while (!lf__loader_done(ld, b)) usleep(1000);
    for (size_t i = 0; i < 8; i++) cr_assert_eq(lf__loader_unit_status(b, i), i == 5 ? LF_E_CORRUPT : LF_OK);
    cr_assert_eq(lf__loader_wait(ld, b, &err), LF_E_CORRUPT);
    cr_assert(strstr(err.msg, "units 80-95") && strstr(err.msg, "checksum"), "%s", err.msg);
    lf__loader_close(ld);
    free(dst);
}

Test(loader, several_batches_in_flight) {
    lf_loader *ld = open_loader(uring_usable() ? LF_IO_URING : LF_IO_PREAD, true);
    lf_load_batch *b[4];
    lf_load_req *r[4];
    uint8_t *dst[4];
    lf_err err = {{0}};
    for (int k = 0; k < 4; k++) {
        r[k] = random_reqs(100, 50000, 500 + k, &dst[k]);
        cr_assert_eq(lf__loader_submit(ld, r[k], 100, &b[k], &err), LF_OK);
    }
    for (int k = 3; k >= 0; k--) { /* waited in reverse order */
        cr_assert_eq(lf__loader_wait(ld, b[k], &err), LF_OK, "%s", err.msg);
        for (size_t i = 0; i < 100; i++)
            cr_assert_eq(memcmp(r[k][i].dst, content + r[k][i].offset, r[k][i].stored), 0);
        free(r[k]);
        free(dst[k]);
    }
    lf__loader_close(ld);
}

Test(loader, close_with_reads_in_flight) {
    for (int kind = 0; kind < 2; kind++) {
        lf_loader *ld = kind ? open_loader(uring_usable() ? LF_IO_URING : LF_IO_PREAD, false)
                             : open_faulty(LF_FAULT_DELAY, 0, 100);
        uint8_t *dst;
        lf_load_req *r = random_reqs(200, 30000, 9, &dst);
        lf_load_batch *b;
        lf_err err = {{0}};
        cr_assert_eq(lf__loader_submit(ld, r, 200, &b, &err), LF_OK);
        lf__loader_close(ld); /* without waiting: must not crash, hang or leak */
        free(r);
        free(dst);
    }
}

Test(loader, bad_requests_are_rejected) {
    lf_loader *ld = open_loader(LF_IO_PREAD, true);
    uint8_t buf[16];
    lf_load_req r = {.offset = FILE_BYTES - 8, .stored = 16, .raw = 16, .dst = buf, .layer = 2, .first = 7, .count = 1};
    lf_load_batch *b;
    lf_err err = {{0}};
    cr_assert_eq(lf__loader_submit(ld, &r, 1, &b, &err), LF_E_TRUNCATED);
    cr_assert(strstr(err.msg, "layer 2"), "%s", err.msg);
    r.offset = 0;
    r.stored = 0;
    cr_assert_eq(lf__loader_submit(ld, &r, 1, &b, &err), LF_E_INVALID_ARG);
    r.stored = 1u << 30;
    cr_assert_eq(lf__loader_submit(ld, &r, 1, &b, &err), LF_E_INVALID_ARG, "bigger than max_unit");
    cr_assert_eq(lf__loader_submit(ld, NULL, 0, &b, &err), LF_OK, "an empty batch is fine");
    cr_assert_eq(lf__loader_wait(ld, b, &err), LF_OK);
    lf__loader_close(ld);
    lf_loader *none;
    cr_assert_eq(lf__loader_open("/nonexistent", NULL, &none, &err), LF_E_IO);
}

Test(loader, auto_falls_back_to_pread) {
    setenv("LLMFLASH_IO", "pread", 1);
    lf_loader *ld = open_loader(LF_IO_AUTO, true);
    cr_assert_str_eq(lf__loader_backend_name(ld), "pread");
    lf__loader_close(ld);
    unsetenv("LLMFLASH_IO");
    ld = open_loader(LF_IO_AUTO, true);
    if (uring_usable()) cr_assert_str_eq(lf__loader_backend_name(ld), "io_uring");
    lf__loader_close(ld);
}

Test(loader, percentiles) {
    uint64_t h[LF_HIST_BUCKETS] = {0};
    h[4] = 50; /* 16..32 */
    h[10] = 50;
    cr_assert(lf__hist_percentile(h, LF_HIST_BUCKETS, 25) >= 16 && lf__hist_percentile(h, LF_HIST_BUCKETS, 25) < 32);
    cr_assert(lf__hist_percentile(h, LF_HIST_BUCKETS, 99) >= 1024);
}

Test(loader, zero_copy_into_page_aligned_slots) {
    /* units laid out in memory as in the file: read in place, no staging */
    for (int kind = uring_usable() ? LF_IO_URING : LF_IO_PREAD; kind <= LF_IO_PREAD; kind++) {
        lf_loader *ld = open_loader((lf_io_backend_kind)kind, true);
        const size_t n = 64, stride = 8192;
        uint8_t *dst = lf__alloc_aligned(n * stride, 4096);
        memset(dst, 0, n * stride);
        lf_load_req r[64];
        for (size_t i = 0; i < n; i++) {
            const uint64_t off = (1u << 20) + i * stride;
            r[i] = (lf_load_req){.offset = off, .stored = 6912, .raw = 6912, .dst = dst + i * stride,
                                 .dst_cap = (uint32_t)stride, .verify = true, .first = i, .count = 1};
            r[i].checksum = lf__checksum64(content + off, 6912);
        }
        lf_load_batch *b;
        lf_err err = {{0}};
        cr_assert_eq(lf__loader_submit(ld, r, n, &b, &err), LF_OK);
        cr_assert_eq(lf__loader_wait(ld, b, &err), LF_OK, "%s", err.msg);
        for (size_t i = 0; i < n; i++) cr_assert_eq(memcmp(dst + i * stride, content + r[i].offset, 6912), 0);
        lf_loader_stats st;
        lf__loader_get_stats(ld, &st);
        cr_assert(st.direct_reads > 0 && st.direct_reads == st.reads, "%lu of %lu reads direct",
                  (unsigned long)st.direct_reads, (unsigned long)st.reads);
        /* without room for the padding, the loader must not read in place */
        for (size_t i = 0; i < n; i++) r[i].dst_cap = 6912;
        lf__loader_reset_stats(ld);
        cr_assert_eq(lf__loader_submit(ld, r, n, &b, &err), LF_OK);
        cr_assert_eq(lf__loader_wait(ld, b, &err), LF_OK, "%s", err.msg);
        lf__loader_get_stats(ld, &st);
        cr_assert_eq(st.direct_reads, 0);
        for (size_t i = 0; i < n; i++) cr_assert_eq(memcmp(dst + i * stride, content + r[i].offset, 6912), 0);
        lf__free_aligned(dst);
        lf__loader_close(ld);
    }
}
