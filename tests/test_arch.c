/* test_arch.c - every architecture llmflash runs (llama as Llama 3.x writes
 * it, qwen2, qwen3, and the mixtures of experts of Mixtral's layout and
 * qwen3moe), checked against an independent reference forward pass
 * and across modes, flash files and real vocabularies.
 *
 * The reference below is a second implementation of the math, written for
 * clarity and nothing else: F32 weights only, double accumulators, no
 * kernels, no KV cache (every position's keys are recomputed), the
 * architecture's features found by reading the file's own tensors and keys.
 * It shares only the GGUF parser with the library. No published logits
 * exist here for these architectures (no real Qwen or Llama 3 weights are
 * available offline), so this reference is the independent check. */
#include <criterion/criterion.h>

#include "llmflash.h"
#include "test_support.h"
#include "../src/gguf/gguf.h"

#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

/* ---- the reference ------------------------------------------------------- */

typedef struct ref_model {
    lf_gguf *g;
    char *data; /* the whole file */
    char arch[32];
    uint32_t d, n_layer, ff, n_head, n_kv, hd, n_rot, n_vocab;
    uint32_t n_expert, n_used; /* 0: a dense FFN */
    float eps, base;
    bool neox;
} ref_model;

static const float *ref_tensor(const ref_model *r, const char *name, uint64_t want) {
    const lf_gguf_tensor *t = lf__gguf_find_tensor(r->g, name);
    if (!t) return NULL;
    cr_assert_eq(t->type, 0, "reference: %s is not F32", name);
    cr_assert_eq(t->nbytes, want * 4, "reference: %s has %llu bytes, expected %llu", name, (unsigned long long)t->nbytes,
                 (unsigned long long)want * 4);
    return (const float *)(r->data + t->file_offset);
}

static uint32_t ref_u32(const ref_model *r, const char *suffix, uint32_t dflt) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s", r->arch, suffix);
    uint32_t v;
    lf_err err = {{0}};
    cr_assert_eq(lf__gguf_get_u32_or(r->g, key, dflt, &v, &err), LF_OK);
    return v;
}

static void ref_open(ref_model *r, const char *path) {
    lf_err err = {{0}};
    cr_assert_eq(lf__gguf_read_file(path, &r->g, &err), LF_OK, "%s", err.msg);
    size_t len;
    r->data = slurp(path, &len);
    cr_assert_not_null(r->data);
    lf_gguf_str a;
    cr_assert_eq(lf__gguf_get_str(r->g, "general.architecture", &a, &err), LF_OK);
    snprintf(r->arch, sizeof r->arch, "%.*s", (int)a.len, a.ptr);
    /* GGUF stores llama's Q/K rows permuted for adjacent-pair rotation;
     * the Qwen converters keep Hugging Face's half-split rotation */
    r->neox = strcmp(r->arch, "llama") != 0;
    r->d = ref_u32(r, "embedding_length", 0);
    r->n_layer = ref_u32(r, "block_count", 0);
    r->ff = ref_u32(r, "feed_forward_length", 0);
    r->n_expert = ref_u32(r, "expert_count", 0);
    r->n_used = ref_u32(r, "expert_used_count", 0);
    if (r->n_expert) r->ff = ref_u32(r, "expert_feed_forward_length", r->ff);
    r->n_head = ref_u32(r, "attention.head_count", 0);
    r->n_kv = ref_u32(r, "attention.head_count_kv", r->n_head);
    r->hd = ref_u32(r, "attention.key_length", r->d / r->n_head);
    r->n_rot = ref_u32(r, "rope.dimension_count", r->hd);
    char key[96];
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", r->arch);
    cr_assert_eq(lf__gguf_get_f32_or(r->g, key, -1, &r->eps, &err), LF_OK);
    snprintf(key, sizeof key, "%s.rope.freq_base", r->arch);
    cr_assert_eq(lf__gguf_get_f32_or(r->g, key, -1, &r->base, &err), LF_OK);
    cr_assert(r->eps > 0 && r->base > 0, "reference: the test models write their eps and rope base");
    r->n_vocab = (uint32_t)(lf__gguf_find_tensor(r->g, "token_embd.weight")->nbytes / 4 / r->d);
}

static void ref_close(ref_model *r) {
    lf__gguf_free(r->g);
    free(r->data);
}

