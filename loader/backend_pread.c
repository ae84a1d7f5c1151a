/* backend_pread.c - a pool of threads doing blocking preads: for kernels or
 * sandboxes without io_uring (and macOS). With LF_IO_FAULT it injects faults
 * into chosen reads, to drive every error path in tests. */
#include "loader_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct pread_state {
    pthread_t *threads;
    int n_threads;
} pread_state;

/* One read, through the fault injector when configured. */
static int64_t do_read(lf_loader *ld, read_op *op) {
    const int fd = lf__op_fd(ld, op);
    uint8_t *buf = op->buf + op->done;
    uint64_t len = op->len - op->done;
    const uint64_t off = op->off + op->done;
    if (ld->p.backend == LF_IO_FAULT) {
        const uint64_t nth = atomic_fetch_add(&ld->reads_issued, 1);
        if (nth >= ld->p.fault_nth && nth < ld->p.fault_nth + ld->p.fault_count) {
            switch (ld->p.fault) {
            case LF_FAULT_EIO: return -EIO;
            case LF_FAULT_EAGAIN: return -EAGAIN;
            case LF_FAULT_SHORT:
                if (len > LF_IO_PAGE) len = (len / 2) / LF_IO_PAGE * LF_IO_PAGE;
                break;
            case LF_FAULT_DELAY: usleep(ld->p.fault_delay_us); break;
            case LF_FAULT_CORRUPT: {
                const ssize_t r = pread(fd, buf, len, (off_t)off);
                if (r > 0) buf[r / 2] ^= 0x40;
                return r < 0 ? -errno : r;
            }
            case LF_FAULT_NONE: break;
            }
        }
    }
    const ssize_t r = pread(fd, buf, len, (off_t)off);
    return r < 0 ? -errno : r;
}

static void *worker(void *arg) {
    lf_loader *ld = arg;
    pthread_mutex_lock(&ld->mu);
    for (;;) {
        read_op *op = lf__next_op(ld);
        if (!op) {
            if (ld->stopping && ld->inflight == 0 && !ld->retry_head) break;
            pthread_cond_wait(&ld->work, &ld->mu);
            continue;
        }
        pthread_mutex_unlock(&ld->mu);
        lf__read_done(ld, op, do_read(ld, op));
        lf__decode_pending(ld);
        pthread_mutex_lock(&ld->mu);
    }
    pthread_cond_broadcast(&ld->work); /* let the others see the stop */
    pthread_mutex_unlock(&ld->mu);
    return NULL;
}

static int pread_start(lf_loader *ld) {
    pread_state *ps = calloc(1, sizeof *ps);
    if (!ps) return -ENOMEM;
    ps->threads = calloc((size_t)ld->p.pread_threads, sizeof *ps->threads);
    if (!ps->threads) {
        free(ps);
        return -ENOMEM;
    }
    ld->backend = ps;
    for (int i = 0; i < ld->p.pread_threads; i++) {
        if (pthread_create(&ps->threads[i], NULL, worker, ld) != 0) break;
        ps->n_threads++;
    }
    if (ps->n_threads == 0) {
        free(ps->threads);
        free(ps);
        ld->backend = NULL;
        return -EAGAIN;
    }
    return 0;
}

static void pread_kick(lf_loader *ld) { pthread_cond_broadcast(&ld->work); }

static void pread_stop(lf_loader *ld) {
    pread_state *ps = ld->backend;
    if (!ps) return;
    pthread_mutex_lock(&ld->mu);
    pthread_cond_broadcast(&ld->work);
    pthread_mutex_unlock(&ld->mu);
    for (int i = 0; i < ps->n_threads; i++) pthread_join(ps->threads[i], NULL);
    free(ps->threads);
    free(ps);
    ld->backend = NULL;
}

const lf_io_ops lf__io_pread_ops = {"pread", pread_start, pread_kick, pread_stop};
