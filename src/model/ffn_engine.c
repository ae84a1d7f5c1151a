/* ffn_engine.c - the FFN engine (see ffn_engine.h). */
#include "ffn_engine.h"
#include "../stats/trace.h"
#include "ffn_kernel.h"
#include "../cache/neuron_cache.h"
#include "predictor_file.h"
#include "router.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <sys/resource.h>

typedef struct layer_counters {
    uint64_t bytes_read, bytes_served, loaded, used;
    uint64_t oracle_units, false_negatives; /* measure_recall */
    /* measure_recall, token by token: the oracle's sets, their union over
     * the window and the units new since the token before */
    uint64_t oracle_tokens, oracle_token_units, oracle_window_units, oracle_new_units;
    /* lookahead: units read a layer early, those of them the layer used,
     * and the units it needed that were neither cached nor read early */
    uint64_t ahead_units, ahead_used, ahead_late;
    uint64_t reuse_hist[LF_REUSE_BUCKETS];
} layer_counters;

/* Lookahead: the reads of layer `layer`'s predicted units, started while the
 * layer before computes. The units are in the cache, counted as used by the
 * token before (the layer's plan does not expire the cache again), and
 * pinned while the plan takes slots, so no eviction hands one a second
 * read; their slots hold valid data once `ready`. */
typedef struct warm {
    int64_t layer;            /* -1: none */
    uint64_t token;
    uint32_t n;
    uint32_t *units;          /* (n_units) */
    int32_t *slots;           /* (n_units) */
    uint8_t *flag;            /* (n_units) 1: read early for this token */
    lf_load_batch *batch;
    bool ready;
    uint64_t t0;
} warm;

/* One layer's reads for one token. */
typedef struct plan {
    int64_t layer;
    uint64_t token;
    uint32_t n_hits, n_ins, n_trans, n_chunks, next_chunk;
    uint32_t *hits;           /* (n_units) hit units; slots are looked up after insertion,
                                 since evictions move slots (swap-delete) */
    uint32_t *misses;         /* (n_units) inserted ones first, then transient ones */
    int32_t *ins_slots;       /* (n_units) */
    float *w;                 /* (n_units, n_tok) mixtures of experts: the routing weights (lf_mask_ops.route), or NULL */
    size_t n_tok;             /* tokens of the batch it was planned for */
    lf_load_batch *ins_batch;
    bool ins_ready;           /* the inserted units' reads succeeded: until then their
                                 slots hold no valid data, and an error removes them */
    uint64_t ins_t0;          /* submission time, for the hidden-I/O measure */
} plan;

typedef struct inflight_chunk {
    plan *p;
    uint32_t chunk;
    int buf;
    lf_load_batch *batch;
    uint64_t t0;
} inflight_chunk;

struct lf_ffn_engine {
    lf_model *m;
    lf_pool *pool;            /* borrowed: the kernel's and the predictor's */
    lf_logger log;
    lf_err err;
    lf_ffn_kernel kernel;
    lf_mask mask_src;
    bool mask_borrowed;       /* the caller's mask source: not ours to destroy */
    lf_mask truth;            /* measure_recall: the oracle, run alongside */
    uint32_t *truth_units;    /* (n_units) */
    uint8_t *truth_flags;     /* (n_units) */
    uint64_t *truth_last;     /* (n_layer, n_units) the last token each unit was active in, 0: never */
    uint32_t *truth_count;    /* (n_layer, n_units) tokens each unit was active in */
    uint32_t max_batch;
    lf_mode mode;
    uint32_t window;
    lf_cache_split split;
    uint64_t token;           /* the batch's last token, counting from 1 */
    uint32_t n_layer, n_units, group;
    uint64_t unit_bytes;      /* raw bytes of a unit: group * record_bytes */
    lf_ncache *cache;         /* (n_layer) */
    /* two plans, by layer parity: while layer l computes, layer l+1's reads
     * can already be planned and in flight */
    plan plans[2];
    warm ahead;
    /* transient chunks in flight, oldest first, across plans */
    inflight_chunk fifo[2];
    uint32_t fifo_n;
    bool buf_busy[2];
    uint32_t *active;         /* (n_units) */
    int32_t *scratch;         /* 4 * n_units */
    const uint8_t **recs;     /* (n_ff) */
    const float **recw;       /* (n_ff) mixtures of experts: each record's routing weights, per token */
    bool routed;              /* the mask source routes (weights each unit per token) */
    lf_load_req *reqs;        /* (max(n_units, chunk_units)) */
    /* transient buffers: slots at the file's stride when records are
     * uncompressed, so the loader reads whole runs of them in place */
    uint8_t *tbuf[2];
    uint64_t tslot;
    uint32_t chunk_units;
    bool double_buffer;
    uint32_t *last_use;       /* (n_layer, n_units) the token each unit was last used in, 0: never */
    /* tracing (lf__ffn_set_trace): NULL, or spans on the caller's tracks */
    lf_trace *trace;
    int track_compute, track_io;
    /* stats */
    layer_counters *layers;   /* (n_layer) */
    uint64_t neurons_used, neurons_loaded;
    uint64_t io_wait_ns;
    uint64_t io_span_ns;      /* submission to completion, summed over batches */
    uint64_t mask_ns;         /* time the mask source took to choose units */
    lf_batch_io io;           /* this engine's reads (the loader is shared) */
};

static void drain(lf_ffn_engine *f);

/* The window of the oracle's union statistic: the paper's k = 5. */
#define ORACLE_WINDOW 5

static uint64_t unit_neurons(const lf_model *m, uint32_t u, uint64_t *first) {
    uint64_t fi, n;
    lf__flash_group_neurons(m->flash, u, &fi, &n);
    if (first) *first = fi;
    return n;
}

static lf_load_req unit_req(const lf_ffn_engine *f, uint32_t l, uint32_t u, void *dst) {
    const lf_model *m = f->m;
    const lf_flash_layer *F = &m->flash->layers[l];
    const lf_bundle_entry *e = &F->index[u];
    uint64_t first;
    const uint64_t count = unit_neurons(m, u, &first);
    return (lf_load_req){.offset = F->data_offset + e->offset,
                         .stored = e->stored,
                         .raw = e->raw,
                         .checksum = e->checksum,
                         .dst = dst,
                         .compression = m->flash->layout.compression,
                         .verify = m->verify_checksums,
                         .layer = l,
                         .first = first,
                         .count = count};
}

/* Transient chunks: a quarter of a layer's FFN, at most 16 MiB - large
 * enough to keep the queue full, small enough to leave memory to the cache.
 * Independent of the budget, so the bytes a session needs are well defined. */
static uint64_t chunk_bytes_for(const lf_model *m, uint64_t unit_bytes) {
    const uint64_t want = m->flash->layers[0].data_bytes / 4;
    return LF_MAX(LF_MIN(want, (uint64_t)16 << 20), unit_bytes);
}