static void ref_rmsnorm(double *out, const double *x, const float *w, uint32_t n, float eps) {
    double ss = 0;
    for (uint32_t i = 0; i < n; i++) ss += x[i] * x[i];
    const double k = 1.0 / sqrt(ss / n + eps);
    for (uint32_t i = 0; i < n; i++) out[i] = x[i] * k * w[i];
}

/* y (rows) = W (rows x cols, row-major as GGUF stores it) x, plus bias */
static void ref_matvec(double *y, const float *w, const float *bias, const double *x, uint32_t rows, uint32_t cols) {
    for (uint32_t r = 0; r < rows; r++) {
        double s = bias ? bias[r] : 0.0;
        for (uint32_t c = 0; c < cols; c++) s += (double)w[(uint64_t)r * cols + c] * x[c];
        y[r] = s;
    }
}

static void ref_rope(const ref_model *r, double *v, uint32_t pos, const float *freqs) {
    for (uint32_t i = 0; i < r->n_rot / 2; i++) {
        double theta = pos * pow(r->base, -2.0 * i / r->n_rot);
        if (freqs) theta /= freqs[i];
        const uint32_t a = r->neox ? i : 2 * i, b = r->neox ? i + r->n_rot / 2 : 2 * i + 1;
        const double x0 = v[a], x1 = v[b];
        v[a] = x0 * cos(theta) - x1 * sin(theta);
        v[b] = x0 * sin(theta) + x1 * cos(theta);
    }
}

/* The FFN of one token: a SwiGLU of ff neurons (gate/up rows, down
 * row-major d x ff), out += weight * FFN(xn). */
