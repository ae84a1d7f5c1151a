/* loader.c - request planning, batches, staging buffers, decoding, stats. */
#include "loader_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* Staging buffers' bytes, at most, unless four units need more. */
#define STAGING_TOTAL ((uint64_t)64 << 20)

lf_loader_params lf__loader_default_params(void) {
    /* Defaults from this machine's disk: random O_DIRECT reads reach 920 MiB/s
     * at 32 KiB and 1.5 GiB/s at 1 MiB with 32 in flight, so reads are merged
     * up to 1 MiB, across gaps of up to 32 KiB (reading a gap costs less than
     * another request at these sizes). */
    return (lf_loader_params){
        .backend = LF_IO_AUTO,
        .queue_depth = 32,
        .max_read = 1u << 20,
        .max_gap = 32u << 10,
        .coalesce = true,
        .direct = true,
        .max_unit = 1u << 20,
    };
}

static inline uint64_t page_down(uint64_t x) { return x / LF_IO_PAGE * LF_IO_PAGE; }
static inline uint64_t page_up(uint64_t x) { return (x + LF_IO_PAGE - 1) / LF_IO_PAGE * LF_IO_PAGE; }

static int log2_bucket(uint64_t v) {
    int b = 0;
    while (v > 1 && b < LF_HIST_BUCKETS - 1) {
        v >>= 1;
        b++;
    }
    return b;
}

lf_status lf__loader_open(const char *path, const lf_loader_params *params, lf_loader **out, lf_err *err) {
    *out = NULL;
    lf_loader_params p = params ? *params : lf__loader_default_params();
    if (p.queue_depth == 0) p.queue_depth = 32;
    if (p.queue_depth > LF_QD_MAX) p.queue_depth = LF_QD_MAX;
    if (p.max_read < LF_IO_PAGE) p.max_read = LF_IO_PAGE;
    p.max_read = page_up(p.max_read);
    if (p.pread_threads <= 0) p.pread_threads = (int)LF_MIN(p.queue_depth, 64u);
    lf_loader *ld = calloc(1, sizeof *ld);
    if (!ld) return LF_E_NOMEM;
    ld->p = p;
    ld->fd = ld->fd_buffered = -1;
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->work, NULL);
    pthread_cond_init(&ld->done, NULL);
    atomic_init(&ld->reads_issued, 0);
    lf_status st;
    if ((st = lf__open_input(path, 0, &ld->fd_buffered, &ld->file_size, err))) goto fail;
    if (p.direct) {
        lf_err ignored = {{0}};
        if (lf__open_input(path, O_DIRECT, &ld->fd, NULL, &ignored) != LF_OK)
            lf__log(&p.log, LF_LOG_WARN, "O_DIRECT not available (%s): reads go through the page cache", ignored.msg);
    }
    ld->direct = ld->fd >= 0;
    if (!ld->direct) ld->fd = dup(ld->fd_buffered);
    /* staging: one buffer per read in flight, big enough for the largest
     * read, or the largest unit plus the page it may start in */
    ld->staging_size = LF_MAX(p.max_read, page_up(p.max_unit) + LF_IO_PAGE);
    ld->n_staging = p.queue_depth;
    /* units of megabytes (experts) keep the queue full with a few large
     * reads, and page-aligned ones skip staging: a buffer per read in
     * flight would hold queue_depth of them (3 GiB for Mixtral's) */
    if (ld->staging_size > STAGING_TOTAL / ld->n_staging)
        ld->n_staging = (uint32_t)LF_MAX((uint64_t)4, LF_MIN((uint64_t)ld->n_staging, STAGING_TOTAL / ld->staging_size));
    ld->staging = lf__alloc_aligned(ld->staging_size * ld->n_staging, LF_IO_PAGE);
    ld->free_staging = malloc(ld->n_staging * sizeof *ld->free_staging);
    if (!ld->staging || !ld->free_staging) {
        st = lf__err_set(err, LF_E_NOMEM, "%u staging buffers of %" PRIu64 " bytes", ld->n_staging, ld->staging_size);
        goto fail;
    }
    for (uint32_t i = 0; i < ld->n_staging; i++) ld->free_staging[i] = (int)(ld->n_staging - 1 - i);
    ld->n_free = ld->n_staging;
    const lf_io_backend_kind kind = p.backend;
    ld->ops = kind == LF_IO_PREAD || kind == LF_IO_FAULT ? &lf__io_pread_ops : &lf__io_uring_ops;
    /* LLMFLASH_IO=pread makes io_uring "unavailable", as a sysctl or a
     * seccomp filter would: the automatic fallback can then be tested */
    const char *env = getenv("LLMFLASH_IO");
    const bool uring_disabled = kind == LF_IO_AUTO && env && strcmp(env, "pread") == 0;
    int rc = uring_disabled ? -ENOSYS : ld->ops->start(ld);
    if (rc < 0 && kind == LF_IO_AUTO) {
        lf__log(&p.log, LF_LOG_INFO, "io_uring unavailable (%s): using the pread back-end", strerror(-rc));
        ld->ops = &lf__io_pread_ops;
        rc = ld->ops->start(ld);
    }
    if (rc < 0) {
        st = lf__err_set(err, LF_E_IO, "starting the %s back-end: %s", ld->ops->name, strerror(-rc));
        ld->ops = NULL;
        goto fail;
    }
    *out = ld;
    return LF_OK;
