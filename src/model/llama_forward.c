/* llama_forward.c - sessions and the Llama forward pass, one token at a time.
 *
 * Reads top to bottom like llama2.c's run.c: RMSNorm, attention with RoPE and
 * a KV cache (grouped-query), SwiGLU/ReLU FFN, residuals, output logits. The
 * matrix-vector products run on the session's thread pool. */
#include "session.h"
#include "../stats/trace.h"
#include "matmul.h"
#include "moe.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>

lf_session_params lf_session_default_params(void) {
    return (lf_session_params){.n_ctx = 0, .n_threads = 0, .window = 5, .mask = LF_MASK_ALL, .split = LF_SPLIT_EVEN,
                               .kv_type = LF_KV_F16, .budget_bytes = 0};
}

const char *lf_budget_part_name(int part) {
    static const char *names[LF_BUDGET_PARTS] = {"resident_weights", "kv_cache", "neuron_cache", "io_buffers",
                                                 "scratch", "predictor", "metadata"};
    return part >= 0 && part < LF_BUDGET_PARTS ? names[part] : "?";
}

enum { PART_RESIDENT, PART_KV, PART_CACHE, PART_IO, PART_SCRATCH, PART_ORACLE, PART_META };

static uint32_t session_ctx(const lf_model *m, const lf_session_params *p) {
    uint32_t n = p->n_ctx ? p->n_ctx : LF_MIN(m->info.n_ctx_train, 4096u);
    return n ? n : 2048;
}

/* Floats of each thread's attention scratch: one head's value row, then
 * its query as q8a blocks (a Q8_0 cache; 40 bytes per 32 values). */
static uint64_t scratch_len(const lf_model *m) {
    return LF_MAX((uint64_t)m->info.n_embd, (uint64_t)m->head_dim) + (uint64_t)m->head_dim / 2;
}

/* Bytes of n cached key or value elements (n a multiple of 32 for Q8_0). */
static uint64_t kv_bytes(lf_kv_type t, uint64_t n) {
    return t == LF_KV_F32 ? 4 * n : t == LF_KV_Q8_0 ? n / LF_QK * sizeof(lf_block_q8_0) : 2 * n;
}
static const char *kv_type_name(lf_kv_type t) { return t == LF_KV_F32 ? "f32" : t == LF_KV_Q8_0 ? "q8_0" : "f16"; }

/* Tokens per forward pass over the weights. */
/* Compute threads: the borrowed pool's, else params' or the model's. */
static int session_threads(const lf_model *m, const lf_session_params *p) {
    if (p->threadpool) return lf_threadpool_size(p->threadpool);
    return p->n_threads > 0 ? p->n_threads : m->n_threads;
}

static uint32_t session_batch(const lf_session_params *p) { return p->n_batch ? p->n_batch : LF_DEFAULT_BATCH; }

/* The FFN engine's params from the session's. */
static lf_ffn_engine_params ffn_params(const lf_session_params *p, uint64_t cache_bytes) {
    return (lf_ffn_engine_params){.window = p->window, .mask = p->mask, .split = p->split, .max_batch = session_batch(p),
                                  .cache_bytes = cache_bytes, .predictor_path = p->predictor_path,
                                  .measure_recall = p->measure_recall, .lookahead = p->lookahead,
                                  .hot_experts = p->hot_experts,
                                  .log = {p->log, p->log_user}};
}

/* Every byte one session needs besides its neuron cache, by budget part,
 * the model's shared parts included (resident weights, metadata, the
 * loader's staging). Returns the session's own share. */
static uint64_t session_plan(const lf_model *m, const lf_session_params *p, uint64_t parts[LF_BUDGET_PARTS]) {
    const lf_model_info *in = &m->info;
    const uint64_t n_ctx = session_ctx(m, p), hd = m->head_dim;
    const uint64_t q_dim = in->n_head * hd, kv_dim = in->n_head_kv * hd;
    const uint64_t max_in = LF_MAX(LF_MAX((uint64_t)in->n_embd, (uint64_t)in->n_ff), q_dim);
    const uint64_t nth = (uint64_t)session_threads(m, p);
    memset(parts, 0, LF_BUDGET_PARTS * sizeof *parts);
    parts[PART_KV] = 2ull * in->n_layer * n_ctx * kv_bytes(p->kv_type, kv_dim);
    const uint64_t nb = session_batch(p);
    const uint64_t moe = in->n_expert > 1 && !m->flash ? in->n_expert + 2ull * in->n_expert_used + 2ull * in->n_embd + 2 : 0;
    parts[PART_SCRATCH] = (nb * (3ull * in->n_embd + 2 * q_dim + 2 * kv_dim + 2ull * in->n_ff + in->n_rot + 2 + moe) +
                           nth * n_ctx + in->n_vocab + nth * scratch_len(m)) * sizeof(float) + m->tok_embd.row_bytes +
                          nb * (max_in / LF_QK + 1) * sizeof(lf_block_q8a) + sizeof(lf_session);
    uint64_t own = parts[PART_KV] + parts[PART_SCRATCH];
    if (m->flash) {
        const lf_ffn_engine_params fp = ffn_params(p, 0);
        uint64_t io, mask, scratch;
        lf__ffn_plan_bytes(m, &fp, (int)nth, &io, &mask, &scratch);
        own += io + mask + scratch;
        parts[PART_IO] = io;
        parts[PART_ORACLE] = mask;
        parts[PART_SCRATCH] += scratch;
    }
    if (m->mode != LF_MODE_MMAP && m->flash) {
        parts[PART_RESIDENT] = m->resident_bytes;
        parts[PART_META] = lf__model_overhead_bytes(m);
        parts[PART_IO] += lf__loader_buffer_bytes(m->loader);
    }
    return own;
}

uint64_t lf_session_min_budget(const lf_model *m, const lf_session_params *params) {
    if (!m) return 0;
    lf_session_params p = params ? *params : lf_session_default_params();
    uint64_t parts[LF_BUDGET_PARTS];
    return session_plan(m, &p, parts) + m->budget_fixed;
}

uint64_t lf_model_budget_left(const lf_model *m) {
    if (!m || !m->dram_budget) return UINT64_MAX;
    lf_model *mm = (lf_model *)m; /* the mutex only */
    pthread_mutex_lock(&mm->budget_mu);
    const uint64_t left = m->dram_budget - m->budget_used;
    pthread_mutex_unlock(&mm->budget_mu);
    return left;
}

void lf_session_destroy(lf_session *s) {
    if (!s) return;
    lf__ffn_destroy(s->ffn); /* waits for its reads; it computes on the pool */
    s->ffn = NULL;
    if (s->own_pool) lf__pool_destroy(s->pool);
    free(s->x);
    free(s->xb);
    free(s->xb2);
    free(s->q);
    free(s->att);
    free(s->att_out);
    free(s->k_new);
    free(s->v_new);
    free(s->hb);
    free(s->hb2);
    free(s->moe_logits);
    free(s->moe_expert);
    free(s->moe_weight);
    free(s->moe_x);
    free(s->moe_y);
    free(s->moe_tok);
    free(s->moe_w);
    free(s->logits);
    free(s->rope_cos);
    free(s->rope_sin);
    lf__free_aligned(s->xq);
    free(s->thread_scratch);
    free(s->embed_row);
    free(s->key_cache);
    free(s->value_cache);
    lf__model_ledger_give_back(s->m, s->budget_taken);
    free(s);
}