static void ref_swiglu(const ref_model *r, const float *wg, const float *wu, const float *wd, const double *xn,
                       double weight, double *g, double *u, double *out) {
    ref_matvec(g, wg, NULL, xn, r->ff, r->d);
    ref_matvec(u, wu, NULL, xn, r->ff, r->d);
    for (uint32_t i = 0; i < r->ff; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
    for (uint32_t i = 0; i < r->d; i++) {
        double s = 0;
        for (uint32_t j = 0; j < r->ff; j++) s += (double)wd[(uint64_t)i * r->ff + j] * g[j];
        out[i] += weight * s;
    }
}

/* A mixture of experts, as Mixtral and Qwen3-MoE define it: softmax over
 * the router's logits, the n_used most probable experts (the lower index
 * first on a tie), their probabilities renormalised to sum to 1. */
static void ref_moe(const ref_model *r, const float *router, const float *wg, const float *wu, const float *wd,
                    const double *xn, double *g, double *u, double *out) {
    double *lg = malloc(r->n_expert * sizeof(double)), *p = malloc(r->n_expert * sizeof(double));
    bool *taken = calloc(r->n_expert, 1);
    ref_matvec(lg, router, NULL, xn, r->n_expert, r->d);
    double mx = -INFINITY, sum = 0;
    for (uint32_t e = 0; e < r->n_expert; e++) mx = fmax(mx, lg[e]);
    for (uint32_t e = 0; e < r->n_expert; e++) sum += (p[e] = exp(lg[e] - mx));
    for (uint32_t e = 0; e < r->n_expert; e++) p[e] /= sum;
    uint32_t chosen[64];
    double kept = 0;
    for (uint32_t k = 0; k < r->n_used; k++) {
        uint32_t best = UINT32_MAX;
        for (uint32_t e = 0; e < r->n_expert; e++)
            if (!taken[e] && (best == UINT32_MAX || p[e] > p[best])) best = e;
        taken[best] = true;
        chosen[k] = best;
        kept += p[best];
    }
    const uint64_t gu = (uint64_t)r->ff * r->d;
    for (uint32_t k = 0; k < r->n_used; k++) {
        const uint32_t e = chosen[k];
        ref_swiglu(r, wg + e * gu, wu + e * gu, wd + e * gu, xn, p[e] / kept, g, u, out);
    }
    free(lg), free(p), free(taken);
}

/* Logits after each of the n tokens, into logits (n x n_vocab). */
static void ref_forward(const ref_model *r, const lf_token *toks, uint32_t n, float *logits) {
    const uint32_t d = r->d, hd = r->hd, qd = r->n_head * hd, kvd = r->n_kv * hd;
    double *x = calloc((size_t)n * d, sizeof(double)), *xn = malloc(d * sizeof(double));
    double *q = malloc((size_t)n * qd * sizeof(double)), *k = malloc((size_t)n * kvd * sizeof(double));
    double *v = malloc((size_t)n * kvd * sizeof(double)), *att = malloc((size_t)n * qd * sizeof(double));
    double *o = malloc(d * sizeof(double)), *g = malloc(r->ff * sizeof(double)), *u = malloc(r->ff * sizeof(double));
    double *sc = malloc(n * sizeof(double));
    const float *emb = ref_tensor(r, "token_embd.weight", (uint64_t)r->n_vocab * d);
    const float *freqs = ref_tensor(r, "rope_freqs.weight", r->n_rot / 2);
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t i = 0; i < d; i++) x[(uint64_t)t * d + i] = emb[(uint64_t)toks[t] * d + i];
    char nm[96];
#define T(what, count) (snprintf(nm, sizeof nm, "blk.%u.%s", l, what), ref_tensor(r, nm, count))
    for (uint32_t l = 0; l < r->n_layer; l++) {
        const float *wq = T("attn_q.weight", (uint64_t)qd * d), *wk = T("attn_k.weight", (uint64_t)kvd * d);
        const float *wv = T("attn_v.weight", (uint64_t)kvd * d), *wo = T("attn_output.weight", (uint64_t)d * qd);
        const float *bq = T("attn_q.bias", qd), *bk = T("attn_k.bias", kvd), *bv = T("attn_v.bias", kvd);
        const float *qn = T("attn_q_norm.weight", hd), *kn = T("attn_k_norm.weight", hd);
        const float *an = T("attn_norm.weight", d), *fn = T("ffn_norm.weight", d);
        const uint64_t ne = r->n_expert ? r->n_expert : 1;
        const char *sfx = r->n_expert ? "_exps.weight" : ".weight";
        char ng[64], nu[64], ndn[64];
        snprintf(ng, sizeof ng, "ffn_gate%s", sfx), snprintf(nu, sizeof nu, "ffn_up%s", sfx);
        snprintf(ndn, sizeof ndn, "ffn_down%s", sfx);
        const float *wg = T(ng, ne * r->ff * d), *wu = T(nu, ne * r->ff * d), *wd = T(ndn, ne * d * r->ff);
        const float *router = r->n_expert ? T("ffn_gate_inp.weight", ne * d) : NULL;
        cr_assert(wg && wu && wd && (router || !r->n_expert), "reference: layer %u's FFN tensors", l);
        for (uint32_t t = 0; t < n; t++) {
            ref_rmsnorm(xn, x + (uint64_t)t * d, an, d, r->eps);
            ref_matvec(q + (uint64_t)t * qd, wq, bq, xn, qd, d);
            ref_matvec(k + (uint64_t)t * kvd, wk, bk, xn, kvd, d);
            ref_matvec(v + (uint64_t)t * kvd, wv, bv, xn, kvd, d);
            for (uint32_t h = 0; h < r->n_head; h++) {
                double *qh = q + (uint64_t)t * qd + h * hd;
                if (qn) ref_rmsnorm(qh, qh, qn, hd, r->eps);
                ref_rope(r, qh, t, freqs);
            }
            for (uint32_t h = 0; h < r->n_kv; h++) {
                double *kh = k + (uint64_t)t * kvd + h * hd;
                if (kn) ref_rmsnorm(kh, kh, kn, hd, r->eps);
                ref_rope(r, kh, t, freqs);
            }
        }
        for (uint32_t t = 0; t < n; t++) {
            for (uint32_t h = 0; h < r->n_head; h++) {
                const uint32_t kvh = h / (r->n_head / r->n_kv);
                const double *qh = q + (uint64_t)t * qd + h * hd;
                double mx = -INFINITY, sum = 0;
                for (uint32_t p = 0; p <= t; p++) {
                    double s = 0;
                    for (uint32_t i = 0; i < hd; i++) s += qh[i] * k[(uint64_t)p * kvd + kvh * hd + i];
                    sc[p] = s / sqrt(hd);
                    mx = fmax(mx, sc[p]);
                }
                for (uint32_t p = 0; p <= t; p++) sum += (sc[p] = exp(sc[p] - mx));
                double *out = att + (uint64_t)t * qd + h * hd;
                for (uint32_t i = 0; i < hd; i++) {
                    double s = 0;
                    for (uint32_t p = 0; p <= t; p++) s += sc[p] / sum * v[(uint64_t)p * kvd + kvh * hd + i];
                    out[i] = s;
                }
            }
            ref_matvec(o, wo, NULL, att + (uint64_t)t * qd, d, qd);
            for (uint32_t i = 0; i < d; i++) x[(uint64_t)t * d + i] += o[i];
            ref_rmsnorm(xn, x + (uint64_t)t * d, fn, d, r->eps);
            if (router) ref_moe(r, router, wg, wu, wd, xn, g, u, x + (uint64_t)t * d);
            else ref_swiglu(r, wg, wu, wd, xn, 1.0, g, u, x + (uint64_t)t * d);
        }
    }
#undef T
    const float *on = ref_tensor(r, "output_norm.weight", d);
    const float *out = ref_tensor(r, "output.weight", (uint64_t)r->n_vocab * d);
    if (!out) out = emb; /* tied */
    for (uint32_t t = 0; t < n; t++) {
        ref_rmsnorm(xn, x + (uint64_t)t * d, on, d, r->eps);
        double *lg = malloc(r->n_vocab * sizeof(double));
        ref_matvec(lg, out, NULL, xn, r->n_vocab, d);
        for (uint32_t i = 0; i < r->n_vocab; i++) logits[(uint64_t)t * r->n_vocab + i] = (float)lg[i];
        free(lg);
    }
    free(x), free(xn), free(q), free(k), free(v), free(att), free(o), free(g), free(u), free(sc);
}

