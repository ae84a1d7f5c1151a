/* lowrank.c - fitting and applying low-rank sparsity predictors (see
 * lowrank.h). Matrix products are cblas_sgemm; the SVD is LAPACK's sgesdd. */
#include "lowrank.h"

#include <cblas.h>
#include <inttypes.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>

lf_status lf__lowrank_alloc(lf_lowrank *p, uint32_t n_in, uint32_t n_out, uint32_t rank) {
    memset(p, 0, sizeof *p);
    if (!n_in || !n_out || !rank) return LF_E_INVALID_ARG;
    p->n_in = n_in;
    p->n_out = n_out;
    p->rank = rank;
    p->A = calloc((size_t)rank * n_in, sizeof *p->A);
    p->B = calloc((size_t)n_out * rank, sizeof *p->B);
    p->b = calloc(n_out, sizeof *p->b);
    if (!p->A || !p->B || !p->b) {
        lf__lowrank_free(p);
        return LF_E_NOMEM;
    }
    return LF_OK;
}

void lf__lowrank_free(lf_lowrank *p) {
    free(p->A);
    free(p->B);
    free(p->b);
    memset(p, 0, sizeof *p);
}

lf_status lf__lowrank_copy(lf_lowrank *dst, const lf_lowrank *src) {
    const lf_status st = lf__lowrank_alloc(dst, src->n_in, src->n_out, src->rank);
    if (st) return st;
    memcpy(dst->A, src->A, (size_t)src->rank * src->n_in * sizeof *dst->A);
    memcpy(dst->B, src->B, (size_t)src->n_out * src->rank * sizeof *dst->B);
    memcpy(dst->b, src->b, src->n_out * sizeof *dst->b);
    dst->threshold = src->threshold;
    return LF_OK;
}

uint64_t lf__lowrank_bytes(uint32_t n_in, uint32_t n_out, uint32_t rank) {
    return ((uint64_t)rank * n_in + (uint64_t)n_out * rank + n_out) * sizeof(float);
}

/* Orthonormalises the columns of Y (m, k), row-major, in place (QR). */
static lf_status orthonormalise(float *Y, uint32_t m, uint32_t k, float *tau, lf_err *err) {
    lapack_int info = LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, (lapack_int)m, (lapack_int)k, Y, (lapack_int)k, tau);
    if (!info) info = LAPACKE_sorgqr(LAPACK_ROW_MAJOR, (lapack_int)m, (lapack_int)k, (lapack_int)k, Y, (lapack_int)k, tau);
    return info ? lf__err_set(err, LF_E_INVALID_ARG, "LAPACK QR failed (info %d)", (int)info) : LF_OK;
}

/* The leading `rank` singular triplets of W (n_out, n_in): s (rank),
 * u (n_out, rank) and vt (rank, n_in). Exact (sgesdd) for small matrices or
 * large ranks; otherwise randomised (Halko, Martinsson and Tropp 2011): the
 * range of W from W·Omega with 16 extra columns and two power iterations,
 * then the SVD of the small projection Qᵀ·W. On a 11008x4096 gate at rank
 * 128 that is seconds instead of minutes. */
