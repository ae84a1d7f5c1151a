/* calibrate.c - lf_calibrate: low-rank predictors fitted to a flash model.
 *
 * One pass of the model over the text writes every layer's FFN inputs to a
 * temporary file of its own; then, one layer at a time, those samples are
 * read back, labelled with the layer's exact activations, and a predictor is
 * initialised from the SVD of the gate (up for plain ReLU), fitted, given a
 * threshold on held-out samples and evaluated on others. Memory holds one
 * layer's samples, gate/up and logits at a time. */
#include "session.h"
#include "predictor_file.h"
#include "moe.h"
#include "router.h"
#include "../../predictor/placement.h"

#include <cblas.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

lf_calibrate_params lf_calibrate_default_params(void) {
    return (lf_calibrate_params){.tokens = 4096, .rank = 128, .recall = 0.99, .sparsity = 0.5f, .epochs = 20};
}

typedef struct collector {
    FILE **files;         /* (n_layer) one layer's inputs each, n_embd floats per sample */
    uint32_t n_embd;
    bool failed;
} collector;

static void collect(void *user, uint32_t layer, const float *x) {
    collector *c = user;
    if (fwrite(x, sizeof *x, c->n_embd, c->files[layer]) != c->n_embd) c->failed = true;
}

/* Runs the model over tokens in chunks after a BOS, giving each layer's
 * FFN input to tap. */
static lf_status run_text(lf_model *m, const lf_token *toks, size_t n, void (*tap)(void *, uint32_t, const float *),
                          void *user, const lf_calibrate_params *p, uint64_t *samples, lf_err *err) {
    lf_session_params sp = lf_session_default_params();
    sp.n_ctx = 256;
    lf_session *s;
    char msg[LF_ERRMSG_CAP];
    lf_status st = lf_session_create(m, &sp, &s, msg, sizeof msg);
    if (st) return lf__err_set(err, st, "%s", msg);
    s->ffn_tap = tap;
    s->ffn_tap_user = user;
    const lf_token bos = lf_token_bos(m) >= 0 ? lf_token_bos(m) : toks[0];
    *samples = 0;
    for (size_t c0 = 0; c0 < n && !st; c0 += 255) {
        lf_session_reset(s);
        const size_t c1 = LF_MIN(c0 + 255, n);
        lf_token prev = bos;
        for (size_t i = c0; i < c1 && !st; i++) {
            if ((st = lf_session_eval(s, &prev, 1))) lf__err_set(err, st, "%s", lf_session_errmsg(s));
            (*samples)++;
            prev = toks[i];
        }
        if (!st && p->progress && !p->progress(p->user, c1, n))
            st = lf__err_set(err, LF_E_INTERRUPTED, "interrupted after %zu of %zu tokens; nothing was written", c1, n);
    }
    lf_session_destroy(s);
    return st;
}

/* ---- mixtures of experts: routing statistics ----------------------------- */

typedef struct route_counter {
    const lf_model *m;
    uint64_t *counts;   /* (n_layer, n_expert) */
    float *logits, *weights;
    uint32_t *experts;
    lf_block_q8a *xq;
} route_counter;

static void count_route(void *user, uint32_t layer, const float *x) {
    route_counter *r = user;
    const uint32_t ne = r->m->info.n_expert, k = r->m->info.n_expert_used;
    lf__router_logits(r->m, NULL, layer, x, 1, r->logits, r->xq);
    lf__moe_route(r->logits, ne, k, r->experts, r->weights);
    for (uint32_t i = 0; i < k; i++) r->counts[(uint64_t)layer * ne + r->experts[i]]++;
}

/* A mixture of experts needs no predictor (its router is exact): what
 * calibrate learns is which experts each layer routes to most, the hot set
 * sessions pin (lf_session_params.hot_experts). */