/* ---- helpers -------------------------------------------------------------- */

static const char *tmp_path(const char *tag) {
    static char buf[4][256];
    static int i;
    char *p = buf[i++ % 4];
    snprintf(p, 256, "/tmp/lf_test_arch_%s_%d.gguf", tag, (int)getpid());
    return p;
}

static void synth(const char *path, const char *preset, const char *vocab) {
    lf_synth_params p = lf_synth_default_params();
    cr_assert_eq(lf_synth_shape_preset(preset, &p), LF_OK, "%s", preset);
    p.type = LF_TYPE_F32;
    p.force = true;
    p.tokenizer_from = vocab;
    if (vocab) { /* a real vocabulary makes the embeddings large: keep the rest small */
        p.n_embd = 64;
        p.n_ff = 192;
        if (p.head_dim) p.head_dim = 32;
    }
    char err[256];
    cr_assert_eq(lf_synth_write(path, &p, err, sizeof err), LF_OK, "%s: %s", preset, err);
}

static double rel_diff(const float *a, const float *b, uint64_t n) {
    double num = 0, den = 0;
    for (uint64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / den);
}

typedef struct run_opts {
    lf_mode mode;
    uint64_t budget;   /* 0: none */
    lf_kv_type kv;
    uint32_t n_batch;  /* 0: default */
} run_opts;

/* Logits after each of the n tokens, evaluated one at a time (or as one
 * batch when opts->n_batch > 1, then only the last row is filled). */
/* A model and a session as o says. */
static lf_session *open_run(const char *path, const run_opts *o, lf_model **m) {
    char err[512];
    lf_model_params mp = lf_model_default_params();
    mp.mode = o->mode;
    mp.dram_budget = o->budget;
    cr_assert_eq(lf_model_open(path, &mp, m, err, sizeof err), LF_OK, "%s: %s", path, err);
    lf_session_params sp = lf_session_default_params();
    sp.kv_type = o->kv;
    lf_session *s;
    cr_assert_eq(lf_session_create(*m, &sp, &s, err, sizeof err), LF_OK, "%s", err);
    return s;
}

static uint32_t run_logits(const char *path, const run_opts *o, const lf_token *toks, uint32_t n, float *logits) {
    lf_model *m;
    lf_session *s = open_run(path, o, &m);
    const uint32_t nv = lf_vocab_size(m);
    if (o->n_batch > 1) {
        cr_assert_eq(lf_session_eval(s, toks, n), LF_OK, "%s", lf_session_errmsg(s));
        memcpy(logits + (uint64_t)(n - 1) * nv, lf_session_logits(s), nv * sizeof(float));
    } else {
        for (uint32_t t = 0; t < n; t++) {
            cr_assert_eq(lf_session_eval(s, &toks[t], 1), LF_OK, "%s", lf_session_errmsg(s));
            memcpy(logits + (uint64_t)t * nv, lf_session_logits(s), nv * sizeof(float));
        }
    }
    lf_session_destroy(s);
    lf_model_close(m);
    return nv;
}

