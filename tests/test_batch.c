/* test_batch.c - prompts evaluated in batches give what token-by-token
 * evaluation gives: the last token's logits within float tolerance, and the
 * same greedy continuation, for batch sizes 1, 7, 32 and 512, on the real
 * model in dense (ram and mmap) and stream modes, and on a synthetic Q4_0
 * model whose repacked weights go through the batched x8 kernels. */
#include <criterion/criterion.h>

#include "llmflash.h"
#include "test_support.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#define PROMPT_TOKENS 530 /* more than the largest batch: it is split */
#define CONTINUE 16

static const uint32_t k_batches[] = {1, 7, 32, 512};

/* The prompt: the start of TinyStories' validation excerpt, as tokens. */
static size_t prompt_tokens(lf_model *m, lf_token *out) {
    size_t len, n = 0;
    char *text = slurp(shared_path("data/tinystories-valid-excerpt.txt"), &len);
    cr_assert_not_null(text);
    const size_t cap = 8 * PROMPT_TOKENS;
    lf_token *all = malloc(cap * sizeof *all);
    cr_assert_eq(lf_tokenize(m, text, len < 6000 ? len : 6000, true, all, cap, &n), LF_OK);
    cr_assert_geq(n, PROMPT_TOKENS, "the excerpt gives only %zu tokens", n);
    memcpy(out, all, PROMPT_TOKENS * sizeof *out);
    free(all);
    free(text);
    return PROMPT_TOKENS;
}

typedef struct run_result {
    float *logits;
    lf_token cont[CONTINUE];
} run_result;

/* The prompt through one session with batch size nb and a KV cache of
 * type kv, then a greedy continuation one token at a time. */
static run_result run_kv(lf_model *m, uint32_t nb, lf_kv_type kv) {
    lf_session_params sp = lf_session_default_params();
    sp.n_batch = nb;
    sp.kv_type = kv;
    sp.n_ctx = PROMPT_TOKENS + CONTINUE + 8;
    lf_session *s;
    char err[256];
    cr_assert_eq(lf_session_create(m, &sp, &s, err, sizeof err), LF_OK, "%s", err);
    lf_token toks[PROMPT_TOKENS];
    prompt_tokens(m, toks);
    cr_assert_eq(lf_session_eval(s, toks, PROMPT_TOKENS), LF_OK, "%s", lf_session_errmsg(s));
    cr_assert_eq(lf_session_position(s), PROMPT_TOKENS);
    lf_model_info in;
    lf_model_get_info(m, &in);
    run_result r = {.logits = malloc(in.n_vocab * sizeof(float))};
    memcpy(r.logits, lf_session_logits(s), in.n_vocab * sizeof(float));
    for (int i = 0; i < CONTINUE; i++) {
        const float *lg = lf_session_logits(s);
        lf_token best = 0;
        for (uint32_t v = 1; v < in.n_vocab; v++)
            if (lg[v] > lg[best]) best = (lf_token)v;
        r.cont[i] = best;
        cr_assert_eq(lf_session_eval(s, &best, 1), LF_OK, "%s", lf_session_errmsg(s));
    }
    lf_session_destroy(s);
    return r;
}

static run_result run(lf_model *m, uint32_t nb) { return run_kv(m, nb, LF_KV_F16); }

/* The relative RMS difference of two logit vectors. */
static double logits_diff(const float *a, const float *b, uint32_t n) {
    double diff = 0, norm = 0;
    for (uint32_t v = 0; v < n; v++) {
        diff += ((double)a[v] - b[v]) * ((double)a[v] - b[v]);
        norm += (double)b[v] * b[v];
    }
    cr_assert(norm > 0);
    return sqrt(diff / norm);
}

static lf_model *open_in(const char *path, lf_mode mode) {
    lf_model_params mp = lf_model_default_params();
    mp.mode = mode;
    mp.n_threads = 2;
    lf_model *m;
    char err[256];
    cr_assert_eq(lf_model_open(path, &mp, &m, err, sizeof err), LF_OK, "%s: %s", path, err);
    return m;
}

static void batches_match_tokens(const char *path, lf_mode mode, const char *label) {
    lf_model *m = open_in(path, mode);
    lf_model_info in;
    lf_model_get_info(m, &in);
    run_result ref = run(m, 1);
    double ref_norm = 0;
    for (uint32_t v = 0; v < in.n_vocab; v++) ref_norm += (double)ref.logits[v] * ref.logits[v];
    cr_assert(ref_norm > 0);
    for (size_t b = 1; b < sizeof k_batches / sizeof *k_batches; b++) {
        run_result got = run(m, k_batches[b]);
        double diff = 0, worst = 0;
        for (uint32_t v = 0; v < in.n_vocab; v++) {
            const double e = fabs((double)got.logits[v] - ref.logits[v]);
            diff += e * e;
            worst = fmax(worst, e);
        }
        cr_assert(sqrt(diff / ref_norm) < 1e-4, "%s batch %u: logits differ from token by token by %g (largest %g)",
                  label, k_batches[b], sqrt(diff / ref_norm), worst);
        cr_assert_eq(memcmp(got.cont, ref.cont, sizeof ref.cont), 0, "%s batch %u: the greedy continuation differs",
                     label, k_batches[b]);
        free(got.logits);
    }
    free(ref.logits);
    lf_model_close(m);
}

static void need_shared(void) { require_shared(); }
TestSuite(batch, .init = need_shared, .timeout = 240);

Test(batch, dense_ram_batches_equal_tokens) {
    batches_match_tokens(shared_path("models/stories260K.gguf"), LF_MODE_RAM, "ram");
}

Test(batch, dense_mmap_batches_equal_tokens) {
    batches_match_tokens(shared_path("models/stories260K-relu80.gguf"), LF_MODE_MMAP, "mmap");
}

