/* llama_forward.c - sessions and the Llama forward pass, one token at a time.
 *
 * Reads top to bottom like llama2.c's run.c: RMSNorm, attention with RoPE and
 * a KV cache (grouped-query), SwiGLU/ReLU FFN, residuals, output logits. The
 * matrix-vector products run on the session's thread pool. */
#include "session.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

lf_session_params lf_session_default_params(void) {
    return (lf_session_params){.n_ctx = 0, .n_threads = 0, .window = 5, .mask = LF_MASK_ALL, .split = LF_SPLIT_EVEN};
}

const char *lf_budget_part_name(int part) {
    static const char *names[LF_BUDGET_PARTS] = {"resident weights", "KV cache", "neuron cache", "I/O buffers",
                                                 "scratch", "predictor/oracle", "metadata"};
    return part >= 0 && part < LF_BUDGET_PARTS ? names[part] : "?";
}

enum { PART_RESIDENT, PART_KV, PART_CACHE, PART_IO, PART_SCRATCH, PART_ORACLE, PART_META };

static uint32_t session_ctx(const lf_model *m, const lf_session_params *p) {
    uint32_t n = p->n_ctx ? p->n_ctx : LF_MIN(m->info.n_ctx_train, 4096u);
    return n ? n : 2048;
}

/* Every byte a session needs besides the neuron cache, by budget part. */
static uint64_t session_plan(const lf_model *m, const lf_session_params *p, uint64_t parts[LF_BUDGET_PARTS]) {
    const lf_model_info *in = &m->info;
    const uint64_t n_ctx = session_ctx(m, p), hd = m->head_dim;
    const uint64_t q_dim = in->n_head * hd, kv_dim = in->n_head_kv * hd;
    const uint64_t max_in = LF_MAX(LF_MAX((uint64_t)in->n_embd, (uint64_t)in->n_ff), q_dim);
    const uint64_t nth = (uint64_t)(p->n_threads > 0 ? p->n_threads : m->n_threads);
    memset(parts, 0, LF_BUDGET_PARTS * sizeof *parts);
    parts[PART_KV] = 2ull * in->n_layer * n_ctx * kv_dim * sizeof(float);
    parts[PART_SCRATCH] = (3ull * in->n_embd + 2 * q_dim + in->n_head * n_ctx + 2ull * in->n_ff + in->n_vocab +
                           in->n_rot + 2 + 2 * nth * in->n_embd) * sizeof(float) +
                          (max_in / LF_QK + 1) * sizeof(lf_block_q8a) + sizeof(lf_session);
    if (m->mode != LF_MODE_MMAP && m->flash) {
        parts[PART_RESIDENT] = m->resident_bytes;
        parts[PART_META] = lf_model_overhead_bytes(m);
        uint64_t io, oracle, scratch;
        lf_stream_plan_bytes(m, p, &io, &oracle, &scratch);
        parts[PART_IO] = io;
        parts[PART_ORACLE] = oracle;
        parts[PART_SCRATCH] += scratch;
    }
    uint64_t total = 0;
    for (int i = 0; i < LF_BUDGET_PARTS; i++) total += parts[i];
    return total;
}

uint64_t lf_session_min_budget(const lf_model *m, const lf_session_params *params) {
    if (!m) return 0;
    lf_session_params p = params ? *params : lf_session_default_params();
    uint64_t parts[LF_BUDGET_PARTS];
    return session_plan(m, &p, parts);
}