static lf_status calibrate_routing(lf_model *m, const lf_token *toks, size_t n_tok, const char *out_path,
                                   const lf_calibrate_params *p, lf_calibrate_stats *cs, lf_err *err) {
    const lf_model_info *in = &m->info;
    route_counter r = {.m = m};
    r.counts = calloc((uint64_t)in->n_layer * in->n_expert, sizeof *r.counts);
    r.logits = malloc(in->n_expert * sizeof *r.logits);
    r.weights = malloc(in->n_expert_used * sizeof *r.weights);
    r.experts = malloc(in->n_expert_used * sizeof *r.experts);
    r.xq = lf__alloc_aligned((in->n_embd / LF_QK + 1) * sizeof(lf_block_q8a), 64);
    char *path = lf__routing_path(m->path, out_path);
    lf_status st = LF_OK;
    uint64_t n = 0;
    if (!r.counts || !r.logits || !r.weights || !r.experts || !r.xq || !path)
        st = lf__err_set(err, LF_E_NOMEM, "routing statistics");
    if (!st) st = run_text(m, toks, n_tok, count_route, &r, p, &n, err);
    if (!st) st = lf__routing_stats_write(path, m, r.counts, n, p->force, err);
    if (!st) {
        cs->tokens = n;
        cs->activation = in->activation;
        cs->true_density = (double)in->n_expert_used / in->n_expert;
        cs->routing = true;
        const uint32_t top = LF_MAX(in->n_expert / 8, 1u);
        for (uint32_t l = 0; l < in->n_layer; l++) {
            uint64_t *c = r.counts + (uint64_t)l * in->n_expert, all = 0, hot = 0;
            for (uint32_t e = 0; e < in->n_expert; e++) all += c[e];
            for (uint32_t k = 0; k < top; k++) { /* selection: the counts are no longer needed after */
                uint32_t best = 0;
                for (uint32_t e = 1; e < in->n_expert; e++)
                    if (c[e] > c[best]) best = e;
                hot += c[best];
                c[best] = 0;
            }
            cs->routing_hot_share += all ? (double)hot / (double)all / in->n_layer : 0.0;
        }
    }
    free(r.counts), free(r.logits), free(r.weights), free(r.experts), free(path);
    lf__free_aligned(r.xq);
    return st;
}

/* One layer's gate and up rows as floats (n_ff, n_embd) each. */
static lf_status layer_rows(const lf_model *m, uint32_t l, float *G, float *U, lf_err *err) {
    const lf_bundle_layout *B = &m->flash->layout;
    const uint32_t d = m->info.n_embd, n_ff = m->info.n_ff;
    uint8_t *recs = malloc((uint64_t)n_ff * B->record_bytes);
    if (!recs) return lf__err_set(err, LF_E_NOMEM, "layer %u's records", l);
    const lf_status st = lf__flash_read_layer(m->flash, m->fd, l, recs, m->verify_checksums, err);
    for (uint32_t i = 0; i < n_ff && !st; i++) {
        const uint8_t *r = recs + (uint64_t)i * B->record_bytes;
        if (B->n_rows == 3) lf__dequantize_row(B->type, r, G + (uint64_t)i * d, d);
        lf__dequantize_row(B->type, r + (B->n_rows == 3 ? B->row_bytes : 0), U + (uint64_t)i * d, d);
    }
    free(recs);
    return st;
}

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Labels (N, n_ff) of the exact activations: non-zero for ReLU-type FFNs,
 * |h| >= tau for SwiGLU with tau set for the target sparsity. */