fail:
    lf__loader_close(ld);
    return st;
}

static void batch_free(lf_load_batch *b) {
    if (!b) return;
    free(b->reqs);
    free(b->unit_status);
    free(b->order);
    free(b->spans);
    free(b->ops);
    free(b);
}

void lf__loader_close(lf_loader *ld) {
    if (!ld) return;
    pthread_mutex_lock(&ld->mu);
    ld->stopping = true;
    /* spans never issued are cancelled; parts in flight finish normally */
    for (span *s = ld->pending_head; s; s = s->next) {
        lf_load_batch *b = s->batch;
        for (size_t k = 0; k < s->n; k++) b->unit_status[b->order[s->first + k]] = LF_E_INTERRUPTED;
        b->units_left -= s->n;
        if (b->status == LF_OK) {
            b->status = LF_E_INTERRUPTED;
            lf__err_set(&b->err, LF_E_INTERRUPTED, "loader closed before the read was issued");
        }
    }
    ld->pending_head = ld->pending_tail = NULL;
    pthread_cond_broadcast(&ld->work);
    pthread_cond_broadcast(&ld->done);
    pthread_mutex_unlock(&ld->mu);
    if (ld->ops) ld->ops->stop(ld);
    lf__decode_pending(ld); /* spans read but not decoded: nobody waits on them now */
    while (ld->live) {
        lf_load_batch *b = ld->live;
        ld->live = b->next_live;
        batch_free(b);
    }
    if (ld->fd >= 0) close(ld->fd);
    if (ld->fd_buffered >= 0) close(ld->fd_buffered);
    lf__free_aligned(ld->staging);
    free(ld->free_staging);
    pthread_mutex_destroy(&ld->mu);
    pthread_cond_destroy(&ld->work);
    pthread_cond_destroy(&ld->done);
    free(ld);
}

const char *lf__loader_backend_name(const lf_loader *ld) {
    if (!ld || !ld->ops) return "none";
    return ld->p.backend == LF_IO_FAULT ? "fault" : ld->ops->name;
}
bool lf__loader_direct(const lf_loader *ld) { return ld && ld->direct; }
uint32_t lf__loader_queue_depth(const lf_loader *ld) { return ld ? ld->p.queue_depth : 0; }
uint64_t lf__loader_buffer_bytes(const lf_loader *ld) { return ld ? ld->staging_size * ld->n_staging : 0; }

int lf__op_fd(const lf_loader *ld, const read_op *op) {
    const uint64_t off = op->off + op->done, len = op->len - op->done;
    const uintptr_t addr = (uintptr_t)(op->buf + op->done);
    if (ld->direct && ((off | len | addr) & (LF_IO_PAGE - 1)) == 0) return ld->fd;
    return ld->fd_buffered;
}

/* ---- planning --------------------------------------------------------- */

