/* mask_source.c - the `all` and `oracle` mask sources (see mask_source.h). */
#include "mask_source.h"
#include "ffn_kernel.h"
#include "predictor_file.h"

#include <math.h>
#include <stdlib.h>

/* ---- all ----------------------------------------------------------------- */

static uint32_t all_select(void *state, uint32_t layer, const float *x, size_t n, uint32_t *units) {
    (void)layer, (void)x, (void)n;
    const uint32_t n_units = (uint32_t)(uintptr_t)state;
    for (uint32_t u = 0; u < n_units; u++) units[u] = u;
    return n_units;
}

static void no_destroy(void *state) { (void)state; }

static const lf_mask_ops all_ops = {.name = "all", .needs_input = false, .select = all_select, .destroy = no_destroy};

lf_status lf__mask_all_create(uint32_t n_units, lf_mask *out) {
    *out = (lf_mask){&all_ops, (void *)(uintptr_t)n_units, 0};
    return LF_OK;
}

/* ---- oracle -------------------------------------------------------------- */

typedef struct oracle {
    const lf_flash *f;
    const lf_kernels *k;
    lf_activation act;
    uint32_t rows;            /* gate/up rows per neuron: 2 (gated) or 1 */
    uint8_t *copy;            /* (n_layer, n_ff, rows, row_bytes) */
    float *h;                 /* (n_ff) activations of one token */
    lf_block_q8a *xq;         /* (n_embd / 32 + 1) */
    uint8_t *any;             /* (n_groups) unit flags of the batch */
    float *taus;              /* (n_layer) SwiGLU ground-truth thresholds, 0: non-zero */
} oracle;

uint64_t lf__mask_oracle_bytes(const lf_flash *f) {
    const lf_bundle_layout *B = &f->layout;
    return (uint64_t)f->n_layer * f->n_ff * (B->n_rows - 1) * B->row_bytes + (uint64_t)f->n_ff * sizeof(float) +
           (f->n_embd / LF_QK + 1) * sizeof(lf_block_q8a) + f->layers[0].n_groups;
}

static uint32_t oracle_select(void *state, uint32_t layer, const float *x, size_t n, uint32_t *units) {
    oracle *o = state;
    const lf_flash *f = o->f;
    const lf_bundle_layout *B = &f->layout;
    const uint32_t d = f->n_embd;
    const lf_vec_dot_fn dot = o->k->dot[B->type];
    const uint8_t *base = o->copy + (uint64_t)layer * f->n_ff * o->rows * B->row_bytes;
    const uint64_t n_groups = f->layers[layer].n_groups;
    memset(o->any, 0, n_groups);
    for (size_t t = 0; t < n; t++) {
        const float *xt = x + t * d;
        const void *xin = xt;
        if (lf__type_uses_q8a(B->type)) {
            o->k->quantize_q8a(xt, o->xq, d);
            xin = o->xq;
        }
        for (uint32_t i = 0; i < f->n_ff; i++) {
            const uint8_t *r = base + (uint64_t)i * o->rows * B->row_bytes;
            const float up = dot(r + (o->rows == 2 ? B->row_bytes : 0), xin, d);
            const float gate = o->rows == 2 ? dot(r, xin, d) : 0.0f;
            const float h = lf__ffn_activate(o->act, gate, up);
            if (o->taus[layer] > 0.0f ? fabsf(h) >= o->taus[layer] : h != 0.0f) o->any[i / B->group] = 1;
        }
    }
    uint32_t m = 0;
    for (uint64_t g = 0; g < n_groups; g++)
        if (o->any[g]) units[m++] = (uint32_t)g;
    return m;
}

static void oracle_destroy(void *state) {
    oracle *o = state;
    if (!o) return;
    lf__free_aligned(o->copy);
    free(o->h);
    lf__free_aligned(o->xq);
    free(o->any);
    free(o->taus);
    free(o);
}

static const lf_mask_ops oracle_ops = {.name = "oracle", .needs_input = true, .select = oracle_select,
                                       .destroy = oracle_destroy};

