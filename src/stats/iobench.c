/* iobench.c - random bundle-shaped reads through the loader, to measure a
 * device's bandwidth and latency at a read size and queue depth. Two batches
 * alternate so the queue never drains between them. */
#include "../../loader/loader.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

lf_iobench_params lf_iobench_default_params(void) {
    return (lf_iobench_params){.read_size = 16u << 10, .queue_depth = 32, .seconds = 3.0, .seed = 1};
}

lf_status lf_iobench(const char *path, const lf_iobench_params *params, lf_iobench_result *out, char *errbuf,
                     size_t errcap) {
    lf_err err = {{0}};
    if (!path || !out) return LF_E_INVALID_ARG;
    const lf_iobench_params p = params ? *params : lf_iobench_default_params();
    memset(out, 0, sizeof *out);
    lf_status st = LF_OK;
    if (p.read_size == 0 || p.read_size % 4096 || p.read_size > (64u << 20) || p.queue_depth == 0 || p.seconds <= 0) {
        st = lf__err_set(&err, LF_E_INVALID_ARG, "read size must be a positive multiple of 4096 up to 64 MiB");
        lf__err_copy_out(&err, errbuf, errcap);
        return st;
    }
    lf_loader_params lp = lf__loader_default_params();
    lp.backend = p.backend == LF_IO_BACKEND_URING ? LF_IO_URING : p.backend == LF_IO_BACKEND_PREAD ? LF_IO_PREAD : LF_IO_AUTO;
    lp.queue_depth = p.queue_depth;
    lp.coalesce = p.coalesce;
    lp.max_unit = p.read_size;
    lp.max_read = LF_MAX(lp.max_read, p.read_size);
    lf_loader *ld = NULL;
    uint8_t *dst = NULL;
    lf_load_req *reqs = NULL;
    if ((st = lf__loader_open(path, &lp, &ld, &err))) goto out;
    /* file size through a zero-length probe of the loader is not exposed:
     * ask the filesystem */
    FILE *f = fopen(path, "rb");
    if (!f || fseeko(f, 0, SEEK_END) != 0) {
        if (f) fclose(f);
        st = lf__err_set(&err, LF_E_IO, "cannot size %s", path);
        goto out;
    }
    const uint64_t size = (uint64_t)ftello(f);
    fclose(f);
    const uint64_t slots = size / p.read_size;
    if (slots < 1) {
        st = lf__err_set(&err, LF_E_INVALID_ARG, "%s is smaller than one %" PRIu64 "-byte read", path, p.read_size);
        goto out;
    }
    /* each batch is 4x the queue depth, two batches in flight */
    const size_t per_batch = (size_t)p.queue_depth * 4;
    dst = lf__alloc_aligned(2 * per_batch * p.read_size, 4096);
    reqs = malloc(2 * per_batch * sizeof *reqs);
    if (!dst || !reqs) {
        st = lf__err_set(&err, LF_E_NOMEM, "iobench buffers of %" PRIu64 " bytes", 2 * per_batch * p.read_size);
        goto out;
    }
    lf_rng rng;
    lf__rng_seed(&rng, p.seed);
    lf_load_batch *inflight[2] = {NULL, NULL};
    const uint64_t t0 = lf__now_ns(), limit = t0 + (uint64_t)(p.seconds * 1e9);
    int half = 0;
    uint64_t units = 0;
    for (;;) {
        const bool more = lf__now_ns() < limit;
        if (inflight[half]) {
            st = lf__loader_wait(ld, inflight[half], &err);
            inflight[half] = NULL;
            if (st) goto out;
        }
        if (!more) {
            if (!inflight[half ^ 1]) break;
            half ^= 1;
            continue;
        }
        lf_load_req *r = reqs + half * per_batch;
        for (size_t i = 0; i < per_batch; i++)
            r[i] = (lf_load_req){.offset = (lf__rng_next(&rng) % slots) * p.read_size,
                                 .stored = (uint32_t)p.read_size,
                                 .raw = (uint32_t)p.read_size,
                                 .dst = dst + (half * per_batch + i) * p.read_size};
        if ((st = lf__loader_submit(ld, r, per_batch, &inflight[half], &err))) goto out;
        units += per_batch;
        half ^= 1;
    }
    const double secs = (double)(lf__now_ns() - t0) / 1e9;
    lf_loader_stats s;
    lf__loader_get_stats(ld, &s);
    out->seconds = secs;
    out->reads = s.reads;
    out->bytes = s.bytes_read;
    out->mib_per_s = (double)s.bytes_read / secs / (1024.0 * 1024.0);
    out->iops = (double)s.reads / secs;
    out->lat_p50_us = lf__hist_percentile(s.latency_hist, LF_HIST_BUCKETS, 50);
    out->lat_p90_us = lf__hist_percentile(s.latency_hist, LF_HIST_BUCKETS, 90);
    out->lat_p99_us = lf__hist_percentile(s.latency_hist, LF_HIST_BUCKETS, 99);
    /* reads in flight averaged over the time any was (the depth seen at
     * each issue would undercount the ramp at the start) */
    out->mean_queue_depth = s.busy_ns ? (double)s.depth_ns / (double)s.busy_ns : 0.0;
    snprintf(out->backend, sizeof out->backend, "%s", lf__loader_backend_name(ld));
    out->direct = lf__loader_direct(ld);
    (void)units;
out:
    lf__loader_close(ld);
    lf__free_aligned(dst);
    free(reqs);
    if (st) lf__err_copy_out(&err, errbuf, errcap);
    return st;
}