static lf_status label(const lf_model *m, const float *X, uint64_t N, const float *G, const float *U, float sparsity,
                       uint8_t *Y, float *tau, lf_err *err) {
    const uint32_t d = m->info.n_embd, n_ff = m->info.n_ff;
    const lf_activation act = m->info.activation;
    float *zg = act != LF_ACT_RELU ? malloc(N * n_ff * sizeof *zg) : NULL, *zu = malloc(N * n_ff * sizeof *zu);
    if ((act != LF_ACT_RELU && !zg) || !zu) {
        free(zg);
        free(zu);
        return lf__err_set(err, LF_E_NOMEM, "logits of %" PRIu64 " samples", N);
    }
    if (zg)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)n_ff, (int)d, 1.0f, X, (int)d, G, (int)d, 0.0f,
                    zg, (int)n_ff);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)n_ff, (int)d, 1.0f, X, (int)d, U, (int)d, 0.0f, zu,
                (int)n_ff);
    *tau = 0.0f;
    for (uint64_t k = 0; k < N * n_ff; k++) zu[k] = fabsf(lf__ffn_activate(act, zg ? zg[k] : 0.0f, zu[k]));
    if (act == LF_ACT_SILU_GATED) {
        /* the |h| quantile at the target sparsity, from a sorted copy */
        float *sorted = zg; /* gate logits are no longer needed */
        memcpy(sorted, zu, N * n_ff * sizeof *sorted);
        qsort(sorted, N * n_ff, sizeof *sorted, cmp_float);
        *tau = sorted[(uint64_t)LF_MIN((double)(N * n_ff - 1), floor((double)sparsity * (double)(N * n_ff)))];
    }
    for (uint64_t k = 0; k < N * n_ff; k++) Y[k] = act == LF_ACT_SILU_GATED ? zu[k] >= *tau : zu[k] != 0.0f;
    free(zg);
    free(zu);
    return LF_OK;
}

/* The weights one predictor of this shape is tried in: F16, Q8_0, or both
 * (auto) where the shape fits Q8_0. Returns how many. */
static int weight_types(lf_predictor_weights want, uint32_t d, uint32_t rank, uint32_t *types) {
    const bool q8 = lf__lowrank_run_fits(LF_TYPE_Q8_0, d, rank);
    if (want == LF_PREDICTOR_Q8_0 && q8) return types[0] = LF_TYPE_Q8_0, 1;
    types[0] = LF_TYPE_F16;
    if (want == LF_PREDICTOR_AUTO && q8) return types[1] = LF_TYPE_Q8_0, 2;
    return 1;
}

/* The run form of a fitted predictor (gate; with up, the SwiGLU pair), its
 * threshold set on the threshold split (Xt, Yt) from its own scores. With
 * two weight types to try (auto), Q8_0 is kept unless the units it predicts
 * beyond F16's, per token, outnumber the units (unit_bytes each) that the
 * DRAM it saves can cache: under a budget, a byte of predictor is a byte
 * the neuron cache does not have. */
static lf_status run_form(const lf_kernels *k, const lf_lowrank *gate, const lf_lowrank *up, lf_predictor_weights want,
                          const float *Xt, const uint8_t *Yt, uint64_t n_thr, double aim, uint64_t unit_bytes,
                          lf_layer_predictor *out, lf_err *err) {
    uint32_t types[2];
    const int n = weight_types(want, gate->n_in, gate->rank, types);
    double density[2] = {0};
    uint64_t bytes[2] = {0};
    lf_status st = LF_OK;
    for (int t = 0; t < n && !st; t++) {
        lf_layer_predictor c = {0};
        lf_lowrank_quality q = {0};
        if (lf__lowrank_run_from(&c.gate, gate, types[t]) || (up && lf__lowrank_run_from(&c.up, up, types[t])))
            st = lf__err_set(err, LF_E_NOMEM, "predictor of rank %u", gate->rank);
        if (!st) st = lf__layer_predictor_calibrate(&c, k, Xt, Yt, n_thr, aim, err);
        if (!st && (st = lf__layer_predictor_evaluate(&c, k, Xt, Yt, n_thr, &q))) lf__err_set(err, st, "predictor quality");
        density[t] = q.predicted_density;
        bytes[t] = lf__layer_predictor_bytes(&c);
        if (!st && (t == 0 || lf__cheaper_predictor_pays(density[0], density[t], gate->n_out, bytes[0], bytes[t],
                                                          unit_bytes))) {
            lf__layer_predictor_free(out);
            *out = c;
        } else lf__layer_predictor_free(&c);
    }
    return st;
}