typedef struct sort_key {
    uint64_t offset;
    size_t index;
} sort_key;

static int key_cmp(const void *a, const void *b) {
    const sort_key *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset ? 1 : (x->index > y->index) - (x->index < y->index);
}

/* The span's memory when its units can be read in place: uncompressed, laid
 * out as in the file from a page-aligned start, with room to the last page's
 * end. NULL otherwise (the span goes through a staging buffer). */
static uint8_t *direct_target(const lf_loader *ld, const lf_load_batch *b, const span *s) {
    if (!ld->direct) return NULL;
    const lf_load_req *r0 = &b->reqs[b->order[s->first]];
    uint8_t *base = r0->dst;
    if (r0->offset != s->off || ((uintptr_t)base & (LF_IO_PAGE - 1))) return NULL;
    for (size_t k = 0; k < s->n; k++) {
        const lf_load_req *r = &b->reqs[b->order[s->first + k]];
        if (r->compression != LF_COMPRESS_NONE || r->raw != r->stored) return NULL;
        if ((uint8_t *)r->dst != base + (r->offset - s->off)) return NULL;
        /* the bytes read up to the next unit (padding), or up to the page
         * boundary after the last one, must fall inside this unit's room */
        const uint64_t cap = r->dst_cap ? r->dst_cap : r->raw;
        const uint64_t reach = k + 1 < s->n ? b->reqs[b->order[s->first + k + 1]].offset - r->offset
                                            : s->off + s->len - r->offset;
        if (reach > cap) return NULL;
    }
    return base;
}