/* Greedy continuation of toks, n tokens, into out. */
static void run_greedy(const char *path, const run_opts *o, const lf_token *toks, uint32_t n_prompt, uint32_t n,
                       lf_token *out) {
    lf_model *m;
    lf_session *s = open_run(path, o, &m);
    cr_assert_eq(lf_session_eval(s, toks, n_prompt), LF_OK, "%s", lf_session_errmsg(s));
    for (uint32_t i = 0; i < n; i++) {
        const float *lg = lf_session_logits(s);
        lf_token best = 0;
        for (uint32_t v = 1; v < lf_vocab_size(m); v++)
            if (lg[v] > lg[best]) best = (lf_token)v;
        out[i] = best;
        cr_assert_eq(lf_session_eval(s, &best, 1), LF_OK, "%s", lf_session_errmsg(s));
    }
    lf_session_destroy(s);
    lf_model_close(m);
}

/* A budget that holds what a session needs plus a quarter of the FFN. */
static uint64_t quarter_ffn_budget(const char *flash) {
    char err[256];
    lf_model_params mp = lf_model_default_params();
    mp.mode = LF_MODE_STREAM;
    lf_model *m;
    cr_assert_eq(lf_model_open(flash, &mp, &m, err, sizeof err), LF_OK, "%s", err);
    lf_model_info in;
    lf_model_get_info(m, &in);
    const uint64_t b = lf_session_min_budget(m, NULL) + in.streamed_bytes / 4;
    lf_model_close(m);
    return b;
}

static const char *const k_tiny[] = {"tiny-llama3", "tiny-qwen2", "tiny-qwen3", "tiny-mixtral", "tiny-qwen3moe"};

/* ---- tests --------------------------------------------------------------- */

/* Each architecture's logits, position by position, against the reference:
 * F32 weights and KV cache, so only the summation order differs. Batched
 * evaluation gives the same last row. */
Test(arch, forward_pass_matches_the_reference) {
    const lf_token toks[] = {1, 300, 17, 42, 499, 7, 7, 256};
    const uint32_t n = sizeof toks / sizeof *toks;
    for (size_t a = 0; a < LF_ARRAY_LEN(k_tiny); a++) {
        const char *path = tmp_path("ref");
        synth(path, k_tiny[a], NULL);
        ref_model r;
        ref_open(&r, path);
        float *want = malloc((size_t)n * r.n_vocab * sizeof(float)), *got = malloc((size_t)n * r.n_vocab * sizeof(float));
        ref_forward(&r, toks, n, want);
        const run_opts ram = {.mode = LF_MODE_RAM, .kv = LF_KV_F32};
        cr_assert_eq(run_logits(path, &ram, toks, n, got), r.n_vocab);
        for (uint32_t t = 0; t < n; t++) {
            const double e = rel_diff(got + (uint64_t)t * r.n_vocab, want + (uint64_t)t * r.n_vocab, r.n_vocab);
            cr_assert_lt(e, 1e-5, "%s: position %u differs from the reference by %g", k_tiny[a], t, e);
        }
        const run_opts batch = {.mode = LF_MODE_RAM, .kv = LF_KV_F32, .n_batch = n};
        run_logits(path, &batch, toks, n, got);
        const double e = rel_diff(got + (uint64_t)(n - 1) * r.n_vocab, want + (uint64_t)(n - 1) * r.n_vocab, r.n_vocab);
        cr_assert_lt(e, 1e-5, "%s: the batched last row differs from the reference by %g", k_tiny[a], e);
        /* the feature matters: the reference without it disagrees */
        if (strcmp(k_tiny[a], "tiny-llama3") != 0) {
            r.neox = !r.neox;
            ref_forward(&r, toks, n, want);
            cr_assert_gt(rel_diff(got + (uint64_t)(n - 1) * r.n_vocab, want + (uint64_t)(n - 1) * r.n_vocab, r.n_vocab),
                         1e-3, "%s: the rotation style made no difference: the test cannot see it", k_tiny[a]);
        }
        free(want);
        free(got);
        ref_close(&r);
        unlink(path);
    }
}

/* Every architecture converts to a flash file and streams: the same logits
 * as the source GGUF (F32 bundles with keep; the bundle kernel sums in
 * another order), in stream mode with everything cached and under a budget
 * that holds a fraction of the FFN. */