lf_status lf__mask_oracle_create(const lf_flash *f, int fd, bool verify, const lf_kernels *k, lf_activation act,
                                 const float *taus, lf_mask *out, lf_err *err) {
    const lf_bundle_layout *B = &f->layout;
    oracle *o = calloc(1, sizeof *o);
    if (!o) return lf__err_set(err, LF_E_NOMEM, "oracle mask");
    o->f = f;
    o->k = k;
    o->act = act;
    o->rows = B->n_rows - 1;
    const uint64_t per_neuron = (uint64_t)o->rows * B->row_bytes;
    o->copy = lf__alloc_aligned((uint64_t)f->n_layer * f->n_ff * per_neuron, 64);
    o->h = malloc(f->n_ff * sizeof *o->h);
    o->xq = lf__alloc_aligned((f->n_embd / LF_QK + 1) * sizeof(lf_block_q8a), 64);
    o->any = malloc(f->layers[0].n_groups ? f->layers[0].n_groups : 1);
    o->taus = calloc(f->n_layer, sizeof *o->taus);
    if (o->taus && taus) memcpy(o->taus, taus, f->n_layer * sizeof *o->taus);
    uint64_t max_stored = 0;
    for (uint32_t l = 0; l < f->n_layer; l++)
        for (uint64_t g = 0; g < f->layers[l].n_groups; g++)
            max_stored = LF_MAX(max_stored, (uint64_t)f->layers[l].index[g].stored);
    uint8_t *stored = malloc(max_stored ? max_stored : 1);
    uint8_t *raw = malloc((uint64_t)B->group * B->record_bytes);
    lf_status st = o->copy && o->h && o->xq && o->any && o->taus && stored && raw
                       ? LF_OK
                       : lf__err_set(err, LF_E_NOMEM, "oracle copy of gate/up");
    /* group by group, through one group's buffers: the copy is all the
     * oracle holds */
    for (uint32_t l = 0; l < f->n_layer && !st; l++) {
        const lf_flash_layer *L = &f->layers[l];
        for (uint64_t g = 0; g < L->n_groups && !st; g++) {
            st = lf__pread_all(fd, stored, L->index[g].stored, L->data_offset + L->index[g].offset, err);
            if (!st) st = lf__flash_decode_group(f, l, g, stored, raw, verify, err);
            uint64_t first, count;
            lf__flash_group_neurons(f, g, &first, &count);
            for (uint64_t i = 0; i < count && !st; i++)
                memcpy(o->copy + ((uint64_t)l * f->n_ff + first + i) * per_neuron, raw + i * B->record_bytes, per_neuron);
        }
    }
    free(stored);
    free(raw);
    if (st) {
        oracle_destroy(o);
        return st;
    }
    *out = (lf_mask){&oracle_ops, o, lf__mask_oracle_bytes(f)};
    return LF_OK;
}

void lf__mask_destroy(lf_mask *ms) {
    if (ms->ops) ms->ops->destroy(ms->state);
    *ms = (lf_mask){0};
}

/* ---- predictor ------------------------------------------------------------ */

typedef struct predictor {
    lf_predictor_set set;     /* owned */
    const lf_kernels *k;
    lf_pool *pool;            /* borrowed: the products split over it (NULL: on the caller) */
    uint32_t group, n_ff;
    float *h, *z;             /* (lf__predictor_mask_scratch) scratch, (n_ff) logits or scores */
    uint8_t *any;             /* (n_groups) */
    uint64_t n_groups;
} predictor;

/* One token's scores split over the pool: phase 0 the rank projections
 * (h = A·x), phase 1 slices of the outputs (F16: z = b + Σ_r h_r·Bt_r;
 * Q8_0: z_i = b_i + B_i·h on h in q8a blocks), and the pair's
 * |silu(zg)·zu|. Q8_0 parts take x (and h) as q8a blocks, rounded between
 * the phases. */
typedef struct score_job {
    const predictor *pr;
    const lf_layer_predictor *p;
    const float *x;
    float *hg, *hu, *zu;
    lf_block_q8a *xq, *hq[2];
    int phase;
} score_job;