static void process_counters(uint64_t *read_bytes, uint64_t *major_faults);

lf_status lf_session_create(lf_model *m, const lf_session_params *params, lf_session **out, char *errbuf,
                            size_t errcap) {
    if (errbuf && errcap) errbuf[0] = '\0';
    if (!m || !out) return LF_E_INVALID_ARG;
    *out = NULL;
    const lf_session_params p = params ? *params : lf_session_default_params();
    const lf_model_info *in = &m->info;
    lf_session *s = calloc(1, sizeof *s);
    if (!s) return LF_E_NOMEM;
    s->m = m;
    s->params = p;
    s->n_ctx = session_ctx(m, &p);
    s->log = p.log ? (lf_logger){p.log, p.log_user} : m->log;
    const int n_threads = session_threads(m, &p);
    const uint64_t q_dim = (uint64_t)in->n_head * m->head_dim, kv_dim = (uint64_t)in->n_head_kv * m->head_dim;
    const uint64_t max_in = LF_MAX(LF_MAX((uint64_t)in->n_embd, (uint64_t)in->n_ff), q_dim);
    uint64_t cache_elems = 0;
    lf_status st = LF_E_NOMEM;
    if (p.n_batch > LF_MAX_BATCH) {
        st = lf__err_set(&s->err, LF_E_INVALID_ARG, "a batch of %u tokens: at most %u", p.n_batch, LF_MAX_BATCH);
        goto fail;
    }
    if (p.kv_type != LF_KV_F16 && p.kv_type != LF_KV_F32 && p.kv_type != LF_KV_Q8_0) {
        st = lf__err_set(&s->err, LF_E_INVALID_ARG, "KV cache type %d is not F16, F32 or Q8_0", (int)p.kv_type);
        goto fail;
    }
    if (p.kv_type == LF_KV_Q8_0 && m->head_dim % LF_QK) {
        st = lf__err_set(&s->err, LF_E_INVALID_ARG,
                         "a Q8_0 KV cache needs heads of a multiple of %d values; this model's have %u (use F16)", LF_QK,
                         m->head_dim);
        goto fail;
    }
    if (p.n_threads < 0 || p.n_threads > LF_THREADS_PER_CORE_MAX * lf__cpu_count()) {
        st = lf__err_set(&s->err, LF_E_INVALID_ARG, "%d compute threads on %d cores: at most %d", p.n_threads,
                         lf__cpu_count(), LF_THREADS_PER_CORE_MAX * lf__cpu_count());
        goto fail;
    }
    if (!lf__mul_u64((uint64_t)in->n_layer * s->n_ctx, kv_dim, &cache_elems) || cache_elems > ((uint64_t)1 << 40)) {
        st = lf__err_set(&s->err, LF_E_INVALID_ARG, "context of %u tokens is too large", s->n_ctx);
        goto fail;
    }
    if (s->n_ctx > in->n_ctx_train && in->n_ctx_train)
        lf__log(&s->log, LF_LOG_WARN, "context of %u tokens is longer than the %u the model was trained on: "
                "quality may drop past that", s->n_ctx, in->n_ctx_train);
    /* planned once: the parts are fixed for the session's life (and the
     * predictor's size comes from its file) */
    s->plan_own = session_plan(m, &p, s->plan_parts);
    if (m->flash && m->mode != LF_MODE_MMAP && m->dram_budget &&
        (st = lf__model_ledger_take(m, "this session", s->plan_own, p.budget_bytes, &s->budget_taken, &s->err)))
        goto fail;
    if (p.threadpool) s->pool = p.threadpool;
    else if (lf__pool_create(n_threads, &s->pool)) goto fail_nomem;
    else s->own_pool = true;
    const uint64_t nb = s->n_batch = session_batch(&p);
    s->x = malloc(nb * in->n_embd * sizeof(float));
    s->xb = malloc(nb * in->n_embd * sizeof(float));
    s->xb2 = malloc(nb * in->n_embd * sizeof(float));
    s->q = malloc(nb * q_dim * sizeof(float));
    s->att = malloc((uint64_t)n_threads * s->n_ctx * sizeof(float));
    s->att_out = malloc(nb * q_dim * sizeof(float));
    s->k_new = malloc(nb * kv_dim * sizeof(float));
    s->v_new = malloc(nb * kv_dim * sizeof(float));
    s->hb = malloc(nb * in->n_ff * sizeof(float));
    s->hb2 = malloc(nb * in->n_ff * sizeof(float));
    s->logits = malloc(in->n_vocab * sizeof(float));
    s->rope_cos = malloc(nb * (in->n_rot / 2 + 1) * sizeof(float));
    s->rope_sin = malloc(nb * (in->n_rot / 2 + 1) * sizeof(float));
    s->xq = lf__alloc_aligned(nb * (max_in / LF_QK + 1) * sizeof(lf_block_q8a), 64);
    s->thread_scratch = malloc((size_t)n_threads * scratch_len(m) * sizeof(float));
    s->embed_row = malloc(m->tok_embd.row_bytes);
    s->key_cache = calloc(1, kv_bytes(p.kv_type, cache_elems));
    s->value_cache = calloc(1, kv_bytes(p.kv_type, cache_elems));
    if (!s->x || !s->xb || !s->xb2 || !s->q || !s->att || !s->att_out || !s->k_new || !s->v_new || !s->hb || !s->hb2 || !s->logits ||
        !s->rope_cos || !s->rope_sin || !s->xq || !s->thread_scratch || !s->embed_row || !s->key_cache || !s->value_cache)
        goto fail_nomem;
    if (in->n_expert > 1 && !m->flash) {
        s->moe_logits = malloc(nb * in->n_expert * sizeof(float));
        s->moe_expert = malloc(nb * in->n_expert_used * sizeof(uint32_t));
        s->moe_weight = malloc(nb * in->n_expert_used * sizeof(float));
        s->moe_x = malloc(nb * in->n_embd * sizeof(float));
        s->moe_y = malloc(nb * in->n_embd * sizeof(float));
        s->moe_tok = malloc(nb * sizeof(uint32_t));
        s->moe_w = malloc(nb * sizeof(float));
        if (!s->moe_logits || !s->moe_expert || !s->moe_weight || !s->moe_x || !s->moe_y || !s->moe_tok || !s->moe_w)
            goto fail_nomem;
    }
    if ((s->trace = p.trace)) {
        s->track_compute = lf__trace_track(s->trace, "compute", false);
        s->track_io = lf__trace_track(s->trace, "io", true);
    }
    if (m->flash) {
        const lf_ffn_engine_params fp = ffn_params(&p, m->dram_budget ? s->budget_taken - s->plan_own : 0);
        if ((st = lf__ffn_create(m, s->pool, &fp, &s->ffn, &s->err))) goto fail;
        lf__ffn_set_trace(s->ffn, s->trace, s->track_compute, s->track_io);
    }
    process_counters(&s->base_read_bytes, &s->base_major_faults);
    *out = s;
    return LF_OK;
fail_nomem:
    st = lf__err_set(&s->err, LF_E_NOMEM, "session buffers for a context of %u tokens (KV cache %" PRIu64 " MiB)",
                     s->n_ctx, 2 * kv_bytes(p.kv_type, cache_elems) >> 20);
fail:
    lf__err_copy_out(&s->err, errbuf, errcap);
    lf_session_destroy(s);
    return st;
}