Test(arch, flash_files_and_streaming_agree_with_the_source) {
    const lf_token toks[] = {1, 300, 17, 42, 499, 7};
    const uint32_t n = sizeof toks / sizeof *toks;
    for (size_t a = 0; a < LF_ARRAY_LEN(k_tiny); a++) {
        const char *src = tmp_path("src"), *flash = tmp_path("flash");
        synth(src, k_tiny[a], NULL);
        lf_convert_params cp = lf_convert_default_params();
        cp.force = true;
        char err[256];
        cr_assert_eq(lf_convert(src, flash, &cp, NULL, err, sizeof err), LF_OK, "%s: %s", k_tiny[a], err);
        const uint32_t nv = 512;
        float *want = malloc(n * nv * sizeof(float)), *got = malloc(n * nv * sizeof(float));
        const run_opts ram = {.mode = LF_MODE_RAM, .kv = LF_KV_F32};
        run_logits(src, &ram, toks, n, want);
        const run_opts modes[] = {{.mode = LF_MODE_STREAM, .kv = LF_KV_F32},
                                  {.mode = LF_MODE_STREAM, .kv = LF_KV_F32, .budget = quarter_ffn_budget(flash)},
                                  {.mode = LF_MODE_MMAP, .kv = LF_KV_F32}};
        for (size_t k = 0; k < LF_ARRAY_LEN(modes); k++) {
            run_logits(flash, &modes[k], toks, n, got);
            const double e = rel_diff(got, want, (uint64_t)n * nv);
            cr_assert_lt(e, 1e-5, "%s, mode %d budget %llu: flash logits differ from the source by %g", k_tiny[a],
                         modes[k].mode, (unsigned long long)modes[k].budget, e);
        }
        free(want);
        free(got);
        unlink(src);
        unlink(flash);
    }
}

/* A Qwen3-architecture and a Llama-3.1-style model with the real
 * vocabularies (151,669 and 128,256 tokens): a prompt tokenized by the real
 * tokenizer runs dense and streamed under a budget with the same greedy
 * output, and the flash file (keep, F32) gives the source's logits. */
Test(arch, real_vocabularies_run_dense_streamed_and_flash) {
    require_shared();
    const struct {
        const char *preset, *vocab;
    } cases[] = {{"tiny-qwen3", "vocab/ggml-vocab-qwen3.gguf"}, {"tiny-llama3", "vocab/ggml-vocab-llama3.gguf"}};
    for (size_t c = 0; c < LF_ARRAY_LEN(cases); c++) {
        const char *src = tmp_path("vsrc"), *flash = tmp_path("vflash");
        synth(src, cases[c].preset, shared_path(cases[c].vocab));
        lf_convert_params cp = lf_convert_default_params();
        cp.force = true;
        char err[256];
        cr_assert_eq(lf_convert(src, flash, &cp, NULL, err, sizeof err), LF_OK, "%s", err);
        lf_vocab *v;
        cr_assert_eq(lf_vocab_open(src, &v, err, sizeof err), LF_OK, "%s", err);
        lf_token toks[64];
        size_t n = 0;
        const char *text = "Hello, world! Streaming 128k vocabularies.";
        cr_assert_eq(lf_vocab_tokenize(v, text, strlen(text), LF_TOKENIZE_ADD_BOS, toks, 64, &n), LF_OK);
        cr_assert_gt(n, 4);
        const uint32_t nv = lf_vocab_n_tokens(v);
        cr_assert_gt(nv, 128000);
        lf_vocab_close(v);
        float *want = malloc(nv * n * sizeof(float)), *got = malloc(nv * n * sizeof(float));
        const run_opts ram = {.mode = LF_MODE_RAM, .kv = LF_KV_F32}, stream = {.mode = LF_MODE_STREAM, .kv = LF_KV_F32};
        cr_assert_eq(run_logits(src, &ram, toks, (uint32_t)n, want), nv);
        run_logits(flash, &stream, toks, (uint32_t)n, got);
        const double e = rel_diff(got, want, (uint64_t)n * nv);
        cr_assert_lt(e, 1e-5, "%s: flash logits differ from the source by %g", cases[c].preset, e);
        lf_token dense[12], streamed[12];
        const run_opts dense_f16 = {.mode = LF_MODE_RAM}, capped = {.mode = LF_MODE_STREAM, .budget = quarter_ffn_budget(flash)};
        run_greedy(src, &dense_f16, toks, (uint32_t)n, 12, dense);
        run_greedy(flash, &capped, toks, (uint32_t)n, 12, streamed);
        cr_assert_eq(memcmp(dense, streamed, sizeof dense), 0, "%s: greedy output differs dense / streamed",
                     cases[c].preset);
        free(want);
        free(got);
        unlink(src);
        unlink(flash);
    }
}