static lf_status truncated_svd(const float *W, uint32_t n_out, uint32_t n_in, uint32_t rank, float *s_out, float *u_out,
                               float *vt_out, lf_err *err) {
    const uint32_t kmin = LF_MIN(n_out, n_in);
    const bool exact = (uint64_t)n_out * n_in <= (1u << 20) || rank * 4 > kmin;
    const uint32_t k = exact ? kmin : LF_MIN(kmin, rank + 16);
    float *a = NULL, *Y = NULL, *Z = NULL, *tau = NULL;
    float *s = malloc(k * sizeof *s), *ub = malloc((size_t)(exact ? n_out : k) * k * sizeof *ub);
    float *vt = malloc((size_t)k * n_in * sizeof *vt);
    lf_status st = s && ub && vt ? LF_OK : lf__err_set(err, LF_E_NOMEM, "SVD of a %ux%u matrix", n_out, n_in);
    lapack_int info = 0;
    if (!st && exact) { /* sgesdd overwrites its input */
        if (!(a = malloc((size_t)n_out * n_in * sizeof *a))) st = lf__err_set(err, LF_E_NOMEM, "SVD of a %ux%u matrix", n_out, n_in);
        if (!st) {
            memcpy(a, W, (size_t)n_out * n_in * sizeof *a);
            info = LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', (lapack_int)n_out, (lapack_int)n_in, a, (lapack_int)n_in, s, ub,
                                  (lapack_int)k, vt, (lapack_int)n_in);
        }
        if (!st && !info)
            for (uint32_t i = 0; i < n_out; i++) memcpy(u_out + (size_t)i * rank, ub + (size_t)i * k, rank * sizeof *u_out);
    } else if (!st) {
        Y = malloc((size_t)n_out * k * sizeof *Y);     /* range basis Q */
        Z = malloc((size_t)n_in * k * sizeof *Z);      /* Omega, then Wᵀ·Q, then (Qᵀ·W) */
        tau = malloc(k * sizeof *tau);
        if (!Y || !Z || !tau) st = lf__err_set(err, LF_E_NOMEM, "randomised SVD of a %ux%u matrix", n_out, n_in);
        lf_rng rng;
        lf__rng_seed(&rng, 0x5bd1e995u);
        for (size_t i = 0; !st && i < (size_t)n_in * k; i++) Z[i] = lf__rng_normal(&rng);
        if (!st)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n_out, (int)k, (int)n_in, 1.0f, W, (int)n_in, Z,
                        (int)k, 0.0f, Y, (int)k);
        for (int it = 0; !st && it < 2; it++) {
            if ((st = orthonormalise(Y, n_out, k, tau, err))) break;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n_in, (int)k, (int)n_out, 1.0f, W, (int)n_in, Y,
                        (int)k, 0.0f, Z, (int)k);
            if ((st = orthonormalise(Z, n_in, k, tau, err))) break;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n_out, (int)k, (int)n_in, 1.0f, W, (int)n_in, Z,
                        (int)k, 0.0f, Y, (int)k);
        }
        if (!st) st = orthonormalise(Y, n_out, k, tau, err);
        if (!st) { /* Bs = Qᵀ·W (k, n_in) into Z, then its SVD: Bs = Ub·S·Vt */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)n_in, (int)n_out, 1.0f, Y, (int)k, W,
                        (int)n_in, 0.0f, Z, (int)n_in);
            info = LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', (lapack_int)k, (lapack_int)n_in, Z, (lapack_int)n_in, s, ub,
                                  (lapack_int)k, vt, (lapack_int)n_in);
        }
        if (!st && !info) /* u = Q·Ub, the leading rank columns */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n_out, (int)rank, (int)k, 1.0f, Y, (int)k, ub,
                        (int)k, 0.0f, u_out, (int)rank);
    }
    if (!st && info) st = lf__err_set(err, LF_E_INVALID_ARG, "LAPACK sgesdd failed (info %d)", (int)info);
    if (!st) {
        memcpy(s_out, s, rank * sizeof *s_out);
        memcpy(vt_out, vt, (size_t)rank * n_in * sizeof *vt_out);
    }
    free(a);
    free(Y);
    free(Z);
    free(tau);
    free(s);
    free(ub);
    free(vt);
    return st;
}

lf_status lf__lowrank_init_svd(lf_lowrank *p, const float *W, uint32_t n_out, uint32_t n_in, uint32_t rank, lf_err *err) {
    const uint32_t k = LF_MIN(n_out, n_in);
    if (rank == 0 || rank > k) return lf__err_set(err, LF_E_INVALID_ARG, "rank %u of a %ux%u matrix", rank, n_out, n_in);
    lf_status st = lf__lowrank_alloc(p, n_in, n_out, rank);
    if (st) return lf__err_set(err, st, "predictor of rank %u", rank);
    float *s = malloc(rank * sizeof *s);
    if (!s) st = lf__err_set(err, LF_E_NOMEM, "SVD of a %ux%u matrix", n_out, n_in);
    /* B = U_r directly; A = Σ_r·Vt_r */
    if (!st) st = truncated_svd(W, n_out, n_in, rank, s, p->B, p->A, err);
    for (uint32_t r = 0; !st && r < rank; r++)
        for (uint32_t j = 0; j < n_in; j++) p->A[(size_t)r * n_in + j] *= s[r];
    free(s);
    if (st) lf__lowrank_free(p);
    return st;
}