void lf__ffn_plan_bytes(const lf_model *m, const lf_ffn_engine_params *p, int n_threads, uint64_t *io, uint64_t *mask,
                        uint64_t *scratch) {
    const lf_bundle_layout *B = &m->flash->layout;
    const uint64_t n_units = m->flash->layers[0].n_groups, unit_bytes = (uint64_t)B->group * B->record_bytes;
    const uint32_t max_batch = p->max_batch ? p->max_batch : 1;
    *io = *mask = 0;
    *scratch = lf__ffn_kernel_bytes(m->info.n_embd, max_batch, n_threads) + (uint64_t)m->flash->n_ff * sizeof(void *) +
               sizeof(lf_ffn_engine);
    if (m->mode == LF_MODE_MMAP) return;
    const uint64_t tslot = B->compression == LF_COMPRESS_NONE ? B->stride : unit_bytes;
    const uint64_t chunk = chunk_bytes_for(m, tslot) / tslot * tslot;
    /* two transient buffers, and the loader's per-batch tables for up to
     * three batches of every unit (the loader's staging is the model's) */
    *io = 2 * chunk + 3 * n_units * 256;
    *mask = p->mask == LF_MASK_ORACLE ? lf__mask_oracle_bytes(m->flash) : 0;
    if (m->info.n_expert > 1) /* the router, and the weights of two plans */
        *mask = lf__mask_router_bytes(m, max_batch) + 2 * n_units * max_batch * sizeof(float) +
                (uint64_t)m->info.n_ff * m->info.n_expert * sizeof(float *);
    if (p->mask == LF_MASK_PREDICTOR) {
        char *path = lf__predictor_path(m->path, p->predictor_path);
        *mask = path ? lf__predictor_file_bytes(path, m, p->lookahead) : 0;
        free(path);
    }
    if (p->measure_recall && p->mask != LF_MASK_ORACLE)
        *mask += lf__mask_oracle_bytes(m->flash) + n_units * 5 +
                 (uint64_t)m->info.n_layer * n_units * (sizeof(uint64_t) + sizeof(uint32_t));
    *scratch += n_units * (4 + 2 * (4 + 4 + 4) + 16 + sizeof(lf_load_req) + 9 /* lookahead */) +
                (uint64_t)m->info.n_layer * n_units * 2 * sizeof(int32_t) /* cache indexes, last uses */;
}

void lf__ffn_destroy(lf_ffn_engine *f) {
    if (!f) return;
    /* reads still in flight target our buffers */
    if (f->cache) drain(f);
    if (f->cache)
        for (uint32_t l = 0; l < f->n_layer; l++) lf__ncache_free(&f->cache[l]);
    free(f->cache);
    free(f->active);
    for (int k = 0; k < 2; k++) {
        free(f->plans[k].hits);
        free(f->plans[k].misses);
        free(f->plans[k].ins_slots);
        free(f->plans[k].w);
    }
    free(f->ahead.units);
    free(f->ahead.slots);
    free(f->ahead.flag);
    free(f->scratch);
    free(f->recs);
    free(f->recw);
    free(f->reqs);
    lf__free_aligned(f->tbuf[0]);
    lf__free_aligned(f->tbuf[1]);
    free(f->layers);
    free(f->last_use);
    lf__ffn_kernel_free(&f->kernel);
    if (!f->mask_borrowed) lf__mask_destroy(&f->mask_src);
    lf__mask_destroy(&f->truth);
    free(f->truth_units);
    free(f->truth_flags);
    free(f->truth_last);
    free(f->truth_count);
    free(f);
}

/* Reads units[0..n) of layer l once, at creation, into pinned cache slots,
 * through the first transient buffer. */
static lf_status preload_pinned(lf_ffn_engine *f, uint32_t l, const uint32_t *units, uint32_t n_units) {
    const lf_model *m = f->m;
    const lf_bundle_layout *B = &m->flash->layout;
    lf_ncache *c = &f->cache[l];
    lf_status rc = LF_OK;
    for (uint32_t u0 = 0; u0 < n_units && !rc; u0 += f->chunk_units) {
        const uint32_t n = LF_MIN(f->chunk_units, n_units - u0);
        for (uint32_t k = 0; k < n; k++) {
            f->reqs[k] = unit_req(f, l, units[u0 + k], f->tbuf[0] + (uint64_t)k * f->tslot);
            f->reqs[k].dst_cap = (uint32_t)f->tslot;
        }
        lf_load_batch *b;
        if ((rc = lf__loader_submit(m->loader, f->reqs, n, &b, &f->err)) ||
            (rc = lf__loader_wait_io(m->loader, b, &f->err, &f->io)))
            break;
        for (uint32_t k = 0; k < n; k++) {
            const int32_t slot = lf__ncache_insert(c, units[u0 + k], 0);
            memcpy(lf__ncache_slot(c, slot), f->tbuf[0] + (uint64_t)k * f->tslot,
                   unit_neurons(m, units[u0 + k], NULL) * B->record_bytes);
            lf__ncache_pin(c, slot);
        }
    }
    return rc;
}

/* Hybrid mode: the first half of every layer, pinned. */
static lf_status preload_hybrid(lf_ffn_engine *f) {
    lf_status rc = LF_OK;
    for (uint32_t u = 0; u < f->n_units; u++) f->active[u] = u;
    for (uint32_t l = 0; l < f->n_layer && !rc; l++) rc = preload_pinned(f, l, f->active, f->cache[l].capacity);
    return rc;
}

/* Mixtures of experts: each layer's `hot` most routed experts in the
 * routing statistics (ties: the lower index), pinned. */
static lf_status preload_hot_experts(lf_ffn_engine *f, const char *given, uint32_t hot) {
    char *path = lf__routing_path(f->m->path, given);
    if (!path) return lf__err_set(&f->err, LF_E_NOMEM, "routing statistics path");
    uint64_t *counts = NULL;
    lf_status rc = lf__routing_stats_load(path, f->m, &counts, &f->err);
    if (rc == LF_E_IO)
        rc = lf__err_set(&f->err, LF_E_INVALID_ARG, "pinning hot experts needs routing statistics, and there are none "
                         "at %s (%s): calibrate the model first (lf_calibrate)", path, f->err.msg);
    for (uint32_t l = 0; l < f->n_layer && !rc; l++) {
        if (hot > f->cache[l].capacity) {
            rc = lf__err_set(&f->err, LF_E_BUDGET, "%u hot experts per layer, but the budget leaves room for %u in layer %u",
                             hot, f->cache[l].capacity, l);
            break;
        }
        const uint64_t *c = counts + (uint64_t)l * f->n_units;
        uint8_t *taken = (uint8_t *)f->scratch; /* n_units bytes of the 4 * n_units ints */
        memset(taken, 0, f->n_units);
        for (uint32_t k = 0; k < hot; k++) {
            uint32_t best = UINT32_MAX;
            for (uint32_t e = 0; e < f->n_units; e++)
                if (!taken[e] && (best == UINT32_MAX || c[e] > c[best])) best = e;
            taken[best] = 1;
            f->active[k] = best;
        }
        rc = preload_pinned(f, l, f->active, hot);
    }
    if (!rc) lf__log(&f->log, LF_LOG_INFO, "%u hot experts per layer pinned, from %s", hot, path);
    free(counts);
    free(path);
    return rc;
}