/* SwiGLU: the training-free pair of SVD predictors (gate and up), scored by
 * |silu(zg)·zu|, its threshold on the threshold split in the weights it
 * runs in. X may be another layer's inputs (the lookahead's). */
static lf_status fit_swiglu(const lf_model *m, const float *X, const uint8_t *Y, const float *G, const float *U,
                            uint32_t rank, uint64_t n_fit, uint64_t n_thr, uint64_t n_rep, double aim,
                            lf_predictor_weights want, lf_layer_predictor *out, lf_lowrank_quality *q, lf_err *err) {
    const uint32_t d = m->info.n_embd, n_ff = m->info.n_ff;
    lf_lowrank gate = {0}, up = {0};
    lf_status st = lf__lowrank_init_svd(&gate, G, n_ff, d, rank, err);
    if (!st) st = lf__lowrank_init_svd(&up, U, n_ff, d, rank, err);
    if (!st) st = run_form(m->kernels, &gate, &up, want, X + n_fit * d, Y + n_fit * n_ff, n_thr, aim,
                                m->flash->layout.record_bytes, out, err);
    if (!st)
        st = lf__layer_predictor_evaluate(out, m->kernels, X + (n_fit + n_thr) * d, Y + (n_fit + n_thr) * n_ff, n_rep, q);
    lf__lowrank_free(&gate);
    lf__lowrank_free(&up);
    return st;
}

/* ReLU-type FFNs: the SVD of W (the gate, or up for plain ReLU) is a
 * training-free predictor; fitting must beat it on the threshold split
 * (precision at the target recall, with the weights rounded to F16), or
 * the SVD one is kept. The one kept gets its threshold in the weights it
 * runs in. X may be another layer's inputs (the lookahead's). */
static lf_status fit_relu(const lf_model *m, uint32_t l, const float *X, const uint8_t *Y, const float *W, uint32_t rank,
                          uint64_t n_fit, uint64_t n_thr, uint64_t n_rep, double aim, uint32_t epochs,
                          lf_predictor_weights want, lf_layer_predictor *out, lf_lowrank_quality *q, lf_err *err) {
    const uint32_t d = m->info.n_embd, n_ff = m->info.n_ff;
    const float *Xt = X + n_fit * d;
    const uint8_t *Yt = Y + n_fit * n_ff;
    lf_lowrank pred = {0}, init = {0};
    lf_lowrank_quality q_init, q_fit;
    lf_status st = lf__lowrank_init_svd(&pred, W, n_ff, d, rank, err);
    if (!st) {
        lf__lowrank_round_f16(&pred);
        st = lf__lowrank_calibrate(&pred, Xt, Yt, n_thr, aim, err);
    }
    if (!st) st = lf__lowrank_evaluate(&pred, Xt, Yt, n_thr, &q_init);
    if (!st && lf__lowrank_copy(&init, &pred)) st = lf__err_set(err, LF_E_NOMEM, "predictor copy");
    lf_lowrank_fit_params fp = {.epochs = epochs, .seed = 1 + l};
    if (!st) st = lf__lowrank_fit(&pred, X, Y, n_fit, &fp, err);
    if (!st) {
        lf__lowrank_round_f16(&pred);
        st = lf__lowrank_calibrate(&pred, Xt, Yt, n_thr, aim, err);
    }
    if (!st) st = lf__lowrank_evaluate(&pred, Xt, Yt, n_thr, &q_fit);
    if (!st && q_init.precision >= q_fit.precision) {
        lf__lowrank_free(&pred);
        pred = init;
        init = (lf_lowrank){0};
        lf__log(&m->log, LF_LOG_INFO, "layer %u: the SVD predictor (precision %.3f) beats the fitted one (%.3f)", l,
                q_init.precision, q_fit.precision);
    }
    lf__lowrank_free(&init);
    if (!st) st = run_form(m->kernels, &pred, NULL, want, Xt, Yt, n_thr, aim, m->flash->layout.record_bytes, out, err);
    if (!st)
        st = lf__layer_predictor_evaluate(out, m->kernels, X + (n_fit + n_thr) * d, Y + (n_fit + n_thr) * n_ff, n_rep, q);
    lf__lowrank_free(&pred);
    return st;
}

