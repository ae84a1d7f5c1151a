/* loader.h - the async read engine: turns a list of units to load (neuron
 * records, compressed groups, expert slabs: anything with a file offset, a
 * size and a destination) into a few large, aligned, parallel reads.
 *
 * Depends only on src/common and the codecs beside it; it knows nothing of
 * models. Submission returns at once; an I/O thread keeps up to queue_depth
 * reads in flight. Each completed read joins a decode queue (checksum,
 * decompression, copy into the caller's slots): the I/O thread decodes from
 * it once it has resubmitted, and a caller blocked in lf__loader_wait decodes
 * from it too instead of sleeping, so a compressed or verified batch does not
 * serialise behind the one I/O thread. Several batches may be in flight at once.
 *
 * Back-ends are a table of functions (io_uring, a pread thread pool, and a
 * fault-injecting pread for tests); io_uring is preferred and pread is taken
 * automatically, with a log line, when io_uring cannot be set up. */
#ifndef LF_LOADER_H
#define LF_LOADER_H

#include "codec.h"

#define LF_IO_PAGE 4096

typedef enum lf_io_backend_kind {
    LF_IO_AUTO = 0,     /* io_uring, else pread */
    LF_IO_URING = 1,
    LF_IO_PREAD = 2,
    LF_IO_FAULT = 3,    /* pread with injected faults (tests) */
} lf_io_backend_kind;

typedef enum lf_fault_kind {
    LF_FAULT_NONE = 0,
    LF_FAULT_EIO,       /* the read fails with EIO */
    LF_FAULT_SHORT,     /* the read returns half its bytes (then continues normally) */
    LF_FAULT_EAGAIN,    /* the read fails with EAGAIN once */
    LF_FAULT_DELAY,     /* the read is delayed by delay_us */
    LF_FAULT_CORRUPT,   /* one byte of the data read is flipped */
} lf_fault_kind;

typedef struct lf_loader_params {
    lf_io_backend_kind backend;
    uint32_t queue_depth;    /* reads in flight (default 32) */
    uint64_t max_read;       /* largest read after coalescing (default 1 MiB) */
    uint64_t max_gap;        /* coalesce neighbours at most this far apart (default 32 KiB) */
    bool coalesce;           /* default true */
    bool direct;             /* O_DIRECT (default true; falls back, with a log line) */
    uint64_t max_unit;       /* largest unit's stored bytes (sizes the staging buffers) */
    int pread_threads;       /* pread back-end workers (default queue_depth, at most 64) */
    /* fault injection (LF_IO_FAULT): applies to read number fault_nth
     * (0-based, counting reads issued), fault_count times from there */
    lf_fault_kind fault;
    uint64_t fault_nth;
    uint32_t fault_count;
    uint32_t fault_delay_us;
    bool waiters_decode_only; /* the I/O thread never decodes: only lf__loader_wait's callers (tests) */
    const char *unit_name;   /* in error messages: "neurons", "experts" (default "units") */
    /* Ablation: read each unit as split_parts separate reads of split_bytes
     * each (page-rounded, never merged), as a layout that stores a neuron's
     * gate row, up row and down column in three matrices must. 0: off. */
    uint32_t split_parts;
    uint64_t split_bytes;
    lf_logger log;
} lf_loader_params;

lf_loader_params lf__loader_default_params(void);

/* One unit to load. The loader reads `stored` bytes at `offset`, checks the
 * checksum when verify is set, decodes them with `compression` into `raw`
 * bytes at dst. dst needs no alignment.
 *
 * Zero copy: when uncompressed units are laid out in memory exactly as in
 * the file (page-aligned first offset and dst, dst_i - dst_0 = offset_i -
 * offset_0) and each dst has room up to the next page boundary (dst_cap),
 * the loader reads them straight into dst, with no staging buffer. */
typedef struct lf_load_req {
    uint64_t offset;
    uint32_t stored;
    uint32_t raw;
    uint64_t checksum;
    void *dst;
    uint32_t dst_cap;        /* bytes writable at dst (0: raw) */
    lf_compression compression;
    bool verify;
    /* who it is, for error messages */
    uint32_t layer;
    uint64_t first, count;   /* neurons (or other units) it holds */
} lf_load_req;