static lf_status create_stream_state(lf_ffn_engine *f, const lf_ffn_engine_params *p) {
    const lf_model *m = f->m;
    const lf_bundle_layout *B = &m->flash->layout;
    f->unit_bytes = (uint64_t)B->group * B->record_bytes;
    /* an uncompressed expert fills whole pages of its slot, read in place */
    if (m->flash->n_expert > 1 && B->compression == LF_COMPRESS_NONE) f->unit_bytes = B->stride;
    const uint64_t per_slot = f->unit_bytes + sizeof(int32_t) + sizeof(uint64_t) + 1;
    uint64_t capacity = f->n_units;
    if (f->mode == LF_MODE_NAIVE) capacity = 0;
    else if (m->dram_budget) capacity = LF_MIN(capacity, p->cache_bytes / f->n_layer / per_slot);
    if (f->mode == LF_MODE_HYBRID) {
        /* the paper's static split: the first part of each layer resident,
         * as much as the budget holds up to half, the rest read per token */
        if (capacity == 0)
            return lf__err_set(&f->err, LF_E_BUDGET, "hybrid mode keeps part of each layer's FFN resident: %" PRIu64
                               " bytes more are needed for one neuron per layer", per_slot * f->n_layer);
        capacity = LF_MIN(capacity, (uint64_t)f->n_units / 2);
    }
    f->tslot = B->compression == LF_COMPRESS_NONE ? B->stride : f->unit_bytes;
    f->chunk_units = (uint32_t)LF_MAX((uint64_t)1, chunk_bytes_for(m, f->tslot) / f->tslot);
    f->double_buffer = f->mode != LF_MODE_NAIVE;
    f->cache = calloc(f->n_layer, sizeof *f->cache);
    bool plans_ok = true;
    for (int k = 0; k < 2; k++) {
        f->plans[k].layer = -1;
        f->plans[k].hits = malloc(f->n_units * sizeof *f->plans[k].hits);
        f->plans[k].misses = malloc(f->n_units * sizeof *f->plans[k].misses);
        f->plans[k].ins_slots = malloc(f->n_units * sizeof *f->plans[k].ins_slots);
        if (f->routed) f->plans[k].w = malloc((uint64_t)f->n_units * f->max_batch * sizeof(float));
        plans_ok = plans_ok && f->plans[k].hits && f->plans[k].misses && f->plans[k].ins_slots &&
                   (!f->routed || f->plans[k].w);
    }
    f->ahead.layer = -1;
    if (f->mode == LF_MODE_STREAM && f->mask_src.ops->select_ahead) {
        f->ahead.units = malloc(f->n_units * sizeof *f->ahead.units);
        f->ahead.slots = malloc(f->n_units * sizeof *f->ahead.slots);
        f->ahead.flag = calloc(f->n_units, 1);
        plans_ok = plans_ok && f->ahead.units && f->ahead.slots && f->ahead.flag;
    }
    /* sized for a whole layer: a measured split may give one layer every slot */
    f->scratch = malloc((4 * (uint64_t)f->n_units + 4) * sizeof *f->scratch);
    f->reqs = malloc(LF_MAX(f->n_units, f->chunk_units) * sizeof *f->reqs);
    const bool need_transient = capacity < f->n_units || f->mask_src.ops->needs_input || f->mode == LF_MODE_HYBRID;
    for (int k = 0; k < (need_transient ? 2 : 1); k++)
        f->tbuf[k] = lf__alloc_aligned((uint64_t)f->chunk_units * f->tslot, 4096);
    if (!f->cache || !plans_ok || !f->scratch || !f->reqs || !f->tbuf[0] || (need_transient && !f->tbuf[1]))
        return lf__err_set(&f->err, LF_E_NOMEM, "streaming state");
    for (uint32_t l = 0; l < f->n_layer; l++)
        if (lf__ncache_init(&f->cache[l], f->n_units, (uint32_t)capacity, f->unit_bytes))
            return lf__err_set(&f->err, LF_E_NOMEM, "neuron cache of layer %u (%" PRIu64 " slots)", l, capacity);
    lf__log(&f->log, LF_LOG_INFO, "%s mode: %" PRIu64 " of %u units cached per layer (%" PRIu64 " bytes each), window %u, "
            "transient chunks of %u units, mask %s", lf_mode_name(f->mode), capacity, f->n_units, f->unit_bytes, f->window,
            f->chunk_units, f->mask_src.ops->name);
    if (f->mode == LF_MODE_HYBRID) return preload_hybrid(f);
    if (p->hot_experts && !f->routed)
        return lf__err_set(&f->err, LF_E_INVALID_ARG, "hot experts: %s is not a mixture of experts", m->path);
    if (p->hot_experts && f->mode != LF_MODE_STREAM)
        return lf__err_set(&f->err, LF_E_INVALID_ARG, "hot experts are pinned in stream mode's cache, not in %s mode",
                           lf_mode_name(f->mode));
    return p->hot_experts ? preload_hot_experts(f, p->predictor_path, p->hot_experts) : LF_OK;
}

/* The oracle (for the mask, or to measure another mask against). The SwiGLU
 * ground truth's thresholds come from the calibrated predictor file, when
 * there is one. */
static lf_status open_oracle(lf_ffn_engine *f, const char *predictor_path, lf_mask *out) {
    const lf_model *m = f->m;
    lf_predictor_set set = {0};
    char *path = lf__predictor_path(m->path, predictor_path);
    lf_err ignored = {{0}};
    const bool have = path && lf__predictor_load(path, m, false, &set, &ignored) == LF_OK;
    const lf_status st = lf__mask_oracle_create(m->flash, m->fd, m->verify_checksums, m->kernels, m->info.activation,
                                                have ? set.taus : NULL, out, &f->err);
    lf__predictor_set_free(&set);
    free(path);
    return st;
}

/* The calibrated predictor as the mask source. */
static lf_status open_predictor(lf_ffn_engine *f, const char *given, bool lookahead) {
    char *path = lf__predictor_path(f->m->path, given);
    if (!path) return lf__err_set(&f->err, LF_E_NOMEM, "predictor path");
    lf_predictor_set set;
    lf_status st = lf__predictor_load(path, f->m, lookahead, &set, &f->err);
    if (st == LF_E_IO)
        st = lf__err_set(&f->err, LF_E_INVALID_ARG, "no predictor for %s at %s (%s): calibrate the model first "
                         "(lf_calibrate)", f->m->path, path, f->err.msg);
    if (!st) st = lf__mask_predictor_create(f->m->flash, f->m->kernels, f->pool, &set, lookahead, &f->mask_src, &f->err);
    if (!st) lf__log(&f->log, LF_LOG_INFO, "predictor: %s", path);
    free(path);
    return st;
}