void lf_session_destroy(lf_session *s) {
    if (!s) return;
    lf_pool_destroy(s->pool);
    free(s->x);
    free(s->xb);
    free(s->xb2);
    free(s->q);
    free(s->att);
    free(s->att_out);
    free(s->hb);
    free(s->hb2);
    free(s->logits);
    free(s->rope_cos);
    free(s->rope_sin);
    lf_free_aligned(s->xq);
    lf_stream_shutdown(s);
    lf_stream_destroy(s->stream);
    free(s->recs);
    free(s->ffn_acc);
    free(s->ffn_scratch);
    free(s->key_cache);
    free(s->value_cache);
    free(s);
}

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
    const int n_threads = p.n_threads > 0 ? p.n_threads : m->n_threads;
    const uint64_t q_dim = (uint64_t)in->n_head * m->head_dim, kv_dim = (uint64_t)in->n_head_kv * m->head_dim;
    const uint64_t max_in = LF_MAX(LF_MAX((uint64_t)in->n_embd, (uint64_t)in->n_ff), q_dim);
    uint64_t cache_elems;
    lf_status st = LF_E_NOMEM;
    if (!lf_mul_u64((uint64_t)in->n_layer * s->n_ctx, kv_dim, &cache_elems) || cache_elems > ((uint64_t)1 << 40)) {
        st = lf_err_set(&s->err, LF_E_INVALID_ARG, "context of %u tokens is too large", s->n_ctx);
        goto fail;
    }
    if (lf_pool_create(n_threads, &s->pool)) goto fail_nomem;
    s->x = malloc(in->n_embd * sizeof(float));
    s->xb = malloc(in->n_embd * sizeof(float));
    s->xb2 = malloc(in->n_embd * sizeof(float));
    s->q = malloc(q_dim * sizeof(float));
    s->att = malloc((uint64_t)in->n_head * s->n_ctx * sizeof(float));
    s->att_out = malloc(q_dim * sizeof(float));
    s->hb = malloc(in->n_ff * sizeof(float));
    s->hb2 = malloc(in->n_ff * sizeof(float));
    s->logits = malloc(in->n_vocab * sizeof(float));
    s->rope_cos = malloc((in->n_rot / 2 + 1) * sizeof(float));
    s->rope_sin = malloc((in->n_rot / 2 + 1) * sizeof(float));
    s->xq = lf_alloc_aligned((max_in / LF_QK + 1) * sizeof(lf_block_q8a), 64);
    s->ffn_acc = malloc((size_t)n_threads * in->n_embd * sizeof(float));
    s->ffn_scratch = malloc((size_t)n_threads * in->n_embd * sizeof(float));
    s->key_cache = calloc(cache_elems, sizeof(float));
    s->value_cache = calloc(cache_elems, sizeof(float));
    if (!s->x || !s->xb || !s->xb2 || !s->q || !s->att || !s->att_out || !s->hb || !s->hb2 || !s->logits ||
        !s->rope_cos || !s->rope_sin || !s->xq || !s->ffn_acc || !s->ffn_scratch || !s->key_cache || !s->value_cache)
        goto fail_nomem;
    if (m->flash && m->mode == LF_MODE_MMAP && !(s->recs = malloc(in->n_ff * sizeof *s->recs))) goto fail_nomem;
    if (m->flash && m->mode != LF_MODE_MMAP) {
        uint64_t parts[LF_BUDGET_PARTS];
        const uint64_t need = session_plan(m, &p, parts);
        if (m->dram_budget && need > m->dram_budget) {
            st = lf_err_set(&s->err, LF_E_BUDGET,
                            "the budget of %" PRIu64 " bytes (%.1f MiB) is below the %" PRIu64 " bytes (%.1f MiB) needed "
                            "before any neuron is cached: resident weights %.1f MiB, KV cache %.1f MiB for %u tokens, "
                            "I/O buffers %.1f MiB, scratch %.1f MiB, oracle %.1f MiB, metadata %.1f MiB. Raise "
                            "--dram-budget, lower --ctx, or use a smaller quant type",
                            m->dram_budget, (double)m->dram_budget / 1048576.0, need, (double)need / 1048576.0,
                            (double)parts[PART_RESIDENT] / 1048576.0, (double)parts[PART_KV] / 1048576.0, s->n_ctx,
                            (double)parts[PART_IO] / 1048576.0, (double)parts[PART_SCRATCH] / 1048576.0,
                            (double)parts[PART_ORACLE] / 1048576.0, (double)parts[PART_META] / 1048576.0);
            goto fail;
        }
        if ((st = lf_stream_create(s, m->dram_budget ? m->dram_budget - need : 0, &s->err))) goto fail;
    }
    *out = s;
    return LF_OK;