/* One layer's samples, read back from its temporary file. */
static lf_status read_samples(FILE *f, uint32_t l, uint64_t N, uint32_t d, float *X, lf_err *err) {
    if (fseek(f, 0, SEEK_SET) != 0 || fread(X, sizeof *X, N * d, f) != N * d)
        return lf__err_set(err, LF_E_IO, "reading back layer %u's activations failed", l);
    return LF_OK;
}

/* Layer l's predictor rank: p->rank, or on the schedule to p->rank_last. */
static uint32_t layer_rank(const lf_model *m, const lf_calibrate_params *p, uint32_t l) {
    const uint32_t L = m->info.n_layer;
    const double want = p->rank_last && L > 1 ? p->rank + ((double)p->rank_last - p->rank) * l / (L - 1) : p->rank;
    return LF_MIN((uint32_t)(want + 0.5), LF_MIN(m->info.n_embd, m->info.n_ff));
}

static uint32_t lookahead_rank(const lf_model *m, const lf_calibrate_params *p) {
    return LF_MIN(p->lookahead_rank ? p->lookahead_rank : p->rank, LF_MIN(m->info.n_embd, m->info.n_ff));
}

/* Q8_0 weights asked for: every predictor's shape must fit them. */
static lf_status check_q8_0_shapes(const lf_model *m, const lf_calibrate_params *p, lf_err *err) {
    const uint32_t d = m->info.n_embd;
    for (uint32_t l = 0; l < m->info.n_layer; l++) {
        const uint32_t r = layer_rank(m, p, l);
        if (!lf__lowrank_run_fits(LF_TYPE_Q8_0, d, r) || (p->lookahead && !lf__lowrank_run_fits(LF_TYPE_Q8_0, d, lookahead_rank(m, p))))
            return lf__err_set(err, LF_E_INVALID_ARG, "Q8_0 predictor weights need d_model (%u) and every rank in "
                               "multiples of 32 (layer %u's rank is %u%s): choose another rank, or F16 or auto weights",
                               d, l, r, p->lookahead ? ", or its lookahead rank" : "");
    }
    return LF_OK;
}

/* Fits layer l's predictor, and with X_prev (layer l-1's samples) its
 * lookahead, from the layer's samples X. */
static lf_status fit_layer(const lf_model *m, uint32_t l, const float *X, const float *X_prev, uint64_t N,
                           const lf_calibrate_params *p, lf_predictor_set *set, uint32_t *order, lf_calibrate_layer *q,
                           lf_err *err) {
    const uint32_t d = m->info.n_embd, n_ff = m->info.n_ff;
    float *G = malloc((uint64_t)n_ff * d * sizeof *G), *U = malloc((uint64_t)n_ff * d * sizeof *U);
    uint8_t *Y = malloc(N * n_ff);
    lf_status st = G && U && Y ? LF_OK : lf__err_set(err, LF_E_NOMEM, "layer %u: %" PRIu64 " samples", l, N);
    if (!st) st = layer_rows(m, l, G, U, err);
    if (!st) st = label(m, X, N, G, U, p->sparsity, Y, &set->taus[l], err);
    /* placement: from the fitting split's co-activations */
    if (!st && order) st = lf__placement_order(Y, N * 3 / 5, n_ff, order, err);
    /* 60% to fit, 20% for the threshold, 20% to report on */
    const uint64_t n_fit = N * 3 / 5, n_thr = N / 5, n_rep = N - n_fit - n_thr;
    const uint32_t rank = layer_rank(m, p, l), ahead_rank = lookahead_rank(m, p);
    /* the threshold aims halfway above the target recall on its split, so
     * that unseen tokens still reach the target */
    const double aim = 1.0 - (1.0 - p->recall) / 2.0;
    const double ahead_aim = 1.0 - (1.0 - (p->lookahead_recall > 0 ? p->lookahead_recall : 0.9)) / 2.0;
    const float *W = m->info.activation == LF_ACT_RELU ? U : G;
    lf_lowrank_quality lq = {0}, aq = {0};
    if (!st)
        st = set->pair ? fit_swiglu(m, X, Y, G, U, rank, n_fit, n_thr, n_rep, aim, p->weights, &set->layers[l], &lq, err)
                       : fit_relu(m, l, X, Y, W, rank, n_fit, n_thr, n_rep, aim, p->epochs, p->weights, &set->layers[l],
                                  &lq, err);
    /* the lookahead: the same truth from the layer before's input */
    if (!st && X_prev)
        st = set->pair
                 ? fit_swiglu(m, X_prev, Y, G, U, ahead_rank, n_fit, n_thr, n_rep, ahead_aim, p->weights, &set->ahead[l],
                              &aq, err)
                 : fit_relu(m, l, X_prev, Y, W, ahead_rank, n_fit, n_thr, n_rep, ahead_aim, p->epochs, p->weights,
                            &set->ahead[l], &aq, err);
    q->recall = lq.recall;
    q->precision = lq.precision;
    q->predicted_density = lq.predicted_density;
    q->true_density = lq.true_density;
    q->ahead_recall = aq.recall;
    q->ahead_precision = aq.precision;
    q->ahead_density = aq.predicted_density;
    q->weights = (lf_type)set->layers[l].gate.type;
    free(G);
    free(U);
    free(Y);
    return st;
}