lf_status lf__ffn_create(lf_model *m, lf_pool *pool, const lf_ffn_engine_params *p, lf_ffn_engine **out, lf_err *err) {
    *out = NULL;
    if (!m->flash) return lf__err_set(err, LF_E_INVALID_ARG, "the FFN engine needs a flash file");
    lf_ffn_engine *f = calloc(1, sizeof *f);
    if (!f) return lf__err_set(err, LF_E_NOMEM, "FFN engine");
    f->m = m;
    f->pool = pool;
    f->log = p->log.fn ? p->log : m->log;
    f->mode = m->mode;
    f->window = p->window ? p->window : 5;
    f->split = p->split;
    f->max_batch = p->max_batch ? p->max_batch : 1;
    f->n_layer = m->info.n_layer;
    f->n_units = (uint32_t)m->flash->layers[0].n_groups;
    f->group = m->flash->layout.group;
    lf_status st = lf__ffn_kernel_init(&f->kernel, m->kernels, &m->flash->layout, m->info.activation, m->info.n_embd,
                                       f->max_batch, pool);
    if (st) {
        lf__err_set(err, st, "FFN kernel buffers");
        lf__ffn_destroy(f);
        return st;
    }
    f->layers = calloc(f->n_layer, sizeof *f->layers);
    f->last_use = calloc((size_t)f->n_layer * f->n_units, sizeof *f->last_use);
    f->active = malloc(f->n_units * sizeof *f->active);
    f->routed = m->info.n_expert > 1;
    f->recs = malloc((uint64_t)m->flash->n_ff * sizeof *f->recs);
    f->recw = f->routed ? malloc((uint64_t)m->flash->n_ff * sizeof *f->recw) : NULL;
    if (!f->layers || !f->last_use || !f->active || !f->recs || (f->routed && !f->recw)) {
        lf__ffn_destroy(f);
        return lf__err_set(err, LF_E_NOMEM, "FFN engine tables");
    }
    if (f->routed) {
        /* the router is exact, and carries the weights: it is the mask */
        if (p->mask_ops || p->mask == LF_MASK_ORACLE || p->mask == LF_MASK_PREDICTOR || p->measure_recall)
            st = lf__err_set(&f->err, LF_E_UNSUPPORTED, "%s on a mixture of experts: its router chooses the experts "
                             "each token needs", p->mask_ops ? "a mask hook" : p->measure_recall ? "measuring recall"
                             : p->mask == LF_MASK_ORACLE ? "the oracle mask" : "a sparsity predictor");
        else
            st = lf__mask_router_create(m, pool, f->max_batch, p->lookahead && f->mode == LF_MODE_STREAM, &f->mask_src,
                                        &f->err);
        if (!st && p->hot_experts && f->mode == LF_MODE_MMAP)
            st = lf__err_set(&f->err, LF_E_INVALID_ARG, "hot experts are pinned in stream mode's cache; mmap mode "
                             "leaves caching to the page cache");
        /* experts stay cached until evicted (least recently used first):
         * a window of tokens would drop experts a later token needs */
        f->window = UINT32_MAX;
    } else if (p->mask_ops) {
        f->mask_src = (lf_mask){p->mask_ops, p->mask_state, 0};
        f->mask_borrowed = true;
    } else if (p->mask == LF_MASK_ORACLE && f->mode != LF_MODE_MMAP) {
        /* mmap mode computes every record in place: no mask to ask */
        st = open_oracle(f, p->predictor_path, &f->mask_src);
    } else if (p->mask == LF_MASK_PREDICTOR && f->mode != LF_MODE_MMAP) {
        st = open_predictor(f, p->predictor_path, p->lookahead);
    } else {
        st = lf__mask_all_create(f->n_units, &f->mask_src);
    }
    if (!st && p->measure_recall && p->mask != LF_MASK_ORACLE && f->mode != LF_MODE_MMAP) {
        st = open_oracle(f, p->predictor_path, &f->truth);
        f->truth_flags = malloc(f->n_units ? f->n_units : 1);
        f->truth_last = calloc((uint64_t)f->n_layer * f->n_units, sizeof *f->truth_last);
        f->truth_count = calloc((uint64_t)f->n_layer * f->n_units, sizeof *f->truth_count);
        if (!st && (!(f->truth_units = malloc(f->n_units * sizeof *f->truth_units)) || !f->truth_flags ||
                    !f->truth_last || !f->truth_count))
            st = lf__err_set(&f->err, LF_E_NOMEM, "recall measurement");
    }
    if (!st && f->mode != LF_MODE_MMAP) st = create_stream_state(f, p);
    if (!st && f->mode == LF_MODE_MMAP && f->routed &&
        !(f->plans[0].w = malloc((uint64_t)f->n_units * f->max_batch * sizeof(float))))
        st = lf__err_set(&f->err, LF_E_NOMEM, "routing weights");
    if (st) {
        lf__err_copy_out(&f->err, err->msg, sizeof err->msg);
        lf__ffn_destroy(f);
        return st;
    }
    *out = f;
    return LF_OK;
}

const char *lf__ffn_errmsg(const lf_ffn_engine *f) { return f->err.msg; }
bool lf__ffn_mask_is_early(const lf_ffn_engine *f) { return !f->mask_src.ops->needs_input; }

/* LF_SPLIT_MEASURED: once the first LF_SPLIT_TOKENS tokens have shown what
 * each layer uses, the same total of slots is shared in proportion to it.
 * The caches restart empty (one reallocation per layer, once). */
#define LF_SPLIT_TOKENS 16
static void rebalance(lf_ffn_engine *f) {
    uint64_t total = 0, used = 0;
    for (uint32_t l = 0; l < f->n_layer; l++) {
        total += f->cache[l].capacity;
        used += f->layers[l].used;
    }
    if (!used || f->mode != LF_MODE_STREAM) return;
    uint64_t *cap = calloc(f->n_layer, sizeof *cap);
    if (!cap) return;
    uint64_t given = 0;
    for (uint32_t l = 0; l < f->n_layer; l++) {
        cap[l] = LF_MIN((uint64_t)f->n_units, total * f->layers[l].used / used);
        given += cap[l];
    }
    /* slots a full layer could not take go to the others, in layer order */
    for (uint32_t l = 0; l < f->n_layer && given < total; l++) {
        const uint64_t more = LF_MIN(total - given, (uint64_t)f->n_units - cap[l]);
        cap[l] += more;
        given += more;
    }
    for (uint32_t l = 0; l < f->n_layer; l++) {
        const uint64_t ev = f->cache[l].evictions, ex = f->cache[l].expirations;
        lf__ncache_free(&f->cache[l]);
        if (lf__ncache_init(&f->cache[l], f->n_units, (uint32_t)cap[l], f->unit_bytes) != LF_OK)
            lf__ncache_init(&f->cache[l], f->n_units, 0, f->unit_bytes);
        f->cache[l].evictions = ev;
        f->cache[l].expirations = ex;
        lf__log(&f->log, LF_LOG_INFO, "measured cache split: layer %u gets %u slots", l, f->cache[l].capacity);
    }
    free(cap);
}

/* Whether a plan still has reads in flight into our memory. */
static bool plan_busy(const lf_ffn_engine *f, const plan *p) {
    if (p->ins_batch) return true;
    for (uint32_t i = 0; i < f->fifo_n; i++)
        if (f->fifo[i].p == p) return true;
    return false;
}

