/* matmul.c - weights times activation batches (see matmul.h). */
#include "matmul.h"

#include <stdatomic.h>

/* Rows per claim: a multiple of the 32 rows of gemm_x32, long enough runs
 * that the prefetchers stay ahead (7B Q4_0 on the AVX-512 Xeon: 127 ms/token
 * with 64 rows, 121-125 with 128, 123 with 256), small enough that a thread
 * slowed by another process leaves little for the other to wait on. */
#define ROWS_PER_CLAIM 128
/* Tokens per pass over the weights: their activations stay in L2 while the
 * weight rows stream past. */
#define TOKENS_PER_PASS 64

typedef struct matmul_job {
    const lf_weight *w;
    const lf_kernels *k;
    const uint8_t *x;
    uint64_t x_stride;
    int nt;
    float *y;
    uint64_t y_stride;
    atomic_uint_fast64_t next; /* the next claim: (token pass, row chunk) in order */
    uint64_t chunks;           /* row chunks per token pass */
} matmul_job;

static void rows_times_tokens(const matmul_job *j, uint64_t r0, uint64_t r1, int t0, int nt) {
    const lf_weight *w = j->w;
    const uint8_t *x = j->x + (uint64_t)t0 * j->x_stride;
    float *y = j->y + (uint64_t)t0 * j->y_stride;
    uint64_t r = r0;
    if (w->layout == LF_LAYOUT_X8) {
        /* the widest kernel first: 4, 2, then 1 group per call */
        const lf_gemm_x8_fn gemms[3] = {j->k->gemm_x32[w->type], j->k->gemm_x16[w->type], j->k->gemm_x8[w->type]};
        const uint64_t whole = w->rows - w->rows % LF_X8;
        for (int g = 0; g < 3; g++) {
            const uint64_t span = (uint64_t)(4 >> g) * LF_X8;
            if (gemms[g])
                for (; r + span <= r1 && r + span <= whole; r += span)
                    gemms[g]((const uint8_t *)w->data + r * w->row_bytes, x, j->x_stride, nt, y + r, j->y_stride,
                             (int64_t)w->cols);
        }
    }
    /* ggml's rows (mmap mode, float weights, tail rows): LF_DOT_ROWS rows
     * per call, sharing each activation load */
    for (; r < r1; r += LF_DOT_ROWS) {
        const int nr = (int)LF_MIN((uint64_t)LF_DOT_ROWS, r1 - r);
        const void *rows[LF_DOT_ROWS];
        for (int i = 0; i < nr; i++) rows[i] = (const uint8_t *)w->data + (r + i) * w->row_bytes;
        for (int t = 0; t < nt; t++) {
            float out[LF_DOT_ROWS];
            lf__dot_rows(j->k, w->type, rows, nr, x + (uint64_t)t * j->x_stride, out, (int64_t)w->cols);
            for (int i = 0; i < nr; i++) y[(uint64_t)t * j->y_stride + r + i] = out[i];
        }
    }
}

static void matmul_worker(void *ctx, int ith, int nth) {
    (void)ith;
    (void)nth;
    matmul_job *j = ctx;
    const uint64_t passes = ((uint64_t)j->nt + TOKENS_PER_PASS - 1) / TOKENS_PER_PASS;
    for (;;) {
        const uint64_t c = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (c >= passes * j->chunks) return;
        const uint64_t pass = c / j->chunks, chunk = c % j->chunks;
        const int t0 = (int)(pass * TOKENS_PER_PASS);
        const int nt = LF_MIN(j->nt - t0, TOKENS_PER_PASS);
        const uint64_t r0 = chunk * ROWS_PER_CLAIM, r1 = LF_MIN(r0 + ROWS_PER_CLAIM, j->w->rows);
        rows_times_tokens(j, r0, r1, t0, nt);
    }
}

void lf__matmul(lf_pool *pool, const lf_kernels *k, const lf_weight *w, const void *x, uint64_t x_stride, int nt,
                float *y, uint64_t y_stride) {
    matmul_job job = {.w = w, .k = k, .x = x, .x_stride = x_stride, .nt = nt, .y = y, .y_stride = y_stride,
                      .chunks = (w->rows + ROWS_PER_CLAIM - 1) / ROWS_PER_CLAIM};
    atomic_init(&job.next, 0);
    lf__pool_run_work(pool, matmul_worker, &job, w->rows * w->cols * (uint64_t)nt);
}