/* Dot product of n floats, four independent sums (vectorised by the compiler). */
static float dot(const float *a, const float *b, uint32_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    uint32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

/* The per-token path runs on the engine's thread, between layers: plain
 * matrix-vector products, not BLAS, whose worker threads would contend with
 * the compute pool for the same cores on every call. */
void lf__lowrank_logits(const lf_lowrank *p, const float *x, float *h, float *z) {
    for (uint32_t r = 0; r < p->rank; r++) h[r] = dot(p->A + (size_t)r * p->n_in, x, p->n_in);
    for (uint32_t i = 0; i < p->n_out; i++) z[i] = p->b[i] + dot(p->B + (size_t)i * p->rank, h, p->rank);
}

/* Logits of samples [i0, i0 + m): H (m, rank), Z (m, n_out). */
static void logits_rows(const lf_lowrank *p, const float *X, uint64_t i0, uint64_t m, float *H, float *Z) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)p->rank, (int)p->n_in, 1.0f,
                X + i0 * p->n_in, (int)p->n_in, p->A, (int)p->n_in, 0.0f, H, (int)p->rank);
    for (uint64_t r = 0; r < m; r++) memcpy(Z + r * p->n_out, p->b, p->n_out * sizeof *Z);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)p->n_out, (int)p->rank, 1.0f, H, (int)p->rank,
                p->B, (int)p->rank, 1.0f, Z, (int)p->n_out);
}

/* One Adam update of w (n) from its gradient g. */
static void adam(float *w, const float *g, float *m1, float *m2, uint64_t n, float lr, uint64_t step) {
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    const float c1 = 1.0f - powf(b1, (float)step), c2 = 1.0f - powf(b2, (float)step);
    for (uint64_t i = 0; i < n; i++) {
        m1[i] = b1 * m1[i] + (1 - b1) * g[i];
        m2[i] = b2 * m2[i] + (1 - b2) * g[i] * g[i];
        w[i] -= lr * (m1[i] / c1) / (sqrtf(m2[i] / c2) + eps);
    }
}