static void score_slice(void *ctx, int ith, int nth) {
    const score_job *j = ctx;
    const lf_layer_predictor *p = j->p;
    const lf_kernels *k = j->pr->k;
    const lf_lowrank_run *parts[2] = {&p->gate, p->up.rank ? &p->up : NULL};
    float *hs[2] = {j->hg, j->hu}, *zs[2] = {j->pr->z, j->zu};
    for (int q = 0; q < 2; q++) {
        const lf_lowrank_run *lr = parts[q];
        if (!lr) continue;
        const bool q8 = lr->type == LF_TYPE_Q8_0;
        uint64_t a, b;
        if (j->phase == 0) {
            lf__split_range(lr->rank, ith, nth, LF_DOT_ROWS, &a, &b);
            lf__dot_row_range(k, lr->type, lr->A, a, b, q8 ? (const void *)j->xq : j->x, hs[q], lr->n_in);
            continue;
        }
        lf__split_range(lr->n_out, ith, nth, 64, &a, &b);
        if (a >= b) continue;
        if (q8) {
            lf__dot_row_range(k, lr->type, lr->B, a, b, j->hq[q], zs[q], lr->rank);
            for (uint64_t i = a; i < b; i++) zs[q][i] += lr->b[i];
            continue;
        }
        memcpy(zs[q] + a, lr->b + a, (b - a) * sizeof(float));
        for (uint32_t r = 0; r < lr->rank; r++)
            k->axpy[LF_TYPE_F16]((const uint16_t *)lr->Bt + (uint64_t)r * lr->n_out + a, hs[q][r], zs[q] + a,
                                 (int64_t)(b - a));
    }
    if (j->phase == 1 && parts[1]) {
        uint64_t a, b;
        lf__split_range(p->gate.n_out, ith, nth, 64, &a, &b);
        float *z = j->pr->z;
        for (uint64_t i = a; i < b; i++) z[i] = fabsf(z[i] / (1.0f + expf(-z[i])) * j->zu[i]);
    }
}

/* Scores of one token into pr->z, on the pool when the predictor runs in
 * the form that splits (F16 transposed, or Q8_0). */
static void token_scores(predictor *pr, const lf_layer_predictor *p, const float *x) {
    const lf_lowrank_run *g = &p->gate, *u = &p->up;
    const bool q8 = g->type == LF_TYPE_Q8_0 || (u->rank && u->type == LF_TYPE_Q8_0);
    const bool splits = (g->type == LF_TYPE_Q8_0 || g->Bt) && (!u->rank || u->type == LF_TYPE_Q8_0 || u->Bt);
    if (!pr->pool || !splits) {
        lf__layer_predictor_scores(p, pr->k, x, pr->h, pr->z);
        return;
    }
    const uint32_t rank = LF_MAX(p->gate.rank, p->up.rank);
    lf_block_q8a *xq = (lf_block_q8a *)(pr->h + 2 * (size_t)rank + pr->n_ff);
    lf_block_q8a *hq0 = xq + p->gate.n_in / LF_QK, *hq1 = hq0 + (rank + LF_QK - 1) / LF_QK;
    score_job j = {pr, p, x, pr->h, pr->h + rank, pr->h + 2 * (size_t)rank, xq, {hq0, hq1}, 0};
    if (q8) pr->k->quantize_q8a(x, xq, p->gate.n_in);
    const uint64_t work = (uint64_t)p->gate.rank * (p->gate.n_in + p->gate.n_out) * (p->up.rank ? 2 : 1);
    lf__pool_run_work(pr->pool, score_slice, &j, work);
    if (g->type == LF_TYPE_Q8_0) pr->k->quantize_q8a(j.hg, hq0, g->rank);
    if (u->rank && u->type == LF_TYPE_Q8_0) pr->k->quantize_q8a(j.hu, hq1, u->rank);
    j.phase = 1;
    lf__pool_run_work(pr->pool, score_slice, &j, work);
}

/* The groups any of the n tokens x has a unit predicted active in, by p. */
static uint32_t predicted_units(predictor *pr, const lf_layer_predictor *p, const float *x, size_t n, uint32_t *units) {
    memset(pr->any, 0, pr->n_groups);
    for (size_t t = 0; t < n; t++) {
        token_scores(pr, p, x + t * p->gate.n_in);
        for (uint32_t i = 0; i < pr->n_ff; i++)
            if (pr->z[i] > p->threshold) pr->any[i / pr->group] = 1;
    }
    uint32_t m = 0;
    for (uint64_t g = 0; g < pr->n_groups; g++)
        if (pr->any[g]) units[m++] = (uint32_t)g;
    return m;
}