/* What cannot run is refused, naming the key or tensor. */
Test(arch, unsupported_architectures_and_features_are_named) {
    const char *path = tmp_path("bad");
    synth(path, "tiny-qwen2", NULL);
    size_t len = 0;
    char *data = slurp(path, &len);
    /* qwen2 -> qwen9: an unknown architecture */
    char *at = memmem(data, len, "qwen2", 5);
    cr_assert_not_null(at);
    at[4] = '9';
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
    lf_model *m = NULL;
    char err[512];
    cr_assert_eq(lf_model_open(path, NULL, &m, err, sizeof err), LF_E_UNSUPPORTED);
    cr_assert(strstr(err, "general.architecture") && strstr(err, "qwen9"), "%s", err);
    lf_convert_params cp = lf_convert_default_params();
    cr_assert_eq(lf_convert(path, tmp_path("badflash"), &cp, NULL, err, sizeof err), LF_E_UNSUPPORTED);
    cr_assert(strstr(err, "qwen9"), "%s", err);
    free(data);
    /* a qwen3 file whose Q norms are missing */
    synth(path, "tiny-qwen3", NULL);
    data = slurp(path, &len);
    at = memmem(data, len, "blk.1.attn_q_norm.weight", 24);
    cr_assert_not_null(at);
    memcpy(at, "blk.1.attn_x_norm.weight", 24);
    f = fopen(path, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
    cr_assert_neq(lf_model_open(path, NULL, &m, err, sizeof err), LF_OK);
    cr_assert(strstr(err, "attn_x_norm") || strstr(err, "attn_q_norm"), "%s", err);
    free(data);
    unlink(path);
}

/* ---- mixture-of-experts variants ----------------------------------------- */

typedef enum edit_kind { EDIT_U32, EDIT_F32, EDIT_FALSE, EDIT_DROP, EDIT_ARCH, EDIT_TENSOR } edit_kind;

typedef struct gguf_edit {
    edit_kind kind;
    const char *key;   /* the key set or dropped; EDIT_ARCH: the new architecture; EDIT_TENSOR: a tensor's name */
    const char *to;    /* EDIT_TENSOR: its new name */
    double value;
} gguf_edit;

/* src with one edit, written to dst (tensor data copied as it is). */
static void rewrite_gguf(const char *src, const char *dst, const gguf_edit *e) {
    lf_err err = {{0}};
    lf_gguf *g;
    cr_assert_eq(lf__gguf_read_file(src, &g, &err), LF_OK, "%s", err.msg);
    lf_gguf_writer *w;
    cr_assert_eq(lf__gguf_writer_create(g->alignment, &w), LF_OK);
    const char *skip = e->kind == EDIT_ARCH ? "general.architecture" : e->kind == EDIT_TENSOR ? NULL : e->key;
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (!skip || !lf__gguf_str_eq(g->kv[i].key, skip)) cr_assert_eq(lf__gguf_writer_copy_kv(w, &g->kv[i]), LF_OK);
    if (e->kind == EDIT_U32) cr_assert_eq(lf__gguf_writer_set_u32(w, e->key, (uint32_t)e->value), LF_OK);
    if (e->kind == EDIT_F32) cr_assert_eq(lf__gguf_writer_set_f32(w, e->key, (float)e->value), LF_OK);
    if (e->kind == EDIT_FALSE) cr_assert_eq(lf__gguf_writer_set_bool(w, e->key, false), LF_OK);
    if (e->kind == EDIT_ARCH) cr_assert_eq(lf__gguf_writer_set_str(w, "general.architecture", e->key), LF_OK);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const lf_gguf_tensor *t = &g->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        const char *as = e->kind == EDIT_TENSOR && strcmp(name, e->key) == 0 ? e->to : name;
        cr_assert_eq(lf__gguf_writer_add_tensor(w, as, t->type, t->n_dims, t->ne, NULL), LF_OK);
    }
    const int in = open(src, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert(in >= 0 && out >= 0);
    cr_assert_eq(lf__gguf_writer_write_header(w, out, &err), LF_OK, "%s", err.msg);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const lf_gguf_tensor *t = &g->tensors[i];
        void *buf = malloc(t->nbytes);
        cr_assert_eq(pread(in, buf, t->nbytes, (off_t)t->file_offset), (ssize_t)t->nbytes);
        cr_assert_eq(lf__gguf_writer_write_data(w, out, buf, t->nbytes, &err), LF_OK, "%s", err.msg);
        free(buf);
    }
    cr_assert_eq(lf__gguf_writer_finish(w, &err), LF_OK, "%s", err.msg);
    lf__gguf_writer_destroy(w);
    lf__gguf_free(g);
    close(in);
    close(out);
}

