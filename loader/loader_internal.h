/* loader_internal.h - what the loader core shares with its back-ends. */
#ifndef LF_LOADER_INTERNAL_H
#define LF_LOADER_INTERNAL_H

#include "loader.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct span span;

/* One read system call's worth of work: part of a span. */
typedef struct read_op {
    span *sp;
    uint64_t off;        /* file offset of the part */
    uint64_t len;        /* bytes asked */
    uint64_t need;       /* bytes that must arrive (the rest may lie past EOF) */
    uint64_t done;       /* bytes arrived */
    uint8_t *buf;        /* where byte 0 of the part goes */
    uint64_t t_issue;
    uint32_t retries;
    struct read_op *next; /* retry queue link */
} read_op;

/* A coalesced range of the file: one staging buffer, one or more parts. */
struct span {
    lf_load_batch *batch;
    uint64_t off, len;   /* page-aligned range */
    int staging;         /* staging buffer index, -1 until issued */
    uint8_t *direct;     /* zero copy: where byte 0 of the span goes, or NULL */
    uint32_t first_op, n_ops, ops_left;
    size_t first, n;     /* units, as indices into batch->order */
    lf_status status;    /* read failure of the whole span */
    char errmsg[160];
    span *next;          /* pending queue link */
    span *decode_next;   /* decode queue link */
};

struct lf_load_batch {
    lf_load_req *reqs;   /* (n) copies */
    lf_status *unit_status;
    size_t *order;       /* (n) unit indices sorted by offset */
    size_t n;
    size_t units_left;
    span *spans;
    size_t n_spans;
    read_op *ops;
    size_t n_ops;
    lf_status status;    /* first error */
    lf_err err;
    uint64_t io_reads, io_bytes; /* completed reads of this batch, for per-caller counters */
    uint64_t first_issue_ns, done_ns; /* its first read's issue, its last unit's completion (traces) */
    lf_load_batch *next_live; /* loader's list of live batches */
};

typedef struct lf_io_ops {
    const char *name;
    /* Sets up the back-end and its thread(s); returns 0 or -errno. */
    int (*start)(lf_loader *ld);
    /* Work was queued (called with the mutex held). */
    void (*kick)(lf_loader *ld);
    /* Finish in-flight reads and join threads (mutex not held). */
    void (*stop)(lf_loader *ld);
} lf_io_ops;

struct lf_loader {
    lf_loader_params p;
    const lf_io_ops *ops;
    void *backend;          /* back-end private state */
    int fd;                 /* O_DIRECT when possible */
    int fd_buffered;        /* for unaligned remainders */
    bool direct;
    uint64_t file_size;
    pthread_mutex_t mu;
    pthread_cond_t work;    /* back-end threads wait here for reads */
    pthread_cond_t done;    /* waiters wait here for batches */
    bool stopping;
    span *pending_head, *pending_tail; /* spans not yet issued */
    read_op *retry_head;    /* parts to issue again (short read, EAGAIN) */
    uint32_t inflight;       /* change it through lf__inflight_change */
    uint64_t inflight_bytes; /* bytes of the reads in flight */
    uint64_t depth_since_ns; /* when inflight last changed */
    uint8_t *staging;       /* (n_staging, staging_size), page-aligned */
    uint64_t staging_size;
    uint32_t n_staging;
    int *free_staging;      /* stack of free indices */
    uint32_t n_free;
    atomic_uint_fast64_t reads_issued; /* fault injection counts these */
    span *decode_head, *decode_tail; /* spans read in full, not yet decoded */
    lf_load_batch *live;
    lf_loader_stats stats;
};

/* Core functions for back-ends. All but lf__read_done need the mutex. */
/* The next part to issue, or NULL (nothing pending, or no staging free). */
/* One read more (+1) or fewer (-1) in flight, with its bytes, keeping the
 * stats' time integrals of the queue. Under ld->mu. */
void lf__inflight_change(lf_loader *ld, const read_op *op, int delta);
read_op *lf__next_op(lf_loader *ld);
/* A part's read returned `res` (bytes, or -errno). Takes the mutex itself.
 * A span whose last part this was joins the decode queue. */
void lf__read_done(lf_loader *ld, read_op *op, int64_t res);
/* Decodes queued spans until the queue is empty (mutex not held). I/O
 * threads call it once they have reaped and resubmitted; callers of
 * lf__loader_wait take spans from the same queue instead of sleeping. */
void lf__decode_pending(lf_loader *ld);
/* Chooses the descriptor for a part's remaining bytes. */
int lf__op_fd(const lf_loader *ld, const read_op *op);

extern const lf_io_ops lf__io_uring_ops;
extern const lf_io_ops lf__io_pread_ops;

#endif
