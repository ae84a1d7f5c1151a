/* test_api.c - the whole-model API an engine uses beyond generate: rewinding
 * the KV cache, the abort callback, thread pools shared or brought by the
 * engine, per-session logging, and the FFN hook (lf_ffn_*) against the
 * session's own FFN, under a budget and with a mask hook of the engine's. */
#include <criterion/criterion.h>

#include "llmflash.h"
#include "test_support.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

static void need_shared(void) { require_shared(); }
static const char *flash_file(void);
static char flash_path[64];
static void drop_flash(void) {
    if (flash_path[0]) unlink(flash_path);
}
TestSuite(api, .init = need_shared, .fini = drop_flash);

static const lf_token prompt[] = {1, 403, 407, 261, 378, 284, 300, 349};
#define N_PROMPT (sizeof prompt / sizeof prompt[0])

static lf_model *open_model(const char *path, uint64_t budget) {
    lf_model_params mp = lf_model_default_params();
    mp.dram_budget = budget;
    lf_model *m;
    char err[512];
    cr_assert_eq(lf_model_open(path, &mp, &m, err, sizeof err), LF_OK, "%s", err);
    return m;
}

static lf_session *open_session(lf_model *m, const lf_session_params *sp) {
    lf_session *s;
    char err[512];
    cr_assert_eq(lf_session_create(m, sp, &s, err, sizeof err), LF_OK, "%s", err);
    return s;
}

static void eval_all(lf_session *s, const lf_token *t, size_t n, float *logits, uint32_t n_vocab) {
    cr_assert_eq(lf_session_eval(s, t, n), LF_OK, "%s", lf_session_errmsg(s));
    memcpy(logits, lf_session_logits(s), n_vocab * sizeof *logits);
}

/* stories260K as a flash file, converted once per test (each runs in a process of its own) */
static const char *flash_file(void) {
    char *path = flash_path;
    if (!path[0]) {
        snprintf(path, sizeof flash_path, "/tmp/lf_test_api_%d.gguf", (int)getpid());
        lf_convert_params cp = lf_convert_default_params();
        cp.force = true;
        char err[512];
        cr_assert_eq(lf_convert(shared_path("models/stories260K.gguf"), path, &cp, NULL, err, sizeof err), LF_OK, "%s",
                     err);
    }
    return path;
}

Test(api, truncate_rewinds_to_the_logits_of_a_shorter_run) {
    lf_model *m = open_model(shared_path("models/stories260K.gguf"), 0);
    const uint32_t V = lf_vocab_size(m);
    float *want = malloc(V * sizeof *want), *got = malloc(V * sizeof *got);
    lf_session *s = open_session(m, NULL);
    eval_all(s, prompt, 5, want, V);
    lf_session_reset(s);
    /* a longer, different sequence, rewound to 4 tokens: the 5th is evaluated again */
    const lf_token other[] = {1, 403, 407, 261, 500, 501, 502};
    eval_all(s, other, 7, got, V);
    cr_assert_eq(lf_session_truncate(s, 8), LF_E_INVALID_ARG, "beyond the position");
    cr_assert_eq(lf_session_position(s), 7, "unchanged by a refused truncate");
    cr_assert_eq(lf_session_truncate(s, 4), LF_OK);
    cr_assert_eq(lf_session_position(s), 4);
    cr_assert_null(lf_session_logits(s), "no logits after a rewind");
    eval_all(s, prompt + 4, 1, got, V);
    for (uint32_t i = 0; i < V; i++) cr_assert_float_eq(got[i], want[i], 1e-5f, "logit %u: %g vs %g", i, got[i], want[i]);
    cr_assert_eq(lf_session_truncate(s, 0), LF_OK);
    cr_assert_eq(lf_session_truncate(NULL, 0), LF_E_INVALID_ARG);
    lf_session_destroy(s);
    lf_model_close(m);
    free(want);
    free(got);
}

typedef struct abort_state {
    atomic_int calls;
    int stop_at; /* the call that says stop (counting from 1), 0: never */
} abort_state;

static bool abort_at(void *user) {
    abort_state *a = user;
    return atomic_fetch_add(&a->calls, 1) + 1 == a->stop_at;
}