/* Every way a mixture of experts can route or be laid out that this
 * layer would compute wrongly is refused by the model and by convert,
 * naming the key (or tensor). */
Test(arch, unsupported_moe_variants_name_the_key) {
    char mix[256], q3m[256], bad[256], badflash[256]; /* tmp_path's buffers rotate */
    snprintf(mix, sizeof mix, "%s", tmp_path("mix"));
    snprintf(q3m, sizeof q3m, "%s", tmp_path("q3m"));
    snprintf(bad, sizeof bad, "%s", tmp_path("moebad"));
    snprintf(badflash, sizeof badflash, "%s", tmp_path("moebadflash"));
    synth(mix, "tiny-mixtral", NULL);
    synth(q3m, "tiny-qwen3moe", NULL);
    const struct {
        const char *src;
        gguf_edit e;
        const char *needle;
    } cases[] = {
        {mix, {EDIT_U32, "llama.expert_shared_count", NULL, 2}, "llama.expert_shared_count"},
        {mix, {EDIT_U32, "llama.expert_gating_func", NULL, 2}, "llama.expert_gating_func"},
        {mix, {EDIT_F32, "llama.expert_weights_scale", NULL, 2.5}, "llama.expert_weights_scale"},
        {mix, {EDIT_FALSE, "llama.expert_weights_norm", NULL, 0}, "llama.expert_weights_norm"},
        {mix, {EDIT_U32, "llama.expert_group_count", NULL, 4}, "llama.expert_group_count"},
        {mix, {EDIT_U32, "llama.leading_dense_block_count", NULL, 1}, "llama.leading_dense_block_count"},
        {mix, {EDIT_U32, "llama.expert_used_count", NULL, 9}, "llama.expert_used_count"},
        {mix, {EDIT_DROP, "llama.expert_used_count", NULL, 0}, "llama.expert_used_count"},
        {mix, {EDIT_TENSOR, "blk.1.ffn_up_exps.weight", "blk.1.ffn_up_shexp.weight", 0}, "blk.1.ffn_up_shexp.weight"},
        {q3m, {EDIT_ARCH, "qwen2moe", NULL, 0}, "qwen2moe"},
        {q3m, {EDIT_DROP, "qwen3moe.expert_count", NULL, 0}, "qwen3moe.expert_count"},
    };
    for (size_t i = 0; i < LF_ARRAY_LEN(cases); i++) {
        rewrite_gguf(cases[i].src, bad, &cases[i].e);
        lf_model *m = NULL;
        char err[512] = "";
        const lf_status st = lf_model_open(bad, NULL, &m, err, sizeof err);
        cr_assert(st == LF_E_UNSUPPORTED || st == LF_E_MODEL, "case %zu opened (%d)", i, st);
        cr_assert_null(m);
        cr_assert_not_null(strstr(err, cases[i].needle), "case %zu: '%s' does not name %s", i, err, cases[i].needle);
        if (cases[i].e.kind == EDIT_TENSOR) continue; /* convert bundles what it finds: the model names the tensor */
        lf_convert_params cp = lf_convert_default_params();
        cp.force = true;
        err[0] = '\0';
        cr_assert_neq(lf_convert(bad, badflash, &cp, NULL, err, sizeof err), LF_OK, "case %zu converted", i);
        cr_assert_not_null(strstr(err, cases[i].needle), "case %zu: convert says '%s'", i, err);
    }
    /* experts are grouped by expert, never otherwise */
    lf_convert_params cp = lf_convert_default_params();
    cp.compression = LF_COMPRESS_ZSTD;
    cp.group = 16;
    cp.force = true;
    char err[512];
    cr_assert_eq(lf_convert(mix, badflash, &cp, NULL, err, sizeof err), LF_E_INVALID_ARG);
    cr_assert_not_null(strstr(err, "grouped by expert"), "%s", err);
    unlink(mix);
    unlink(q3m);
    unlink(bad);
}