void lf__ffn_next_tokens(lf_ffn_engine *f, size_t n) {
    /* a batch left unfinished (the forward pass runs every layer, so this
     * is a caller that stopped early) must not leave reads in flight */
    if (f->cache && (plan_busy(f, &f->plans[0]) || plan_busy(f, &f->plans[1]) || f->ahead.batch)) drain(f);
    const uint64_t before = f->token;
    f->token += n ? n : 1;
    if (f->cache && f->split == LF_SPLIT_MEASURED && before <= LF_SPLIT_TOKENS && f->token > LF_SPLIT_TOKENS) {
        rebalance(f);
    }
}

/* Submits f->reqs[0..n) as one batch, traced as "io_submit". */
static lf_status submit(lf_ffn_engine *f, uint32_t l, uint32_t n, lf_load_batch **b) {
    const uint64_t t0 = f->trace ? lf__now_ns() : 0;
    const lf_status rc = lf__loader_submit(f->m->loader, f->reqs, n, b, &f->err);
    if (f->trace) {
        const uint64_t t1 = lf__now_ns();
        uint64_t bytes = 0;
        for (uint32_t k = 0; k < n; k++) bytes += f->reqs[k].stored;
        lf__trace_span(f->trace, f->track_compute, "io_submit", t0, t1, (int32_t)l, (int64_t)f->token, bytes, 0);
        lf__trace_counter(f->trace, "bytes_in_flight", t1, (double)lf__loader_inflight_bytes(f->m->loader));
    }
    return rc;
}

/* The kernel over n records, traced as "ffn_compute". */
static void accumulate(lf_ffn_engine *f, uint32_t l, size_t n) {
    const uint64_t t0 = f->trace ? lf__now_ns() : 0;
    lf__ffn_kernel_accumulate(&f->kernel, f->recs, f->routed ? f->recw : NULL, n);
    if (f->trace && n)
        lf__trace_span(f->trace, f->track_compute, "ffn_compute", t0, lf__now_ns(), (int32_t)l, (int64_t)f->token, 0, 0);
}

/* Time spent choosing units: counted, and traced as "predictor". */
static void mask_time(lf_ffn_engine *f, uint32_t l, uint64_t t0) {
    const uint64_t t1 = lf__now_ns();
    f->mask_ns += t1 - t0;
    lf__trace_span(f->trace, f->track_compute, "predictor", t0, t1, (int32_t)l, (int64_t)f->token, 0, 0);
}

/* The reuse distances of layer l's active units f->active[0..n). */
static void count_reuse(lf_ffn_engine *f, uint32_t l, uint32_t n) {
    uint32_t *last = f->last_use + (uint64_t)l * f->n_units;
    uint64_t *hist = f->layers[l].reuse_hist;
    const uint32_t now = (uint32_t)f->token;
    for (uint32_t k = 0; k < n; k++) {
        const uint32_t u = f->active[k], d = now - last[u];
        int b = LF_REUSE_BUCKETS - 1; /* first use */
        if (last[u] && d) {
            b = 0;
            while (b < LF_REUSE_BUCKETS - 2 && (1u << b) < d) b++;
        }
        if (!last[u] || d) hist[b]++;
        last[u] = now;
    }
}

void lf__ffn_set_trace(lf_ffn_engine *f, lf_trace *trace, int track_compute, int track_io) {
    f->trace = trace;
    f->track_compute = track_compute;
    f->track_io = track_io;
}

/* Starts chunk p->next_chunk of plan p in free buffer `buf`. */
static lf_status start_chunk(lf_ffn_engine *f, plan *p, int buf) {
    const uint32_t k = p->next_chunk, first = k * f->chunk_units, n = LF_MIN(f->chunk_units, p->n_trans - first);
    uint8_t *base = f->tbuf[buf];
    /* the loader copies the requests, so one array serves every batch */
    for (uint32_t i = 0; i < n; i++) {
        f->reqs[i] = unit_req(f, (uint32_t)p->layer, p->misses[p->n_ins + first + i], base + (uint64_t)i * f->tslot);
        f->reqs[i].dst_cap = (uint32_t)f->tslot;
    }
    inflight_chunk *c = &f->fifo[f->fifo_n];
    *c = (inflight_chunk){p, k, buf, NULL, lf__now_ns()};
    const lf_status rc = submit(f, (uint32_t)p->layer, n, &c->batch);
    if (rc) return rc;
    f->fifo_n++;
    f->buf_busy[buf] = true;
    p->next_chunk++;
    return LF_OK;
}

/* Fills free transient buffers: the current layer's chunks first, then the
 * next layer's (planned early), so the queue does not drain between layers.
 * Naive mode keeps one buffer: read, then compute. */
static lf_status pump(lf_ffn_engine *f, plan *cur) {
    const int nbuf = f->double_buffer ? 2 : 1;
    for (int buf = 0; buf < nbuf; buf++) {
        if (f->buf_busy[buf]) continue;
        plan *p = cur;
        if (!p || p->next_chunk >= p->n_chunks) {
            plan *other = cur ? &f->plans[(cur->layer + 1) % 2] : NULL;
            p = other && other->layer == cur->layer + 1 && other->token == f->token && other->next_chunk < other->n_chunks
                    ? other : NULL;
        }
        if (!p) break;
        lf_status rc = start_chunk(f, p, buf);
        if (rc) return rc;
    }
    return LF_OK;
}

/* Lookahead: guesses layer l's units from x_prev, the layer before's input,
 * and starts reading the ones not cached into cache slots, behind the reads
 * already queued. */
static lf_status warm_layer(lf_ffn_engine *f, uint32_t l, const float *x_prev, size_t n) {
    warm *w = &f->ahead;
    if (w->batch || w->layer >= 0) drain(f); /* a guess nobody consumed (a caller that skipped layers) */
    lf_ncache *c = &f->cache[l];
    lf__ncache_expire(c, f->token, f->window);
    const uint64_t t_mask = lf__now_ns();
    const uint32_t n_guess = f->mask_src.ops->select_ahead(f->mask_src.state, l, x_prev, n, f->active);
    mask_time(f, l, t_mask);
    uint32_t n_new = 0;
    for (uint32_t k = 0; k < n_guess; k++) {
        const uint32_t u = f->active[k];
        const int32_t slot = lf__ncache_find(c, u);
        if (slot >= 0) lf__ncache_touch(c, slot, f->token); /* not evicted by the guess's own inserts */
        else w->units[n_new++] = u;
    }
    /* a guess from a separate lookahead predictor evicts only units older
     * than the token before: those are as likely to be needed now as its
     * guesses are. The layer's own predictor on the input before is the
     * better forecast (7B relu, 50% budget: its guesses' recall 0.61 against
     * 0.23 when they could not evict, 3% less token time), so it may evict
     * any unit the current token has not used. */
    const uint64_t keep_from = f->mask_src.ops->ahead_outranks_recent ? f->token : f->token - 1;
    w->n = lf__ncache_insert_many(c, w->units, n_new, keep_from, w->slots, f->scratch);
    /* a guess is not a use: the layer's plan touches what it needs and may
     * evict the guessed units it does not need before older ones */
    const uint64_t guessed = f->token - 1;
    for (uint32_t k = 0; k < n_guess; k++) {
        const int32_t slot = lf__ncache_find(c, f->active[k]);
        if (slot >= 0) lf__ncache_touch(c, slot, guessed);
    }
    w->layer = l;
    w->token = f->token;
    w->ready = false;
    if (!w->n) {
        w->ready = true;
        return LF_OK;
    }
    layer_counters *lc = &f->layers[l];
    for (uint32_t k = 0; k < w->n; k++) {
        f->reqs[k] = unit_req(f, l, w->units[k], lf__ncache_slot(c, w->slots[k]));
        f->reqs[k].dst_cap = (uint32_t)c->slot_bytes;
        w->flag[w->units[k]] = 1;
        lc->bytes_read += f->m->flash->layers[l].index[w->units[k]].stored;
    }
    lc->ahead_units += w->n;
    w->t0 = lf__now_ns();
    return submit(f, l, w->n, &w->batch);
}