lf_status lf__lowrank_fit(lf_lowrank *p, const float *X, const uint8_t *Y, uint64_t n, const lf_lowrank_fit_params *fp,
                          lf_err *err) {
    if (!p->A || n == 0) return lf__err_set(err, LF_E_INVALID_ARG, "no predictor or no samples to fit");
    const uint32_t epochs = fp && fp->epochs ? fp->epochs : 20;
    const uint64_t bs = LF_MIN(fp && fp->batch ? fp->batch : 256u, n);
    const float lr = fp && fp->lr > 0 ? fp->lr : 3e-3f;
    const uint32_t d = p->n_in, m = p->n_out, r = p->rank;
    uint64_t pos = 0;
    for (uint64_t i = 0; i < n * m; i++) pos += Y[i] != 0;
    float wpos = fp && fp->pos_weight > 0 ? fp->pos_weight
                 : pos ? (float)LF_MIN(20.0, (double)(n * m - pos) / (double)pos) : 1.0f;
    if (wpos < 1.0f) wpos = 1.0f;
    const uint64_t nA = (uint64_t)r * d, nB = (uint64_t)m * r;
    float *H = malloc(bs * r * sizeof *H), *Z = malloc(bs * m * sizeof *Z), *dH = malloc(bs * r * sizeof *dH);
    float *Xb = malloc(bs * d * sizeof *Xb);
    uint8_t *Yb = malloc(bs * m);
    float *gA = malloc(nA * sizeof *gA), *gB = malloc(nB * sizeof *gB), *gb = malloc(m * sizeof *gb);
    float *mom = calloc(2 * (nA + nB + m), sizeof *mom);
    uint64_t *order = malloc(n * sizeof *order);
    lf_status st = LF_OK;
    if (!H || !Z || !dH || !Xb || !Yb || !gA || !gB || !gb || !mom || !order) {
        st = lf__err_set(err, LF_E_NOMEM, "fitting buffers for %" PRIu64 " samples", n);
        goto out;
    }
    lf_rng rng;
    lf__rng_seed(&rng, fp ? fp->seed : 1);
    for (uint64_t i = 0; i < n; i++) order[i] = i;
    uint64_t step = 0;
    for (uint32_t e = 0; e < epochs; e++) {
        for (uint64_t i = n - 1; i > 0; i--) { /* a new order each epoch */
            const uint64_t j = lf__rng_next(&rng) % (i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (uint64_t i0 = 0; i0 + bs <= n; i0 += bs) {
            for (uint64_t k = 0; k < bs; k++) {
                memcpy(Xb + k * d, X + order[i0 + k] * d, d * sizeof *Xb);
                memcpy(Yb + k * m, Y + order[i0 + k] * m, m);
            }
            logits_rows(p, Xb, 0, bs, H, Z);
            /* dL/dz of the weighted cross-entropy, averaged over the batch */
            const float scale = 1.0f / (float)bs;
            for (uint64_t k = 0; k < bs * m; k++) {
                const float sg = 1.0f / (1.0f + expf(-Z[k]));
                Z[k] = Yb[k] ? wpos * (sg - 1.0f) * scale : sg * scale;
            }
            memset(gb, 0, m * sizeof *gb);
            for (uint64_t k = 0; k < bs; k++)
                for (uint32_t i = 0; i < m; i++) gb[i] += Z[k * m + i];
            /* gB = dZᵀ H, dH = dZ B, gA = dHᵀ X */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, (int)r, (int)bs, 1.0f, Z, (int)m, H, (int)r, 0.0f,
                        gB, (int)r);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)bs, (int)r, (int)m, 1.0f, Z, (int)m, p->B, (int)r,
                        0.0f, dH, (int)r);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r, (int)d, (int)bs, 1.0f, dH, (int)r, Xb, (int)d,
                        0.0f, gA, (int)d);
            step++;
            adam(p->A, gA, mom, mom + nA, nA, lr, step);
            adam(p->B, gB, mom + 2 * nA, mom + 2 * nA + nB, nB, lr, step);
            adam(p->b, gb, mom + 2 * (nA + nB), mom + 2 * (nA + nB) + m, m, lr, step);
        }
    }
out:
    free(H);
    free(Z);
    free(dH);
    free(Xb);
    free(Yb);
    free(gA);
    free(gB);
    free(gb);
    free(mom);
    free(order);
    return st;
}

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Runs f over the logits of every sample, a block of rows at a time. */
typedef void (*logit_visit)(void *ctx, const float *z, const uint8_t *y, uint32_t m);
static lf_status visit_logits(const void *pred, const float *X, const uint8_t *Y, uint64_t n, logit_visit f, void *ctx) {
    const lf_lowrank *p = pred;
    const uint64_t bs = LF_MIN((uint64_t)256, n);
    float *H = malloc(bs * p->rank * sizeof *H), *Z = malloc(bs * p->n_out * sizeof *Z);
    if (!H || !Z) {
        free(H);
        free(Z);
        return LF_E_NOMEM;
    }
    for (uint64_t i0 = 0; i0 < n; i0 += bs) {
        const uint64_t rows = LF_MIN(bs, n - i0);
        logits_rows(p, X, i0, rows, H, Z);
        for (uint64_t k = 0; k < rows; k++) f(ctx, Z + k * p->n_out, Y + (i0 + k) * p->n_out, p->n_out);
    }
    free(H);
    free(Z);
    return LF_OK;
}

typedef struct pos_logits {
    float *v;
    uint64_t n;
} pos_logits;

static void collect_positive(void *ctx, const float *z, const uint8_t *y, uint32_t m) {
    pos_logits *pl = ctx;
    for (uint32_t i = 0; i < m; i++)
        if (y[i]) pl->v[pl->n++] = z[i];
}