Test(api, abort_callback_stops_between_layers_and_the_batch_can_be_retried) {
    lf_model *m = open_model(flash_file(), 0);
    lf_model_info info;
    lf_model_get_info(m, &info);
    const uint32_t V = info.n_vocab;
    float *want = malloc(V * sizeof *want), *got = malloc(V * sizeof *got);
    lf_session *ref = open_session(m, NULL);
    eval_all(ref, prompt, N_PROMPT, want, V);
    lf_session_destroy(ref);

    abort_state a = {0};
    lf_session_params sp = lf_session_default_params();
    sp.abort_cb = abort_at;
    sp.abort_user = &a;
    sp.n_batch = 4; /* two batches */
    lf_session *s = open_session(m, &sp);
    a.stop_at = (int)info.n_layer + 3; /* the second batch, before its third layer */
    cr_assert_eq(lf_session_eval(s, prompt, N_PROMPT), LF_E_INTERRUPTED);
    cr_assert(strstr(lf_session_errmsg(s), "abort callback"), "%s", lf_session_errmsg(s));
    cr_assert_eq(lf_session_position(s), 4, "the first batch stays evaluated");
    cr_assert_null(lf_session_logits(s));
    cr_assert_eq(a.calls, (int)info.n_layer + 3, "checked before every layer, and no more after stopping");
    a.stop_at = 0;
    eval_all(s, prompt + 4, N_PROMPT - 4, got, V);
    for (uint32_t i = 0; i < V; i++) cr_assert_float_eq(got[i], want[i], 1e-5f, "logit %u after the retry", i);
    lf_session_destroy(s);
    lf_model_close(m);
    free(want);
    free(got);
}

/* An engine's own pool: plain pthreads started per job (slow, but only
 * its correctness matters here), counting the jobs it ran. */
typedef struct engine_pool {
    int n;
    atomic_int jobs;
} engine_pool;

typedef struct part {
    lf_parallel_fn fn;
    void *ctx;
    int i, n;
} part;

static void *run_part(void *p) {
    part *q = p;
    q->fn(q->ctx, q->i, q->n);
    return NULL;
}

static int engine_n(void *user) { return ((engine_pool *)user)->n; }

static void engine_run(void *user, lf_parallel_fn fn, void *ctx) {
    engine_pool *e = user;
    atomic_fetch_add(&e->jobs, 1);
    pthread_t th[8];
    part parts[8];
    for (int i = 1; i < e->n; i++) {
        parts[i] = (part){fn, ctx, i, e->n};
        pthread_create(&th[i], NULL, run_part, &parts[i]);
    }
    fn(ctx, 0, e->n);
    for (int i = 1; i < e->n; i++) pthread_join(th[i], NULL);
}

Test(api, sessions_compute_on_a_shared_or_an_engines_pool_with_the_same_logits) {
    lf_model *m = open_model(flash_file(), 0);
    const uint32_t V = lf_vocab_size(m);
    float *want = malloc(V * sizeof *want), *got = malloc(V * sizeof *got);
    lf_session_params sp = lf_session_default_params();
    sp.n_threads = 2;
    lf_session *s = open_session(m, &sp);
    eval_all(s, prompt, N_PROMPT, want, V);
    lf_session_destroy(s);

    lf_threadpool *shared;
    cr_assert_eq(lf_threadpool_create(2, &shared), LF_OK);
    cr_assert_eq(lf_threadpool_size(shared), 2);
    sp.threadpool = shared;
    sp.n_threads = 7; /* ignored: the pool's size counts */
    lf_session *a = open_session(m, &sp), *b = open_session(m, &sp);
    eval_all(a, prompt, N_PROMPT, got, V);
    for (uint32_t i = 0; i < V; i++) cr_assert_float_eq(got[i], want[i], 1e-5f, "shared pool, session a: logit %u", i);
    eval_all(b, prompt, N_PROMPT, got, V);
    for (uint32_t i = 0; i < V; i++) cr_assert_float_eq(got[i], want[i], 1e-5f, "shared pool, session b: logit %u", i);
    lf_session_destroy(a);
    lf_session_destroy(b);
    lf_threadpool_destroy(shared);

    engine_pool e = {.n = 3};
    atomic_init(&e.jobs, 0);
    const lf_threadpool_ops ops = {engine_n, engine_run};
    lf_threadpool *wrapped;
    cr_assert_eq(lf_threadpool_wrap(&ops, &e, &wrapped), LF_OK);
    sp.threadpool = wrapped;
    s = open_session(m, &sp);
    eval_all(s, prompt, N_PROMPT, got, V);
    for (uint32_t i = 0; i < V; i++) cr_assert_float_eq(got[i], want[i], 1e-5f, "engine's pool: logit %u", i);
    cr_assert_gt(e.jobs, 0, "the engine's pool ran the jobs");
    lf_session_destroy(s);
    lf_threadpool_destroy(wrapped);

    const lf_threadpool_ops broken = {NULL, engine_run};
    cr_assert_eq(lf_threadpool_wrap(&broken, &e, &wrapped), LF_E_INVALID_ARG);
    cr_assert_null(wrapped);
    e.n = 0;
    cr_assert_eq(lf_threadpool_wrap(&ops, &e, &wrapped), LF_E_INVALID_ARG, "a pool of no threads");
    cr_assert_eq(lf_threadpool_create(-1, &wrapped), LF_E_INVALID_ARG);
    lf_model_close(m);
    free(want);
    free(got);
}