lf_status lf__loader_submit(lf_loader *ld, const lf_load_req *reqs, size_t n, lf_load_batch **out, lf_err *err) {
    *out = NULL;
    if (!ld || (!reqs && n)) return LF_E_INVALID_ARG;
    lf_load_batch *b = calloc(1, sizeof *b);
    if (!b) return LF_E_NOMEM;
    b->n = n;
    b->reqs = malloc((n ? n : 1) * sizeof *b->reqs);
    b->unit_status = calloc(n ? n : 1, sizeof *b->unit_status);
    b->order = malloc((n ? n : 1) * sizeof *b->order);
    sort_key *keys = malloc((n ? n : 1) * sizeof *keys);
    /* worst case one span per unit, and ceil(len / max_read) parts per span */
    b->spans = malloc((n ? n : 1) * sizeof *b->spans);
    uint64_t max_parts = 0;
    lf_status st = LF_OK;
    if (!b->reqs || !b->unit_status || !b->order || !keys || !b->spans) {
        st = lf__err_set(err, LF_E_NOMEM, "batch of %zu units", n);
        goto fail;
    }
    if (n) memcpy(b->reqs, reqs, n * sizeof *reqs); /* reqs may be NULL when n is 0 */
    for (size_t i = 0; i < n; i++) {
        const lf_load_req *r = &reqs[i];
        uint64_t end;
        if (r->stored > ld->staging_size - LF_IO_PAGE) {
            st = lf__err_set(err, LF_E_INVALID_ARG, "unit of %u bytes exceeds the loader's max_unit", r->stored);
            goto fail;
        }
        if (r->stored == 0 || !lf__add_u64(r->offset, r->stored, &end) || end > ld->file_size) {
            st = lf__err_set(err, r->stored && end > ld->file_size ? LF_E_TRUNCATED : LF_E_INVALID_ARG,
                             "unit of layer %u, units %" PRIu64 "-%" PRIu64 ": %u bytes at offset %" PRIu64
                             " are not inside the %" PRIu64 "-byte file", r->layer, r->first, r->first + r->count - 1,
                             r->stored, r->offset, ld->file_size);
            goto fail;
        }
        keys[i] = (sort_key){r->offset, i};
    }
    qsort(keys, n, sizeof *keys, key_cmp);
    for (size_t i = 0; i < n; i++) b->order[i] = keys[i].index;
    /* coalesce neighbours into spans */
    for (size_t i = 0; i < n;) {
        const lf_load_req *r = &reqs[b->order[i]];
        span *s = &b->spans[b->n_spans++];
        memset(s, 0, sizeof *s);
        s->batch = b;
        s->staging = -1;
        s->first = i;
        s->off = page_down(r->offset);
        uint64_t end = r->offset + r->stored;
        size_t j = i + 1;
        while (ld->p.coalesce && ld->p.split_parts <= 1 && j < n) {
            const lf_load_req *q = &reqs[b->order[j]];
            const uint64_t q_end = LF_MAX(end, q->offset + q->stored);
            if (page_down(q->offset) > page_up(end) + ld->p.max_gap) break;
            if (page_up(q_end) - s->off > ld->p.max_read) break;
            end = q_end;
            j++;
        }
        s->n = j - i;
        s->len = page_up(end) - s->off;
        max_parts += (s->len + ld->p.max_read - 1) / ld->p.max_read + ld->p.split_parts;
        i = j;
    }
    b->ops = calloc(max_parts ? max_parts : 1, sizeof *b->ops);
    if (!b->ops) {
        st = lf__err_set(err, LF_E_NOMEM, "read table");
        goto fail;
    }
    for (size_t k = 0; k < b->n_spans; k++) {
        span *s = &b->spans[k];
        s->direct = ld->p.split_parts > 1 ? NULL : direct_target(ld, b, s); /* parts may share a page */
        uint64_t need_end = 0;
        for (size_t u = 0; u < s->n; u++) {
            const lf_load_req *r = &reqs[b->order[s->first + u]];
            need_end = LF_MAX(need_end, r->offset + r->stored);
        }
        s->first_op = (uint32_t)b->n_ops;
        if (ld->p.split_parts > 1) { /* ablation: one read per part of the (single) unit */
            const lf_load_req *r = &reqs[b->order[s->first]];
            for (uint32_t q = 0; q < ld->p.split_parts; q++) {
                const uint64_t a = r->offset + q * ld->p.split_bytes;
                const uint64_t z = q + 1 == ld->p.split_parts ? r->offset + r->stored : a + ld->p.split_bytes;
                read_op *op = &b->ops[b->n_ops++];
                op->sp = s;
                op->off = page_down(a);
                op->len = page_up(z) - op->off;
                op->need = LF_MIN(op->len, r->offset + r->stored - op->off);
            }
            s->n_ops = s->ops_left = (uint32_t)b->n_ops - s->first_op;
            continue;
        }
        for (uint64_t o = 0; o < s->len; o += ld->p.max_read) { /* split oversized spans */
            read_op *op = &b->ops[b->n_ops++];
            op->sp = s;
            op->off = s->off + o;
            op->len = LF_MIN(ld->p.max_read, s->len - o);
            op->need = need_end > op->off ? LF_MIN(op->len, need_end - op->off) : 0;
        }
        s->n_ops = s->ops_left = (uint32_t)b->n_ops - s->first_op;
    }
    free(keys);
    keys = NULL;
    b->units_left = n;
    pthread_mutex_lock(&ld->mu);
    if (ld->stopping) {
        pthread_mutex_unlock(&ld->mu);
        st = lf__err_set(err, LF_E_INTERRUPTED, "loader is closing");
        goto fail;
    }
    b->next_live = ld->live;
    ld->live = b;
    for (size_t k = 0; k < b->n_spans; k++) {
        span *s = &b->spans[k];
        s->next = NULL;
        if (ld->pending_tail) ld->pending_tail->next = s;
        else ld->pending_head = s;
        ld->pending_tail = s;
    }
    ld->stats.units += n;
    for (size_t i = 0; i < n; i++) ld->stats.bytes_requested += reqs[i].stored;
    if (n) ld->ops->kick(ld);
    pthread_mutex_unlock(&ld->mu);
    *out = b;
    return LF_OK;
fail:
    free(keys);
    batch_free(b);
    return st;
}

/* ---- issuing and completing ------------------------------------------- */

void lf__inflight_change(lf_loader *ld, const read_op *op, int delta) {
    const uint64_t now = lf__now_ns();
    if (ld->inflight) {
        const uint64_t dt = ld->depth_since_ns ? now - ld->depth_since_ns : 0;
        ld->stats.busy_ns += dt;
        ld->stats.depth_ns += dt * ld->inflight;
    }
    ld->depth_since_ns = now;
    if (delta > 0) {
        ld->inflight++;
        ld->inflight_bytes += op->need;
    } else {
        ld->inflight--;
        ld->inflight_bytes -= op->need;
    }
}