/* Visits every sample's logits or scores: visit_logits or visit_scores. */
typedef lf_status (*sample_visit)(const void *pred, const float *X, const uint8_t *Y, uint64_t n, logit_visit f,
                                  void *ctx);

/* The threshold that keeps at least `recall` of the positives' values
 * strictly above it, whatever produces those values. */
static lf_status threshold_for(sample_visit visit, const void *pred, const float *X, const uint8_t *Y, uint64_t n,
                               uint32_t m, double recall, float *threshold, lf_err *err) {
    if (!(recall > 0.0 && recall <= 1.0)) return lf__err_set(err, LF_E_INVALID_ARG, "recall %g is not in (0, 1]", recall);
    uint64_t pos = 0;
    for (uint64_t i = 0; i < n * m; i++) pos += Y[i] != 0;
    if (pos == 0) {
        *threshold = INFINITY;
        return LF_OK;
    }
    pos_logits pl = {malloc(pos * sizeof(float)), 0};
    if (!pl.v || visit(pred, X, Y, n, collect_positive, &pl)) {
        free(pl.v);
        return lf__err_set(err, LF_E_NOMEM, "values of %" PRIu64 " positives", pos);
    }
    qsort(pl.v, pl.n, sizeof *pl.v, cmp_float);
    /* just below the value of positive `miss` (ascending): it and every
     * positive above it are predicted, at least recall * pos of them */
    const uint64_t miss = (uint64_t)floor((1.0 - recall) * (double)pl.n);
    *threshold = nextafterf(pl.v[miss], -INFINITY);
    free(pl.v);
    return LF_OK;
}

lf_status lf__lowrank_calibrate(lf_lowrank *p, const float *X, const uint8_t *Y, uint64_t n, double recall, lf_err *err) {
    return threshold_for(visit_logits, p, X, Y, n, p->n_out, recall, &p->threshold, err);
}

typedef struct counts {
    float t;
    uint64_t tp, fp, fn, total;
} counts;

static void count_outcomes(void *ctx, const float *z, const uint8_t *y, uint32_t m) {
    counts *c = ctx;
    for (uint32_t i = 0; i < m; i++) {
        const bool pred = z[i] > c->t;
        c->tp += pred && y[i];
        c->fp += pred && !y[i];
        c->fn += !pred && y[i];
    }
    c->total += m;
}

static void quality_of(const counts *c, lf_lowrank_quality *q) {
    q->recall = c->tp + c->fn ? (double)c->tp / (double)(c->tp + c->fn) : 1.0;
    q->precision = c->tp + c->fp ? (double)c->tp / (double)(c->tp + c->fp) : 1.0;
    q->predicted_density = c->total ? (double)(c->tp + c->fp) / (double)c->total : 0.0;
    q->true_density = c->total ? (double)(c->tp + c->fn) / (double)c->total : 0.0;
    q->false_negatives = c->fn;
}

lf_status lf__lowrank_evaluate(const lf_lowrank *p, const float *X, const uint8_t *Y, uint64_t n, lf_lowrank_quality *q) {
    counts c = {p->threshold, 0, 0, 0, 0};
    const lf_status st = visit_logits(p, X, Y, n, count_outcomes, &c);
    if (!st) quality_of(&c, q);
    return st;
}

/* ---- SwiGLU pairs ----------------------------------------------------------- */

void lf__swiglu_scores(const lf_swiglu_predictor *p, const float *x, float *scratch, float *score) {
    const uint32_t m = p->gate.n_out, r = p->gate.rank;
    float *zg = scratch, *zu = scratch + m, *h = scratch + 2 * (uint64_t)m;
    lf__lowrank_logits(&p->gate, x, h, zg);
    lf__lowrank_logits(&p->up, x, h + r, zu);
    for (uint32_t i = 0; i < m; i++) score[i] = fabsf(zg[i] / (1.0f + expf(-zg[i])) * zu[i]);
}