typedef struct lf_loader lf_loader;
typedef struct lf_load_batch lf_load_batch;

lf_status lf__loader_open(const char *path, const lf_loader_params *params, lf_loader **out, lf_err *err);
/* Safe with reads in flight: waits for them, cancels what was not issued. */
void lf__loader_close(lf_loader *ld);
const char *lf__loader_backend_name(const lf_loader *ld);
bool lf__loader_direct(const lf_loader *ld);
/* Reads it keeps in flight at most. */
uint32_t lf__loader_queue_depth(const lf_loader *ld);
/* Bytes of staging buffers the loader holds (for memory budgets). */
uint64_t lf__loader_buffer_bytes(const lf_loader *ld);

/* Queues n units. reqs is copied; dst buffers must stay valid until wait
 * returns. Returns at once. */
lf_status lf__loader_submit(lf_loader *ld, const lf_load_req *reqs, size_t n, lf_load_batch **out, lf_err *err);
/* Blocks until every unit of the batch is in place, or returns the first
 * error (LF_E_IO, LF_E_CORRUPT, LF_E_TRUNCATED, LF_E_INTERRUPTED) with the
 * layer, units and file offset in err. A unit whose read failed is never
 * reported as loaded. Frees the batch. */
lf_status lf__loader_wait(lf_loader *ld, lf_load_batch *batch, lf_err *err);
/* Reads the device completed for batches, added up by whoever waited: the
 * loader is shared, so per-caller figures come from here, not the stats. */
typedef struct lf_batch_span {
    uint64_t first_issue_ns, done_ns; /* lf__now_ns() of its first read's issue and its last unit's completion */
    uint64_t reads, bytes;
} lf_batch_span;
typedef struct lf_batch_io {
    uint64_t reads, bytes;
    lf_batch_span last; /* the batch waited for last (0 issue time: it needed no read) */
} lf_batch_io;
/* lf__loader_wait that also adds the batch's reads and bytes to *io (may be NULL). */
lf_status lf__loader_wait_io(lf_loader *ld, lf_load_batch *batch, lf_err *err, lf_batch_io *io);
/* True when the batch has finished (wait will not block). */
bool lf__loader_done(lf_loader *ld, const lf_load_batch *batch);
/* Bytes of the reads in flight now (a trace's counter). Thread-safe. */
uint64_t lf__loader_inflight_bytes(lf_loader *ld);
/* Per-unit outcome after wait: LF_OK or the unit's error. */
lf_status lf__loader_unit_status(const lf_load_batch *batch, size_t i);

#define LF_HIST_BUCKETS 32
#define LF_QD_MAX 4096          /* the deepest queue a loader takes */

typedef struct lf_loader_stats {
    uint64_t units, reads, bytes_requested, bytes_read;
    uint64_t retries, short_reads, errors;
    uint64_t size_hist[LF_HIST_BUCKETS];    /* reads by log2(size) */
    uint64_t size_bytes_hist[LF_HIST_BUCKETS]; /* bytes read by log2(size of their read) */
    uint64_t latency_hist[LF_HIST_BUCKETS]; /* reads by log2(microseconds) */
    uint64_t issues, depth_at_issues;       /* reads issued (retries too), and the reads in flight each saw, summed */
    uint64_t busy_ns;                       /* time with at least one read in flight */
    uint64_t depth_ns;                      /* reads in flight integrated over time (depth_ns / busy_ns: the mean depth while busy) */
    uint64_t wait_ns;                       /* time callers spent in wait */
    uint64_t direct_reads;                  /* reads that went straight into the caller's memory */
    uint64_t decode_ns;                     /* checksum + decompression + copy, all threads */
    uint64_t spans_decoded, spans_decoded_by_waiters; /* read spans decoded, and how many by lf__loader_wait's callers */
} lf_loader_stats;

void lf__loader_get_stats(lf_loader *ld, lf_loader_stats *out);
void lf__loader_reset_stats(lf_loader *ld);
/* Percentile (0-100) of a log2 histogram, interpolated in the bucket. */
double lf__hist_percentile(const uint64_t *hist, int buckets, double pct);

#endif
