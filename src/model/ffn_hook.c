/* ffn_hook.c - the FFN engine as public API (lf_ffn_*): an engine with
 * attention of its own drives llmflash's streamed FFN layer by layer. This
 * file adds what a session otherwise adds around the engine: a share of the
 * budget ledger, a thread pool, the passes over the layers (batches), the
 * checks of a public entry point, and the adapter that vets an engine's
 * mask hook. */
#include "ffn_engine.h"
#include "../stats/trace.h"

#include <inttypes.h>
#include <stdlib.h>

struct lf_ffn {
    lf_model *m;
    lf_ffn_engine *engine;
    lf_pool *pool;
    bool own_pool;
    lf_err err;
    uint64_t budget_taken;
    uint32_t max_batch;
    /* the pass in progress: its batch size, and the last layer computed
     * (-1: none yet); a layer at or below it starts the next pass */
    bool in_pass;
    size_t pass_n;
    int64_t last_forward;
    /* the highest layer of the pass whose reads are planned (-1: none): the
     * engine plans at most the layer to compute next and the one after it,
     * in that order, and the hook keeps any order of calls within that */
    int64_t planned;
    uint64_t compute_ns;
    uint64_t tokens;         /* summed over passes */
    /* the engine's mask hook, behind the internal mask-source table */
    lf_ffn_mask_hook hook;
    lf_mask_ops hook_ops;
    bool hook_bad;           /* the hook's last set was out of order or range */
    uint32_t hook_bad_layer, hook_bad_unit;
};

lf_ffn_params lf_ffn_default_params(void) {
    return (lf_ffn_params){.window = 5, .mask = LF_MASK_ALL, .split = LF_SPLIT_EVEN, .max_batch = 1};
}

/* The hook's set, vetted: what the engine gets is strictly ascending and in
 * range whatever the hook wrote; a bad set is cut there and remembered. */
static uint32_t hook_select(void *state, uint32_t layer, const float *x, size_t n, uint32_t *units) {
    lf_ffn *h = state;
    const uint32_t n_units = lf_ffn_units(h);
    uint32_t k = h->hook.select(h->hook.user, layer, x, n, units);
    if (k > n_units) k = n_units, h->hook_bad = true;
    for (uint32_t i = 0; i < k; i++) {
        if (units[i] >= n_units || (i && units[i] <= units[i - 1])) {
            if (!h->hook_bad) h->hook_bad_layer = layer, h->hook_bad_unit = units[i];
            h->hook_bad = true;
            return i;
        }
    }
    return k;
}

static lf_ffn_engine_params engine_params(lf_ffn *h, const lf_ffn_params *p, uint64_t cache_bytes) {
    lf_ffn_engine_params ep = {.window = p->window, .mask = p->mask, .predictor_path = p->predictor_path,
                               .lookahead = p->lookahead, .split = p->split, .max_batch = h->max_batch,
                               .cache_bytes = cache_bytes, .log = {p->log, p->log_user}};
    if (p->mask_hook) {
        ep.mask_ops = &h->hook_ops;
        ep.mask_state = h;
    }
    return ep;
}