static lf_status wait_batch(lf_ffn_engine *f, lf_load_batch **b, uint64_t submitted);

/* Before layer l computes, the reads started early into its cache must have
 * landed; its plan has been made and its own reads queued behind them, so
 * the device does not idle while this waits. Then the guess is spent. */
static lf_status settle_warm(lf_ffn_engine *f, uint32_t l) {
    warm *w = &f->ahead;
    if (w->layer != (int64_t)l || w->token != f->token) return LF_OK;
    if (!w->ready) {
        const lf_status rc = wait_batch(f, &w->batch, w->t0);
        if (rc) return rc;
        w->ready = true;
    }
    for (uint32_t k = 0; k < w->n; k++) w->flag[w->units[k]] = 0;
    w->layer = -1;
    w->n = 0;
    return LF_OK;
}

/* While layer l's plan takes slots, the guessed units whose reads are in
 * flight keep theirs: pinned, so that no eviction hands a slot a second
 * read (insertion moves no slot, and warm_layer expired the cache). */
static void pin_warm(lf_ffn_engine *f, uint32_t l, bool pin) {
    const warm *w = &f->ahead;
    if (w->layer != (int64_t)l || w->token != f->token || w->ready) return;
    for (uint32_t k = 0; k < w->n; k++) (pin ? lf__ncache_pin : lf__ncache_unpin)(&f->cache[l], w->slots[k]);
}

lf_status lf__ffn_prefetch(lf_ffn_engine *f, uint32_t l, const float *x, size_t n) {
    if (f->mode == LF_MODE_MMAP) return LF_OK;
    plan *p = &f->plans[l % 2];
    if (p->layer == (int64_t)l && p->token == f->token) return LF_OK;
    if (f->mask_src.ops->needs_input && !x) return LF_OK; /* needs the layer's input */
    /* the slot still holds a plan that was never computed (a caller that
     * moved on to another batch or skipped layers): its reads are waited
     * for and its unconfirmed units dropped before the slot is reused */
    if (plan_busy(f, p)) drain(f);
    lf_status rc = LF_OK;
    warm *w = &f->ahead;
    const bool warmed = w->layer == (int64_t)l && w->token == f->token;
    const lf_model *m = f->m;
    lf_ncache *c = &f->cache[l];
    p->layer = l;
    p->token = f->token;
    p->n_tok = n;
    p->ins_batch = NULL;
    p->ins_ready = false;
    p->n_ins = 0;
    /* warm_layer expired a warmed cache for this token already; again would
     * drop its guesses, counted as the token before's, at a window of 1 */
    if (f->mode == LF_MODE_STREAM && !warmed) lf__ncache_expire(c, f->token, f->window);
    const uint64_t t_mask = lf__now_ns();
    const uint32_t n_active = f->mask_src.ops->route ? f->mask_src.ops->route(f->mask_src.state, l, x, n, f->active, p->w)
                                                     : f->mask_src.ops->select(f->mask_src.state, l, x, n, f->active);
    mask_time(f, l, t_mask);
    count_reuse(f, l, n_active);
    uint32_t n_miss = 0;
    p->n_hits = 0;
    for (uint32_t k = 0; k < n_active; k++) {
        const uint32_t u = f->active[k];
        const int32_t slot = lf__ncache_find(c, u);
        if (slot >= 0) {
            lf__ncache_touch(c, slot, f->token);
            p->hits[p->n_hits++] = u;
        } else {
            p->misses[n_miss++] = u;
        }
    }
    pin_warm(f, l, true);
    p->n_ins = f->mode == LF_MODE_STREAM
                   ? lf__ncache_insert_many(c, p->misses, n_miss, f->token, p->ins_slots, f->scratch)
                   : 0;
    pin_warm(f, l, false);
    p->n_trans = n_miss - p->n_ins;
    p->n_chunks = (p->n_trans + f->chunk_units - 1) / f->chunk_units;
    p->next_chunk = 0;
    if (p->n_ins) {
        for (uint32_t k = 0; k < p->n_ins; k++) {
            f->reqs[k] = unit_req(f, l, p->misses[k], lf__ncache_slot(c, p->ins_slots[k]));
            f->reqs[k].dst_cap = (uint32_t)c->slot_bytes; /* whole pages for experts: read in place */
        }
        p->ins_t0 = lf__now_ns();
        rc = submit(f, l, p->n_ins, &p->ins_batch);
    }
    /* the layer computing now, if any, keeps priority on the buffers */
    plan *prev = &f->plans[(l + 1) % 2];
    if (!rc) rc = pump(f, prev->layer == (int64_t)l - 1 && prev->token == f->token ? prev : p);
    /* counters */
    layer_counters *lc = &f->layers[l];
    const uint64_t rec = m->flash->layout.record_bytes;
    uint64_t served = 0, loaded = 0;
    for (uint32_t k = 0; k < p->n_hits; k++) {
        /* a unit read early for this token was loaded, not served */
        const bool early = warmed && w->flag[p->hits[k]];
        (early ? &loaded : &served)[0] += unit_neurons(m, p->hits[k], NULL);
        lc->ahead_used += early;
    }
    if (warmed) lc->ahead_late += n_miss;
    for (uint32_t k = 0; k < n_miss; k++) {
        loaded += unit_neurons(m, p->misses[k], NULL);
        lc->bytes_read += m->flash->layers[l].index[p->misses[k]].stored;
    }
    lc->bytes_served += served * rec;
    lc->loaded += loaded;
    lc->used += served + loaded;
    f->neurons_loaded += loaded;
    f->neurons_used += served + loaded;
    return rc;
}

/* Waits for a batch, counting the time as I/O wait. A batch's I/O time runs
 * from submission to the end of the wait; what was not spent waiting was
 * hidden behind compute. */