const char *lf_session_errmsg(const lf_session *s) { return s ? s->err.msg : ""; }
const float *lf_session_logits(const lf_session *s) { return s && s->has_logits ? s->logits : NULL; }
uint32_t lf_session_position(const lf_session *s) { return s ? s->pos : 0; }

void lf_session_reset(lf_session *s) {
    if (!s) return;
    s->pos = 0;
    s->has_logits = false;
}

lf_status lf_session_truncate(lf_session *s, uint32_t pos) {
    if (!s) return LF_E_INVALID_ARG;
    if (pos > s->pos)
        return lf__err_set(&s->err, LF_E_INVALID_ARG, "cannot truncate to position %u: only %u tokens are evaluated", pos,
                           s->pos);
    /* the KV rows from pos on are overwritten by the next eval before any
     * token reads them: attention reads positions below its own only */
    s->pos = pos;
    s->has_logits = false;
    return LF_OK;
}

/* ---- matrix-vector products --------------------------------------------- */

/* y = W x for the act's tokens: y holds w->rows floats per token. */
static void matvec(lf_session *s, const lf_weight *w, act *x, float *y) {
    const lf_kernels *k = s->m->kernels;
    const void *xin = x->f;
    uint64_t stride = (uint64_t)x->n * sizeof(float);
    if (lf__type_uses_q8a(w->type)) {
        const uint64_t blocks = (uint64_t)x->n / LF_QK;
        if (!x->quantized) {
            for (uint32_t t = 0; t < x->nt; t++) k->quantize_q8a(x->f + t * x->n, x->q + t * blocks, x->n);
            x->quantized = true;
        }
        xin = x->q;
        stride = blocks * sizeof(lf_block_q8a);
    }
    lf__matmul(s->pool, k, w, xin, stride, (int)x->nt, y, w->rows);
}

static act act_of(lf_session *s, const float *f, int64_t n, uint32_t nt) { return (act){f, s->xq, n, nt, false}; }

/* ---- the blocks ---------------------------------------------------------- */

static void rmsnorm(float *o, const float *x, const float *w, uint32_t n, float eps) {
    float ss = 0.0f;
    for (uint32_t i = 0; i < n; i++) ss += x[i] * x[i];
    ss /= (float)n;
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    for (uint32_t i = 0; i < n; i++) o[i] = w[i] * (ss * x[i]);
}

static void add_bias(float *y, const float *b, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) y[i] += b[i];
}

/* An RMS norm of each of n_heads vectors of head_dim, in place. */
static void head_norms(const lf_session *s, float *v, const float *w, uint32_t n_heads) {
    const uint32_t hd = s->m->head_dim;
    for (uint32_t h = 0; h < n_heads; h++) rmsnorm(v + (uint64_t)h * hd, v + (uint64_t)h * hd, w, hd, s->m->info.rms_eps);
}

/* Token tok's embedding, as floats. A tied table may be in the x8 layout
 * (repacked for the output projection): its row comes out of its group. A
 * table left in the file (stream modes) gives its row to one read: the
 * file was checked at open, and a failed read is the token's error. */
static lf_status embed(lf_session *s, lf_token tok, float *out) {
    const lf_weight *w = &s->m->tok_embd;
    const uint64_t r = (uint64_t)tok, whole = w->rows / LF_X8 * LF_X8;
    if (!w->data) {
        lf_err e = {{0}};
        const lf_status st = lf__pread_all(s->m->fd, s->embed_row, w->row_bytes, s->m->embd_file_offset + r * w->row_bytes, &e);
        if (st) return lf__err_set(&s->err, st, "the embedding of token %" PRIu64 ": %s", r, e.msg);
        lf__dequantize_row(w->type, s->embed_row, out, (int64_t)w->cols);
        return LF_OK;
    }
    const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes;
    if (w->layout == LF_LAYOUT_X8 && r < whole) {
        lf__x8_row(w->type, (const uint8_t *)w->data + (r / LF_X8) * LF_X8 * w->row_bytes, (uint32_t)(r % LF_X8), w->cols,
                   s->embed_row);
        row = s->embed_row;
    }
    lf__dequantize_row(w->type, row, out, (int64_t)w->cols);
    return LF_OK;
}

/* The rotation of position pos, into row t of the batch's tables. */
static void rope_prepare(lf_session *s, uint32_t t, uint32_t pos) {
    const uint32_t n_rot = s->m->info.n_rot, half = n_rot / 2 + 1;
    const float *divisors = s->m->rope_freqs; /* Llama 3.1 */
    const float p = s->m->rope_pos_scale == 1.0f ? (float)pos : (float)pos * s->m->rope_pos_scale; /* linear scaling */
    for (uint32_t i = 0; i < n_rot; i += 2) {
        float freq = 1.0f / powf(s->m->info.rope_freq_base, (float)i / (float)n_rot);
        if (divisors) freq /= divisors[i / 2];
        const float val = p * freq;
        s->rope_cos[t * half + i / 2] = cosf(val);
        s->rope_sin[t * half + i / 2] = sinf(val);
    }
}

/* Rotates the first n_rot dimensions of each of n_heads vectors of token t. */
static void rope_apply(const lf_session *s, uint32_t t, float *v, uint32_t n_heads) {
    const uint32_t hd = s->m->head_dim, n_rot = s->m->info.n_rot, half = n_rot / 2 + 1;
    const float *cs = s->rope_cos + t * half, *sn = s->rope_sin + t * half;
    for (uint32_t h = 0; h < n_heads; h++) {
        float *x = v + (uint64_t)h * hd;
        for (uint32_t i = 0; i < n_rot / 2; i++) {
            const uint32_t a = s->m->arch->rope == LF_ROPE_NORM ? 2 * i : i;
            const uint32_t b = s->m->arch->rope == LF_ROPE_NORM ? 2 * i + 1 : i + n_rot / 2;
            const float v0 = x[a], v1 = x[b];
            x[a] = v0 * cs[i] - v1 * sn[i];
            x[b] = v0 * sn[i] + v1 * cs[i];
        }
    }
}