read_op *lf__next_op(lf_loader *ld) {
    read_op *op = ld->retry_head;
    if (op) {
        ld->retry_head = op->next;
    } else {
        span *s = ld->pending_head;
        if (!s) return NULL;
        /* a span's parts are issued back to back; it takes a staging
         * buffer with its first part */
        if (!s->direct && s->staging < 0) {
            if (ld->n_free == 0) return NULL;
            s->staging = ld->free_staging[--ld->n_free];
        }
        lf_load_batch *b = s->batch;
        op = NULL;
        for (uint32_t k = 0; k < s->n_ops; k++) { /* the first part not issued yet */
            read_op *cand = &b->ops[s->first_op + k];
            if (cand->buf == NULL) {
                op = cand;
                break;
            }
        }
        op->buf = s->direct ? s->direct + (op->off - s->off)
                            : ld->staging + (uint64_t)s->staging * ld->staging_size + (op->off - s->off);
        if (s->direct) ld->stats.direct_reads++;
        /* last part of the span: the span leaves the pending queue */
        if (op == &b->ops[s->first_op + s->n_ops - 1]) {
            ld->pending_head = s->next;
            if (!ld->pending_head) ld->pending_tail = NULL;
        }
    }
    op->t_issue = lf__now_ns();
    if (!op->sp->batch->first_issue_ns) op->sp->batch->first_issue_ns = op->t_issue;
    lf__inflight_change(ld, op, +1);
    ld->stats.issues++;
    ld->stats.depth_at_issues += ld->inflight;
    return op;
}

static void fmt_units(const lf_loader *ld, char *buf, size_t cap, const lf_load_req *r) {
    snprintf(buf, cap, "layer %u, %s %" PRIu64 "-%" PRIu64 " at offset %" PRIu64, r->layer,
             ld->p.unit_name ? ld->p.unit_name : "units", r->first, r->first + (r->count ? r->count : 1) - 1, r->offset);
}

/* Checks and decodes every unit of a completed span (mutex not held). */
static void decode_span(lf_loader *ld, span *s, lf_status *unit_st, char (*unit_msg)[400]) {
    lf_load_batch *b = s->batch;
    const uint8_t *base = s->direct ? s->direct : ld->staging + (uint64_t)s->staging * ld->staging_size;
    for (size_t k = 0; k < s->n; k++) {
        const lf_load_req *r = &b->reqs[b->order[s->first + k]];
        char who[128] = ""; /* formatted only on failure: this runs per unit */
        unit_st[k] = LF_OK;
        if (s->status != LF_OK) {
            fmt_units(ld, who, sizeof who, r);
            unit_st[k] = s->status;
            snprintf(unit_msg[k], sizeof unit_msg[k], "read of %s: %s", who, s->errmsg);
            continue;
        }
        const uint8_t *src = base + (r->offset - s->off);
        if (r->verify && lf__checksum64(src, r->stored) != r->checksum) {
            fmt_units(ld, who, sizeof who, r);
            unit_st[k] = LF_E_CORRUPT;
            snprintf(unit_msg[k], sizeof unit_msg[k], "%s fails its checksum", who);
            continue;
        }
        if (s->direct) continue; /* already in place */
        lf_err e = {{0}};
        const lf_status st = lf__codec_decompress(r->compression, src, r->stored, r->dst, r->raw, &e);
        if (st) {
            fmt_units(ld, who, sizeof who, r);
            unit_st[k] = st;
            snprintf(unit_msg[k], sizeof unit_msg[k], "%s: %.200s", who, e.msg);
        }
    }
}

