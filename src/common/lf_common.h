/* lf_common.h - internal helpers shared by every module: error detail,
 * logging, aligned allocation, clocks, fp16 conversion, the thread pool.
 * Depends on nothing but libc and pthreads. */
#ifndef LF_COMMON_H
#define LF_COMMON_H

#include "llmflash.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define LF_ERRMSG_CAP 512
#define LF_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define LF_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LF_MAX(a, b) ((a) > (b) ? (a) : (b))

#if defined(__GNUC__)
#define LF_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define LF_PRINTF(f, a)
#endif

/* Detail message of the last error of one handle. */
typedef struct lf_err {
    char msg[LF_ERRMSG_CAP];
} lf_err;

/* Records a formatted detail and returns status, so callers can write
 * `return lf__err_set(err, LF_E_IO, "read %s: %s", ...)`. err may be NULL. */
lf_status lf__err_set(lf_err *err, lf_status status, const char *fmt, ...) LF_PRINTF(3, 4);
void lf__err_clear(lf_err *err);
/* Copies err's message to a caller's (buf, cap), NUL-terminated. */
void lf__err_copy_out(const lf_err *err, char *buf, size_t cap);

typedef struct lf_logger {
    lf_log_fn fn;
    void *user;
} lf_logger;

void lf__log(const lf_logger *log, lf_log_level level, const char *fmt, ...) LF_PRINTF(3, 4);

/* Aligned allocation (align: power of two >= sizeof(void*)); size rounded up
 * to a multiple of align so O_DIRECT transfers may use the whole buffer. */
void *lf__alloc_aligned(size_t size, size_t align);
/* A block of weights that matrix products stream through (freed with
 * lf__free_aligned). With huge_pages it is aligned for 2 MiB pages and asks
 * the kernel for them (madvise): with 4 KiB pages every page read is a TLB
 * miss. */
void *lf__alloc_weights(size_t size, bool huge_pages);
void lf__free_aligned(void *p);

/* Overflow-checked size arithmetic: return false on overflow. */
static inline int lf__mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline int lf__add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline uint64_t lf__align_up(uint64_t x, uint64_t align) {
    return (x + align - 1) / align * align;
}

/* Monotonic clock. */
uint64_t lf__now_ns(void);
static inline double lf__ns_to_ms(uint64_t ns) { return (double)ns / 1e6; }

/* IEEE half and bfloat16 <-> float, portable (no F16C needed). */
float lf__fp16_to_fp32(uint16_t h);
uint16_t lf__fp32_to_fp16(float f);
static inline float lf__bf16_to_fp32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
uint16_t lf__fp32_to_bf16(float f);

/* Little-endian loads/stores (GGUF is little-endian; so is every target). */
static inline uint16_t lf__load_u16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t lf__load_u32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t lf__load_u64(const void *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* Seeded generator (xoshiro256**): reproducible data for synth and tests. */
typedef struct lf_rng {
    uint64_t s[4];
} lf_rng;
void lf__rng_seed(lf_rng *rng, uint64_t seed);
uint64_t lf__rng_next(lf_rng *rng);
float lf__rng_uniform(lf_rng *rng);            /* [0, 1) */
float lf__rng_normal(lf_rng *rng);             /* mean 0, variance 1 */

/* A small pool of worker threads that runs one data-parallel job at a time.
 * lf__pool_run(pool, fn, ctx) calls fn(ctx, i, n) for i in [0, n) where n is
 * the thread count, the caller running i = 0, and returns when all are done.
 * Workers spin briefly before sleeping, because a token makes hundreds of
 * short jobs and a condition-variable wake-up costs tens of microseconds. */
typedef struct lf_threadpool lf_pool; /* the public lf_threadpool */
typedef lf_parallel_fn lf_pool_fn;
lf_status lf__pool_create(int n_threads, lf_pool **out);
void lf__pool_destroy(lf_pool *pool);
int lf__pool_size(const lf_pool *pool);
void lf__pool_run(lf_pool *pool, lf_pool_fn fn, void *ctx);
/* lf__pool_run for a job of about `work` multiply-adds: one below
 * LF_POOL_MIN_WORK runs on the caller's thread alone (fn(ctx, 0, 1)). */
#define LF_POOL_MIN_WORK (1u << 16)
void lf__pool_run_work(lf_pool *pool, lf_pool_fn fn, void *ctx, uint64_t work);
/* Rows [*begin, *end) of n that thread ith of nth owns (chunks of `grain`). */
void lf__split_range(uint64_t n, int ith, int nth, uint64_t grain, uint64_t *begin, uint64_t *end);

int lf__cpu_count(void);
/* Bytes this process could allocate without swapping: MemAvailable, or less
 * when its memory cgroup (v1 or v2) has less left below its limit. */
uint64_t lf__memory_available(void);
/* More compute threads than this many per core only thrash (a 2-core
 * machine ran 100x slower with 999): refused with LF_E_INVALID_ARG. */
#define LF_THREADS_PER_CORE_MAX 8

/* Opens an input file read-only (plus flags such as O_DIRECT). Accepts only
 * a regular file or a block device, and never blocks in open (a FIFO is
 * refused at once). *size (may be NULL) gets its size. LF_E_IO on failure,
 * with the reason in err. */
lf_status lf__open_input(const char *path, int flags, int *fd_out, uint64_t *size, lf_err *err);
/* A file beside a model: given (copied) if set, else model_path followed by
 * suffix (".predictor", ".routing"). malloc'd; NULL when out of memory. */
char *lf__sidecar_path(const char *model_path, const char *given, const char *suffix);

#endif
