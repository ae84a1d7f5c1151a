/* ffn_stream.c - the FFN streamed from flash through the windowed cache.
 *
 * Per layer and token:
 *   1. drop units outside the window (stream mode);
 *   2. the mask names the active units: hits are in the cache, misses not;
 *   3. misses take cache slots, evicting least recently used units the
 *      token does not need, and are read into those slots;
 *   4. misses that find no slot (the slab is full of active units) stream
 *      through two transient buffers: one is computed while the other loads;
 *   5. hits are computed while the reads run.
 * A unit is a neuron record, or a compressed group of records. With a mask
 * known before the layer's input (mask "all"), steps 1-4 run before
 * attention so the reads overlap it.
 *
 * Modes: stream (cache from the budget), naive (no cache, one buffer: read,
 * then compute), hybrid (the first half of each layer pinned, the rest
 * streamed). */
#include "session.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <sys/resource.h>

typedef struct layer_counters {
    uint64_t bytes_read, bytes_served, loaded, used;
} layer_counters;

/* One layer's reads for one token. */
typedef struct plan {
    int64_t layer;
    uint64_t token;
    uint32_t n_hits, n_ins, n_trans, n_chunks, next_chunk;
    uint32_t *hits;           /* (n_units) hit units; slots are looked up after insertion,
                                 since evictions move slots (swap-delete) */
    uint32_t *misses;         /* (n_units) inserted ones first, then transient ones */
    int32_t *ins_slots;       /* (n_units) */
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

struct lf_stream {
    lf_mode mode;
    uint32_t window;
    lf_mask_source mask;
    lf_cache_split split;
    bool rebalanced;
    uint64_t token;           /* 1 for the first token */
    uint32_t n_layer, n_units, group;
    uint64_t unit_bytes;      /* raw bytes of a unit: group * record_bytes */
    lf_ncache *cache;         /* (n_layer) */
    /* two plans, by layer parity: while layer l computes, layer l+1's reads
     * can already be planned and in flight */
    plan plans[2];
    /* transient chunks in flight, oldest first, across plans */
    inflight_chunk fifo[2];
    uint32_t fifo_n;
    bool buf_busy[2];
    uint32_t *active;         /* (n_units) */
    int32_t *scratch;         /* 4 * n_units */
    const uint8_t **recs;     /* (n_ff) */
    lf_load_req *reqs;        /* (max(n_units, chunk_units)) */
    /* transient buffers: slots at the file's stride when records are
     * uncompressed, so the loader reads whole runs of them in place */
    uint8_t *tbuf[2];
    uint64_t tslot;
    uint32_t chunk_units;
    bool double_buffer;
    /* oracle: resident gate/up rows and the activations they give */
    uint8_t *oracle;          /* (n_layer, n_ff, n_rows - 1, row_bytes) */
    float *oracle_h;          /* (n_ff) */
    /* stats */
    layer_counters *layers;   /* (n_layer) */
    uint64_t neurons_used, neurons_loaded;
    uint64_t io_wait_ns;
    uint64_t io_span_ns;      /* submission to completion, summed over batches */
    lf_batch_io io;           /* this session's reads (the loader is shared) */
};

static void drain(lf_session *s);

static uint64_t unit_neurons(const lf_model *m, uint32_t u, uint64_t *first) {
    uint64_t f, n;
    lf_flash_group_neurons(m->flash, u, &f, &n);
    if (first) *first = f;
    return n;
}

static lf_load_req unit_req(const lf_session *s, uint32_t l, uint32_t u, void *dst) {
    const lf_model *m = s->m;
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

uint64_t lf_stream_plan_bytes(const lf_model *m, const lf_session_params *p, uint64_t *io_bytes, uint64_t *oracle_bytes,
                              uint64_t *scratch_bytes) {
    const lf_bundle_layout *B = &m->flash->layout;
    const uint64_t n_units = m->flash->layers[0].n_groups, unit_bytes = (uint64_t)B->group * B->record_bytes;
    const uint64_t tslot = B->compression == LF_COMPRESS_NONE ? B->stride : unit_bytes;
    const uint64_t chunk = chunk_bytes_for(m, tslot) / tslot * tslot;
    /* two transient buffers, and the loader's per-batch tables for up to
     * three batches of every unit (the loader's staging is the model's) */
    *io_bytes = 2 * chunk + 3 * n_units * 256;
    *oracle_bytes = p->mask == LF_MASK_ORACLE
                        ? (uint64_t)m->info.n_layer * m->info.n_ff * (B->n_rows - 1) * B->row_bytes + m->info.n_ff * 4
                        : 0;
    *scratch_bytes = n_units * (4 + 2 * (4 + 4 + 4) + 16 + sizeof(lf_load_req)) + (uint64_t)m->info.n_ff * sizeof(void *) +
                     (uint64_t)m->info.n_layer * n_units * sizeof(int32_t) /* cache indexes */;
    return *io_bytes + *oracle_bytes + *scratch_bytes;
}

void lf_stream_destroy(lf_stream *st) {
    if (!st) return;
    /* reads still in flight target our buffers: the session drains them
     * before calling this (lf_stream_shutdown) */
    if (st->cache)
        for (uint32_t l = 0; l < st->n_layer; l++) lf_ncache_free(&st->cache[l]);
    free(st->cache);
    free(st->active);
    for (int k = 0; k < 2; k++) {
        free(st->plans[k].hits);
        free(st->plans[k].misses);
        free(st->plans[k].ins_slots);
    }
    free(st->scratch);
    free(st->recs);
    free(st->reqs);
    lf_free_aligned(st->tbuf[0]);
    lf_free_aligned(st->tbuf[1]);
    lf_free_aligned(st->oracle);
    free(st->oracle_h);
    free(st->layers);
    free(st);
}

/* Reads whole layers once at creation (hybrid's pinned half, the oracle's
 * gate/up copy) through a temporary chunk. */
static lf_status preload(lf_session *s, lf_err *err) {
    lf_stream *st = s->stream;
    const lf_model *m = s->m;
    const lf_bundle_layout *B = &m->flash->layout;
    lf_status rc = LF_OK;
    for (uint32_t l = 0; l < st->n_layer && !rc; l++) {
        lf_ncache *c = &st->cache[l];
        const uint32_t pin = st->mode == LF_MODE_HYBRID ? c->capacity : 0;
        const bool oracle = st->oracle != NULL;
        for (uint32_t u0 = 0; u0 < st->n_units && !rc; u0 += st->chunk_units) {
            const uint32_t n = LF_MIN(st->chunk_units, st->n_units - u0);
            if (u0 >= pin && !oracle) break;
            for (uint32_t k = 0; k < n; k++) {
                st->reqs[k] = unit_req(s, l, u0 + k, st->tbuf[0] + (uint64_t)k * st->tslot);
                st->reqs[k].dst_cap = (uint32_t)st->tslot;
            }
            lf_load_batch *b;
            if ((rc = lf_loader_submit(m->loader, st->reqs, n, &b, err)) || (rc = lf_loader_wait(m->loader, b, err))) break;
            for (uint32_t k = 0; k < n; k++) {
                const uint32_t u = u0 + k;
                const uint8_t *src = st->tbuf[0] + (uint64_t)k * st->tslot;
                uint64_t first;
                const uint64_t count = unit_neurons(m, u, &first);
                if (u < pin) {
                    const int32_t slot = lf_ncache_insert(c, u, 0);
                    memcpy(lf_ncache_slot(c, slot), src, count * B->record_bytes);
                    lf_ncache_pin(c, slot);
                }
                if (oracle)
                    for (uint64_t i = 0; i < count; i++)
                        memcpy(st->oracle + (((uint64_t)l * m->info.n_ff + first + i) * (B->n_rows - 1)) * B->row_bytes,
                               src + i * B->record_bytes, (B->n_rows - 1) * B->row_bytes);
            }
        }
    }
    return rc;
}

lf_status lf_stream_create(lf_session *s, uint64_t cache_bytes, lf_err *err) {
    const lf_model *m = s->m;
    const lf_bundle_layout *B = &m->flash->layout;
    lf_stream *st = calloc(1, sizeof *st);
    if (!st) return LF_E_NOMEM;
    s->stream = st;
    st->mode = m->mode;
    st->window = s->params.window ? s->params.window : 5;
    st->mask = s->params.mask;
    st->split = s->params.split;
    st->n_layer = m->info.n_layer;
    st->n_units = (uint32_t)m->flash->layers[0].n_groups;
    st->group = B->group;
    st->unit_bytes = (uint64_t)B->group * B->record_bytes;
    const uint64_t per_slot = st->unit_bytes + sizeof(int32_t) + sizeof(uint64_t) + 1;
    uint64_t capacity = st->n_units;
    if (st->mode == LF_MODE_NAIVE) capacity = 0;
    else if (m->dram_budget) capacity = LF_MIN(capacity, cache_bytes / st->n_layer / per_slot);
    if (st->mode == LF_MODE_HYBRID) {
        const uint64_t half = st->n_units / 2;
        if (capacity < half)
            return lf_err_set(err, LF_E_BUDGET, "hybrid mode keeps half of each layer's FFN resident: %" PRIu64
                              " bytes more are needed", (half - capacity) * per_slot * st->n_layer);
        capacity = half;
    }
    st->tslot = B->compression == LF_COMPRESS_NONE ? B->stride : st->unit_bytes;
    st->chunk_units = (uint32_t)LF_MAX((uint64_t)1, chunk_bytes_for(m, st->tslot) / st->tslot);
    st->double_buffer = st->mode != LF_MODE_NAIVE;
    st->cache = calloc(st->n_layer, sizeof *st->cache);
    st->layers = calloc(st->n_layer, sizeof *st->layers);
    st->active = malloc(st->n_units * sizeof *st->active);
    bool plans_ok = true;
    for (int k = 0; k < 2; k++) {
        st->plans[k].layer = -1;
        st->plans[k].hits = malloc(st->n_units * sizeof *st->plans[k].hits);
        st->plans[k].misses = malloc(st->n_units * sizeof *st->plans[k].misses);
        st->plans[k].ins_slots = malloc(st->n_units * sizeof *st->plans[k].ins_slots);
        plans_ok = plans_ok && st->plans[k].hits && st->plans[k].misses && st->plans[k].ins_slots;
    }
    /* sized for a whole layer: a measured split may give one layer every slot */
    st->scratch = malloc((4 * (uint64_t)st->n_units + 4) * sizeof *st->scratch);
    st->recs = malloc((uint64_t)m->info.n_ff * sizeof *st->recs);
    st->reqs = malloc(LF_MAX(st->n_units, st->chunk_units) * sizeof *st->reqs);
    const bool need_transient = capacity < st->n_units || s->params.mask == LF_MASK_ORACLE || st->mode == LF_MODE_HYBRID;
    for (int k = 0; k < (need_transient ? 2 : 1); k++)
        st->tbuf[k] = lf_alloc_aligned((uint64_t)st->chunk_units * st->tslot, 4096);
    if (!st->cache || !st->layers || !st->active || !plans_ok || !st->scratch ||
        !st->recs || !st->reqs || !st->tbuf[0] || (need_transient && !st->tbuf[1]))
        return lf_err_set(err, LF_E_NOMEM, "streaming state");
    for (uint32_t l = 0; l < st->n_layer; l++)
        if (lf_ncache_init(&st->cache[l], st->n_units, (uint32_t)capacity, st->unit_bytes))
            return lf_err_set(err, LF_E_NOMEM, "neuron cache of layer %u (%" PRIu64 " slots)", l, capacity);
    if (s->params.mask == LF_MASK_ORACLE) {
        st->oracle = lf_alloc_aligned((uint64_t)st->n_layer * m->info.n_ff * (B->n_rows - 1) * B->row_bytes, 64);
        st->oracle_h = malloc(m->info.n_ff * sizeof *st->oracle_h);
        if (!st->oracle || !st->oracle_h) return lf_err_set(err, LF_E_NOMEM, "oracle copy of gate/up");
    }
    lf_log(&m->log, LF_LOG_INFO, "%s mode: %" PRIu64 " of %u units cached per layer (%" PRIu64 " bytes each), window %u, "
           "transient chunks of %u units", lf_mode_name(st->mode), capacity, st->n_units, st->unit_bytes, st->window,
           st->chunk_units);
    return preload(s, err);
}

/* LF_SPLIT_MEASURED: once the first LF_SPLIT_TOKENS tokens have shown what
 * each layer uses, the same total of slots is shared in proportion to it.
 * The caches restart empty (one reallocation per layer, once). */
#define LF_SPLIT_TOKENS 16
static void rebalance(lf_session *s) {
    lf_stream *st = s->stream;
    uint64_t total = 0, used = 0;
    for (uint32_t l = 0; l < st->n_layer; l++) {
        total += st->cache[l].capacity;
        used += st->layers[l].used;
    }
    if (!used || st->mode != LF_MODE_STREAM) return;
    uint64_t *cap = calloc(st->n_layer, sizeof *cap);
    if (!cap) return;
    uint64_t given = 0;
    for (uint32_t l = 0; l < st->n_layer; l++) {
        cap[l] = LF_MIN((uint64_t)st->n_units, total * st->layers[l].used / used);
        given += cap[l];
    }
    /* slots a full layer could not take go to the others, in layer order */
    for (uint32_t l = 0; l < st->n_layer && given < total; l++) {
        const uint64_t more = LF_MIN(total - given, (uint64_t)st->n_units - cap[l]);
        cap[l] += more;
        given += more;
    }
    for (uint32_t l = 0; l < st->n_layer; l++) {
        const uint64_t ev = st->cache[l].evictions, ex = st->cache[l].expirations;
        lf_ncache_free(&st->cache[l]);
        if (lf_ncache_init(&st->cache[l], st->n_units, (uint32_t)cap[l], st->unit_bytes) != LF_OK)
            lf_ncache_init(&st->cache[l], st->n_units, 0, st->unit_bytes);
        st->cache[l].evictions = ev;
        st->cache[l].expirations = ex;
        lf_log(&s->m->log, LF_LOG_INFO, "measured cache split: layer %u gets %u slots", l, st->cache[l].capacity);
    }
    free(cap);
}

void lf_stream_shutdown(lf_session *s) {
    if (s->stream) drain(s);
}

void lf_stream_next_token(lf_session *s) {
    lf_stream *st = s->stream;
    st->token++;
    if (st->split == LF_SPLIT_MEASURED && !st->rebalanced && st->token == LF_SPLIT_TOKENS + 1) {
        rebalance(s);
        st->rebalanced = true;
    }
}

/* Starts chunk p->next_chunk of plan p in free buffer `buf`. */
static lf_status start_chunk(lf_session *s, plan *p, int buf) {
    lf_stream *st = s->stream;
    const uint32_t k = p->next_chunk, first = k * st->chunk_units, n = LF_MIN(st->chunk_units, p->n_trans - first);
    uint8_t *base = st->tbuf[buf];
    /* the loader copies the requests, so one array serves every batch */
    for (uint32_t i = 0; i < n; i++) {
        st->reqs[i] = unit_req(s, (uint32_t)p->layer, p->misses[p->n_ins + first + i], base + (uint64_t)i * st->tslot);
        st->reqs[i].dst_cap = (uint32_t)st->tslot;
    }
    inflight_chunk *c = &st->fifo[st->fifo_n];
    *c = (inflight_chunk){p, k, buf, NULL, lf_now_ns()};
    const lf_status rc = lf_loader_submit(s->m->loader, st->reqs, n, &c->batch, &s->err);
    if (rc) return rc;
    st->fifo_n++;
    st->buf_busy[buf] = true;
    p->next_chunk++;
    return LF_OK;
}

/* Fills free transient buffers: the current layer's chunks first, then the
 * next layer's (planned early), so the queue does not drain between layers.
 * Naive mode keeps one buffer: read, then compute. */
static lf_status pump(lf_session *s, plan *cur) {
    lf_stream *st = s->stream;
    const int nbuf = st->double_buffer ? 2 : 1;
    for (int buf = 0; buf < nbuf; buf++) {
        if (st->buf_busy[buf]) continue;
        plan *p = cur;
        if (!p || p->next_chunk >= p->n_chunks) {
            plan *other = cur ? &st->plans[(cur->layer + 1) % 2] : NULL;
            p = other && other->layer == cur->layer + 1 && other->token == st->token && other->next_chunk < other->n_chunks
                    ? other : NULL;
        }
        if (!p) break;
        lf_status rc = start_chunk(s, p, buf);
        if (rc) return rc;
    }
    return LF_OK;
}

/* Oracle mask: units with any neuron whose activation is not zero. */
static uint32_t oracle_mask(lf_session *s, uint32_t l, act *xb) {
    lf_stream *st = s->stream;
    const lf_model *m = s->m;
    const lf_bundle_layout *B = &m->flash->layout;
    const void *x = lf_ffn_input(s, xb);
    const lf_vec_dot_fn dot = m->kernels->dot[B->type];
    const uint32_t d = m->info.n_embd, rows = B->n_rows - 1;
    const uint8_t *base = st->oracle + (uint64_t)l * m->info.n_ff * rows * B->row_bytes;
    for (uint32_t i = 0; i < m->info.n_ff; i++) {
        const uint8_t *r = base + (uint64_t)i * rows * B->row_bytes;
        const float up = dot(r + (rows == 2 ? B->row_bytes : 0), x, d);
        const float gate = rows == 2 ? dot(r, x, d) : 0.0f;
        st->oracle_h[i] = lf_ffn_activate(m->info.activation, gate, up);
    }
    uint32_t n = 0;
    for (uint32_t u = 0; u < st->n_units; u++) {
        uint64_t first;
        const uint64_t count = unit_neurons(m, u, &first);
        bool any = false;
        for (uint64_t i = 0; i < count && !any; i++) any = st->oracle_h[first + i] != 0.0f;
        if (any) st->active[n++] = u;
    }
    return n;
}

lf_status lf_stream_issue(lf_session *s, uint32_t l, act *xb) {
    lf_stream *st = s->stream;
    plan *p = &st->plans[l % 2];
    if (p->layer == (int64_t)l && p->token == st->token) return LF_OK;
    if (st->mask == LF_MASK_ORACLE && !xb) return LF_OK; /* needs the layer's input */
    const lf_model *m = s->m;
    lf_ncache *c = &st->cache[l];
    p->layer = l;
    p->token = st->token;
    p->ins_batch = NULL;
    p->ins_ready = false;
    if (st->mode == LF_MODE_STREAM) lf_ncache_expire(c, st->token, st->window);
    uint32_t n_active;
    if (st->mask == LF_MASK_ORACLE) {
        n_active = oracle_mask(s, l, xb);
    } else {
        for (uint32_t u = 0; u < st->n_units; u++) st->active[u] = u;
        n_active = st->n_units;
    }
    uint32_t n_miss = 0;
    p->n_hits = 0;
    for (uint32_t k = 0; k < n_active; k++) {
        const uint32_t u = st->active[k];
        const int32_t slot = lf_ncache_find(c, u);
        if (slot >= 0) {
            lf_ncache_touch(c, slot, st->token);
            p->hits[p->n_hits++] = u;
        } else {
            p->misses[n_miss++] = u;
        }
    }
    p->n_ins = st->mode == LF_MODE_STREAM
                   ? lf_ncache_insert_many(c, p->misses, n_miss, st->token, p->ins_slots, st->scratch)
                   : 0;
    p->n_trans = n_miss - p->n_ins;
    p->n_chunks = (p->n_trans + st->chunk_units - 1) / st->chunk_units;
    p->next_chunk = 0;
    lf_status rc = LF_OK;
    if (p->n_ins) {
        for (uint32_t k = 0; k < p->n_ins; k++)
            st->reqs[k] = unit_req(s, l, p->misses[k], lf_ncache_slot(c, p->ins_slots[k]));
        p->ins_t0 = lf_now_ns();
        rc = lf_loader_submit(m->loader, st->reqs, p->n_ins, &p->ins_batch, &s->err);
    }
    /* the layer computing now, if any, keeps priority on the buffers */
    plan *prev = &st->plans[(l + 1) % 2];
    if (!rc) rc = pump(s, prev->layer == (int64_t)l - 1 && prev->token == st->token ? prev : p);
    /* counters */
    layer_counters *lc = &st->layers[l];
    const uint64_t rec = m->flash->layout.record_bytes;
    uint64_t served = 0, loaded = 0;
    for (uint32_t k = 0; k < p->n_hits; k++) served += unit_neurons(m, p->hits[k], NULL);
    for (uint32_t k = 0; k < n_miss; k++) {
        loaded += unit_neurons(m, p->misses[k], NULL);
        lc->bytes_read += m->flash->layers[l].index[p->misses[k]].stored;
    }
    lc->bytes_served += served * rec;
    lc->loaded += loaded;
    lc->used += served + loaded;
    st->neurons_loaded += loaded;
    st->neurons_used += served + loaded;
    return rc;
}

/* Waits for a batch, counting the time as I/O wait. A batch's I/O time runs
 * from submission to the end of the wait; what was not spent waiting was
 * hidden behind compute. */
static lf_status wait_batch(lf_session *s, lf_load_batch **b, uint64_t submitted) {
    if (!*b) return LF_OK;
    const uint64_t t0 = lf_now_ns();
    const lf_status rc = lf_loader_wait_io(s->m->loader, *b, &s->err, &s->stream->io);
    const uint64_t t1 = lf_now_ns();
    s->stream->io_wait_ns += t1 - t0;
    s->stream->io_span_ns += t1 - submitted;
    *b = NULL;
    return rc;
}

/* Expands units into record pointers. */
static size_t unit_records(const lf_session *s, const uint8_t *base, uint32_t u, size_t at) {
    const lf_stream *st = s->stream;
    const uint64_t count = unit_neurons(s->m, u, NULL), rec = s->m->flash->layout.record_bytes;
    for (uint64_t i = 0; i < count; i++) st->recs[at + i] = base + i * rec;
    return at + count;
}

/* Waits for every read in flight (errors, teardown) and forgets the plans.
 * Units inserted for a plan whose reads were not confirmed are removed from
 * the cache: a slot becomes valid only once its read has succeeded and been
 * verified, so a failed or abandoned token leaves no garbage behind. */
static void drain(lf_session *s) {
    lf_stream *st = s->stream;
    for (uint32_t i = 0; i < st->fifo_n; i++) {
        lf_err ignored = {{0}};
        if (st->fifo[i].batch) lf_loader_wait_io(s->m->loader, st->fifo[i].batch, &ignored, &st->io);
        st->buf_busy[st->fifo[i].buf] = false;
    }
    st->fifo_n = 0;
    for (int k = 0; k < 2; k++) {
        plan *p = &st->plans[k];
        if (p->ins_batch) {
            lf_err ignored = {{0}};
            lf_loader_wait_io(s->m->loader, p->ins_batch, &ignored, &st->io);
            p->ins_batch = NULL;
        }
        if (p->layer >= 0 && !p->ins_ready)
            for (uint32_t u = 0; u < p->n_ins; u++) lf_ncache_remove(&st->cache[p->layer], p->misses[u]);
        p->layer = -1;
        p->n_ins = 0;
    }
}

void lf_stream_abort(lf_session *s) {
    if (s->stream) drain(s);
}

/* Computes layer l's FFN. The first error stops it: its message stays in
 * s->err (nothing after it overwrites it), every read in flight is waited
 * for, and unconfirmed units leave the cache. */
lf_status lf_stream_ffn(lf_session *s, uint32_t l, act *xb) {
    lf_stream *st = s->stream;
    lf_status rc = lf_stream_issue(s, l, xb);
    if (rc) goto fail;
    plan *p = &st->plans[l % 2];
    lf_ncache *c = &st->cache[l];
    const void *x = lf_ffn_input(s, xb);
    lf_ffn_begin(s);
    /* hits first: computed while the misses load */
    size_t n = 0;
    for (uint32_t k = 0; k < p->n_hits; k++)
        n = unit_records(s, lf_ncache_slot(c, lf_ncache_find(c, p->hits[k])), p->hits[k], n);
    lf_ffn_accumulate(s, st->recs, n, x);
    if ((rc = wait_batch(s, &p->ins_batch, p->ins_t0))) goto fail;
    p->ins_ready = true;
    n = 0;
    for (uint32_t k = 0; k < p->n_ins; k++) n = unit_records(s, lf_ncache_slot(c, p->ins_slots[k]), p->misses[k], n);
    lf_ffn_accumulate(s, st->recs, n, x);
    for (uint32_t k = 0; k < p->n_chunks; k++) {
        if (!st->fifo_n || st->fifo[0].p != p || st->fifo[0].chunk != k) {
            rc = lf_err_set(&s->err, LF_E_IO, "internal: transient chunk %u of layer %u was not issued", k, l);
            goto fail;
        }
        inflight_chunk *head = &st->fifo[0];
        rc = wait_batch(s, &head->batch, head->t0);
        if (rc) goto fail;
        const int buf = head->buf;
        const uint32_t first = k * st->chunk_units, cnt = LF_MIN(st->chunk_units, p->n_trans - first);
        n = 0;
        for (uint32_t i = 0; i < cnt; i++)
            n = unit_records(s, st->tbuf[buf] + (uint64_t)i * st->tslot, p->misses[p->n_ins + first + i], n);
        /* the last chunk of this layer is in flight or done: plan the next
         * layer now, so its reads start while this one computes */
        if (p->next_chunk == p->n_chunks && st->mask == LF_MASK_ALL && st->mode != LF_MODE_NAIVE && l + 1 < st->n_layer &&
            (rc = lf_stream_issue(s, l + 1, NULL)))
            goto fail;
        lf_ffn_accumulate(s, st->recs, n, x);
        st->buf_busy[buf] = false;
        memmove(st->fifo, st->fifo + 1, (st->fifo_n - 1) * sizeof *st->fifo);
        st->fifo_n--;
        if ((rc = pump(s, p))) goto fail;
    }
    if (p->n_chunks == 0 && st->mask == LF_MASK_ALL && st->mode != LF_MODE_NAIVE && l + 1 < st->n_layer &&
        (rc = lf_stream_issue(s, l + 1, NULL)))
        goto fail;
    lf_ffn_end(s);
    return LF_OK;
fail:
    drain(s);
    return rc;
}

void lf_stream_stats(const lf_session *s, lf_session_stats *out) {
    const lf_stream *st = s->stream;
    if (!st) return;
    for (uint32_t l = 0; l < st->n_layer; l++) {
        out->ffn_bytes_read += st->layers[l].bytes_read;
        out->ffn_bytes_served += st->layers[l].bytes_served;
        out->evictions += st->cache[l].evictions;
        out->expirations += st->cache[l].expirations;
        out->window_union += (uint64_t)st->cache[l].n_live * st->group;
    }
    out->neurons_loaded = st->neurons_loaded;
    out->neurons_used = st->neurons_used;
    out->io_wait_ms = lf_ns_to_ms(st->io_wait_ns);
    out->io_reads = st->io.reads;
    out->io_bytes = st->io.bytes;
    out->io_span_ms = lf_ns_to_ms(st->io_span_ns);
}

void lf_stream_reset_stats(lf_session *s) {
    lf_stream *st = s->stream;
    if (!st) return;
    memset(st->layers, 0, st->n_layer * sizeof *st->layers);
    for (uint32_t l = 0; l < st->n_layer; l++) st->cache[l].evictions = st->cache[l].expirations = 0;
    st->neurons_used = st->neurons_loaded = 0;
    st->io_wait_ns = st->io_span_ns = 0;
    st->io = (lf_batch_io){0, 0};
}

void lf_stream_layer_stats(const lf_session *s, uint32_t l, lf_layer_stats *out) {
    const layer_counters *lc = &s->stream->layers[l];
    out->bytes_read = lc->bytes_read;
    out->bytes_served = lc->bytes_served;
    out->neurons_loaded = lc->loaded;
    out->neurons_used = lc->used;
    out->cache_slots = s->stream->cache[l].capacity;
    out->resident = s->stream->cache[l].n_live;
}

void lf_stream_cache_bytes(const lf_session *s, uint64_t *bytes) {
    const lf_stream *st = s->stream;
    *bytes = 0;
    for (uint32_t l = 0; l < st->n_layer; l++)
        *bytes += lf_ncache_bytes(0, st->cache[l].capacity, st->cache[l].slot_bytes);
}