static lf_status wait_batch(lf_ffn_engine *f, lf_load_batch **b, uint64_t submitted) {
    if (!*b) return LF_OK;
    const uint64_t t0 = lf__now_ns();
    const lf_status rc = lf__loader_wait_io(f->m->loader, *b, &f->err, &f->io);
    const uint64_t t1 = lf__now_ns();
    f->io_wait_ns += t1 - t0;
    f->io_span_ns += t1 - submitted;
    *b = NULL;
    if (f->trace) {
        const lf_batch_span *r = &f->io.last;
        lf__trace_span(f->trace, f->track_compute, "io_wait", t0, t1, -1, (int64_t)f->token, 0, 0);
        if (r->first_issue_ns)
            lf__trace_span(f->trace, f->track_io, "read", r->first_issue_ns, r->done_ns, -1, (int64_t)f->token, r->bytes,
                           r->reads);
        lf__trace_counter(f->trace, "bytes_in_flight", t1, (double)lf__loader_inflight_bytes(f->m->loader));
    }
    return rc;
}

/* Expands units into record pointers (and, routed, each record's weights:
 * its unit's, from the plan's table). */
static size_t unit_records(const lf_ffn_engine *f, const plan *p, const uint8_t *base, uint32_t u, size_t at) {
    const uint64_t count = unit_neurons(f->m, u, NULL), rec = f->m->flash->layout.record_bytes;
    for (uint64_t i = 0; i < count; i++) f->recs[at + i] = base + i * rec;
    if (f->routed)
        for (uint64_t i = 0; i < count; i++) f->recw[at + i] = p->w + (uint64_t)u * p->n_tok;
    return at + count;
}

/* Waits for every read in flight (errors, teardown) and forgets the plans.
 * Units inserted for a plan whose reads were not confirmed are removed from
 * the cache: a slot becomes valid only once its read has succeeded and been
 * verified, so a failed or abandoned batch leaves no garbage behind. */
static void drain(lf_ffn_engine *f) {
    warm *w = &f->ahead;
    if (w->batch) {
        lf_err ignored = {{0}};
        lf__loader_wait_io(f->m->loader, w->batch, &ignored, &f->io);
        w->batch = NULL;
    }
    for (uint32_t i = 0; i < f->fifo_n; i++) {
        lf_err ignored = {{0}};
        if (f->fifo[i].batch) lf__loader_wait_io(f->m->loader, f->fifo[i].batch, &ignored, &f->io);
        f->buf_busy[f->fifo[i].buf] = false;
    }
    f->fifo_n = 0;
    for (int k = 0; k < 2; k++) {
        plan *p = &f->plans[k];
        if (p->ins_batch) {
            lf_err ignored = {{0}};
            lf__loader_wait_io(f->m->loader, p->ins_batch, &ignored, &f->io);
            p->ins_batch = NULL;
        }
        if (p->layer >= 0 && !p->ins_ready)
            for (uint32_t u = 0; u < p->n_ins; u++) lf__ncache_remove(&f->cache[p->layer], p->misses[u]);
        p->layer = -1;
        p->n_ins = 0;
    }
    if (w->layer >= 0 && !w->ready)
        for (uint32_t k = 0; k < w->n; k++) lf__ncache_remove(&f->cache[w->layer], w->units[k]);
    if (w->layer >= 0)
        for (uint32_t k = 0; k < w->n; k++) w->flag[w->units[k]] = 0;
    w->layer = -1;
    w->n = 0;
}

void lf__ffn_abort(lf_ffn_engine *f) {
    if (f && f->cache) drain(f);
}

/* measure_recall: the units the oracle wants for this batch that the plan
 * (hits and misses) does not hold, and the oracle's sets token by token. */
static void measure_recall(lf_ffn_engine *f, const plan *p, uint32_t l, const float *x, size_t n) {
    uint8_t *planned = f->truth_flags;
    memset(planned, 0, f->n_units);
    for (uint32_t k = 0; k < p->n_hits; k++) planned[p->hits[k]] = 1;
    for (uint32_t k = 0; k < p->n_ins + p->n_trans; k++) planned[p->misses[k]] = 1;
    layer_counters *lc = &f->layers[l];
    uint64_t *last = f->truth_last + (uint64_t)l * f->n_units;
    uint32_t *count = f->truth_count + (uint64_t)l * f->n_units;
    const uint32_t d = f->m->info.n_embd;
    for (size_t t = 0; t < n; t++) {
        const uint64_t token = f->token - n + 1 + t;
        const uint32_t n_true = f->truth.ops->select(f->truth.state, l, x + t * d, 1, f->truth_units);
        for (uint32_t a = 0; a < n_true; a++) {
            const uint32_t u = f->truth_units[a];
            lc->oracle_new_units += last[u] == 0 || last[u] + 1 != token;
            last[u] = token;
            count[u]++;
            /* bit 0: planned; bit 1: counted for this batch already */
            if (!(planned[u] & 2)) {
                lc->oracle_units++;
                lc->false_negatives += !(planned[u] & 1);
                planned[u] |= 2;
            }
        }
        uint64_t in_window = 0;
        for (uint32_t u = 0; u < f->n_units; u++) in_window += last[u] && last[u] + ORACLE_WINDOW > token;
        lc->oracle_tokens++;
        lc->oracle_token_units += n_true;
        lc->oracle_window_units += in_window;
    }
}

/* mmap mode: every record of the layer, in place in the mapping, checked
 * the first time it is touched. */
static lf_status forward_mapped(lf_ffn_engine *f, uint32_t l, const float *x, size_t n) {
    const lf_status st = lf__model_check_mapped_layer(f->m, l, &f->err);
    if (st) return st;
    const uint8_t *base = f->m->layers[l].bundle;
    const uint64_t stride = f->m->flash->layout.stride;
    if (!f->routed) {
        for (uint32_t i = 0; i < f->m->flash->n_ff; i++) f->recs[i] = base + (uint64_t)i * stride;
        accumulate(f, l, f->m->flash->n_ff);
        return LF_OK;
    }
    /* a mixture of experts: only the routed experts, in place */
    plan *p = &f->plans[0];
    p->n_tok = n;
    const uint64_t t_mask = lf__now_ns();
    const uint32_t n_units = f->mask_src.ops->route(f->mask_src.state, l, x, n, f->active, p->w);
    mask_time(f, l, t_mask);
    size_t k_recs = 0;
    for (uint32_t k = 0; k < n_units; k++)
        k_recs = unit_records(f, p, base + (uint64_t)f->active[k] * stride, f->active[k], k_recs);
    accumulate(f, l, k_recs);
    return LF_OK;
}

