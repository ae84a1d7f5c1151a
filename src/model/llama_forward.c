/* llama_forward.c - sessions and the Llama forward pass, one token at a time.
 *
 * Reads top to bottom like llama2.c's run.c: RMSNorm, attention with RoPE and
 * a KV cache (grouped-query), SwiGLU/ReLU FFN, residuals, output logits. The
 * matrix-vector products run on the session's thread pool. */
#include "model.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

struct lf_session {
    lf_model *m;
    lf_err err;
    lf_pool *pool;
    uint32_t n_ctx;
    uint32_t pos;
    bool has_logits;
    /* activations */
    float *x;           /* (n_embd) residual stream */
    float *xb;          /* (n_embd) normalised input of a block */
    float *xb2;         /* (n_embd) block output */
    float *q;           /* (n_head*head_dim) */
    float *att;         /* (n_head, n_ctx) attention scores */
    float *att_out;     /* (n_head*head_dim) */
    float *hb;          /* (n_ff) gate / activation */
    float *hb2;         /* (n_ff) up */
    float *logits;      /* (n_vocab) */
    float *rope_cos;    /* (n_rot/2) for the current position */
    float *rope_sin;    /* (n_rot/2) */
    lf_block_q8a *xq;   /* (max(n_embd, n_ff, q_dim)/32) quantized activation */
    float *ffn_acc;     /* (n_threads, n_embd) per-thread partial FFN outputs */
    float *ffn_scratch; /* (n_threads, n_embd) dequantized down rows */
    float *key_cache;   /* (n_layer, n_ctx, kv_dim) */
    float *value_cache; /* (n_layer, n_ctx, kv_dim) */
};

lf_session_params lf_session_default_params(void) {
    return (lf_session_params){.n_ctx = 0, .n_threads = 0};
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
    s->n_ctx = p.n_ctx ? p.n_ctx : LF_MIN(in->n_ctx_train, 4096u);
    if (s->n_ctx == 0) s->n_ctx = 2048;
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

/* An activation vector, quantized on demand for the weight type at hand. */
typedef struct act {
    const float *f;       /* (n) */
    lf_block_q8a *q;      /* (n/32) scratch */
    int64_t n;
    bool quantized;
} act;

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

static inline float activate(lf_activation a, float gate, float up) {
    switch (a) {
    case LF_ACT_SILU_GATED: return gate * (1.0f / (1.0f + expf(-gate))) * up;
    case LF_ACT_RELU_GATED: return (gate > 0.0f ? gate : 0.0f) * up;
    case LF_ACT_RELU: return up > 0.0f ? up : 0.0f;
    }
    return 0.0f;
}

/* FFN over neuron records: y = sum_i down_i * act(gate_i . x) * (up_i . x).
 * Each thread owns a range of neurons and its own accumulator; the
 * accumulators are summed in thread order, so results do not depend on
 * scheduling. */
typedef struct bundle_job {
    lf_session *s;
    const uint8_t *bundle;
    const void *x; /* float* or lf_block_q8a* */
} bundle_job;

static void bundle_ffn_worker(void *ctx, int ith, int nth) {
    const bundle_job *j = ctx;
    lf_session *s = j->s;
    const lf_model *m = s->m;
    const lf_bundle_layout *B = &m->flash->layout;
    const uint32_t d = m->info.n_embd;
    const lf_vec_dot_fn dot = m->kernels->dot[B->type];
    float *acc = s->ffn_acc + (uint64_t)ith * d, *scratch = s->ffn_scratch + (uint64_t)ith * d;
    memset(acc, 0, d * sizeof(float));
    uint64_t n0, n1;
    lf_split_range(m->info.n_ff, ith, nth, 16, &n0, &n1);
    const bool gated = B->n_rows == 3;
    for (uint64_t i = n0; i < n1; i++) {
        const uint8_t *rec = j->bundle + i * B->record_bytes;
        const float up = dot(rec + (gated ? B->row_bytes : 0), j->x, d);
        const float gate = gated ? dot(rec, j->x, d) : 0.0f;
        const float h = activate(m->info.activation, gate, up);
        if (h != 0.0f) lf_axpy_row(B->type, rec + (B->n_rows - 1) * B->row_bytes, h, acc, d, scratch);
    }
}

static void ffn_bundles(lf_session *s, const lf_layer *L, act *xb) {
    const lf_model *m = s->m;
    const uint32_t d = m->info.n_embd;
    const void *x = xb->f;
    if (lf_type_uses_q8a(m->flash->layout.type)) {
        if (!xb->quantized) m->kernels->quantize_q8a(xb->f, xb->q, xb->n);
        x = xb->q;
    }
    bundle_job job = {s, L->bundle, x};
    lf_pool_run(s->pool, bundle_ffn_worker, &job);
    const int nth = lf_pool_size(s->pool);
    for (int t = 0; t < nth; t++) {
        const float *acc = s->ffn_acc + (uint64_t)t * d;
        for (uint32_t i = 0; i < d; i++) s->x[i] += acc[i];
    }
}

static void ffn(lf_session *s, uint32_t l) {
    const lf_model_info *in = &s->m->info;
    const lf_layer *L = &s->m->layers[l];
    rmsnorm(s->xb, s->x, L->ffn_norm, in->n_embd, in->rms_eps);
    act xb = act_of(s, s->xb, in->n_embd);
    if (L->bundle) {
        ffn_bundles(s, L, &xb);
        return;
    }
    matvec(s, &L->up, &xb, s->hb2);
    if (in->activation != LF_ACT_RELU) matvec(s, &L->gate, &xb, s->hb);
    for (uint32_t i = 0; i < in->n_ff; i++) s->hb[i] = activate(in->activation, s->hb[i], s->hb2[i]);
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
    for (uint32_t l = 0; l < in->n_layer; l++) {
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
        forward(s, tokens[i], s->pos);
        s->pos++;
        s->has_logits = true;
    }
    return LF_OK;
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