lf_status lf_ffn_create(lf_model *m, const lf_ffn_params *params, lf_ffn **out, char *errbuf, size_t errcap) {
    if (errbuf && errcap) errbuf[0] = '\0';
    if (!out) return LF_E_INVALID_ARG;
    *out = NULL;
    if (!m) return LF_E_INVALID_ARG;
    const lf_ffn_params p = params ? *params : lf_ffn_default_params();
    lf_ffn *h = calloc(1, sizeof *h);
    if (!h) return LF_E_NOMEM;
    h->m = m;
    h->last_forward = h->planned = -1;
    h->max_batch = p.max_batch ? p.max_batch : 1;
    lf_status st = LF_E_INVALID_ARG;
    const int n_threads = p.threadpool ? lf_threadpool_size(p.threadpool) : p.n_threads > 0 ? p.n_threads : m->n_threads;
    if (!m->flash) {
        lf__err_set(&h->err, st, "%s is a plain GGUF: an FFN hook streams the FFN of a flash file", m->path);
        goto fail;
    }
    if (p.max_batch > LF_MAX_BATCH || p.n_threads < 0 || p.n_threads > LF_THREADS_PER_CORE_MAX * lf__cpu_count() ||
        (unsigned)p.mask > LF_MASK_PREDICTOR || (unsigned)p.split > LF_SPLIT_MEASURED) {
        lf__err_set(&h->err, st, "bad params: max_batch %u (at most %u), n_threads %d, mask %d, split %d", p.max_batch,
                    LF_MAX_BATCH, p.n_threads, (int)p.mask, (int)p.split);
        goto fail;
    }
    if (p.mask_hook) {
        if (!p.mask_hook->select) {
            lf__err_set(&h->err, st, "the mask hook has no select function");
            goto fail;
        }
        h->hook = *p.mask_hook;
        h->hook_ops = (lf_mask_ops){.name = "hook", .needs_input = h->hook.needs_input, .select = hook_select};
    }
    const lf_ffn_engine_params plan = engine_params(h, &p, 0);
    uint64_t io, mask, scratch;
    lf__ffn_plan_bytes(m, &plan, n_threads, &io, &mask, &scratch);
    const uint64_t own = io + mask + scratch + sizeof *h;
    const bool budgeted = m->dram_budget && m->mode != LF_MODE_MMAP;
    if (budgeted && (st = lf__model_ledger_take(m, "this FFN hook", own, p.budget_bytes, &h->budget_taken, &h->err)))
        goto fail;
    if (p.threadpool) {
        h->pool = p.threadpool;
    } else if ((st = lf__pool_create(n_threads, &h->pool))) {
        lf__err_set(&h->err, st, "a pool of %d threads", n_threads);
        goto fail;
    } else {
        h->own_pool = true;
    }
    const lf_ffn_engine_params ep = engine_params(h, &p, budgeted ? h->budget_taken - own : 0);
    if ((st = lf__ffn_create(m, h->pool, &ep, &h->engine, &h->err))) goto fail;
    if (p.trace) lf__ffn_set_trace(h->engine, p.trace, lf__trace_track(p.trace, "ffn hook", false),
                                   lf__trace_track(p.trace, "io", true));
    *out = h;
    return LF_OK;
fail:
    lf__err_copy_out(&h->err, errbuf, errcap);
    lf_ffn_destroy(h);
    return st;
}

void lf_ffn_destroy(lf_ffn *h) {
    if (!h) return;
    lf__ffn_destroy(h->engine); /* waits for its reads; it computes on the pool */
    if (h->own_pool) lf__pool_destroy(h->pool);
    lf__model_ledger_give_back(h->m, h->budget_taken);
    free(h);
}

const char *lf_ffn_errmsg(const lf_ffn *h) { return h ? h->err.msg : ""; }
uint32_t lf_ffn_units(const lf_ffn *h) { return h ? (uint32_t)h->m->flash->layers[0].n_groups : 0; }
uint32_t lf_ffn_group_size(const lf_ffn *h) { return h ? h->m->flash->layout.group : 0; }

/* The checks every layer call shares; starts a pass when this call begins
 * one. */
static lf_status enter(lf_ffn *h, uint32_t layer, size_t n, bool forward, const char *what) {
    if (layer >= h->m->info.n_layer)
        return lf__err_set(&h->err, LF_E_INVALID_ARG, "%s of layer %u: the model has %u", what, layer,
                          h->m->info.n_layer);
    if (n == 0 || n > h->max_batch)
        return lf__err_set(&h->err, LF_E_INVALID_ARG, "%s of %zu tokens: 1 to max_batch %u", what, n, h->max_batch);
    if (!h->in_pass || (int64_t)layer <= h->last_forward) { /* the next pass (batch) */
        h->in_pass = true;
        h->pass_n = n;
        h->last_forward = forward ? (int64_t)layer - 1 : -1; /* a forward pass may start at any layer */
        h->planned = h->last_forward;
        h->tokens += n;
        lf__ffn_next_tokens(h->engine, n);
    } else if (n != h->pass_n) {
        return lf__err_set(&h->err, LF_E_INVALID_ARG, "%s of %zu tokens in a pass of %zu", what, n, h->pass_n);
    }
    return LF_OK;
}