typedef struct attn_job {
    lf_session *s;
    uint32_t layer, pos0, nt;
    atomic_uint next; /* the next (token, head) pair to claim */
} attn_job;

/* One cached key or value row of kv_dim elements (params.kv_type). */
static inline const void *kv_row(const lf_session *s, const void *cache, uint32_t layer, uint32_t t) {
    const uint64_t kv_dim = (uint64_t)s->m->info.n_head_kv * s->m->head_dim;
    return (const uint8_t *)cache + ((uint64_t)layer * s->n_ctx + t) * kv_bytes(s->params.kv_type, kv_dim);
}

/* One head of one token of the batch: its causal attention over the cache,
 * positions 0..pos, into att_out. */
static void attend(const attn_job *j, uint32_t t, uint32_t h, float *att, float *scratch) {
    lf_session *s = j->s;
    const lf_model_info *in = &s->m->info;
    const lf_kernels *k = s->m->kernels;
    const uint32_t hd = s->m->head_dim, group = in->n_head / in->n_head_kv, pos = j->pos0 + t;
    const uint64_t q_dim = (uint64_t)in->n_head * hd;
    const lf_kv_type kt = s->params.kv_type;
    const uint64_t head_bytes = kv_bytes(kt, hd);
    /* F16 and Q8_0 rows go through the weight kernels: a key row is a weight
     * row dotted with the query (as floats, or as q8a blocks for Q8_0), a
     * value row is axpy'd into the output */
    const lf_vec_dot_fn dot = k->dot[kt == LF_KV_Q8_0 ? LF_TYPE_Q8_0 : LF_TYPE_F16];
    const uint32_t vtype = kt == LF_KV_Q8_0 ? LF_TYPE_Q8_0 : LF_TYPE_F16;
    const float scale = sqrtf((float)hd); /* divided, not multiplied, as the reference does */
    const float *q = s->q + t * q_dim + (uint64_t)h * hd;
    const void *qk = q;
    if (kt == LF_KV_Q8_0) { /* after the value row's floats: scratch_len */
        lf_block_q8a *qq = (lf_block_q8a *)(void *)(scratch + LF_MAX((uint64_t)in->n_embd, (uint64_t)hd));
        k->quantize_q8a(q, qq, hd);
        qk = qq;
    }
    const uint64_t kvh = h / group;
    float max = -INFINITY;
    for (uint32_t p = 0; p <= pos; p++) {
        const uint8_t *krow = (const uint8_t *)kv_row(s, s->key_cache, j->layer, p) + kvh * head_bytes;
        float score;
        if (kt != LF_KV_F32) {
            score = dot(krow, qk, hd);
        } else {
            const float *kf = (const float *)krow;
            score = 0.0f;
            for (uint32_t i = 0; i < hd; i++) score += q[i] * kf[i];
        }
        att[p] = score / scale;
        max = fmaxf(max, att[p]);
    }
    float sum = 0.0f;
    for (uint32_t p = 0; p <= pos; p++) {
        att[p] = expf(att[p] - max);
        sum += att[p];
    }
    float *out = s->att_out + t * q_dim + (uint64_t)h * hd;
    memset(out, 0, hd * sizeof(float));
    for (uint32_t p = 0; p <= pos; p++) {
        const float a = att[p] / sum;
        const uint8_t *vrow = (const uint8_t *)kv_row(s, s->value_cache, j->layer, p) + kvh * head_bytes;
        if (kt != LF_KV_F32) {
            lf__axpy_row(k, vtype, vrow, a, out, hd, scratch);
        } else {
            const float *vf = (const float *)vrow;
            for (uint32_t i = 0; i < hd; i++) out[i] += a * vf[i];
        }
    }
}

/* Claims (token, head) pairs until none are left: later tokens of a batch
 * attend over more positions, so a fixed split would leave a core idle. */
static void attention_worker(void *ctx, int ith, int nth) {
    (void)nth;
    attn_job *j = ctx;
    const uint32_t n_head = j->s->m->info.n_head;
    float *att = j->s->att + (uint64_t)ith * j->s->n_ctx;
    float *scratch = j->s->thread_scratch + (uint64_t)ith * scratch_len(j->s->m);
    for (;;) {
        const uint32_t c = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (c >= j->nt * n_head) return;
        attend(j, c / n_head, c % n_head, att, scratch);
    }
}

/* Stores the batch's new key and value rows at pos0.. */
static void kv_store(lf_session *s, uint32_t l, uint32_t pos0, uint32_t nt) {
    const uint64_t kv_dim = (uint64_t)s->m->info.n_head_kv * s->m->head_dim;
    for (uint32_t t = 0; t < nt; t++) {
        void *kd = (void *)kv_row(s, s->key_cache, l, pos0 + t), *vd = (void *)kv_row(s, s->value_cache, l, pos0 + t);
        const float *kn = s->k_new + t * kv_dim, *vn = s->v_new + t * kv_dim;
        if (s->params.kv_type == LF_KV_F32) {
            memcpy(kd, kn, kv_dim * sizeof(float));
            memcpy(vd, vn, kv_dim * sizeof(float));
            continue;
        }
        if (s->params.kv_type == LF_KV_Q8_0) { /* kv_dim is a multiple of 32: checked at create */
            lf__quantize_row(LF_TYPE_Q8_0, kn, kd, (int64_t)kv_dim);
            lf__quantize_row(LF_TYPE_Q8_0, vn, vd, (int64_t)kv_dim);
            continue;
        }
        uint16_t *k16 = kd, *v16 = vd;
        for (uint64_t i = 0; i < kv_dim; i++) {
            k16[i] = lf__fp32_to_fp16(kn[i]);
            v16[i] = lf__fp32_to_fp16(vn[i]);
        }
    }
}

static void attention(lf_session *s, uint32_t l, uint32_t pos0, uint32_t nt) {
    const lf_model_info *in = &s->m->info;
    const lf_layer *L = &s->m->layers[l];
    const uint64_t d = in->n_embd, q_dim = (uint64_t)in->n_head * s->m->head_dim,
                   kv_dim = (uint64_t)in->n_head_kv * s->m->head_dim;
    for (uint32_t t = 0; t < nt; t++) rmsnorm(s->xb + t * d, s->x + t * d, L->attn_norm, in->n_embd, in->rms_eps);
    act xb = act_of(s, s->xb, in->n_embd, nt);
    matvec(s, &L->wq, &xb, s->q);
    matvec(s, &L->wk, &xb, s->k_new);
    matvec(s, &L->wv, &xb, s->v_new);
    for (uint32_t t = 0; t < nt; t++) {
        if (L->bq) { /* Qwen2 */
            add_bias(s->q + t * q_dim, L->bq, q_dim);
            add_bias(s->k_new + t * kv_dim, L->bk, kv_dim);
            add_bias(s->v_new + t * kv_dim, L->bv, kv_dim);
        }
        if (L->q_norm) { /* Qwen3 */
            head_norms(s, s->q + t * q_dim, L->q_norm, in->n_head);
            head_norms(s, s->k_new + t * kv_dim, L->k_norm, in->n_head_kv);
        }
        rope_apply(s, t, s->q + t * q_dim, in->n_head);
        rope_apply(s, t, s->k_new + t * kv_dim, in->n_head_kv);
    }
    kv_store(s, l, pos0, nt);
    attn_job job = {.s = s, .layer = l, .pos0 = pos0, .nt = nt};
    atomic_init(&job.next, 0);
    lf__pool_run_work(s->pool, attention_worker, &job, 2ull * in->n_head * nt * (pos0 + nt) * s->m->head_dim);
    act ao = act_of(s, s->att_out, (int64_t)q_dim, nt);
    matvec(s, &L->wo, &ao, s->xb2);
    for (uint64_t i = 0; i < nt * d; i++) s->x[i] += s->xb2[i];
}