fail_nomem:
    st = lf_err_set(&s->err, LF_E_NOMEM, "session buffers for a context of %u tokens (KV cache %" PRIu64 " MiB)",
                    s->n_ctx, cache_elems * 8 >> 20);
fail:
    lf_err_copy_out(&s->err, errbuf, errcap);
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

/* ---- matrix-vector products --------------------------------------------- */

typedef struct matvec_job {
    const lf_weight *w;
    const void *x;        /* float* or lf_block_q8a* */
    float *y;             /* (w->rows) */
    lf_vec_dot_fn dot;
} matvec_job;

/* Rows per work chunk: big enough to amortise the call, small enough to
 * balance 2-16 threads. */
#define LF_MATVEC_GRAIN 16

static void matvec_worker(void *ctx, int ith, int nth) {
    const matvec_job *j = ctx;
    uint64_t r0, r1;
    lf_split_range(j->w->rows, ith, nth, LF_MATVEC_GRAIN, &r0, &r1);
    const uint8_t *row = (const uint8_t *)j->w->data + r0 * j->w->row_bytes;
    for (uint64_t r = r0; r < r1; r++, row += j->w->row_bytes) j->y[r] = j->dot(row, j->x, (int64_t)j->w->cols);
}

/* y = W x */
static void matvec(lf_session *s, const lf_weight *w, act *x, float *y) {
    const lf_kernels *k = s->m->kernels;
    const void *xin = x->f;
    if (lf_type_uses_q8a(w->type)) {
        if (!x->quantized) {
            k->quantize_q8a(x->f, x->q, x->n);
            x->quantized = true;
        }
        xin = x->q;
    }
    matvec_job job = {w, xin, y, k->dot[w->type]};
    lf_pool_run(s->pool, matvec_worker, &job);
}

static act act_of(lf_session *s, const float *f, int64_t n) { return (act){f, s->xq, n, false}; }

/* ---- the blocks ---------------------------------------------------------- */

static void rmsnorm(float *o, const float *x, const float *w, uint32_t n, float eps) {
    float ss = 0.0f;
    for (uint32_t i = 0; i < n; i++) ss += x[i] * x[i];
    ss /= (float)n;
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    for (uint32_t i = 0; i < n; i++) o[i] = w[i] * (ss * x[i]);
}

static void rope_prepare(lf_session *s, uint32_t pos) {
    const uint32_t n_rot = s->m->info.n_rot;
    for (uint32_t i = 0; i < n_rot; i += 2) {
        const float freq = 1.0f / powf(s->m->info.rope_freq_base, (float)i / (float)n_rot);
        const float val = (float)pos * freq;
        s->rope_cos[i / 2] = cosf(val);
        s->rope_sin[i / 2] = sinf(val);
    }
}

/* Rotates the first n_rot dimensions of each of n_heads vectors. */
static void rope_apply(const lf_session *s, float *v, uint32_t n_heads) {
    const uint32_t hd = s->m->head_dim, n_rot = s->m->info.n_rot;
    for (uint32_t h = 0; h < n_heads; h++) {
        float *x = v + (uint64_t)h * hd;
        for (uint32_t i = 0; i < n_rot / 2; i++) {
            const uint32_t a = s->m->rope == LF_ROPE_NORM ? 2 * i : i;
            const uint32_t b = s->m->rope == LF_ROPE_NORM ? 2 * i + 1 : i + n_rot / 2;
            const float v0 = x[a], v1 = x[b], c = s->rope_cos[i], sn = s->rope_sin[i];
            x[a] = v0 * c - v1 * sn;
            x[b] = v0 * sn + v1 * c;
        }
    }
}

typedef struct attn_job {
    lf_session *s;
    uint32_t layer, pos;
} attn_job;