/* Scores of every sample through f, as visit_logits does for logits. */
static lf_status visit_scores(const void *pred, const float *X, const uint8_t *Y, uint64_t n, logit_visit f, void *ctx) {
    const lf_swiglu_predictor *p = pred;
    const uint32_t m = p->gate.n_out, d = p->gate.n_in;
    float *scratch = malloc(2 * ((uint64_t)p->gate.rank + p->up.rank + m) * sizeof *scratch);
    float *score = malloc(m * sizeof *score);
    if (!scratch || !score) {
        free(scratch);
        free(score);
        return LF_E_NOMEM;
    }
    for (uint64_t k = 0; k < n; k++) {
        lf__swiglu_scores(p, X + k * d, scratch, score);
        f(ctx, score, Y + k * m, m);
    }
    free(scratch);
    free(score);
    return LF_OK;
}

lf_status lf__swiglu_calibrate(lf_swiglu_predictor *p, const float *X, const uint8_t *Y, uint64_t n, double recall,
                               lf_err *err) {
    return threshold_for(visit_scores, p, X, Y, n, p->gate.n_out, recall, &p->threshold, err);
}

lf_status lf__swiglu_evaluate(const lf_swiglu_predictor *p, const float *X, const uint8_t *Y, uint64_t n,
                              lf_lowrank_quality *q) {
    counts c = {p->threshold, 0, 0, 0, 0};
    const lf_status st = visit_scores(p, X, Y, n, count_outcomes, &c);
    if (!st) quality_of(&c, q);
    return st;
}

/* ---- half-precision form ------------------------------------------------- */

void lf__lowrank_round_f16(lf_lowrank *p) {
    for (size_t i = 0; i < (size_t)p->rank * p->n_in; i++) p->A[i] = lf__fp16_to_fp32(lf__fp32_to_fp16(p->A[i]));
    for (size_t i = 0; i < (size_t)p->n_out * p->rank; i++) p->B[i] = lf__fp16_to_fp32(lf__fp32_to_fp16(p->B[i]));
}

bool lf__lowrank_run_fits(uint32_t type, uint32_t n_in, uint32_t rank) {
    if (type == LF_TYPE_F16) return true;
    return type == LF_TYPE_Q8_0 && n_in % LF_QK == 0 && rank % LF_QK == 0;
}

uint64_t lf__lowrank_run_a_bytes(uint32_t type, uint32_t n_in, uint32_t rank) {
    return (uint64_t)rank * lf__type_row_bytes(type, n_in);
}

uint64_t lf__lowrank_run_b_bytes(uint32_t type, uint32_t n_out, uint32_t rank) {
    return (uint64_t)n_out * lf__type_row_bytes(type, rank);
}

uint64_t lf__lowrank_run_bytes(uint32_t type, uint32_t n_in, uint32_t n_out, uint32_t rank) {
    return lf__lowrank_run_a_bytes(type, n_in, rank) + lf__lowrank_run_b_bytes(type, n_out, rank) +
           (uint64_t)n_out * sizeof(float);
}

/* q8a blocks of n elements, in floats (a block is 40 bytes: 10 floats) */
static uint64_t q8a_floats(uint64_t n) {
    return (n + LF_QK - 1) / LF_QK * (sizeof(lf_block_q8a) / sizeof(float));
}

uint64_t lf__lowrank_run_scratch(uint32_t n_in, uint32_t rank) {
    return rank + q8a_floats(n_in) + q8a_floats(rank);
}

lf_status lf__lowrank_run_alloc(lf_lowrank_run *p, uint32_t type, uint32_t n_in, uint32_t n_out, uint32_t rank) {
    memset(p, 0, sizeof *p);
    if (!n_in || !n_out || !rank) return LF_E_INVALID_ARG;
    if (!lf__lowrank_run_fits(type, n_in, rank)) return LF_E_UNSUPPORTED;
    *p = (lf_lowrank_run){type, n_in, n_out, rank, malloc(lf__lowrank_run_a_bytes(type, n_in, rank)),
                          malloc(lf__lowrank_run_b_bytes(type, n_out, rank)), NULL, calloc(n_out, sizeof(float))};
    if (!p->A || !p->B || !p->b) {
        lf__lowrank_run_free(p);
        return LF_E_NOMEM;
    }
    return LF_OK;
}