/* A failure of the FFN engine: its detail becomes the session's. */
static lf_status ffn_failed(lf_session *s, lf_status st) {
    lf__err_set(&s->err, st, "%s", lf__ffn_errmsg(s->ffn));
    return st;
}

/* One dense FFN (or expert) for nt tokens: x (nt, n_embd) -> y (nt, n_embd). */
static void dense_ffn(lf_session *s, const lf_weight *gate, const lf_weight *up, const lf_weight *down, const float *x,
                      uint32_t nt, float *y) {
    const lf_model_info *in = &s->m->info;
    const uint64_t ff = in->n_ff;
    act xa = act_of(s, x, in->n_embd, nt);
    matvec(s, up, &xa, s->hb2);
    if (in->activation != LF_ACT_RELU) matvec(s, gate, &xa, s->hb);
    for (uint64_t i = 0; i < nt * ff; i++) s->hb[i] = lf__ffn_activate(in->activation, s->hb[i], s->hb2[i]);
    act hb = act_of(s, s->hb, in->n_ff, nt);
    matvec(s, down, &hb, y);
}

/* A mixture of experts in a plain GGUF: every token routed, then each
 * expert any token picked runs once over the tokens that picked it, and its
 * outputs are added to theirs with their weights. */
static void moe_ffn(lf_session *s, const lf_layer *L, uint32_t nt) {
    const lf_model_info *in = &s->m->info;
    const uint32_t d = in->n_embd, ne = in->n_expert, k = in->n_expert_used;
    act xb = act_of(s, s->xb, d, nt);
    matvec(s, &L->router, &xb, s->moe_logits);
    for (uint32_t t = 0; t < nt; t++)
        lf__moe_route(s->moe_logits + (uint64_t)t * ne, ne, k, s->moe_expert + (uint64_t)t * k, s->moe_weight + (uint64_t)t * k);
    memset(s->xb2, 0, (uint64_t)nt * d * sizeof(float));
    for (uint32_t e = 0; e < ne; e++) {
        uint32_t n = 0;
        for (uint32_t t = 0; t < nt; t++)
            for (uint32_t i = 0; i < k; i++)
                if (s->moe_expert[t * k + i] == e) {
                    memcpy(s->moe_x + (uint64_t)n * d, s->xb + (uint64_t)t * d, d * sizeof(float));
                    s->moe_tok[n] = t;
                    s->moe_w[n++] = s->moe_weight[t * k + i];
                }
        if (!n) continue;
        const lf_weight gate = L->gate.data ? lf__expert_slice(&L->gate, e, in->n_ff) : L->gate,
                        up = lf__expert_slice(&L->up, e, in->n_ff), down = lf__expert_slice(&L->down, e, d);
        dense_ffn(s, &gate, &up, &down, s->moe_x, n, s->moe_y);
        for (uint32_t r = 0; r < n; r++) {
            float *yt = s->xb2 + (uint64_t)s->moe_tok[r] * d;
            const float *ye = s->moe_y + (uint64_t)r * d;
            for (uint32_t i = 0; i < d; i++) yt[i] += s->moe_w[r] * ye[i];
        }
    }
}

static lf_status ffn(lf_session *s, uint32_t l, uint32_t nt) {
    const lf_model_info *in = &s->m->info;
    const lf_layer *L = &s->m->layers[l];
    const uint64_t d = in->n_embd;
    for (uint32_t t = 0; t < nt; t++) {
        rmsnorm(s->xb + t * d, s->x + t * d, L->ffn_norm, in->n_embd, in->rms_eps);
        if (s->ffn_tap) s->ffn_tap(s->ffn_tap_user, l, s->xb + t * d);
    }
    if (s->ffn) { /* a flash file: the engine computes, the residual is ours */
        const lf_status st = lf__ffn_forward(s->ffn, l, s->xb, nt, s->xb2);
        if (st) return ffn_failed(s, st);
    } else if (in->n_expert > 1) {
        moe_ffn(s, L, nt);
    } else {
        dense_ffn(s, &L->gate, &L->up, &L->down, s->xb, nt, s->xb2);
    }
    for (uint64_t i = 0; i < nt * d; i++) s->x[i] += s->xb2[i];
    return LF_OK;
}

/* A batch of nt tokens at positions pos0..: every weight is read once for
 * all of them; the logits are the last token's. The first failure ends it:
 * the remaining layers do not run, so the message in s->err is the first
 * error's. */
static lf_status forward(lf_session *s, const lf_token *tokens, uint32_t nt, uint32_t pos0) {
    const lf_model *m = s->m;
    const lf_model_info *in = &m->info;
    const uint64_t d = in->n_embd;
    lf_status st = LF_OK;
    for (uint32_t t = 0; t < nt; t++) {
        if ((st = embed(s, tokens[t], s->x + t * d))) return st;
        rope_prepare(s, t, pos0 + t);
    }
    if (s->ffn) lf__ffn_next_tokens(s->ffn, nt);
    lf_trace *tr = s->trace;
    const int tk = s->track_compute;
    const uint64_t t_token = tr ? lf__now_ns() : 0;
    for (uint32_t l = 0; l < in->n_layer; l++) {
        if (s->params.abort_cb && s->params.abort_cb(s->params.abort_user)) {
            if (s->ffn) lf__ffn_abort(s->ffn); /* reads a layer early may be in flight */
            return lf__err_set(&s->err, LF_E_INTERRUPTED, "stopped by the abort callback before layer %u of the batch "
                               "at position %u", l, pos0);
        }
        /* a mask known before the layer's input: its reads overlap attention */
        if (s->ffn && lf__ffn_mask_is_early(s->ffn) && (st = lf__ffn_prefetch(s->ffn, l, NULL, nt))) {
            lf__ffn_abort(s->ffn);
            return ffn_failed(s, st);
        }
        const uint64_t t0 = tr ? lf__now_ns() : 0;
        attention(s, l, pos0, nt);
        const uint64_t t1 = tr ? lf__now_ns() : 0;
        if ((st = ffn(s, l, nt))) return st;
        if (tr) {
            lf__trace_span(tr, tk, "attention", t0, t1, (int32_t)l, pos0, 0, 0);
            lf__trace_span(tr, tk, "ffn", t1, lf__now_ns(), (int32_t)l, pos0, 0, 0);
        }
    }
    float *last = s->x + (uint64_t)(nt - 1) * d;
    rmsnorm(last, last, m->output_norm, in->n_embd, in->rms_eps);
    act x = act_of(s, last, in->n_embd, 1);
    matvec(s, &m->output, &x, s->logits);
    if (tr) lf__trace_span(tr, tk, nt > 1 ? "batch" : "token", t_token, lf__now_ns(), -1, pos0, 0, 0);
    return LF_OK;
}

