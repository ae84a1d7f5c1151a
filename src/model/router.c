/* router.c - the router mask source (see router.h). */
#include "router.h"
#include "matmul.h"
#include "moe.h"

#include "../gguf/gguf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct router {
    const lf_model *m;
    lf_pool *pool;
    uint32_t n_expert, k, d, max_batch;
    float *logits;       /* (max_batch, n_expert) */
    uint32_t *experts;   /* (k) one token's */
    float *weights;      /* (k) */
    uint8_t *any;        /* (n_expert) */
    lf_block_q8a *xq;    /* (max_batch, d / 32 + 1) */
} router;

uint64_t lf__mask_router_bytes(const lf_model *m, uint32_t max_batch) {
    const lf_model_info *in = &m->info;
    return sizeof(router) + (uint64_t)max_batch * in->n_expert * sizeof(float) +
           in->n_expert_used * (sizeof(uint32_t) + sizeof(float)) + in->n_expert +
           (uint64_t)max_batch * (in->n_embd / LF_QK + 1) * sizeof(lf_block_q8a);
}

/* Routes the batch with layer `layer`'s router; weights as lf_mask_ops.route. */
static uint32_t route_batch(router *r, uint32_t layer, const float *x, size_t n, uint32_t *units, float *weights) {
    if (n > r->max_batch) n = r->max_batch; /* the engine never asks for more */
    lf__router_logits(r->m, r->pool, layer, x, n, r->logits, r->xq);
    memset(r->any, 0, r->n_expert);
    if (weights) memset(weights, 0, (uint64_t)r->n_expert * n * sizeof(float));
    for (size_t t = 0; t < n; t++) {
        lf__moe_route(r->logits + t * r->n_expert, r->n_expert, r->k, r->experts, r->weights);
        for (uint32_t i = 0; i < r->k; i++) {
            r->any[r->experts[i]] = 1;
            if (weights) weights[(uint64_t)r->experts[i] * n + t] = r->weights[i];
        }
    }
    uint32_t m = 0;
    for (uint32_t e = 0; e < r->n_expert; e++)
        if (r->any[e]) units[m++] = e;
    return m;
}

static uint32_t router_route(void *state, uint32_t layer, const float *x, size_t n, uint32_t *units, float *weights) {
    return route_batch(state, layer, x, n, units, weights);
}

static uint32_t router_select(void *state, uint32_t layer, const float *x, size_t n, uint32_t *units) {
    return route_batch(state, layer, x, n, units, NULL);
}

static uint32_t router_select_ahead(void *state, uint32_t layer, const float *x_prev, size_t n, uint32_t *units) {
    return layer > 0 ? route_batch(state, layer, x_prev, n, units, NULL) : 0;
}

static void router_destroy(void *state) {
    router *r = state;
    if (!r) return;
    free(r->logits);
    free(r->experts);
    free(r->weights);
    free(r->any);
    lf__free_aligned(r->xq);
    free(r);
}

static const lf_mask_ops router_ops = {.name = "router", .needs_input = true, .select = router_select,
                                       .route = router_route, .destroy = router_destroy};
static const lf_mask_ops router_ahead_ops = {.name = "router", .needs_input = true, .select = router_select,
                                             .select_ahead = router_select_ahead, .route = router_route,
                                             .destroy = router_destroy};

lf_status lf__mask_router_create(const lf_model *m, lf_pool *pool, uint32_t max_batch, bool lookahead, lf_mask *out,
                                 lf_err *err) {
    const lf_model_info *in = &m->info;
    router *r = calloc(1, sizeof *r);
    if (!r) return lf__err_set(err, LF_E_NOMEM, "router");
    r->m = m;
    r->pool = pool;
    r->n_expert = in->n_expert;
    r->k = in->n_expert_used;
    r->d = in->n_embd;
    r->max_batch = max_batch ? max_batch : 1;
    r->logits = malloc((uint64_t)r->max_batch * r->n_expert * sizeof(float));
    r->experts = malloc(r->k * sizeof *r->experts);
    r->weights = malloc(r->k * sizeof *r->weights);
    r->any = malloc(r->n_expert);
    r->xq = lf__alloc_aligned((uint64_t)r->max_batch * (r->d / LF_QK + 1) * sizeof(lf_block_q8a), 64);
    if (!r->logits || !r->experts || !r->weights || !r->any || !r->xq) {
        router_destroy(r);
        return lf__err_set(err, LF_E_NOMEM, "router scratch");
    }
    *out = (lf_mask){lookahead ? &router_ahead_ops : &router_ops, r, lf__mask_router_bytes(m, r->max_batch)};
    return LF_OK;
}