/* rows of n floats at src into `type` at dst */
static void round_rows(uint32_t type, const float *src, void *dst, uint64_t rows, uint32_t n) {
    const uint64_t rb = lf__type_row_bytes(type, n);
    for (uint64_t r = 0; r < rows; r++) {
        if (type == LF_TYPE_F16)
            for (uint32_t i = 0; i < n; i++) ((uint16_t *)dst)[r * n + i] = lf__fp32_to_fp16(src[r * n + i]);
        else lf__quantize_row(type, src + r * n, (uint8_t *)dst + r * rb, n);
    }
}

lf_status lf__lowrank_run_from(lf_lowrank_run *dst, const lf_lowrank *src, uint32_t type) {
    const lf_status st = lf__lowrank_run_alloc(dst, type, src->n_in, src->n_out, src->rank);
    if (st) return st;
    round_rows(type, src->A, dst->A, src->rank, src->n_in);
    round_rows(type, src->B, dst->B, src->n_out, src->rank);
    memcpy(dst->b, src->b, src->n_out * sizeof *dst->b);
    return LF_OK;
}

void lf__lowrank_run_free(lf_lowrank_run *p) {
    free(p->A);
    free(p->B);
    free(p->Bt);
    free(p->b);
    memset(p, 0, sizeof *p);
}

void lf__lowrank_run_logits(const lf_lowrank_run *p, const lf_kernels *k, const float *x, float *scratch, float *z) {
    float *h = scratch;
    if (p->type == LF_TYPE_Q8_0) {
        lf_block_q8a *xq = (lf_block_q8a *)(scratch + p->rank), *hq = xq + p->n_in / LF_QK;
        k->quantize_q8a(x, xq, p->n_in);
        lf__dot_row_range(k, p->type, p->A, 0, p->rank, xq, h, p->n_in);
        k->quantize_q8a(h, hq, p->rank);
        lf__dot_row_range(k, p->type, p->B, 0, p->n_out, hq, z, p->rank);
        for (uint32_t i = 0; i < p->n_out; i++) z[i] += p->b[i];
        return;
    }
    lf__dot_row_range(k, p->type, p->A, 0, p->rank, x, h, p->n_in);
    if (p->Bt) {
        memcpy(z, p->b, p->n_out * sizeof *z);
        for (uint32_t r = 0; r < p->rank; r++) k->axpy[LF_TYPE_F16]((const uint16_t *)p->Bt + (size_t)r * p->n_out, h[r], z, p->n_out);
        return;
    }
    lf__dot_row_range(k, p->type, p->B, 0, p->n_out, h, z, p->rank);
    for (uint32_t i = 0; i < p->n_out; i++) z[i] += p->b[i];
}

lf_status lf__lowrank_run_transpose(lf_lowrank_run *p) {
    if (!p->rank || !p->B || p->type != LF_TYPE_F16) return LF_OK;
    uint16_t *t = malloc((size_t)p->rank * p->n_out * sizeof *t);
    if (!t) return LF_E_NOMEM;
    const uint16_t *B = p->B;
    for (uint32_t i = 0; i < p->n_out; i++)
        for (uint32_t r = 0; r < p->rank; r++) t[(size_t)r * p->n_out + i] = B[(size_t)i * p->rank + r];
    free(p->B);
    p->B = NULL;
    p->Bt = t;
    return LF_OK;
}

uint64_t lf__layer_predictor_scratch(uint32_t n_in, uint32_t n_out, uint32_t rank) {
    return n_out + lf__lowrank_run_scratch(n_in, rank);
}

void lf__layer_predictor_scores(const lf_layer_predictor *p, const lf_kernels *k, const float *x, float *scratch,
                                float *score) {
    const uint32_t m = p->gate.n_out;
    if (!p->up.rank) {
        lf__lowrank_run_logits(&p->gate, k, x, scratch, score);
        return;
    }
    float *zu = scratch, *rest = scratch + m;
    lf__lowrank_run_logits(&p->gate, k, x, rest, score);
    lf__lowrank_run_logits(&p->up, k, x, rest, zu);
    for (uint32_t i = 0; i < m; i++) score[i] = fabsf(score[i] / (1.0f + expf(-score[i])) * zu[i]);
}

