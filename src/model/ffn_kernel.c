/* ffn_kernel.c - the bundle kernel (see ffn_kernel.h). */
#include "ffn_kernel.h"

#include <math.h>
#include <stdlib.h>

uint64_t lf__ffn_kernel_bytes(uint32_t n_embd, uint32_t max_batch, int nth) {
    return ((uint64_t)nth * max_batch * n_embd + (uint64_t)nth * n_embd) * sizeof(float) +
           (uint64_t)max_batch * (n_embd / LF_QK + 1) * sizeof(lf_block_q8a) + max_batch * sizeof(void *);
}

lf_status lf__ffn_kernel_init(lf_ffn_kernel *fk, const lf_kernels *k, const lf_bundle_layout *layout, lf_activation act,
                              uint32_t n_embd, uint32_t max_batch, lf_pool *pool) {
    memset(fk, 0, sizeof *fk);
    fk->k = k;
    fk->layout = *layout;
    fk->act = act;
    fk->n_embd = n_embd;
    fk->max_batch = max_batch ? max_batch : 1;
    fk->pool = pool;
    fk->nth = lf__pool_size(pool);
    fk->acc = malloc((size_t)fk->nth * fk->max_batch * n_embd * sizeof(float));
    fk->scratch = malloc((size_t)fk->nth * n_embd * sizeof(float));
    fk->xq = lf__alloc_aligned((size_t)fk->max_batch * (n_embd / LF_QK + 1) * sizeof(lf_block_q8a), 64);
    fk->x = malloc(fk->max_batch * sizeof *fk->x);
    if (!fk->acc || !fk->scratch || !fk->xq || !fk->x) {
        lf__ffn_kernel_free(fk);
        return LF_E_NOMEM;
    }
    return LF_OK;
}

void lf__ffn_kernel_free(lf_ffn_kernel *fk) {
    free(fk->acc);
    free(fk->scratch);
    lf__free_aligned(fk->xq);
    free(fk->x);
    memset(fk, 0, sizeof *fk);
}

void lf__ffn_kernel_begin(lf_ffn_kernel *fk, const float *x, size_t n) {
    fk->n = n;
    const bool q8a = lf__type_uses_q8a(fk->layout.type);
    const uint64_t blocks = fk->n_embd / LF_QK + 1;
    for (size_t t = 0; t < n; t++) {
        const float *xt = x + t * fk->n_embd;
        if (q8a) {
            fk->k->quantize_q8a(xt, fk->xq + t * blocks, fk->n_embd);
            fk->x[t] = fk->xq + t * blocks;
        } else {
            fk->x[t] = xt;
        }
    }
    /* only the batch's rows: a single token clears n_embd floats per thread, not max_batch times that */
    for (int th = 0; th < fk->nth; th++)
        memset(fk->acc + (uint64_t)th * fk->max_batch * fk->n_embd, 0, n * fk->n_embd * sizeof(float));
}

/* Bytes of the start of each row of the next records asked for ahead: the
 * hardware prefetcher follows a stream once it has started; asking for
 * every line of 8 records filled the core's miss buffers and stalled it
 * (9% of a token in the prefetch instructions). */
#define PREFETCH_ROW_BYTES 256

/* Tokens whose gate and up dots one gathered-rows call computes. */
#define ROWS8_TOKENS 16

typedef struct kernel_job {
    lf_ffn_kernel *fk;
    const uint8_t *const *recs;
    const float *const *w;   /* NULL, or each record's per-token weights */
    size_t n;
} kernel_job;

/* Records in chunks of LF_AXPY_COLS: for each token, the gate and up dots
 * of the chunk go LF_DOT_ROWS rows at a time (one activation load serving
 * them all), then the down columns of its active neurons are added to the
 * token's accumulator in one pass over it. A chunk's records stay in cache
 * for every token of the batch. Per token, records are added in order, as
 * one record at a time would add them. */