/* ---- statistics ------------------------------------------------------------ */

/* Bytes this process read from storage and its major page faults: the
 * kernel's view, which is all there is of mmap mode's traffic. */
static void process_counters(uint64_t *read_bytes, uint64_t *major_faults) {
    *read_bytes = 0;
    FILE *f = fopen("/proc/self/io", "r");
    if (f) {
        char line[128];
        unsigned long long v;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "read_bytes: %llu", &v) == 1) *read_bytes = v;
        fclose(f);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *major_faults = (uint64_t)ru.ru_majflt;
}

/* The counters a phase adds up, as they stand now. */
static void session_counters(const lf_session *s, lf_phase_stats *now) {
    memset(now, 0, sizeof *now);
    if (!s->ffn) return;
    lf_session_stats st;
    memset(&st, 0, sizeof st);
    lf__ffn_stats(s->ffn, &st);
    now->io_wait_ms = st.io_wait_ms;
    now->ffn_bytes_read = st.ffn_bytes_read;
    now->ffn_bytes_served = st.ffn_bytes_served;
    now->io_bytes = st.io_bytes;
}

static void phase_add(lf_phase_stats *ph, const lf_phase_stats *before, const lf_phase_stats *after, uint64_t tokens,
                      double ms) {
    ph->tokens += tokens;
    ph->ms += ms;
    ph->io_wait_ms += after->io_wait_ms - before->io_wait_ms;
    ph->ffn_bytes_read += after->ffn_bytes_read - before->ffn_bytes_read;
    ph->ffn_bytes_served += after->ffn_bytes_served - before->ffn_bytes_served;
    ph->io_bytes += after->io_bytes - before->io_bytes;
}

lf_status lf_session_eval(lf_session *s, const lf_token *tokens, size_t n) {
    if (!s || (!tokens && n)) return LF_E_INVALID_ARG;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= s->m->info.n_vocab)
            return lf__err_set(&s->err, LF_E_INVALID_ARG, "token %d (at %zu of %zu) is outside the vocabulary of %u",
                               tokens[i], i, n, s->m->info.n_vocab);
    /* checked up front: a batch that cannot fit fails before any work */
    if (n > s->n_ctx - s->pos)
        return lf__err_set(&s->err, LF_E_CONTEXT_FULL, "%zu tokens do not fit: the context of %u tokens has %u left", n,
                           s->n_ctx, s->n_ctx - s->pos);
    lf_phase_stats *ph = n > 1 || s->in_prompt ? &s->prompt : &s->generation;
    lf_phase_stats before, after;
    session_counters(s, &before);
    const uint64_t t0 = lf__now_ns();
    lf_status st = LF_OK;
    size_t done = 0;
    while (done < n) {
        const uint32_t nt = (uint32_t)LF_MIN(n - done, (size_t)s->n_batch);
        if ((st = forward(s, tokens + done, nt, s->pos))) { /* detail in s->err */
            s->has_logits = false;
            break;
        }
        s->pos += nt;
        done += nt;
        s->has_logits = true;
    }
    const double ms = lf__ns_to_ms(lf__now_ns() - t0);
    s->compute_ms += ms;
    s->tokens += done;
    session_counters(s, &after);
    phase_add(ph, &before, &after, done, ms);
    return st;
}

void lf_session_reset_stats(lf_session *s) {
    if (!s) return;
    s->compute_ms = 0.0;
    s->tokens = 0;
    memset(&s->prompt, 0, sizeof s->prompt);
    memset(&s->generation, 0, sizeof s->generation);
    lf__ffn_reset_stats(s->ffn);
    process_counters(&s->base_read_bytes, &s->base_major_faults);
}

lf_status lf_session_get_stats(const lf_session *s, lf_session_stats *out) {
    if (!s || !out) return LF_E_INVALID_ARG;
    memset(out, 0, sizeof *out);
    out->tokens = s->tokens;
    out->compute_ms = s->compute_ms;
    out->n_layer = s->m->info.n_layer;
    out->budget_total = s->m->mode == LF_MODE_MMAP ? 0 : s->m->dram_budget;
    out->budget_session = s->budget_taken;
    out->prompt = s->prompt;
    out->generation = s->generation;
    memcpy(out->budget_bytes, s->plan_parts, sizeof out->budget_bytes);
    if (s->ffn) {
        lf__ffn_stats(s->ffn, out);
        out->budget_bytes[PART_CACHE] = lf__ffn_cache_bytes(s->ffn);
    }
    uint64_t rb, mf;
    process_counters(&rb, &mf);
    out->device_read_bytes = rb - LF_MIN(rb, s->base_read_bytes);
    out->major_faults = mf - LF_MIN(mf, s->base_major_faults);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    out->peak_rss_bytes = (uint64_t)ru.ru_maxrss * 1024;
    return LF_OK;
}

lf_status lf_session_layer_stats(const lf_session *s, uint32_t layer, lf_layer_stats *out) {
    if (!s || !s->ffn || layer >= s->m->info.n_layer || !out) return LF_E_INVALID_ARG;
    lf__ffn_layer_stats(s->ffn, layer, out);
    return LF_OK;
}

typedef struct jbuf {
    char *buf;
    size_t cap, len;
} jbuf;

static void jprintf(jbuf *j, const char *fmt, ...) LF_PRINTF(2, 3);
static void jprintf(jbuf *j, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(j->len < j->cap ? j->buf + j->len : NULL, j->len < j->cap ? j->cap - j->len : 0, fmt, ap);
    va_end(ap);
    if (n > 0) j->len += (size_t)n;
}

/* A JSON string: quotes, backslashes and control bytes escaped. */
static void jstring(jbuf *j, const char *str) {
    jprintf(j, "\"");
    for (const unsigned char *c = (const unsigned char *)str; *c; c++) {
        if (*c == '"' || *c == '\\') jprintf(j, "\\%c", *c);
        else if (*c < 0x20) jprintf(j, "\\u%04x", *c);
        else jprintf(j, "%c", *c);
    }
    jprintf(j, "\"");
}

/* A JSON array of n counts. */
static void jarray(jbuf *j, const uint64_t *v, int n) {
    jprintf(j, "[");
    for (int i = 0; i < n; i++) jprintf(j, "%s%" PRIu64, i ? ", " : "", v[i]);
    jprintf(j, "]");
}