Test(batch, stream_batches_equal_tokens) {
    char out[128];
    snprintf(out, sizeof out, "/tmp/lf_test_batch_%d.flash.gguf", (int)getpid());
    lf_convert_params p = lf_convert_default_params();
    p.force = true;
    char err[256];
    cr_assert_eq(lf_convert(shared_path("models/stories260K-relu80.gguf"), out, &p, NULL, err, sizeof err), LF_OK, "%s", err);
    batches_match_tokens(out, LF_MODE_STREAM, "stream");
    unlink(out);
}

/* A small synthetic model of a quantized type with the real model's
 * tokenizer, so prompts are real text. */
static lf_synth_params small_synth(uint32_t type) {
    lf_synth_params p = lf_synth_default_params();
    p.n_embd = 128;
    p.n_layer = 2;
    p.n_ff = 352;
    p.n_head = 4;
    p.n_head_kv = 2;
    p.type = type;
    p.tokenizer_from = shared_path("models/stories260K.gguf");
    p.force = true;
    return p;
}

/* Q4_0 weights repacked in ram mode: batches go through gemm_x8 with many
 * tokens at once. The tokenizer is the real model's, so the prompt is real
 * text. */
Test(batch, repacked_q4_0_batches_equal_tokens) {
    char out[128];
    snprintf(out, sizeof out, "/tmp/lf_test_batch_q4_%d.gguf", (int)getpid());
    lf_synth_params p = small_synth(LF_TYPE_Q4_0);
    char err[256];
    cr_assert_eq(lf_synth_write(out, &p, err, sizeof err), LF_OK, "%s", err);
    batches_match_tokens(out, LF_MODE_RAM, "q4_0 ram");
    unlink(out);
}

/* Quantized bundles in stream mode: batches of gate and up rows go through
 * the gathered-rows kernels 16 tokens at a time, single tokens one at a
 * time; gated (SiLU) and plain ReLU FFNs, Q4_0 and Q8_0. */
Test(batch, quantized_stream_batches_equal_tokens) {
    const struct { uint32_t type; lf_activation act; const char *label; } cases[] = {
        {LF_TYPE_Q4_0, LF_ACT_SILU_GATED, "q4_0 silu stream"},
        {LF_TYPE_Q8_0, LF_ACT_SILU_GATED, "q8_0 silu stream"},
        {LF_TYPE_Q4_0, LF_ACT_RELU, "q4_0 plain relu stream"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char src[128], out[128];
        snprintf(src, sizeof src, "/tmp/lf_test_batch_qs_%d.gguf", (int)getpid());
        snprintf(out, sizeof out, "/tmp/lf_test_batch_qs_%d.flash.gguf", (int)getpid());
        lf_synth_params p = small_synth(cases[c].type);
        p.activation = cases[c].act;
        char err[256];
        cr_assert_eq(lf_synth_write(src, &p, err, sizeof err), LF_OK, "%s", err);
        lf_convert_params cp = lf_convert_default_params();
        cp.force = true;
        cr_assert_eq(lf_convert(src, out, &cp, NULL, err, sizeof err), LF_OK, "%s", err);
        batches_match_tokens(out, LF_MODE_STREAM, cases[c].label);
        unlink(src);
        unlink(out);
    }
}

/* A Q8_0 KV cache: batches give what single tokens give (the same rows are
 * stored and the same queries rounded), the logits stay close to an F16
 * cache's but are not its (the cache really holds 8-bit values), and the
 * budget counts 34 bytes per 32 elements. The model's heads have 32 values. */
Test(batch, q8_0_kv_cache_batches_equal_tokens_and_stay_close_to_f16) {
    char out[128];
    snprintf(out, sizeof out, "/tmp/lf_test_batch_kv8_%d.gguf", (int)getpid());
    lf_synth_params p = small_synth(LF_TYPE_Q4_0);
    char err[256];
    cr_assert_eq(lf_synth_write(out, &p, err, sizeof err), LF_OK, "%s", err);
    lf_model *m = open_in(out, LF_MODE_RAM);
    lf_model_info in;
    lf_model_get_info(m, &in);
    run_result f16 = run_kv(m, 1, LF_KV_F16), q8 = run_kv(m, 1, LF_KV_Q8_0), q8b = run_kv(m, 32, LF_KV_Q8_0);
    const double batch_diff = logits_diff(q8b.logits, q8.logits, in.n_vocab);
    cr_assert(batch_diff < 1e-4, "q8_0 KV: a batch of 32 differs from token by token by %g", batch_diff);
    cr_assert_eq(memcmp(q8b.cont, q8.cont, sizeof q8.cont), 0, "q8_0 KV: the batch's greedy continuation differs");
    const double vs_f16 = logits_diff(q8.logits, f16.logits, in.n_vocab);
    cr_assert(vs_f16 > 0 && vs_f16 < 0.05, "q8_0 KV against f16: logits differ by %g", vs_f16);
    lf_session_params sp = lf_session_default_params();
    sp.n_ctx = 64;
    sp.kv_type = LF_KV_Q8_0;
    lf_session *s;
    cr_assert_eq(lf_session_create(m, &sp, &s, err, sizeof err), LF_OK, "%s", err);
    lf_session_stats ss;
    lf_session_get_stats(s, &ss);
    const uint64_t kv_dim = (uint64_t)in.n_head_kv * (in.n_embd / in.n_head);
    cr_assert_eq(ss.budget_bytes[1], 2ull * in.n_layer * 64 * (kv_dim / 32) * 34);
    lf_session_destroy(s);
    free(f16.logits), free(q8.logits), free(q8b.logits);
    lf_model_close(m);
    unlink(out);
}