static void attention_worker(void *ctx, int ith, int nth) {
    const attn_job *j = ctx;
    lf_session *s = j->s;
    const lf_model_info *in = &s->m->info;
    const uint32_t hd = s->m->head_dim, group = in->n_head / in->n_head_kv;
    const uint64_t kv_dim = (uint64_t)in->n_head_kv * hd;
    const float *kc = s->key_cache + (uint64_t)j->layer * s->n_ctx * kv_dim;
    const float *vc = s->value_cache + (uint64_t)j->layer * s->n_ctx * kv_dim;
    const float scale = sqrtf((float)hd); /* divided, not multiplied, as the reference does */
    uint64_t h0, h1;
    lf_split_range(in->n_head, ith, nth, 1, &h0, &h1);
    for (uint64_t h = h0; h < h1; h++) {
        const float *q = s->q + h * hd;
        float *att = s->att + h * s->n_ctx;
        const uint64_t kvh = h / group;
        float max = -INFINITY;
        for (uint32_t t = 0; t <= j->pos; t++) {
            const float *k = kc + t * kv_dim + kvh * hd;
            float score = 0.0f;
            for (uint32_t i = 0; i < hd; i++) score += q[i] * k[i];
            att[t] = score / scale;
            max = fmaxf(max, att[t]);
        }
        float sum = 0.0f;
        for (uint32_t t = 0; t <= j->pos; t++) {
            att[t] = expf(att[t] - max);
            sum += att[t];
        }
        float *out = s->att_out + h * hd;
        memset(out, 0, hd * sizeof(float));
        for (uint32_t t = 0; t <= j->pos; t++) {
            const float a = att[t] / sum;
            const float *v = vc + t * kv_dim + kvh * hd;
            for (uint32_t i = 0; i < hd; i++) out[i] += a * v[i];
        }
    }
}

static void attention(lf_session *s, uint32_t l, uint32_t pos) {
    const lf_model_info *in = &s->m->info;
    const lf_layer *L = &s->m->layers[l];
    const uint64_t kv_dim = (uint64_t)in->n_head_kv * s->m->head_dim;
    float *k = s->key_cache + ((uint64_t)l * s->n_ctx + pos) * kv_dim;
    float *v = s->value_cache + ((uint64_t)l * s->n_ctx + pos) * kv_dim;
    rmsnorm(s->xb, s->x, L->attn_norm, in->n_embd, in->rms_eps);
    act xb = act_of(s, s->xb, in->n_embd);
    matvec(s, &L->wq, &xb, s->q);
    matvec(s, &L->wk, &xb, k);
    matvec(s, &L->wv, &xb, v);
    rope_apply(s, s->q, in->n_head);
    rope_apply(s, k, in->n_head_kv);
    attn_job job = {s, l, pos};
    lf_pool_run(s->pool, attention_worker, &job);
    act ao = act_of(s, s->att_out, (int64_t)in->n_head * s->m->head_dim);
    matvec(s, &L->wo, &ao, s->xb2);
    for (uint32_t i = 0; i < in->n_embd; i++) s->x[i] += s->xb2[i];
}

/* FFN over neuron records: y = sum_i down_i * act(gate_i . x) * (up_i . x).
 * Each thread owns a range of neurons and its own accumulator; the
 * accumulators are summed in thread order, so results do not depend on
 * scheduling. */
typedef struct bundle_job {
    lf_session *s;
    const uint8_t *const *recs; /* (n) neuron records */
    size_t n;
    const void *x;              /* float* or lf_block_q8a* */
} bundle_job;

static void bundle_ffn_worker(void *ctx, int ith, int nth) {
    const bundle_job *j = ctx;
    lf_session *s = j->s;
    const lf_model *m = s->m;
    const lf_bundle_layout *B = &m->flash->layout;
    const uint32_t d = m->info.n_embd;
    const lf_vec_dot_fn dot = m->kernels->dot[B->type];
    float *acc = s->ffn_acc + (uint64_t)ith * d, *scratch = s->ffn_scratch + (uint64_t)ith * d;
    uint64_t n0, n1;
    lf_split_range(j->n, ith, nth, 16, &n0, &n1);
    const bool gated = B->n_rows == 3;
    for (uint64_t i = n0; i < n1; i++) {
        const uint8_t *rec = j->recs[i];
        const float up = dot(rec + (gated ? B->row_bytes : 0), j->x, d);
        const float gate = gated ? dot(rec, j->x, d) : 0.0f;
        const float h = lf_ffn_activate(m->info.activation, gate, up);
        if (h != 0.0f) lf_axpy_row(m->kernels, B->type, rec + (B->n_rows - 1) * B->row_bytes, h, acc, d, scratch);
    }
}