char *lf__routing_path(const char *model_path, const char *given) {
    return lf__sidecar_path(model_path, given, ".routing");
}

void lf__router_logits(const lf_model *m, lf_pool *pool, uint32_t layer, const float *x, size_t n, float *logits,
                       lf_block_q8a *xq) {
    const lf_weight *w = &m->layers[layer].router;
    const uint32_t d = m->info.n_embd;
    const void *xin = x;
    uint64_t stride = (uint64_t)d * sizeof(float);
    if (lf__type_uses_q8a(w->type)) {
        const uint64_t blocks = d / LF_QK + 1;
        for (size_t t = 0; t < n; t++) m->kernels->quantize_q8a(x + t * d, xq + t * blocks, d);
        xin = xq;
        stride = blocks * sizeof(lf_block_q8a);
    }
    lf__matmul(pool, m->kernels, w, xin, stride, (int)n, logits, m->info.n_expert);
}

lf_status lf__routing_stats_write(const char *path, const lf_model *m, const uint64_t *counts, uint64_t tokens,
                                  bool force, lf_err *err) {
    lf_gguf_writer *w;
    lf_status st = lf__gguf_writer_create(LF_GGUF_DEFAULT_ALIGNMENT, &w);
    if (st) return lf__err_set(err, st, "routing statistics");
    lf_outfile out = {.fd = -1};
    const uint64_t n = (uint64_t)m->info.n_layer * m->info.n_expert;
    st = lf__gguf_writer_set_str(w, "general.architecture", "llmflash-routing");
    if (!st) st = lf__gguf_writer_set_u32(w, "llmflash.routing.n_layer", m->info.n_layer);
    if (!st) st = lf__gguf_writer_set_u32(w, "llmflash.routing.n_expert", m->info.n_expert);
    if (!st) st = lf__gguf_writer_set_u64(w, LF_KEY_ROUTING_TOKENS, tokens);
    if (!st) st = lf__gguf_writer_set_arr(w, LF_KEY_ROUTING_COUNTS, LF_GGUF_U64, counts, n);
    if (st) lf__err_set(err, st, "routing statistics header");
    if (!st) st = lf__outfile_open(&out, path, force, err);
    if (!st) st = lf__gguf_writer_write_header(w, out.fd, err);
    if (!st) st = lf__gguf_writer_finish(w, err);
    if (!st) st = lf__outfile_commit(&out, err);
    if (out.fd >= 0) lf__outfile_abort(&out);
    lf__gguf_writer_destroy(w);
    return st;
}

lf_status lf__routing_stats_load(const char *path, const lf_model *m, uint64_t **counts, lf_err *err) {
    *counts = NULL;
    lf_gguf *g;
    lf_status st = lf__gguf_read_file(path, &g, err);
    if (st) return st;
    uint32_t n_layer = 0, n_expert = 0;
    const lf_gguf_kv *kv = lf__gguf_find(g, LF_KEY_ROUTING_COUNTS);
    const uint64_t n = (uint64_t)m->info.n_layer * m->info.n_expert;
    if ((st = lf__gguf_get_u32_or(g, "llmflash.routing.n_layer", 0, &n_layer, err)) ||
        (st = lf__gguf_get_u32_or(g, "llmflash.routing.n_expert", 0, &n_expert, err)))
        goto done;
    if (!kv || kv->type != LF_GGUF_ARRAY || kv->arr_type != LF_GGUF_U64 || kv->arr_n != n || kv->data_len < n * 8 ||
        n_layer != m->info.n_layer || n_expert != m->info.n_expert) {
        st = lf__err_set(err, LF_E_MODEL, "%s holds no routing statistics for %u layers of %u experts", path,
                         m->info.n_layer, m->info.n_expert);
        goto done;
    }
    if (!(*counts = malloc(n * sizeof **counts))) {
        st = lf__err_set(err, LF_E_NOMEM, "routing statistics");
        goto done;
    }
    for (uint64_t i = 0; i < n; i++) (*counts)[i] = lf__load_u64(kv->data + 8 * i);
done:
    lf__gguf_free(g);
    return st;
}