static uint32_t predictor_select(void *state, uint32_t layer, const float *x, size_t n, uint32_t *units) {
    predictor *pr = state;
    return predicted_units(pr, &pr->set.layers[layer], x, n, units);
}

static uint32_t predictor_select_ahead(void *state, uint32_t layer, const float *x_prev, size_t n, uint32_t *units) {
    predictor *pr = state;
    return layer > 0 ? predicted_units(pr, &pr->set.ahead[layer], x_prev, n, units) : 0;
}

/* Without fitted lookahead predictors: layer `layer`'s own predictor on the
 * layer before's input, which the residual stream keeps close to its own. */
static uint32_t predictor_select_ahead_own(void *state, uint32_t layer, const float *x_prev, size_t n, uint32_t *units) {
    predictor *pr = state;
    return layer > 0 ? predicted_units(pr, &pr->set.layers[layer], x_prev, n, units) : 0;
}

static void predictor_destroy(void *state) {
    predictor *pr = state;
    if (!pr) return;
    lf__predictor_set_free(&pr->set);
    free(pr->h);
    free(pr->z);
    free(pr->any);
    free(pr);
}

static const lf_mask_ops predictor_ops = {.name = "predictor", .needs_input = true, .select = predictor_select,
                                          .destroy = predictor_destroy};
static const lf_mask_ops predictor_ahead_ops = {.name = "predictor", .needs_input = true, .select = predictor_select,
                                                .select_ahead = predictor_select_ahead, .destroy = predictor_destroy};
static const lf_mask_ops predictor_own_ahead_ops = {.name = "predictor", .needs_input = true,
                                                    .select = predictor_select,
                                                    .select_ahead = predictor_select_ahead_own,
                                                    .destroy = predictor_destroy, .ahead_outranks_recent = true};

lf_status lf__mask_predictor_create(const lf_flash *f, const lf_kernels *k, lf_pool *pool, lf_predictor_set *set,
                                    bool lookahead, lf_mask *out, lf_err *err) {
    predictor *pr = calloc(1, sizeof *pr);
    if (!pr) return lf__err_set(err, LF_E_NOMEM, "predictor mask");
    pr->set = *set;
    memset(set, 0, sizeof *set);
    pr->k = k;
    pr->pool = pool;
    lf_status st = LF_OK;
    /* into the form that runs, where the kernels have an F16 axpy (the
     * scalar reference has none: it keeps the dot products) */
    for (uint32_t l = 0; k->axpy[LF_TYPE_F16] && l < pr->set.n_layer && !st; l++) {
        lf_layer_predictor *parts[2] = {&pr->set.layers[l], pr->set.ahead ? &pr->set.ahead[l] : NULL};
        for (int q = 0; q < 2 && !st; q++)
            if (parts[q] && ((st = lf__lowrank_run_transpose(&parts[q]->gate)) || (st = lf__lowrank_run_transpose(&parts[q]->up))))
                break;
    }
    if (st) {
        predictor_destroy(pr);
        return lf__err_set(err, st, "predictor mask");
    }
    pr->group = f->layout.group;
    pr->n_ff = f->n_ff;
    pr->n_groups = f->layers[0].n_groups;
    uint32_t rank = 0;
    for (uint32_t l = 0; l < pr->set.n_layer; l++) rank = LF_MAX(rank, pr->set.layers[l].gate.rank);
    if (pr->set.ahead && pr->set.n_layer > 1) rank = LF_MAX(rank, pr->set.ahead[1].gate.rank);
    const uint64_t scratch = lf__predictor_mask_scratch(f->n_embd, f->n_ff, rank);
    pr->h = malloc(scratch * sizeof *pr->h);
    pr->z = malloc(f->n_ff * sizeof *pr->z);
    pr->any = malloc(pr->n_groups ? pr->n_groups : 1);
    if (!pr->h || !pr->z || !pr->any) {
        predictor_destroy(pr);
        return lf__err_set(err, LF_E_NOMEM, "predictor mask scratch");
    }
    const lf_mask_ops *ops = pr->set.ahead ? &predictor_ahead_ops : lookahead ? &predictor_own_ahead_ops : &predictor_ops;
    *out = (lf_mask){ops, pr,
                     lf__predictor_set_bytes(&pr->set) + (scratch + f->n_ff) * sizeof(float) + pr->n_groups};
    return LF_OK;
}