void lf_ffn_begin(lf_session *s) {
    memset(s->ffn_acc, 0, (size_t)lf_pool_size(s->pool) * s->m->info.n_embd * sizeof(float));
}

void lf_ffn_accumulate(lf_session *s, const uint8_t *const *recs, size_t n, const void *x) {
    if (n == 0) return;
    bundle_job job = {s, recs, n, x};
    lf_pool_run(s->pool, bundle_ffn_worker, &job);
}

/* Thread accumulators are added in thread order: results do not depend on
 * scheduling. */
void lf_ffn_end(lf_session *s) {
    const uint32_t d = s->m->info.n_embd;
    const int nth = lf_pool_size(s->pool);
    for (int t = 0; t < nth; t++) {
        const float *acc = s->ffn_acc + (uint64_t)t * d;
        for (uint32_t i = 0; i < d; i++) s->x[i] += acc[i];
    }
}

const void *lf_ffn_input(lf_session *s, act *xb) {
    if (!lf_type_uses_q8a(s->m->flash->layout.type)) return xb->f;
    if (!xb->quantized) {
        s->m->kernels->quantize_q8a(xb->f, xb->q, xb->n);
        xb->quantized = true;
    }
    return xb->q;
}

static void ffn(lf_session *s, uint32_t l) {
    const lf_model_info *in = &s->m->info;
    const lf_layer *L = &s->m->layers[l];
    rmsnorm(s->xb, s->x, L->ffn_norm, in->n_embd, in->rms_eps);
    act xb = act_of(s, s->xb, in->n_embd);
    if (s->stream) {
        const lf_status st = lf_stream_ffn(s, l, &xb);
        if (st && !s->io_error) s->io_error = st;
        return;
    }
    if (L->bundle) { /* a flash file mapped whole: records at the file's stride */
        for (uint32_t i = 0; i < in->n_ff; i++) s->recs[i] = L->bundle + (uint64_t)i * s->m->flash->layout.stride;
        lf_ffn_begin(s);
        lf_ffn_accumulate(s, (const uint8_t *const *)s->recs, s->m->info.n_ff, lf_ffn_input(s, &xb));
        lf_ffn_end(s);
        return;
    }
    matvec(s, &L->up, &xb, s->hb2);
    if (in->activation != LF_ACT_RELU) matvec(s, &L->gate, &xb, s->hb);
    for (uint32_t i = 0; i < in->n_ff; i++) s->hb[i] = lf_ffn_activate(in->activation, s->hb[i], s->hb2[i]);
    act hb = act_of(s, s->hb, in->n_ff);
    matvec(s, &L->down, &hb, s->xb2);
    for (uint32_t i = 0; i < in->n_embd; i++) s->x[i] += s->xb2[i];
}

static void forward(lf_session *s, lf_token token, uint32_t pos) {
    const lf_model *m = s->m;
    const lf_model_info *in = &m->info;
    lf_dequantize_row(m->tok_embd.type, (const uint8_t *)m->tok_embd.data + (uint64_t)token * m->tok_embd.row_bytes,
                      s->x, in->n_embd);
    rope_prepare(s, pos);
    if (s->stream) lf_stream_next_token(s);
    for (uint32_t l = 0; l < in->n_layer; l++) {
        /* a mask known before the layer's input: its reads overlap attention */
        if (s->stream && s->params.mask == LF_MASK_ALL) {
            const lf_status st = lf_stream_issue(s, l, NULL);
            if (st && !s->io_error) s->io_error = st;
        }
        attention(s, l, pos);
        ffn(s, l);
    }
    rmsnorm(s->x, s->x, m->output_norm, in->n_embd, in->rms_eps);
    act x = act_of(s, s->x, in->n_embd);
    matvec(s, &m->output, &x, s->logits);
}