typedef struct log_seen {
    int n;
    char last[256];
} log_seen;

static void log_to(void *user, lf_log_level level, const char *msg) {
    (void)level;
    log_seen *l = user;
    l->n++;
    snprintf(l->last, sizeof l->last, "%s", msg);
}

Test(api, a_session_logs_to_its_own_callback) {
    lf_model *m = open_model(shared_path("models/stories260K.gguf"), 0);
    lf_model_info info;
    lf_model_get_info(m, &info);
    log_seen seen = {0};
    lf_session_params sp = lf_session_default_params();
    sp.log = log_to;
    sp.log_user = &seen;
    sp.n_ctx = info.n_ctx_train * 2; /* longer than trained: a warning */
    lf_session *s = open_session(m, &sp);
    cr_assert_eq(seen.n, 1, "%d messages", seen.n);
    cr_assert(strstr(seen.last, "longer than"), "%s", seen.last);
    lf_session_destroy(s);
    lf_model_close(m);
}

/* ---- the FFN hook ---------------------------------------------------------- */

/* Every unit but the odd ones: an engine's own (bad) predictor. */
static uint32_t even_units(void *user, uint32_t layer, const float *x, size_t n, uint32_t *units) {
    (void)layer, (void)x, (void)n;
    const uint32_t n_units = *(const uint32_t *)user;
    uint32_t k = 0;
    for (uint32_t u = 0; u < n_units; u += 2) units[k++] = u;
    return k;
}

static uint32_t unordered_units(void *user, uint32_t layer, const float *x, size_t n, uint32_t *units) {
    (void)user, (void)layer, (void)x, (void)n;
    units[0] = 5;
    units[1] = 3;
    return 2;
}

