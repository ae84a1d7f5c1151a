/* backend_uring.c - io_uring: parts are queued as SQEs and submitted with one
 * io_uring_submit per kick (a batch, not a read); one reaper thread sleeps in
 * io_uring_wait_cqe - no spinning while compute runs - and completes parts.
 * The file and the staging buffers are registered when the kernel allows,
 * so reads skip the per-I/O file lookup and page pinning. */
#include "loader_internal.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <sys/uio.h>

typedef struct uring_state {
    struct io_uring ring;
    pthread_t reaper;
    bool fixed_files;   /* index 0: O_DIRECT fd, 1: buffered fd */
    bool fixed_buffers;
    bool have_thread;
    bool reaping;        /* the reaper is draining completions: kicks wait for it */
    pthread_cond_t idle; /* reaper waits here while nothing is in flight */
} uring_state;

/* Called with the mutex held: turn every issuable part into an SQE. */
static void uring_submit_now(lf_loader *ld) {
    uring_state *us = ld->backend;
    unsigned queued = 0;
    while (ld->inflight < ld->p.queue_depth) {
        read_op *op = lf__next_op(ld);
        if (!op) break;
        /* the SQ has 2x queue_depth entries and we submit every time, so
         * this cannot run dry; if it ever does, retry the part later */
        struct io_uring_sqe *sqe = io_uring_get_sqe(&us->ring);
        if (!sqe) {
            lf__inflight_change(ld, op, -1);
            op->next = ld->retry_head;
            ld->retry_head = op;
            break;
        }
        const int fd = lf__op_fd(ld, op);
        uint8_t *buf = op->buf + op->done;
        const unsigned len = (unsigned)(op->len - op->done);
        const uint64_t off = op->off + op->done;
        const int file = us->fixed_files ? (fd == ld->fd ? 0 : 1) : fd;
        if (us->fixed_buffers && fd == ld->fd && !op->sp->direct) /* registered buffers are the staging ones */
            io_uring_prep_read_fixed(sqe, file, buf, len, off, op->sp->staging);
        else
            io_uring_prep_read(sqe, file, buf, len, off);
        if (us->fixed_files) sqe->flags |= IOSQE_FIXED_FILE;
        io_uring_sqe_set_data(sqe, op);
        queued++;
    }
    if (queued) {
        io_uring_submit(&us->ring);
        pthread_cond_signal(&us->idle);
    }
}

/* Called with the mutex held. While the reaper drains a burst of
 * completions it defers the submission, so a burst costs one
 * io_uring_submit instead of one per completion. */
static void uring_kick(lf_loader *ld) {
    uring_state *us = ld->backend;
    if (us->reaping && pthread_equal(pthread_self(), us->reaper)) return;
    uring_submit_now(ld);
}

static void *reaper(void *arg) {
    lf_loader *ld = arg;
    uring_state *us = ld->backend;
    for (;;) {
        pthread_mutex_lock(&ld->mu);
        while (ld->inflight == 0 && !ld->stopping) pthread_cond_wait(&us->idle, &ld->mu);
        const bool done = ld->inflight == 0 && ld->stopping;
        pthread_mutex_unlock(&ld->mu);
        if (done) return NULL;
        struct io_uring_cqe *cqe;
        const int rc = io_uring_wait_cqe(&us->ring, &cqe);
        if (rc < 0) continue; /* EINTR or transient; parts stay accounted as in flight */
        pthread_mutex_lock(&ld->mu);
        us->reaping = true;
        pthread_mutex_unlock(&ld->mu);
        do { /* drain the burst */
            read_op *op = io_uring_cqe_get_data(cqe);
            const int res = cqe->res;
            io_uring_cqe_seen(&us->ring, cqe);
            lf__read_done(ld, op, res);
        } while (io_uring_peek_cqe(&us->ring, &cqe) == 0 && cqe);
        pthread_mutex_lock(&ld->mu);
        us->reaping = false;
        uring_submit_now(ld);
        pthread_mutex_unlock(&ld->mu);
        lf__decode_pending(ld); /* after resubmitting, so the disk stays busy meanwhile */
    }
}

static int uring_start(lf_loader *ld) {
    uring_state *us = calloc(1, sizeof *us);
    if (!us) return -ENOMEM;
    int rc = io_uring_queue_init(ld->p.queue_depth * 2, &us->ring, 0);
    if (rc < 0) {
        free(us);
        return rc;
    }
    struct io_uring_probe *probe = io_uring_get_probe_ring(&us->ring);
    const bool can_read = probe && io_uring_opcode_supported(probe, IORING_OP_READ);
    const bool can_fixed = probe && io_uring_opcode_supported(probe, IORING_OP_READ_FIXED);
    if (probe) io_uring_free_probe(probe);
    if (!can_read) {
        io_uring_queue_exit(&us->ring);
        free(us);
        return -EOPNOTSUPP;
    }
    const int fds[2] = {ld->fd, ld->fd_buffered};
    us->fixed_files = io_uring_register_files(&us->ring, fds, 2) == 0;
    if (can_fixed && ld->direct) {
        struct iovec *iov = calloc(ld->n_staging, sizeof *iov);
        if (iov) {
            for (uint32_t i = 0; i < ld->n_staging; i++) {
                iov[i].iov_base = ld->staging + (uint64_t)i * ld->staging_size;
                iov[i].iov_len = ld->staging_size;
            }
            /* fails under a low RLIMIT_MEMLOCK: plain reads then */
            us->fixed_buffers = io_uring_register_buffers(&us->ring, iov, ld->n_staging) == 0;
            free(iov);
        }
    }
    pthread_cond_init(&us->idle, NULL);
    ld->backend = us;
    if (pthread_create(&us->reaper, NULL, reaper, ld) != 0) {
        pthread_cond_destroy(&us->idle);
        io_uring_queue_exit(&us->ring);
        free(us);
        ld->backend = NULL;
        return -EAGAIN;
    }
    us->have_thread = true;
    lf__log(&ld->p.log, LF_LOG_DEBUG, "io_uring: depth %u, registered files %s, registered buffers %s",
            ld->p.queue_depth, us->fixed_files ? "yes" : "no", us->fixed_buffers ? "yes" : "no");
    return 0;
}

static void uring_stop(lf_loader *ld) {
    uring_state *us = ld->backend;
    if (!us) return;
    pthread_mutex_lock(&ld->mu);
    pthread_cond_signal(&us->idle);
    pthread_mutex_unlock(&ld->mu);
    if (us->have_thread) pthread_join(us->reaper, NULL);
    pthread_cond_destroy(&us->idle);
    io_uring_queue_exit(&us->ring);
    free(us);
    ld->backend = NULL;
}

const lf_io_ops lf__io_uring_ops = {"io_uring", uring_start, uring_kick, uring_stop};