static void kernel_worker(void *ctx, int ith, int nth) {
    const kernel_job *j = ctx;
    lf_ffn_kernel *fk = j->fk;
    const lf_bundle_layout *B = &fk->layout;
    const uint32_t d = fk->n_embd;
    float *acc = fk->acc + (uint64_t)ith * fk->max_batch * d, *scratch = fk->scratch + (uint64_t)ith * d;
    uint64_t n0, n1;
    lf__split_range(j->n, ith, nth, 16, &n0, &n1);
    const bool gated = B->n_rows == 3;
    const int per_call = gated ? LF_DOT_ROWS / 2 : LF_DOT_ROWS; /* records per dot_rows call */
    const lf_gemm_rows8_fn rows8 = lf__type_uses_q8a(B->type) ? fk->k->gemm_rows8[B->type] : NULL;
    const uint64_t xs = (uint64_t)(d / LF_QK + 1) * sizeof(lf_block_q8a); /* tokens' q8a blocks apart (begin) */
    /* down columns of low-bit types: 8-bit coefficients, integer block sums */
    const lf_axpy_cols_fn axpy_i8 = fk->k->axpy_cols_i8[B->type];
    for (uint64_t c0 = n0; c0 < n1; c0 += LF_AXPY_COLS) {
        const int m = (int)LF_MIN((uint64_t)LF_AXPY_COLS, n1 - c0);
        const void *rows[LF_AXPY_COLS * 2], *down[LF_AXPY_COLS];
        for (int i = 0; i < m; i++) {
            const uint8_t *rec = j->recs[c0 + i];
            if (gated) {
                rows[2 * i] = rec;
                rows[2 * i + 1] = rec + B->row_bytes;
            } else {
                rows[i] = rec;
            }
            down[i] = rec + (B->n_rows - 1) * B->row_bytes;
        }
        /* the next chunk's records into cache while this one computes: each
         * record is a short stream the hardware prefetcher finds late */
        for (uint64_t i = c0 + m; i < LF_MIN(c0 + m + LF_AXPY_COLS, n1); i++)
            for (uint32_t r = 0; r < B->n_rows; r++)
                for (uint64_t b = 0; b < LF_MIN(B->row_bytes, (uint64_t)PREFETCH_ROW_BYTES); b += 64)
                    __builtin_prefetch(j->recs[i] + r * B->row_bytes + b);
        /* gate and up rows gathered 8 at a time through the x8 kernels (the
         * bits ram mode's repacked weights give), each block unpacked once
         * for up to ROWS8_TOKENS tokens; routed records go token by token,
         * skipping the tokens they are not routed to */
        const void *g8[LF_AXPY_COLS], *u8[LF_AXPY_COLS];
        if (rows8) {
            for (int i = 0; i < LF_AXPY_COLS; i++) {
                const int k = i < m ? i : 0; /* a short chunk repeats its first row */
                g8[i] = gated ? rows[2 * k] : rows[k];
                u8[i] = gated ? rows[2 * k + 1] : NULL;
            }
        }
        float dg[ROWS8_TOKENS][LF_AXPY_COLS], du[ROWS8_TOKENS][LF_AXPY_COLS];
        size_t t_have = 0, t_end = 0; /* tokens [t_have, t_end) have dg/du */
        for (size_t t = 0; t < fk->n; t++) {
            /* weighted records (experts) skip the tokens that do not use them */
            float wt[LF_AXPY_COLS];
            bool any = !j->w;
            for (int i = 0; j->w && i < m; i++) any |= (wt[i] = j->w[c0 + i][t]) != 0.0f;
            if (!any) continue;
            float dots[LF_AXPY_COLS * 2];
            if (rows8) {
                if (t >= t_end) {
                    const int nt = j->w ? 1 : (int)LF_MIN((size_t)ROWS8_TOKENS, fk->n - t);
                    if (gated) rows8(g8, fk->x[t], xs, nt, dg[0], LF_AXPY_COLS, d);
                    rows8(gated ? u8 : g8, fk->x[t], xs, nt, du[0], LF_AXPY_COLS, d);
                    t_have = t;
                    t_end = t + (size_t)nt;
                }
                for (int i = 0; i < m; i++) {
                    if (gated) dots[2 * i] = dg[t - t_have][i];
                    dots[gated ? 2 * i + 1 : i] = du[t - t_have][i];
                }
            } else {
                for (int i = 0; i < m; i += per_call) {
                    const int k = LF_MIN(per_call, m - i);
                    if (gated) lf__dot_rows(fk->k, B->type, rows + 2 * i, 2 * k, fk->x[t], dots + 2 * i, d);
                    else lf__dot_rows(fk->k, B->type, rows + i, k, fk->x[t], dots + i, d);
                }
            }
            const void *cols[LF_AXPY_COLS];
            float h[LF_AXPY_COLS];
            int nc = 0;
            for (int i = 0; i < m; i++) {
                float a = gated ? lf__ffn_activate(fk->act, dots[2 * i], dots[2 * i + 1])
                                : lf__ffn_activate(fk->act, 0.0f, dots[i]);
                if (j->w) a *= wt[i];
                if (a != 0.0f) {
                    cols[nc] = down[i];
                    h[nc++] = a;
                }
            }
            if (nc && axpy_i8) axpy_i8(cols, h, nc, acc + t * d, d);
            else if (nc) lf__axpy_cols(fk->k, B->type, cols, h, nc, acc + t * d, d, scratch);
        }
    }
}

void lf__ffn_kernel_accumulate(lf_ffn_kernel *fk, const uint8_t *const *recs, const float *const *w, size_t n_recs) {
    if (n_recs == 0) return;
    kernel_job job = {fk, recs, w, n_recs};
    lf__pool_run_work(fk->pool, kernel_worker, &job, (uint64_t)n_recs * fk->layout.n_rows * fk->n_embd * fk->n);
}

/* Thread accumulators are added in thread order: results do not depend on
 * scheduling. */
void lf__ffn_kernel_end(lf_ffn_kernel *fk, float *y) {
    const uint32_t d = fk->n_embd;
    memset(y, 0, fk->n * d * sizeof(float));
    for (int th = 0; th < fk->nth; th++)
        for (size_t t = 0; t < fk->n; t++) {
            const float *acc = fk->acc + ((uint64_t)th * fk->max_batch + t) * d;
            float *yt = y + t * d;
            for (uint32_t i = 0; i < d; i++) yt[i] += acc[i];
        }
}