/* The run form's scores of every sample through f, as visit_logits does. */
typedef struct run_form {
    const lf_layer_predictor *p;
    const lf_kernels *k;
} run_form;

static lf_status visit_run_scores(const void *pred, const float *X, const uint8_t *Y, uint64_t n, logit_visit f,
                                  void *ctx) {
    const run_form *rf = pred;
    const lf_layer_predictor *p = rf->p;
    const uint32_t m = p->gate.n_out, d = p->gate.n_in;
    float *scratch = malloc(lf__layer_predictor_scratch(d, m, LF_MAX(p->gate.rank, p->up.rank)) * sizeof *scratch);
    float *score = malloc(m * sizeof *score);
    if (!scratch || !score) {
        free(scratch);
        free(score);
        return LF_E_NOMEM;
    }
    for (uint64_t s = 0; s < n; s++) {
        lf__layer_predictor_scores(p, rf->k, X + s * d, scratch, score);
        f(ctx, score, Y + s * m, m);
    }
    free(scratch);
    free(score);
    return LF_OK;
}

lf_status lf__layer_predictor_calibrate(lf_layer_predictor *p, const lf_kernels *k, const float *X, const uint8_t *Y,
                                        uint64_t n, double recall, lf_err *err) {
    const run_form rf = {p, k};
    return threshold_for(visit_run_scores, &rf, X, Y, n, p->gate.n_out, recall, &p->threshold, err);
}

lf_status lf__layer_predictor_evaluate(const lf_layer_predictor *p, const lf_kernels *k, const float *X,
                                       const uint8_t *Y, uint64_t n, lf_lowrank_quality *q) {
    const run_form rf = {p, k};
    counts c = {p->threshold, 0, 0, 0, 0};
    const lf_status st = visit_run_scores(&rf, X, Y, n, count_outcomes, &c);
    if (!st) quality_of(&c, q);
    return st;
}

bool lf__cheaper_predictor_pays(double density_full, double density_cheap, uint32_t n_units, uint64_t bytes_full,
                                uint64_t bytes_cheap, uint64_t unit_bytes) {
    const double extra_units = (density_cheap - density_full) * n_units;
    const double freed_units = ((double)bytes_full - (double)bytes_cheap) / (double)(unit_bytes ? unit_bytes : 1);
    return extra_units <= freed_units;
}

uint64_t lf__layer_predictor_bytes(const lf_layer_predictor *p) {
    const lf_lowrank_run *parts[2] = {&p->gate, &p->up};
    uint64_t b = 0;
    for (int q = 0; q < 2; q++)
        if (parts[q]->rank) b += lf__lowrank_run_bytes(parts[q]->type, parts[q]->n_in, parts[q]->n_out, parts[q]->rank);
    return b;
}

void lf__layer_predictor_free(lf_layer_predictor *p) {
    lf__lowrank_run_free(&p->gate);
    lf__lowrank_run_free(&p->up);
    p->threshold = 0.0f;
}

lf_status lf__lowrank_run_permute_outputs(lf_lowrank_run *p, const uint32_t *order) {
    if (!p->rank) return LF_OK;
    if (!p->B) return LF_E_INVALID_ARG; /* before transposing only */
    const uint64_t rb = lf__type_row_bytes(p->type, p->rank);
    uint8_t *B = malloc(p->n_out * rb);
    float *b = malloc(p->n_out * sizeof *b);
    if (!B || !b) {
        free(B);
        free(b);
        return LF_E_NOMEM;
    }
    for (uint32_t q = 0; q < p->n_out; q++) {
        memcpy(B + q * rb, (const uint8_t *)p->B + order[q] * rb, rb);
        b[q] = p->b[order[q]];
    }
    free(p->B);
    free(p->b);
    p->B = B;
    p->b = b;
    return LF_OK;
}