static void finish_span(lf_loader *ld, span *s, bool by_waiter) {
    lf_load_batch *b = s->batch;
    /* once units_left reaches 0 a waiter may free the batch and this span:
     * nothing of them is touched after the unlock below */
    const size_t n_units = s->n;
    lf_status st_small[64];
    char msg_small[64][400];
    lf_status *unit_st = n_units <= 64 ? st_small : malloc(n_units * sizeof *unit_st);
    char (*unit_msg)[400] = n_units <= 64 ? msg_small : malloc(n_units * sizeof *unit_msg);
    const uint64_t t0 = lf__now_ns();
    if (unit_st && unit_msg) {
        decode_span(ld, s, unit_st, unit_msg);
    }
    const uint64_t t1 = lf__now_ns();
    pthread_mutex_lock(&ld->mu);
    ld->stats.decode_ns += t1 - t0;
    ld->stats.spans_decoded++;
    if (by_waiter) ld->stats.spans_decoded_by_waiters++;
    for (size_t k = 0; k < s->n; k++) {
        const lf_status st = unit_st && unit_msg ? unit_st[k] : LF_E_NOMEM;
        b->unit_status[b->order[s->first + k]] = st;
        if (st != LF_OK) {
            ld->stats.errors++;
            if (b->status == LF_OK) {
                b->status = st;
                lf__err_set(&b->err, st, "%s", unit_msg ? unit_msg[k] : "out of memory decoding");
            }
        }
    }
    if (!s->direct) ld->free_staging[ld->n_free++] = s->staging;
    s->staging = -1;
    b->units_left -= s->n;
    if (b->units_left == 0) {
        b->done_ns = lf__now_ns();
        pthread_cond_broadcast(&ld->done);
    }
    ld->ops->kick(ld); /* a staging buffer is free again */
    pthread_mutex_unlock(&ld->mu);
    if (n_units > 64) {
        free(unit_st);
        free(unit_msg);
    }
}

/* Retries: a part may be reissued this many times (short reads, EAGAIN). */
#define LF_MAX_RETRIES 64

void lf__read_done(lf_loader *ld, read_op *op, int64_t res) {
    bool finished = false;
    /* op is read under the mutex it was issued under: the kernel's ring
     * orders the two threads too, but ThreadSanitizer cannot see that */
    pthread_mutex_lock(&ld->mu);
    span *s = op->sp;
    lf__inflight_change(ld, op, -1);
    const uint64_t us = (lf__now_ns() - op->t_issue) / 1000;
    if (res == -EAGAIN || res == -EINTR || (res >= 0 && op->done + (uint64_t)res < op->need && res > 0)) {
        /* retry the rest: EAGAIN/EINTR, or a short read before EOF */
        if (res > 0) {
            op->done += (uint64_t)res;
            ld->stats.short_reads++;
        }
        ld->stats.retries++;
        if (++op->retries > LF_MAX_RETRIES) {
            s->status = LF_E_IO;
            snprintf(s->errmsg, sizeof s->errmsg, "gave up after %u retries", op->retries - 1);
            finished = --s->ops_left == 0;
        } else {
            op->next = ld->retry_head;
            ld->retry_head = op;
            ld->ops->kick(ld);
        }
    } else {
        ld->stats.reads++;
        s->batch->io_reads++;
        ld->stats.latency_hist[log2_bucket(us ? us : 1)]++;
        if (res < 0) {
            s->status = LF_E_IO;
            snprintf(s->errmsg, sizeof s->errmsg, "%s", strerror((int)-res));
        } else {
            op->done += (uint64_t)res;
            ld->stats.bytes_read += op->done;
            s->batch->io_bytes += op->done;
            ld->stats.size_hist[log2_bucket(op->len)]++;
            ld->stats.size_bytes_hist[log2_bucket(op->len)] += op->done;
            if (op->done < op->need) { /* EOF before the data */
                s->status = LF_E_TRUNCATED;
                snprintf(s->errmsg, sizeof s->errmsg, "file ends after %" PRIu64 " of %" PRIu64 " bytes",
                         op->done, op->need);
            }
        }
        finished = --s->ops_left == 0;
    }
    if (finished) { /* to the decode queue; a waiter may take it */
        s->decode_next = NULL;
        if (ld->decode_tail) ld->decode_tail->decode_next = s;
        else ld->decode_head = s;
        ld->decode_tail = s;
        pthread_cond_broadcast(&ld->done);
    }
    pthread_mutex_unlock(&ld->mu);
}