static void jphase(jbuf *j, const char *name, const lf_phase_stats *p) {
    jprintf(j, "  \"%s\": {\"tokens\": %" PRIu64 ", \"ms\": %.3f, \"ms_per_token\": %.4f, \"tokens_per_s\": %.4f, "
            "\"io_wait_ms\": %.3f, \"ffn_bytes_read\": %" PRIu64 ", \"ffn_bytes_served\": %" PRIu64 ", \"io_bytes\": %" PRIu64
            "},\n", name, p->tokens, p->ms, p->tokens ? p->ms / (double)p->tokens : 0.0,
            p->ms > 0 ? (double)p->tokens * 1000.0 / p->ms : 0.0, p->io_wait_ms, p->ffn_bytes_read, p->ffn_bytes_served,
            p->io_bytes);
}

size_t lf_session_stats_json(const lf_session *s, char *buf, size_t cap) {
    lf_session_stats st;
    if (lf_session_get_stats(s, &st)) return 0;
    const lf_model *m = s->m;
    if (!buf) cap = 0; /* measuring only */
    jbuf j = {buf, cap, 0};
    if (cap) buf[0] = '\0';
    jprintf(&j, "{\n  \"schema_version\": %d,\n  \"model\": {\"path\": ", LF_STATS_SCHEMA_VERSION);
    jstring(&j, m->path);
    jprintf(&j, ", \"name\": ");
    jstring(&j, m->info.name);
    jprintf(&j, ", \"architecture\": ");
    jstring(&j, m->info.architecture);
    jprintf(&j, ", \"n_params\": %" PRIu64 ", \"n_layer\": %u, \"n_embd\": %u, \"n_ff\": %u, \"is_flash\": %s, "
            "\"file_bytes\": %" PRIu64 "},\n", m->info.n_params, m->info.n_layer, m->info.n_embd, m->info.n_ff,
            m->info.is_flash ? "true" : "false", m->info.file_bytes);
    jprintf(&j, "  \"params\": {\"mode\": \"%s\", \"dram_budget\": %" PRIu64 ", \"n_ctx\": %u, \"n_threads\": %d, "
            "\"window\": %u, \"mask\": \"%s\", \"cache_split\": \"%s\", \"kv_type\": \"%s\", \"verify_checksums\": %s, "
            "\"kernels\": \"%s\"},\n", lf_mode_name(m->mode), m->dram_budget, s->n_ctx, lf__pool_size(s->pool),
            s->params.window ? s->params.window : 5, s->params.mask == LF_MASK_ORACLE ? "oracle" : s->params.mask == LF_MASK_PREDICTOR ? "predictor" : "all",
            s->params.split == LF_SPLIT_MEASURED ? "measured" : "even", kv_type_name(s->params.kv_type),
            m->verify_checksums ? "true" : "false", m->kernels->name);
    jprintf(&j, "  \"tokens\": %" PRIu64 ",\n  \"compute_ms\": %.3f,\n  \"io_wait_ms\": %.3f,\n  \"mask_ms\": %.3f,\n",
            st.tokens, st.compute_ms, st.io_wait_ms, st.mask_ms);
    jprintf(&j, "  \"tokens_per_s\": %.4f,\n", st.compute_ms > 0 ? (double)st.tokens * 1000.0 / st.compute_ms : 0.0);
    jphase(&j, "prompt", &st.prompt);
    jphase(&j, "generation", &st.generation);
    jprintf(&j, "  \"io_span_ms\": %.3f,\n  \"io_hidden_fraction\": %.4f,\n", st.io_span_ms,
            st.io_span_ms > 0 ? 1.0 - st.io_wait_ms / st.io_span_ms : 0.0);
    jprintf(&j, "  \"ffn_bytes_read\": %" PRIu64 ",\n  \"ffn_bytes_served\": %" PRIu64 ",\n", st.ffn_bytes_read,
            st.ffn_bytes_served);
    const uint64_t all = st.ffn_bytes_read + st.ffn_bytes_served;
    jprintf(&j, "  \"cache_hit_rate\": %.6f,\n", all ? (double)st.ffn_bytes_served / (double)all : 0.0);
    jprintf(&j, "  \"neurons_loaded\": %" PRIu64 ",\n  \"neurons_used\": %" PRIu64 ",\n  \"evictions\": %" PRIu64
            ",\n  \"expirations\": %" PRIu64 ",\n  \"window_union\": %" PRIu64 ",\n  \"io_reads\": %" PRIu64 ",\n  \"io_bytes\": %" PRIu64 ",\n",
            st.neurons_loaded, st.neurons_used, st.evictions, st.expirations, st.window_union, st.io_reads, st.io_bytes);
    jprintf(&j, "  \"device_read_bytes\": %" PRIu64 ",\n  \"major_faults\": %" PRIu64 ",\n", st.device_read_bytes,
            st.major_faults);
    jprintf(&j, "  \"budget\": {\"limit\": %" PRIu64 ", \"session\": %" PRIu64, st.budget_total, st.budget_session);
    for (int i = 0; i < LF_BUDGET_PARTS; i++) jprintf(&j, ", \"%s\": %" PRIu64, lf_budget_part_name(i), st.budget_bytes[i]);
    jprintf(&j, "},\n  \"peak_rss_bytes\": %" PRIu64 ",\n  \"layers\": [", st.peak_rss_bytes);
    uint64_t ah_units = 0, ah_used = 0, ah_late = 0;
    for (uint32_t l = 0; s->ffn && s->m->mode != LF_MODE_MMAP && l < st.n_layer; l++) {
        lf_layer_stats ls;
        lf__ffn_layer_stats(s->ffn, l, &ls);
        jprintf(&j, "%s\n    {\"layer\": %u, \"bytes_read\": %" PRIu64 ", \"bytes_served\": %" PRIu64
                ", \"neurons_loaded\": %" PRIu64 ", \"neurons_used\": %" PRIu64 ", \"cache_slots\": %u, \"resident\": %u"
                ", \"oracle_units\": %" PRIu64 ", \"false_negatives\": %" PRIu64 ", \"oracle_tokens\": %" PRIu64
                ", \"oracle_token_units\": %" PRIu64 ", \"oracle_window_units\": %" PRIu64 ", \"oracle_new_units\": %" PRIu64
                ", \"oracle_hot_share\": %.4f, \"ahead_units\": %" PRIu64 ", \"ahead_used\": %" PRIu64
                ", \"ahead_late\": %" PRIu64,
                l ? "," : "", l, ls.bytes_read, ls.bytes_served, ls.neurons_loaded, ls.neurons_used, ls.cache_slots,
                ls.resident, ls.oracle_units, ls.false_negatives, ls.oracle_tokens, ls.oracle_token_units,
                ls.oracle_window_units, ls.oracle_new_units, ls.oracle_hot_share, ls.ahead_units, ls.ahead_used,
                ls.ahead_late);
        if (ls.oracle_units) jprintf(&j, ", \"recall\": %.6f", 1.0 - (double)ls.false_negatives / (double)ls.oracle_units);
        else jprintf(&j, ", \"recall\": null");
        jprintf(&j, ", \"reuse_hist\": ");
        jarray(&j, ls.reuse_hist, LF_REUSE_BUCKETS);
        jprintf(&j, "}");
        ah_units += ls.ahead_units;
        ah_used += ls.ahead_used;
        ah_late += ls.ahead_late;
    }
    jprintf(&j, "\n  ],\n  \"lookahead\": {\"units\": %" PRIu64 ", \"used\": %" PRIu64 ", \"late\": %" PRIu64
            ", \"recall\": %.4f, \"precision\": %.4f},\n", ah_units, ah_used, ah_late,
            ah_used + ah_late ? (double)ah_used / (double)(ah_used + ah_late) : 0.0,
            ah_units ? (double)ah_used / (double)ah_units : 0.0);
    /* the loader's histograms: per process (the loader is the model's) */
    lf_loader_stats ls = {0};
    if (m->loader) lf__loader_get_stats(m->loader, &ls);
    jprintf(&j, "  \"loader\": {\"reads\": %" PRIu64 ", \"bytes_read\": %" PRIu64 ", \"size_hist_log2\": ", ls.reads,
            ls.bytes_read);
    jarray(&j, ls.size_hist, LF_HIST_BUCKETS);
    jprintf(&j, ", \"bytes_by_size_log2\": ");
    jarray(&j, ls.size_bytes_hist, LF_HIST_BUCKETS);
    jprintf(&j, ", \"queue_depth\": %u, \"in_flight_mean\": %.2f, \"busy_ms\": %.3f, \"in_flight_busy_mean\": %.2f",
            m->loader ? lf__loader_queue_depth(m->loader) : 0,
            ls.issues ? (double)ls.depth_at_issues / (double)ls.issues : 0.0,
            (double)ls.busy_ns / 1e6, ls.busy_ns ? (double)ls.depth_ns / (double)ls.busy_ns : 0.0);
    jprintf(&j, ", \"latency_hist_log2_us\": ");
    jarray(&j, ls.latency_hist, LF_HIST_BUCKETS);
    jprintf(&j, "}\n}\n");
    return j.len;
}