lf_status lf_session_eval(lf_session *s, const lf_token *tokens, size_t n) {
    if (!s || (!tokens && n)) return LF_E_INVALID_ARG;
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= s->m->info.n_vocab)
            return lf_err_set(&s->err, LF_E_INVALID_ARG, "token %d is outside the vocabulary of %u", tokens[i],
                              s->m->info.n_vocab);
        if (s->pos >= s->n_ctx)
            return lf_err_set(&s->err, LF_E_CONTEXT_FULL, "context of %u tokens is full", s->n_ctx);
        const uint64_t t0 = lf_now_ns();
        s->io_error = LF_OK;
        forward(s, tokens[i], s->pos);
        s->compute_ms += lf_ns_to_ms(lf_now_ns() - t0);
        if (s->io_error) { /* the stream engine put the detail in s->err */
            s->has_logits = false;
            return s->io_error;
        }
        s->pos++;
        s->has_logits = true;
    }
    return LF_OK;
}

/* ---- statistics ------------------------------------------------------------ */

lf_status lf_session_get_stats(const lf_session *s, lf_session_stats *out) {
    if (!s || !out) return LF_E_INVALID_ARG;
    memset(out, 0, sizeof *out);
    out->tokens = s->pos;
    out->compute_ms = s->compute_ms;
    out->n_layer = s->m->info.n_layer;
    out->budget_total = s->m->mode == LF_MODE_MMAP ? 0 : s->m->dram_budget;
    session_plan(s->m, &s->params, out->budget_bytes);
    if (s->stream) {
        lf_stream_stats(s, out);
        uint64_t cache = 0;
        lf_stream_cache_bytes(s, &cache);
        out->budget_bytes[PART_CACHE] = cache;
        lf_loader_stats ls;
        lf_loader_get_stats(s->m->loader, &ls);
        out->io_reads = ls.reads;
        out->io_bytes = ls.bytes_read;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    out->peak_rss_bytes = (uint64_t)ru.ru_maxrss * 1024;
    return LF_OK;
}

lf_status lf_session_layer_stats(const lf_session *s, uint32_t layer, lf_layer_stats *out) {
    if (!s || !s->stream || layer >= s->m->info.n_layer || !out) return LF_E_INVALID_ARG;
    lf_stream_layer_stats(s, layer, out);
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

size_t lf_session_stats_json(const lf_session *s, char *buf, size_t cap) {
    lf_session_stats st;
    if (lf_session_get_stats(s, &st)) return 0;
    jbuf j = {buf, cap, 0};
    if (cap) buf[0] = '\0';
    jprintf(&j, "{\n  \"mode\": \"%s\",\n  \"tokens\": %" PRIu64 ",\n  \"compute_ms\": %.3f,\n  \"io_wait_ms\": %.3f,\n",
            lf_mode_name(s->m->mode), st.tokens, st.compute_ms, st.io_wait_ms);
    jprintf(&j, "  \"tokens_per_s\": %.4f,\n", st.compute_ms > 0 ? (double)st.tokens * 1000.0 / st.compute_ms : 0.0);
    jprintf(&j, "  \"io_span_ms\": %.3f,\n  \"io_hidden_fraction\": %.4f,\n", st.io_span_ms,
            st.io_span_ms > 0 ? 1.0 - st.io_wait_ms / st.io_span_ms : 0.0);
    jprintf(&j, "  \"ffn_bytes_read\": %" PRIu64 ",\n  \"ffn_bytes_served\": %" PRIu64 ",\n", st.ffn_bytes_read,
            st.ffn_bytes_served);
    const uint64_t all = st.ffn_bytes_read + st.ffn_bytes_served;
    jprintf(&j, "  \"cache_hit_rate\": %.6f,\n", all ? (double)st.ffn_bytes_served / (double)all : 0.0);
    jprintf(&j, "  \"neurons_loaded\": %" PRIu64 ",\n  \"neurons_used\": %" PRIu64 ",\n  \"evictions\": %" PRIu64
            ",\n  \"expirations\": %" PRIu64 ",\n  \"window_union\": %" PRIu64 ",\n  \"io_reads\": %" PRIu64 ",\n  \"io_bytes\": %" PRIu64 ",\n",
            st.neurons_loaded, st.neurons_used, st.evictions, st.expirations, st.window_union, st.io_reads, st.io_bytes);
    jprintf(&j, "  \"budget\": {\"limit\": %" PRIu64, st.budget_total);
    for (int i = 0; i < LF_BUDGET_PARTS; i++) jprintf(&j, ", \"%s\": %" PRIu64, lf_budget_part_name(i), st.budget_bytes[i]);
    jprintf(&j, "},\n  \"peak_rss_bytes\": %" PRIu64 ",\n  \"layers\": [", st.peak_rss_bytes);
    for (uint32_t l = 0; s->stream && l < st.n_layer; l++) {
        lf_layer_stats ls;
        lf_stream_layer_stats(s, l, &ls);
        jprintf(&j, "%s\n    {\"layer\": %u, \"bytes_read\": %" PRIu64 ", \"bytes_served\": %" PRIu64
                ", \"neurons_loaded\": %" PRIu64 ", \"neurons_used\": %" PRIu64 ", \"cache_slots\": %u, \"resident\": %u}",
                l ? "," : "", l, ls.bytes_read, ls.bytes_served, ls.neurons_loaded, ls.neurons_used, ls.cache_slots,
                ls.resident);
    }
    jprintf(&j, "\n  ]\n}\n");
    return j.len;
}

/* ---- generation ----------------------------------------------------------- */

lf_status lf_session_generate(lf_session *s, lf_sampler *sampler, const char *prompt, uint32_t n_predict,
                              lf_piece_fn on_piece, void *user, lf_generate_stats *stats) {
    if (!s || !sampler || !prompt) return LF_E_INVALID_ARG;
    lf_generate_stats st_local = {0};
    lf_generate_stats *gs = stats ? stats : &st_local;
    memset(gs, 0, sizeof *gs);
    lf_session_reset(s);
    const lf_model *m = s->m;
    const size_t plen = strlen(prompt);
    size_t n_tok = 0;
    lf_tokenize(m, prompt, plen, true, NULL, 0, &n_tok);
    lf_token *toks = malloc((n_tok ? n_tok : 1) * sizeof *toks);
    if (!toks) return lf_err_set(&s->err, LF_E_NOMEM, "prompt tokens");
    lf_status st = lf_tokenize(m, prompt, plen, true, toks, n_tok, &n_tok);
    if (st) {
        free(toks);
        return lf_err_set(&s->err, st, "tokenizing the prompt failed");
    }
    if (n_tok == 0) { /* no BOS in this vocabulary and an empty prompt */
        free(toks);
        return lf_err_set(&s->err, LF_E_INVALID_ARG, "empty prompt and the model has no BOS token");
    }
    if (n_tok + n_predict > s->n_ctx)
        lf_log(&m->log, LF_LOG_WARN, "prompt (%zu tokens) plus %u to generate exceeds the context of %u", n_tok,
               n_predict, s->n_ctx);
    uint64_t t0 = lf_now_ns();
    st = lf_session_eval(s, toks, n_tok);
    free(toks);
    gs->n_prompt = (uint32_t)n_tok;
    gs->prompt_ms = lf_ns_to_ms(lf_now_ns() - t0);
    if (st) return st;
    t0 = lf_now_ns();
    const lf_token eos = lf_token_eos(m);
    bool strip_space = plen == 0; /* SentencePiece drops the leading space of a text */
    char piece[256];
    for (uint32_t i = 0; i < n_predict; i++) {
        const lf_token tok = lf_sampler_sample(sampler, s->logits, m->info.n_vocab);
        if (tok == eos) {
            gs->stopped_at_eos = true;
            break;
        }
        gs->n_generated++;
        int len = lf_token_to_piece(m, tok, piece, sizeof piece);
        if (len < 0) len = 0;
        if (len > (int)sizeof piece) len = (int)sizeof piece;
        const char *p = piece;
        if (strip_space && len > 0) {
            if (p[0] == ' ') {
                p++;
                len--;
            }
            strip_space = false;
        }
        if (on_piece && len > 0 && !on_piece(user, p, (size_t)len)) break;
        if (i + 1 < n_predict && (st = lf_session_eval(s, &tok, 1))) break;
    }
    gs->generate_ms = lf_ns_to_ms(lf_now_ns() - t0);
    return st;
}