/* The next span to decode, or NULL (mutex held). */
static span *pop_decode(lf_loader *ld) {
    span *s = ld->decode_head;
    if (s) {
        ld->decode_head = s->decode_next;
        if (!ld->decode_head) ld->decode_tail = NULL;
    }
    return s;
}

void lf__decode_pending(lf_loader *ld) {
    if (ld->p.waiters_decode_only && !ld->stopping) return;
    for (;;) {
        pthread_mutex_lock(&ld->mu);
        span *s = pop_decode(ld);
        pthread_mutex_unlock(&ld->mu);
        if (!s) return;
        finish_span(ld, s, false);
    }
}

lf_status lf__loader_wait(lf_loader *ld, lf_load_batch *b, lf_err *err) {
    return lf__loader_wait_io(ld, b, err, NULL);
}

lf_status lf__loader_wait_io(lf_loader *ld, lf_load_batch *b, lf_err *err, lf_batch_io *io) {
    if (!ld || !b) return LF_E_INVALID_ARG;
    const uint64_t t0 = lf__now_ns();
    pthread_mutex_lock(&ld->mu);
    while (b->units_left > 0) {
        span *s = pop_decode(ld); /* any batch's: decoding beats sleeping */
        if (!s) {
            pthread_cond_wait(&ld->done, &ld->mu);
            continue;
        }
        pthread_mutex_unlock(&ld->mu);
        finish_span(ld, s, true);
        pthread_mutex_lock(&ld->mu);
    }
    ld->stats.wait_ns += lf__now_ns() - t0;
    if (io) {
        io->reads += b->io_reads;
        io->bytes += b->io_bytes;
        io->last = (lf_batch_span){b->first_issue_ns, b->done_ns ? b->done_ns : lf__now_ns(), b->io_reads, b->io_bytes};
    }
    const lf_status st = b->status;
    if (st) lf__err_set(err, st, "%s", b->err.msg);
    /* unlink and free */
    for (lf_load_batch **pp = &ld->live; *pp; pp = &(*pp)->next_live)
        if (*pp == b) {
            *pp = b->next_live;
            break;
        }
    pthread_mutex_unlock(&ld->mu);
    batch_free(b);
    return st;
}

bool lf__loader_done(lf_loader *ld, const lf_load_batch *b) {
    pthread_mutex_lock(&ld->mu);
    const bool done = b->units_left == 0;
    pthread_mutex_unlock(&ld->mu);
    return done;
}

lf_status lf__loader_unit_status(const lf_load_batch *b, size_t i) {
    return b && i < b->n ? b->unit_status[i] : LF_E_INVALID_ARG;
}

void lf__loader_get_stats(lf_loader *ld, lf_loader_stats *out) {
    pthread_mutex_lock(&ld->mu);
    *out = ld->stats;
    pthread_mutex_unlock(&ld->mu);
}

void lf__loader_reset_stats(lf_loader *ld) {
    pthread_mutex_lock(&ld->mu);
    memset(&ld->stats, 0, sizeof ld->stats);
    pthread_mutex_unlock(&ld->mu);
}

double lf__hist_percentile(const uint64_t *hist, int buckets, double pct) {
    uint64_t total = 0;
    for (int i = 0; i < buckets; i++) total += hist[i];
    if (!total) return 0.0;
    const double target = pct / 100.0 * (double)total;
    double cum = 0.0;
    for (int i = 0; i < buckets; i++) {
        if (cum + (double)hist[i] >= target && hist[i]) {
            /* bucket i holds [2^i, 2^(i+1)): interpolate geometrically */
            const double frac = (target - cum) / (double)hist[i];
            return (double)(1ull << i) * (1.0 + frac);
        }
        cum += (double)hist[i];
    }
    return (double)(1ull << (buckets - 1));
}

uint64_t lf__loader_inflight_bytes(lf_loader *ld) {
    pthread_mutex_lock(&ld->mu);
    const uint64_t b = ld->inflight_bytes;
    pthread_mutex_unlock(&ld->mu);
    return b;
}