/* An engine error becomes the hook's; a bad mask set takes precedence. */
static lf_status leave(lf_ffn *h, lf_status st) {
    if (h->hook_bad) {
        h->hook_bad = false;
        if (!st) lf__ffn_abort(h->engine);
        return lf__err_set(&h->err, LF_E_INVALID_ARG, "the mask hook's set for layer %u is out of order or range at "
                          "unit %u (%u units)", h->hook_bad_layer, h->hook_bad_unit, lf_ffn_units(h));
    }
    if (st) lf__err_set(&h->err, st, "%s", lf__ffn_errmsg(h->engine));
    return st;
}

/* Plans one layer; a mask that needs the input plans nothing without it. */
static lf_status plan_layer(lf_ffn *h, uint32_t layer, const float *x, size_t n) {
    const lf_status st = lf__ffn_prefetch(h->engine, layer, x, n);
    if (!st && (x || lf__ffn_mask_is_early(h->engine))) h->planned = layer;
    return st;
}

lf_status lf_ffn_prefetch(lf_ffn *h, uint32_t layer, const float *x, size_t n) {
    if (!h) return LF_E_INVALID_ARG;
    lf_status st = enter(h, layer, n, false, "prefetch");
    if (st) return st;
    const int64_t next = h->last_forward + 1;
    if ((int64_t)layer <= h->planned || (int64_t)layer > next + 1) return LF_OK; /* planned already, or too early: a hint */
    const uint64_t t0 = lf__now_ns();
    if ((int64_t)layer == next + 1 && h->planned < next) { /* the layer before goes first */
        if (lf__ffn_mask_is_early(h->engine)) st = plan_layer(h, (uint32_t)next, NULL, n);
        if (h->planned < next) return leave(h, st); /* its set needs its input: wait for it */
    }
    if (!st) st = plan_layer(h, layer, x, n);
    if (st) lf__ffn_abort(h->engine);
    h->compute_ns += lf__now_ns() - t0;
    return leave(h, st);
}

lf_status lf_ffn_forward(lf_ffn *h, uint32_t layer, const float *x, size_t n, float *y) {
    if (!h) return LF_E_INVALID_ARG;
    if (!x || !y) return lf__err_set(&h->err, LF_E_INVALID_ARG, "forward of layer %u: x and y must not be NULL", layer);
    lf_status st = enter(h, layer, n, true, "forward");
    if (st) return st;
    if ((int64_t)layer != h->last_forward + 1)
        return lf__err_set(&h->err, LF_E_INVALID_ARG, "forward of layer %u after layer %" PRId64 ": a pass computes "
                          "its layers in order", layer, h->last_forward);
    const uint64_t t0 = lf__now_ns();
    st = lf__ffn_forward(h->engine, layer, x, n, y);
    h->compute_ns += lf__now_ns() - t0;
    if (!st) {
        h->last_forward = layer;
        if (h->planned < (int64_t)layer) h->planned = layer;
    } else {
        h->in_pass = false; /* retried as a new pass: nothing of this one is planned any more */
    }
    return leave(h, st);
}

lf_status lf_ffn_get_stats(const lf_ffn *h, lf_session_stats *out) {
    if (!h || !out) return LF_E_INVALID_ARG;
    memset(out, 0, sizeof *out);
    lf__ffn_stats(h->engine, out);
    out->compute_ms = lf__ns_to_ms(h->compute_ns);
    out->tokens = h->tokens;
    out->n_layer = h->m->info.n_layer;
    out->budget_total = h->m->dram_budget;
    out->budget_session = h->budget_taken;
    return LF_OK;
}

lf_status lf_ffn_layer_stats(const lf_ffn *h, uint32_t layer, lf_layer_stats *out) {
    if (!h || !out || layer >= h->m->info.n_layer) return LF_E_INVALID_ARG;
    memset(out, 0, sizeof *out);
    lf__ffn_layer_stats(h->engine, layer, out);
    return LF_OK;
}