/* One layer's FFN output for random inputs through a hook with params p. */
static void hook_outputs(lf_model *m, const lf_ffn_params *p, uint32_t passes, float *out, lf_session_stats *st) {
    lf_model_info info;
    lf_model_get_info(m, &info);
    lf_ffn *f;
    char err[512];
    cr_assert_eq(lf_ffn_create(m, p, &f, err, sizeof err), LF_OK, "%s", err);
    const uint32_t d = info.n_embd;
    float *x = malloc(2 * d * sizeof *x);
    srand(7);
    for (uint32_t pass = 0; pass < passes; pass++)
        for (uint32_t l = 0; l < info.n_layer; l++) {
            for (uint32_t i = 0; i < 2 * d; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
            if (l + 1 < info.n_layer) cr_assert_eq(lf_ffn_prefetch(f, l + 1, NULL, 2), LF_OK, "%s", lf_ffn_errmsg(f));
            cr_assert_eq(lf_ffn_forward(f, l, x, 2, out + ((uint64_t)pass * info.n_layer + l) * 2 * d), LF_OK, "%s",
                         lf_ffn_errmsg(f));
        }
    cr_assert_eq(lf_ffn_get_stats(f, st), LF_OK);
    cr_assert_eq(st->tokens, 2ull * passes, "each pass over the layers is one batch of 2 tokens");
    cr_assert_eq(st->n_layer, info.n_layer);
    lf_ffn_destroy(f);
    free(x);
}

Test(api, ffn_hook_equals_the_sessions_ffn_dense_and_under_a_budget) {
    /* the whole FFN cached, then a cache of part of it: the same sums
     * (examples/engine_hook checks the hook against the session's text) */
    lf_model *m = open_model(flash_file(), 0);
    lf_model_info info;
    lf_model_get_info(m, &info);
    const uint32_t d = info.n_embd, L = info.n_layer, passes = 12;
    float *dense = malloc((uint64_t)passes * L * 2 * d * sizeof *dense);
    float *tight = malloc((uint64_t)passes * L * 2 * d * sizeof *tight);
    lf_ffn_params p = lf_ffn_default_params();
    p.max_batch = 2;
    lf_session_stats dense_st, tight_st;
    hook_outputs(m, &p, passes, dense, &dense_st);
    lf_model_close(m);

    /* under a budget that caches about a quarter of the FFN */
    m = open_model(flash_file(), (uint64_t)info.resident_bytes + (640u << 10));
    const uint64_t left = lf_model_budget_left(m);
    p.budget_bytes = 1; /* less than its buffers */
    lf_ffn *f;
    char err[512];
    cr_assert_eq(lf_ffn_create(m, &p, &f, err, sizeof err), LF_E_BUDGET);
    cr_assert(strstr(err, "FFN hook") && strstr(err, "needs"), "%s", err);
    cr_assert_null(f);
    p.budget_bytes = 0; /* all that is left */
    hook_outputs(m, &p, passes, tight, &tight_st);
    cr_assert_gt(tight_st.ffn_bytes_read, 2 * dense_st.ffn_bytes_read, "the small cache reads again what it evicted: "
                 "%" PRIu64 " vs %" PRIu64 " bytes", tight_st.ffn_bytes_read, dense_st.ffn_bytes_read);
    cr_assert_gt(tight_st.budget_session, 0);
    cr_assert_eq(lf_model_budget_left(m), left, "the hook gave its budget back");
    for (uint64_t i = 0; i < (uint64_t)passes * L * 2 * d; i++)
        cr_assert_float_eq(tight[i], dense[i], 1e-5f, "element %" PRIu64 ": %g vs %g", i, tight[i], dense[i]);
    lf_model_close(m);
    free(dense);
    free(tight);
}

Test(api, ffn_hook_checks_its_arguments_and_vets_a_mask_hook) {
    lf_model *m = open_model(flash_file(), 0);
    lf_model_info info;
    lf_model_get_info(m, &info);
    const uint32_t d = info.n_embd;
    lf_ffn *f;
    char err[512];
    cr_assert_eq(lf_ffn_create(m, NULL, &f, err, sizeof err), LF_OK, "%s", err);
    const uint32_t n_units = lf_ffn_units(f);
    cr_assert_eq(n_units, info.n_ff);
    cr_assert_eq(lf_ffn_group_size(f), 1);
    float *x = calloc(4 * d, sizeof *x), *y = malloc(4 * d * sizeof *y), *full = malloc(d * sizeof *full);
    for (uint32_t i = 0; i < d; i++) x[i] = sinf((float)i);
    cr_assert_eq(lf_ffn_forward(f, info.n_layer, x, 1, y), LF_E_INVALID_ARG, "layer out of range");
    cr_assert_eq(lf_ffn_forward(f, 0, x, 2, y), LF_E_INVALID_ARG, "beyond max_batch");
    cr_assert(strstr(lf_ffn_errmsg(f), "max_batch"), "%s", lf_ffn_errmsg(f));
    cr_assert_eq(lf_ffn_forward(f, 0, NULL, 1, y), LF_E_INVALID_ARG);
    cr_assert_eq(lf_ffn_forward(f, 0, x, 1, full), LF_OK, "%s", lf_ffn_errmsg(f));
    lf_ffn_destroy(f);

    /* the engine's own mask: the odd neurons are skipped, so the output
     * differs, by exactly their contribution's absence */
    lf_ffn_mask_hook hook = {.needs_input = false, .select = even_units, .user = (void *)&n_units};
    lf_ffn_params p = lf_ffn_default_params();
    p.mask_hook = &hook;
    cr_assert_eq(lf_ffn_create(m, &p, &f, err, sizeof err), LF_OK, "%s", err);
    cr_assert_eq(lf_ffn_prefetch(f, 0, NULL, 1), LF_OK, "a hook that needs no input prefetches without it");
    cr_assert_eq(lf_ffn_forward(f, 0, x, 1, y), LF_OK, "%s", lf_ffn_errmsg(f));
    lf_layer_stats ls;
    cr_assert_eq(lf_ffn_layer_stats(f, 0, &ls), LF_OK);
    cr_assert_eq(ls.neurons_used, (n_units + 1) / 2, "%" PRIu64 " neurons used", ls.neurons_used);
    double diff = 0.0;
    for (uint32_t i = 0; i < d; i++) diff += fabs((double)y[i] - full[i]);
    cr_assert_gt(diff, 1e-4, "half the neurons give another output");
    lf_ffn_destroy(f);

    hook.select = unordered_units;
    cr_assert_eq(lf_ffn_create(m, &p, &f, err, sizeof err), LF_OK, "%s", err);
    cr_assert_eq(lf_ffn_forward(f, 0, x, 1, y), LF_E_INVALID_ARG, "a set out of order is refused");
    cr_assert(strstr(lf_ffn_errmsg(f), "out of order"), "%s", lf_ffn_errmsg(f));
    lf_ffn_destroy(f);
    hook.select = NULL;
    cr_assert_eq(lf_ffn_create(m, &p, &f, err, sizeof err), LF_E_INVALID_ARG, "a hook with no select");
    lf_model_close(m);

    /* a plain GGUF has no streamed FFN */
    m = open_model(shared_path("models/stories260K.gguf"), 0);
    cr_assert_eq(lf_ffn_create(m, NULL, &f, err, sizeof err), LF_E_INVALID_ARG);
    cr_assert(strstr(err, "plain GGUF"), "%s", err);
    lf_model_close(m);
    free(x);
    free(y);
    free(full);
}