lf_status lf__ffn_forward(lf_ffn_engine *f, uint32_t l, const float *x, size_t n, float *y) {
    if (n == 0 || n > f->max_batch)
        return lf__err_set(&f->err, LF_E_INVALID_ARG, "a batch of %zu tokens (this engine takes 1 to %u)", n, f->max_batch);
    lf__ffn_kernel_begin(&f->kernel, x, n);
    lf_status rc;
    if (f->mode == LF_MODE_MMAP) {
        if ((rc = forward_mapped(f, l, x, n))) return rc;
        lf__ffn_kernel_end(&f->kernel, y);
        return LF_OK;
    }
    if ((rc = lf__ffn_prefetch(f, l, x, n))) goto fail;
    if ((rc = settle_warm(f, l))) goto fail;
    /* lookahead: the next layer's guessed units load while this one computes */
    if (f->ahead.units && l + 1 < f->n_layer && (rc = warm_layer(f, l + 1, x, n))) goto fail;
    plan *p = &f->plans[l % 2];
    if (f->truth.ops) measure_recall(f, p, l, x, n);
    lf_ncache *c = &f->cache[l];
    const bool early = !f->mask_src.ops->needs_input;
    /* hits first: computed while the misses load */
    size_t k_recs = 0;
    for (uint32_t k = 0; k < p->n_hits; k++)
        k_recs = unit_records(f, p, lf__ncache_slot(c, lf__ncache_find(c, p->hits[k])), p->hits[k], k_recs);
    accumulate(f, l, k_recs);
    if ((rc = wait_batch(f, &p->ins_batch, p->ins_t0))) goto fail;
    p->ins_ready = true;
    k_recs = 0;
    for (uint32_t k = 0; k < p->n_ins; k++)
        k_recs = unit_records(f, p, lf__ncache_slot(c, p->ins_slots[k]), p->misses[k], k_recs);
    accumulate(f, l, k_recs);
    for (uint32_t k = 0; k < p->n_chunks; k++) {
        if (!f->fifo_n || f->fifo[0].p != p || f->fifo[0].chunk != k) {
            rc = lf__err_set(&f->err, LF_E_IO, "internal: transient chunk %u of layer %u was not issued", k, l);
            goto fail;
        }
        inflight_chunk *head = &f->fifo[0];
        if ((rc = wait_batch(f, &head->batch, head->t0))) goto fail;
        const int buf = head->buf;
        const uint32_t first = k * f->chunk_units, cnt = LF_MIN(f->chunk_units, p->n_trans - first);
        k_recs = 0;
        for (uint32_t i = 0; i < cnt; i++)
            k_recs = unit_records(f, p, f->tbuf[buf] + (uint64_t)i * f->tslot, p->misses[p->n_ins + first + i], k_recs);
        /* the last chunk of this layer is in flight or done: plan the next
         * layer now, so its reads start while this one computes */
        if (p->next_chunk == p->n_chunks && early && f->mode != LF_MODE_NAIVE && l + 1 < f->n_layer &&
            (rc = lf__ffn_prefetch(f, l + 1, NULL, n)))
            goto fail;
        accumulate(f, l, k_recs);
        f->buf_busy[buf] = false;
        memmove(f->fifo, f->fifo + 1, (f->fifo_n - 1) * sizeof *f->fifo);
        f->fifo_n--;
        if ((rc = pump(f, p))) goto fail;
    }
    if (p->n_chunks == 0 && early && f->mode != LF_MODE_NAIVE && l + 1 < f->n_layer &&
        (rc = lf__ffn_prefetch(f, l + 1, NULL, n)))
        goto fail;
    lf__ffn_kernel_end(&f->kernel, y);
    if (f->trace && f->cache) {
        uint64_t live = 0;
        for (uint32_t k = 0; k < f->n_layer; k++) live += f->cache[k].n_live;
        lf__trace_counter(f->trace, "cache_bytes", lf__now_ns(), (double)(live * f->unit_bytes));
    }
    return LF_OK;
fail:
    drain(f);
    return rc;
}

void lf__ffn_stats(const lf_ffn_engine *f, lf_session_stats *out) {
    if (!f) return;
    for (uint32_t l = 0; l < f->n_layer; l++) {
        out->ffn_bytes_read += f->layers[l].bytes_read;
        out->ffn_bytes_served += f->layers[l].bytes_served;
        if (f->cache) {
            out->evictions += f->cache[l].evictions;
            out->expirations += f->cache[l].expirations;
            out->window_union += (uint64_t)f->cache[l].n_live * f->group;
        }
    }
    out->neurons_loaded = f->neurons_loaded;
    out->neurons_used = f->neurons_used;
    out->io_wait_ms = lf__ns_to_ms(f->io_wait_ns);
    out->io_span_ms = lf__ns_to_ms(f->io_span_ns);
    out->mask_ms = lf__ns_to_ms(f->mask_ns);
    out->io_reads = f->io.reads;
    out->io_bytes = f->io.bytes;
}

void lf__ffn_reset_stats(lf_ffn_engine *f) {
    if (!f) return;
    memset(f->layers, 0, f->n_layer * sizeof *f->layers);
    if (f->truth_count) memset(f->truth_count, 0, (uint64_t)f->n_layer * f->n_units * sizeof *f->truth_count);
    for (uint32_t l = 0; f->cache && l < f->n_layer; l++) f->cache[l].evictions = f->cache[l].expirations = 0;
    f->neurons_used = f->neurons_loaded = 0;
    f->io_wait_ns = f->io_span_ns = f->mask_ns = 0;
    f->io = (lf_batch_io){0};
}

static int by_count_desc(const void *a, const void *b) {
    const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x < y) - (x > y);
}

/* The share of a layer's activations that its most active fifth of units
 * carries (0 without measurements). */
static double hot_share(const lf_ffn_engine *f, uint32_t l) {
    if (!f->truth_count || !f->layers[l].oracle_token_units) return 0.0;
    uint32_t *c = malloc(f->n_units * sizeof *c);
    if (!c) return 0.0;
    memcpy(c, f->truth_count + (uint64_t)l * f->n_units, f->n_units * sizeof *c);
    qsort(c, f->n_units, sizeof *c, by_count_desc);
    uint64_t top = 0, all = 0;
    for (uint32_t u = 0; u < f->n_units; u++) {
        all += c[u];
        if (u < (f->n_units + 4) / 5) top += c[u];
    }
    free(c);
    return (double)top / (double)all;
}

void lf__ffn_layer_stats(const lf_ffn_engine *f, uint32_t l, lf_layer_stats *out) {
    const layer_counters *lc = &f->layers[l];
    out->bytes_read = lc->bytes_read;
    out->bytes_served = lc->bytes_served;
    out->neurons_loaded = lc->loaded;
    out->neurons_used = lc->used;
    out->oracle_units = lc->oracle_units;
    out->false_negatives = lc->false_negatives;
    out->oracle_tokens = lc->oracle_tokens;
    out->oracle_token_units = lc->oracle_token_units;
    out->oracle_window_units = lc->oracle_window_units;
    out->oracle_new_units = lc->oracle_new_units;
    out->oracle_hot_share = hot_share(f, l);
    out->ahead_units = lc->ahead_units;
    out->ahead_used = lc->ahead_used;
    out->ahead_late = lc->ahead_late;
    out->cache_slots = f->cache ? f->cache[l].capacity : 0;
    out->resident = f->cache ? f->cache[l].n_live : 0;
    memcpy(out->reuse_hist, lc->reuse_hist, sizeof out->reuse_hist);
}

uint64_t lf__ffn_cache_bytes(const lf_ffn_engine *f) {
    uint64_t bytes = 0;
    for (uint32_t l = 0; f->cache && l < f->n_layer; l++)
        bytes += lf__ncache_bytes(0, f->cache[l].capacity, f->cache[l].slot_bytes);
    return bytes;
}