/* ---- generation ----------------------------------------------------------- */

lf_generate_params lf_generate_default_params(void) {
    return (lf_generate_params){.n_predict = 128, .ignore_eos = false, .on_piece = NULL, .user = NULL};
}

lf_status lf_session_generate(lf_session *s, lf_sampler *sampler, const char *prompt, const lf_generate_params *params,
                              lf_generate_stats *stats) {
    if (!s || !sampler || !prompt) return LF_E_INVALID_ARG;
    const lf_generate_params gp = params ? *params : lf_generate_default_params();
    lf_generate_stats st_local = {0};
    lf_generate_stats *gs = stats ? stats : &st_local;
    memset(gs, 0, sizeof *gs);
    lf_session_reset(s);
    lf_sampler_reset(sampler);
    const lf_model *m = s->m;
    const size_t plen = strlen(prompt);
    size_t n_tok = 0;
    const bool bos = lf__tokenizer_adds_bos(m->tok);
    lf_tokenize(m, prompt, plen, bos, NULL, 0, &n_tok);
    lf_token *toks = malloc((n_tok ? n_tok : 1) * sizeof *toks);
    if (!toks) return lf__err_set(&s->err, LF_E_NOMEM, "prompt tokens");
    lf_status st = lf_tokenize(m, prompt, plen, bos, toks, n_tok, &n_tok);
    if (st) {
        free(toks);
        return lf__err_set(&s->err, st, "tokenizing the prompt failed");
    }
    if (n_tok == 0) { /* no BOS in this vocabulary and an empty prompt */
        free(toks);
        return lf__err_set(&s->err, LF_E_INVALID_ARG, "empty prompt and the model has no BOS token");
    }
    if (n_tok > s->n_ctx) {
        free(toks);
        return lf__err_set(&s->err, LF_E_CONTEXT_FULL, "the prompt is %zu tokens but the context holds %u", n_tok,
                           s->n_ctx);
    }
    for (size_t i = 0; i < n_tok; i++) lf_sampler_accept(sampler, toks[i]);
    uint64_t t0 = lf__now_ns();
    s->in_prompt = true;
    st = lf_session_eval(s, toks, n_tok);
    s->in_prompt = false;
    free(toks);
    gs->n_prompt = (uint32_t)n_tok;
    gs->prompt_ms = lf__ns_to_ms(lf__now_ns() - t0);
    if (st) return st;
    t0 = lf__now_ns();
    const lf_token eos = lf_token_eos(m), eot = lf__tokenizer_eot(m->tok);
    /* SentencePiece drops the leading space of a text */
    bool strip_space = plen == 0 && lf__tokenizer_space_prefix(m->tok);
    char piece[256 + 4];
    size_t held = 0; /* bytes of an unfinished UTF-8 character, at the start of piece */
    bool stop = false;
    for (uint32_t i = 0; !stop && (gp.n_predict == LF_PREDICT_UNTIL_DONE || i < gp.n_predict); i++) {
        if (gp.ignore_eos) { /* the session's copy of the logits: never sampled */
            if (eos >= 0) s->logits[eos] = -INFINITY;
            if (eot >= 0) s->logits[eot] = -INFINITY;
        }
        const lf_token tok = lf_sampler_sample(sampler, s->logits, m->info.n_vocab);
        if (lf__tokenizer_is_end(m->tok, tok)) {
            gs->stopped_at_eos = true;
            break;
        }
        gs->n_generated++;
        lf_sampler_accept(sampler, tok);
        int len = lf_token_to_piece(m, tok, piece + held, sizeof piece - 4);
        if (len < 0) len = 0;
        if (len > (int)sizeof piece - 4) len = (int)sizeof piece - 4;
        const char *p = piece;
        size_t n = held + (size_t)len;
        if (strip_space && n > 0) {
            if (p[0] == ' ') {
                p++;
                n--;
            }
            strip_space = false;
        }
        /* a byte-level token may end inside a character: hold those bytes */
        const size_t whole = lf_utf8_complete_prefix(p, n);
        if (gp.on_piece && whole > 0 && !gp.on_piece(gp.user, p, whole)) stop = true;
        held = n - whole;
        memmove(piece, p + whole, held);
        if (stop || (gp.n_predict != LF_PREDICT_UNTIL_DONE && i + 1 >= gp.n_predict)) break;
        if (s->pos >= s->n_ctx) { /* the context is full: a clean stop, not an error */
            gs->stopped_at_ctx = true;
            break;
        }
        if ((st = lf_session_eval(s, &tok, 1))) break;
        gs->n_evaluated++;
    }
    if (held && gp.on_piece && !stop) gp.on_piece(gp.user, piece, held); /* the output ended mid-character */
    gs->generate_ms = lf__ns_to_ms(lf__now_ns() - t0);
    return st;
}