lf_status lf_calibrate(const char *model_path, const char *text, size_t len, const char *out_path,
                       const lf_calibrate_params *params, lf_calibrate_stats *stats, char *errbuf, size_t errcap) {
    lf_err err = {{0}};
    if (errbuf && errcap) errbuf[0] = '\0';
    if (!model_path || (!text && len)) return LF_E_INVALID_ARG;
    lf_calibrate_params p = params ? *params : lf_calibrate_default_params();
    if (!p.tokens) p.tokens = 4096;
    if (!p.rank) p.rank = 128;
    if (p.recall == 0.0) p.recall = 0.99;
    if (p.sparsity == 0.0f) p.sparsity = 0.5f;
    const uint64_t t0 = lf__now_ns();
    lf_calibrate_stats local = {0};
    lf_calibrate_stats *cs = stats ? stats : &local;
    memset(cs, 0, sizeof *cs);
    lf_model *m = NULL;
    lf_token *toks = NULL;
    char *save_path = NULL;
    collector c = {0};
    lf_predictor_set set = {0};
    float *X = NULL, *X_prev = NULL;
    uint32_t **orders = NULL;
    lf_model *placed = NULL;
    lf_status st;
    if (!(p.recall > 0.0 && p.recall <= 1.0) || !(p.sparsity > 0.0f && p.sparsity < 1.0f) || p.tokens < 64 ||
        ((p.lookahead_rank || p.lookahead_recall != 0.0) && !p.lookahead) ||
        !(p.lookahead_recall >= 0.0 && p.lookahead_recall <= 1.0) ||
        !(p.weights == LF_PREDICTOR_F16 || p.weights == LF_PREDICTOR_Q8_0 || p.weights == LF_PREDICTOR_AUTO)) {
        st = lf__err_set(&err, LF_E_INVALID_ARG, "recall must be in (0, 1], sparsity in (0, 1), tokens at least 64, "
                         "a lookahead rank needs lookahead, and the weights are F16, Q8_0 or auto");
        goto out;
    }
    lf_model_params mp = lf_model_default_params(); /* auto: stream for a flash file, every unit cached */
    char msg[LF_ERRMSG_CAP];
    if ((st = lf_model_open(model_path, &mp, &m, msg, sizeof msg))) {
        lf__err_set(&err, st, "%s", msg);
        goto out;
    }
    if (!m->flash) {
        st = lf__err_set(&err, LF_E_INVALID_ARG, "%s is a plain GGUF: calibrate a flash file", model_path);
        goto out;
    }
    size_t n_tok = 0;
    lf_tokenize(m, text ? text : "", len, false, NULL, 0, &n_tok);
    if (n_tok < 64) {
        st = lf__err_set(&err, LF_E_INVALID_ARG, "the calibration text gives %zu tokens; at least 64 are needed", n_tok);
        goto out;
    }
    if (!(toks = malloc(n_tok * sizeof *toks)) || lf_tokenize(m, text, len, false, toks, n_tok, &n_tok)) {
        st = lf__err_set(&err, LF_E_NOMEM, "tokens of the calibration text");
        goto out;
    }
    n_tok = LF_MIN(n_tok, (size_t)p.tokens);
    if (m->info.n_expert > 1) {
        if (p.lookahead || p.reorder_path) {
            st = lf__err_set(&err, LF_E_UNSUPPORTED, "a mixture of experts routes with its router: lookahead needs no "
                             "predictor, and experts are not reordered");
            goto out;
        }
        st = calibrate_routing(m, toks, n_tok, out_path, &p, cs, &err);
        goto out;
    }
    if (p.weights == LF_PREDICTOR_Q8_0 && (st = check_q8_0_shapes(m, &p, &err))) goto out;
    const uint32_t n_layer = m->info.n_layer;
    c.n_embd = m->info.n_embd;
    c.files = calloc(n_layer, sizeof *c.files);
    set.n_layer = n_layer;
    set.pair = m->info.activation == LF_ACT_SILU_GATED;
    set.layers = calloc(n_layer, sizeof *set.layers);
    set.taus = calloc(n_layer, sizeof *set.taus);
    if (p.lookahead) set.ahead = calloc(n_layer, sizeof *set.ahead);
    if (!c.files || !set.layers || !set.taus || (p.lookahead && !set.ahead)) {
        st = lf__err_set(&err, LF_E_NOMEM, "calibration tables");
        goto out;
    }
    if (p.reorder_path) {
        if (m->flash->layout.compression != LF_COMPRESS_NONE) {
            st = lf__err_set(&err, LF_E_UNSUPPORTED, "placement reorders single neurons: %s is compressed in groups "
                             "(convert it without compression)", model_path);
            goto out;
        }
        if (!(orders = calloc(n_layer, sizeof *orders))) {
            st = lf__err_set(&err, LF_E_NOMEM, "placement tables");
            goto out;
        }
        for (uint32_t l = 0; l < n_layer; l++)
            if (!(orders[l] = malloc(m->info.n_ff * sizeof **orders))) {
                st = lf__err_set(&err, LF_E_NOMEM, "placement tables");
                goto out;
            }
    }
    for (uint32_t l = 0; l < n_layer; l++)
        if (!(c.files[l] = tmpfile())) {
            st = lf__err_set(&err, LF_E_IO, "a temporary file for layer %u's activations: %s", l, strerror(errno));
            goto out;
        }
    uint64_t N = 0;
    if ((st = run_text(m, toks, n_tok, collect, &c, &p, &N, &err))) goto out;
    if (c.failed) {
        st = lf__err_set(&err, LF_E_IO, "writing the collected activations to a temporary file failed");
        goto out;
    }
    const uint32_t d = m->info.n_embd;
    double tp = 0, pred = 0, truth = 0, total = 0, a_tp = 0, a_pred = 0, a_truth = 0;
    /* this layer's samples, and the layer before's for the lookahead */
    if (!(X = malloc(N * d * sizeof *X)) || (p.lookahead && !(X_prev = malloc(N * d * sizeof *X_prev)))) {
        st = lf__err_set(&err, LF_E_NOMEM, "%" PRIu64 " samples of one layer", N);
        goto out;
    }
    for (uint32_t l = 0; l < n_layer; l++) {
        const uint64_t t_layer = lf__now_ns();
        lf_calibrate_layer q = {.layer = l, .n_layer = n_layer};
        if ((st = read_samples(c.files[l], l, N, d, X, &err)) ||
            (st = fit_layer(m, l, X, p.lookahead && l > 0 ? X_prev : NULL, N, &p, &set,
                            orders ? orders[l] : NULL, &q, &err)))
            goto out;
        fclose(c.files[l]); /* one layer's samples on disk at a time from here */
        c.files[l] = NULL;
        if (p.lookahead) {
            float *t = X_prev;
            X_prev = X;
            X = t;
        }
        q.seconds = lf__ns_to_ms(lf__now_ns() - t_layer) / 1e3;
        if (p.on_layer) p.on_layer(p.user, &q);
        cs->q8_0_layers += q.weights == LF_TYPE_Q8_0;
        tp += q.recall * q.true_density;
        pred += q.predicted_density;
        truth += q.true_density;
        total += 1;
        if (p.lookahead && l > 0) {
            a_tp += q.ahead_recall * q.true_density;
            a_pred += q.ahead_density;
            a_truth += q.true_density;
        }
    }
    cs->n_layer = n_layer;
    cs->tokens = N * 3 / 5;
    cs->held_out = N - cs->tokens;
    cs->recall = truth > 0 ? tp / truth : 1.0;
    cs->precision = pred > 0 ? tp / pred : 1.0;
    cs->predicted_density = pred / total;
    cs->true_density = truth / total;
    cs->ahead_recall = a_truth > 0 ? a_tp / a_truth : 0.0;
    cs->ahead_precision = a_pred > 0 ? a_tp / a_pred : 0.0;
    cs->predictor_bytes = lf__predictor_set_bytes(&set);
    cs->activation = m->info.activation;
    const lf_model *target = m;
    if (orders) { /* the source's predictor first, then the placed copy's */
        if (!(save_path = lf__predictor_path(model_path, NULL))) {
            st = lf__err_set(&err, LF_E_NOMEM, "output path");
            goto out;
        }
        if ((st = lf__predictor_save(&set, m, save_path, p.force, &err))) goto out;
        free(save_path);
        save_path = NULL;
    }
    if (orders) { /* the placed copy, and the predictor's outputs in its order */
        for (uint32_t l = 0; l < n_layer && !st; l++) {
            lf_layer_predictor *parts[2] = {&set.layers[l], set.ahead ? &set.ahead[l] : NULL};
            for (int k = 0; k < 2 && !st; k++)
                if (parts[k] && (lf__lowrank_run_permute_outputs(&parts[k]->gate, orders[l]) ||
                                 lf__lowrank_run_permute_outputs(&parts[k]->up, orders[l])))
                    st = lf__err_set(&err, LF_E_NOMEM, "reordering the predictor");
        }
        if (!st) st = lf__flash_reorder(model_path, p.reorder_path, (const uint32_t *const *)orders, p.force, &err);
        if (!st && (st = lf_model_open(p.reorder_path, &mp, &placed, msg, sizeof msg)))
            lf__err_set(&err, st, "the placed copy %s: %s", p.reorder_path, msg);
        if (st) goto out;
        target = placed;
    }
    if (!(save_path = lf__predictor_path(orders ? p.reorder_path : model_path, out_path))) {
        st = lf__err_set(&err, LF_E_NOMEM, "output path");
        goto out;
    }
    st = lf__predictor_save(&set, target, save_path, p.force, &err);
out:
    if (c.files)
        for (uint32_t l = 0; m && l < m->info.n_layer; l++)
            if (c.files[l]) fclose(c.files[l]);
    free(c.files);
    free(X);
    free(X_prev);
    for (uint32_t l = 0; orders && l < m->info.n_layer; l++) free(orders[l]);
    free(orders);
    lf_model_close(placed);
    lf__predictor_set_free(&set);
    free(toks);
    free(save_path);
    lf_model_close(m);
    cs->seconds = lf__ns_to_ms(lf__now_ns() - t0) / 1e3;
    if (st) lf__err_copy_out(&err, errbuf, errcap);
    return st;
}
