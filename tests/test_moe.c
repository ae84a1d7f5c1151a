/* test_moe.c - mixtures of experts: routing, the expert cache under a
 * budget, the router as lookahead, routing statistics and the pinned hot
 * set, in both tensor layouts (Mixtral's llama, qwen3moe).
 *
 * The forward pass itself is checked against an independent reference in
 * test_arch.c; here the question is whether streaming experts changes what
 * comes out (it must not) and whether the cache and its statistics behave. */
#include <criterion/criterion.h>

#include "llmflash.h"
#include "test_support.h"
#include "../src/model/moe.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

static const char *const k_layouts[] = {"tiny-mixtral", "tiny-qwen3moe"};

static void tmp(char *buf, size_t cap, const char *tag, const char *ext) {
    snprintf(buf, cap, "/tmp/lf_test_moe_%s_%d%s", tag, (int)getpid(), ext);
}

/* A source GGUF and its flash file (F32: every path sums the same values,
 * in different orders only). */
static void make_model(const char *preset, double skew, const char *src, const char *flash) {
    lf_synth_params p = lf_synth_default_params();
    cr_assert_eq(lf_synth_shape_preset(preset, &p), LF_OK);
    p.type = LF_TYPE_F32;
    p.force = true;
    if (skew >= 0) p.routing_skew = skew;
    char err[256];
    cr_assert_eq(lf_synth_write(src, &p, err, sizeof err), LF_OK, "%s", err);
    lf_convert_params cp = lf_convert_default_params();
    cp.force = true;
    cr_assert_eq(lf_convert(src, flash, &cp, NULL, err, sizeof err), LF_OK, "%s", err);
}

typedef struct run_cfg {
    lf_mode mode;
    uint64_t budget;     /* 0: none */
    bool lookahead;
    uint32_t hot;
} run_cfg;

static lf_status open_cfg(const char *path, const run_cfg *c, lf_model **m, lf_session **s, char *err, size_t cap) {
    lf_model_params mp = lf_model_default_params();
    mp.mode = c->mode;
    mp.dram_budget = c->budget;
    *s = NULL;
    lf_status st = lf_model_open(path, &mp, m, err, cap);
    if (st) return st;
    lf_session_params sp = lf_session_default_params();
    sp.kv_type = LF_KV_F32;
    sp.lookahead = c->lookahead;
    sp.hot_experts = c->hot;
    st = lf_session_create(*m, &sp, s, err, cap);
    if (st) {
        lf_model_close(*m);
        *m = NULL;
    }
    return st;
}

/* Greedy continuation of a short prompt: n tokens into out, the stats after. */
static void greedy_run(const char *path, const run_cfg *c, uint32_t n, lf_token *out, lf_session_stats *stats,
                       lf_layer_stats *layer0) {
    lf_model *m;
    lf_session *s;
    char err[512];
    cr_assert_eq(open_cfg(path, c, &m, &s, err, sizeof err), LF_OK, "%s: %s", path, err);
    const lf_token prompt[] = {1, 300, 17, 42, 499, 7};
    cr_assert_eq(lf_session_eval(s, prompt, 6), LF_OK, "%s", lf_session_errmsg(s));
    for (uint32_t i = 0; i < n; i++) {
        const float *lg = lf_session_logits(s);
        lf_token best = 0;
        for (uint32_t v = 1; v < lf_vocab_size(m); v++)
            if (lg[v] > lg[best]) best = (lf_token)v;
        out[i] = best;
        cr_assert_eq(lf_session_eval(s, &best, 1), LF_OK, "%s", lf_session_errmsg(s));
    }
    if (stats) cr_assert_eq(lf_session_get_stats(s, stats), LF_OK);
    if (layer0) cr_assert_eq(lf_session_layer_stats(s, 1, layer0), LF_OK);
    lf_session_destroy(s);
    lf_model_close(m);
}

/* A budget with room for `experts` experts per layer beyond what a session needs. */
static uint64_t budget_for(const char *flash, uint32_t experts) {
    char err[256];
    lf_model_params mp = lf_model_default_params();
    lf_model *m;
    cr_assert_eq(lf_model_open(flash, &mp, &m, err, sizeof err), LF_OK, "%s", err);
    lf_model_info in;
    lf_model_get_info(m, &in);
    /* a slot is the expert's page-rounded records plus its index entries */
    const uint64_t slot = in.bundle_stride + 13;
    const uint64_t b = lf_session_min_budget(m, NULL) + (uint64_t)experts * in.n_layer * slot + 4096;
    lf_model_close(m);
    return b;
}

Test(moe, routing_picks_the_top_k_and_renormalises) {
    const float logits[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 0.0f};
    uint32_t e[3];
    float w[3];
    lf__moe_route(logits, 6, 3, e, w);
    /* descending, the lower index first on a tie */
    cr_assert(e[0] == 1 && e[1] == 3 && e[2] == 4, "routed %u %u %u", e[0], e[1], e[2]);
    const double z = 2 * exp(2.0) + exp(1.0);
    cr_assert_float_eq(w[0], exp(2.0) / z, 1e-6);
    cr_assert_float_eq(w[1], exp(2.0) / z, 1e-6);
    cr_assert_float_eq(w[2], exp(1.0) / z, 1e-6);
    lf__moe_route(logits, 6, 1, e, w);
    cr_assert(e[0] == 1 && w[0] == 1.0f);
}

/* The same greedy text in every way of running the model: the plain GGUF
 * in RAM, the flash file streamed with every expert cached, under budgets
 * that hold one or two experts per layer (of 8 and 16), with the router's
 * lookahead, in mmap mode; and the cache does what the budget says. */
Test(moe, every_mode_and_budget_gives_the_same_text) {
    for (size_t a = 0; a < LF_ARRAY_LEN(k_layouts); a++) {
        char src[128], flash[128];
        tmp(src, sizeof src, "src", ".gguf");
        tmp(flash, sizeof flash, "flash", ".gguf");
        make_model(k_layouts[a], -1, src, flash);
        enum { N = 24 };
        lf_token want[N], got[N];
        greedy_run(src, &(run_cfg){.mode = LF_MODE_RAM}, N, want, NULL, NULL);
        const run_cfg cfgs[] = {
            {.mode = LF_MODE_STREAM},
            {.mode = LF_MODE_STREAM, .budget = budget_for(flash, 1)},
            {.mode = LF_MODE_STREAM, .budget = budget_for(flash, 2), .lookahead = true},
            {.mode = LF_MODE_MMAP},
        };
        for (size_t k = 0; k < LF_ARRAY_LEN(cfgs); k++) {
            lf_session_stats st;
            lf_layer_stats ls;
            greedy_run(flash, &cfgs[k], N, got, cfgs[k].mode == LF_MODE_STREAM ? &st : NULL,
                       cfgs[k].mode == LF_MODE_STREAM ? &ls : NULL);
            cr_assert_eq(memcmp(got, want, sizeof want), 0, "%s, config %zu: the text differs from the dense run",
                         k_layouts[a], k);
            if (cfgs[k].mode != LF_MODE_STREAM) continue;
            lf_model_info in;
            {
                lf_model *m;
                char err[256];
                cr_assert_eq(lf_model_open(flash, NULL, &m, err, sizeof err), LF_OK);
                lf_model_get_info(m, &in);
                lf_model_close(m);
            }
            /* experts are read whole: neurons come in multiples of an expert */
            cr_assert_eq(st.neurons_loaded % in.n_ff, 0, "%s: %llu neurons loaded", k_layouts[a],
                         (unsigned long long)st.neurons_loaded);
            cr_assert_eq(st.neurons_used % in.n_ff, 0);
            /* a token uses n_expert_used experts per layer, a batch at most all of them */
            cr_assert_geq(st.neurons_used, (uint64_t)(N + 1) * in.n_layer * in.n_expert_used * in.n_ff);
            if (!cfgs[k].budget) {
                /* everything cached: each expert is read at most once */
                cr_assert_leq(st.neurons_loaded, (uint64_t)in.n_layer * in.n_expert * in.n_ff);
                cr_assert_eq(ls.cache_slots, in.n_expert);
            } else {
                cr_assert_leq(ls.cache_slots, cfgs[k].lookahead ? 2 : 1, "%s: %u slots under a budget for %s",
                              k_layouts[a], ls.cache_slots, cfgs[k].lookahead ? "2" : "1");
                cr_assert_gt(st.neurons_loaded, st.neurons_used / 4, "%s: a tiny cache must miss often", k_layouts[a]);
            }
            if (cfgs[k].lookahead) {
                /* the next router guessed: some guesses were used, none counted twice */
                cr_assert_gt(ls.ahead_units, 0, "%s: the lookahead read nothing", k_layouts[a]);
                cr_assert_leq(ls.ahead_used, ls.ahead_units);
            }
        }
        unlink(src);
        unlink(flash);
    }
}

/* calibrate counts routings; a session pins each layer's busiest experts,
 * which then serve more of the traffic than an LRU cache of the same size
 * alone. */
Test(moe, routing_statistics_pin_a_hot_set) {
    require_shared();
    char src[128], flash[128], routing[160];
    tmp(src, sizeof src, "hsrc", ".gguf");
    tmp(flash, sizeof flash, "hflash", ".gguf");
    make_model("tiny-qwen3moe", 2.0, src, flash);
    snprintf(routing, sizeof routing, "%s.routing", flash);
    size_t len;
    char *text = slurp(shared_path("data/tinystories-valid-excerpt.txt"), &len);
    cr_assert_not_null(text);
    len = LF_MIN(len, (size_t)4000);
    lf_calibrate_params cp = lf_calibrate_default_params();
    cp.tokens = 600;
    cp.force = true;
    lf_calibrate_stats cs;
    char err[512];
    cr_assert_eq(lf_calibrate(flash, text, len, NULL, &cp, &cs, err, sizeof err), LF_OK, "%s", err);
    cr_assert(cs.routing);
    cr_assert_eq(access(routing, R_OK), 0, "no %s", routing);
    cr_assert_gt(cs.tokens, 64);
    /* a skewed router: the busiest eighth takes more than its eighth */
    cr_assert_gt(cs.routing_hot_share, 0.2, "hot share %g", cs.routing_hot_share);
    /* lookahead and placement are predictor features */
    cp.lookahead = true;
    cr_assert_eq(lf_calibrate(flash, text, len, NULL, &cp, &cs, err, sizeof err), LF_E_UNSUPPORTED);
    free(text);

    enum { N = 48 };
    lf_token want[N], got[N];
    greedy_run(src, &(run_cfg){.mode = LF_MODE_RAM}, N, want, NULL, NULL);
    const uint64_t budget = budget_for(flash, 6);
    lf_session_stats lru, hot;
    lf_layer_stats ls;
    greedy_run(flash, &(run_cfg){.mode = LF_MODE_STREAM, .budget = budget}, N, got, &lru, NULL);
    cr_assert_eq(memcmp(got, want, sizeof want), 0);
    greedy_run(flash, &(run_cfg){.mode = LF_MODE_STREAM, .budget = budget, .hot = 3}, N, got, &hot, &ls);
    cr_assert_eq(memcmp(got, want, sizeof want), 0, "pinning changed the text");
    cr_assert_geq(ls.resident, 3, "the hot set is resident");
    const double r_lru = (double)lru.ffn_bytes_served / (double)(lru.ffn_bytes_served + lru.ffn_bytes_read);
    const double r_hot = (double)hot.ffn_bytes_served / (double)(hot.ffn_bytes_served + hot.ffn_bytes_read);
    cr_log_info("hit rate: LRU %.3f, with 3 hot experts pinned %.3f", r_lru, r_hot);
    cr_assert_geq(r_hot, r_lru - 0.02, "pinning the busiest experts lost hits: %.3f against %.3f", r_hot, r_lru);

    /* what cannot be honoured is refused */
    lf_model *m;
    lf_session *s;
    cr_assert_eq(open_cfg(flash, &(run_cfg){.mode = LF_MODE_STREAM, .budget = budget, .hot = 7}, &m, &s, err, sizeof err),
                 LF_E_BUDGET);
    cr_assert_not_null(strstr(err, "hot experts"), "%s", err);
    cr_assert_eq(open_cfg(flash, &(run_cfg){.mode = LF_MODE_MMAP, .hot = 2}, &m, &s, err, sizeof err), LF_E_INVALID_ARG);
    unlink(routing);
    cr_assert_eq(open_cfg(flash, &(run_cfg){.mode = LF_MODE_STREAM, .hot = 2}, &m, &s, err, sizeof err),
                 LF_E_INVALID_ARG);
    cr_assert_not_null(strstr(err, "routing statistics"), "%s", err);
    unlink(src);
    unlink(flash);
}

/* Masks that assume neurons are refused on experts, by name. */
Test(moe, neuron_masks_are_refused_on_experts) {
    char src[128], flash[128];
    tmp(src, sizeof src, "msrc", ".gguf");
    tmp(flash, sizeof flash, "mflash", ".gguf");
    make_model("tiny-mixtral", -1, src, flash);
    const lf_mask_source masks[] = {LF_MASK_ORACLE, LF_MASK_PREDICTOR};
    for (size_t k = 0; k < LF_ARRAY_LEN(masks); k++) {
        lf_model *m;
        char err[512];
        cr_assert_eq(lf_model_open(flash, NULL, &m, err, sizeof err), LF_OK, "%s", err);
        lf_session_params sp = lf_session_default_params();
        sp.mask = masks[k];
        lf_session *s = NULL;
        cr_assert_eq(lf_session_create(m, &sp, &s, err, sizeof err), LF_E_UNSUPPORTED);
        cr_assert_null(s);
        cr_assert_not_null(strstr(err, "mixture of experts"), "%s", err);
        lf_model_close(m);
    }
    /* hot experts on a dense model */
    char dsrc[128], dflash[128];
    tmp(dsrc, sizeof dsrc, "dsrc", ".gguf");
    tmp(dflash, sizeof dflash, "dflash", ".gguf");
    make_model("tiny-llama3", -1, dsrc, dflash);
    lf_model *m;
    lf_session *s;
    char err[512];
    cr_assert_eq(open_cfg(dflash, &(run_cfg){.mode = LF_MODE_STREAM, .hot = 2}, &m, &s, err, sizeof err),
                 LF_E_INVALID_ARG);
    cr_assert_not_null(strstr(err, "not a mixture of experts"), "%s", err);
    unlink(src), unlink(flash), unlink(dsrc), unlink(dflash);
}

/* synth's routing skew is what it says: the busiest experts win more. */
Test(moe, routing_skew_concentrates_the_routing) {
    require_shared();
    size_t len;
    char *text = slurp(shared_path("data/tinystories-valid-excerpt.txt"), &len);
    cr_assert_not_null(text);
    len = LF_MIN(len, (size_t)3000);
    double share[2];
    const double skews[2] = {0.0, 3.0};
    for (int i = 0; i < 2; i++) {
        char src[128], flash[128], routing[160];
        tmp(src, sizeof src, "ssrc", ".gguf");
        tmp(flash, sizeof flash, "sflash", ".gguf");
        make_model("tiny-qwen3moe", skews[i], src, flash);
        lf_calibrate_params cp = lf_calibrate_default_params();
        cp.tokens = 400;
        cp.force = true;
        lf_calibrate_stats cs;
        char err[512];
        cr_assert_eq(lf_calibrate(flash, text, len, NULL, &cp, &cs, err, sizeof err), LF_OK, "%s", err);
        share[i] = cs.routing_hot_share;
        snprintf(routing, sizeof routing, "%s.routing", flash);
        unlink(routing), unlink(src), unlink(flash);
    }
    free(text);
    cr_assert_gt(share[1], share[0] + 0.1, "skew 3 gives a hot share of %.3f, skew 0 %.3f", share[1], share[0]);
}

static uint32_t some_units(void *user, uint32_t layer, const float *x, size_t n, uint32_t *units) {
    (void)user, (void)layer, (void)x, (void)n;
    units[0] = 0;
    return 1;
}

/* The public FFN hook on a mixture of experts routes with the model's
 * router: stream and mmap mode agree, a batch equals its tokens one at a
 * time, and a mask hook of the engine's own is refused. */
Test(moe, the_ffn_hook_routes_experts) {
    char src[128], flash[128];
    tmp(src, sizeof src, "ksrc", ".gguf");
    tmp(flash, sizeof flash, "kflash", ".gguf");
    make_model("tiny-qwen3moe", -1, src, flash);
    enum { D = 256, T = 3 };
    float x[T * D], y_batch[T * D], y_one[T * D], y_mmap[T * D];
    lf_rng rng;
    lf__rng_seed(&rng, 7);
    for (int i = 0; i < T * D; i++) x[i] = (float)lf__rng_normal(&rng);
    const lf_mode modes[2] = {LF_MODE_STREAM, LF_MODE_MMAP};
    for (int k = 0; k < 2; k++) {
        lf_model_params mp = lf_model_default_params();
        mp.mode = modes[k];
        lf_model *m;
        char err[512];
        cr_assert_eq(lf_model_open(flash, &mp, &m, err, sizeof err), LF_OK, "%s", err);
        lf_ffn_params fp = lf_ffn_default_params();
        fp.max_batch = T;
        lf_ffn *f;
        cr_assert_eq(lf_ffn_create(m, &fp, &f, err, sizeof err), LF_OK, "%s", err);
        cr_assert_eq(lf_ffn_units(f), 16, "a unit is an expert");
        cr_assert_eq(lf_ffn_group_size(f), 128);
        /* a pass over the layers is one batch: the batch, then each token alone */
        for (uint32_t l = 0; l < 2; l++)
            cr_assert_eq(lf_ffn_forward(f, l, x, T, k ? y_mmap : y_batch), LF_OK, "%s", lf_ffn_errmsg(f));
        if (!k) {
            for (int t = 0; t < T; t++)
                for (uint32_t l = 0; l < 2; l++)
                    cr_assert_eq(lf_ffn_forward(f, l, x + t * D, 1, y_one + t * D), LF_OK, "%s", lf_ffn_errmsg(f));
            double num = 0, den = 0, apart = 0;
            for (int i = 0; i < T * D; i++) {
                num += (y_batch[i] - y_one[i]) * (double)(y_batch[i] - y_one[i]);
                den += (double)y_one[i] * y_one[i];
                if (i < D) apart += fabs(y_one[i] - y_one[D + i]);
            }
            cr_assert_gt(den, 0, "no output");
            cr_assert_lt(sqrt(num / den), 1e-5, "a batch differs from its tokens one at a time");
            cr_assert_gt(apart, 1e-3, "two tokens got the same output: nothing was routed");
        }
        lf_ffn_destroy(f);
        /* an engine's own mask cannot route experts: it gives no weights */
        const lf_ffn_mask_hook hook = {.needs_input = true, .select = some_units, .user = NULL};
        fp.mask_hook = &hook;
        f = NULL;
        cr_assert_eq(lf_ffn_create(m, &fp, &f, err, sizeof err), LF_E_UNSUPPORTED);
        cr_assert_null(f);
        cr_assert_not_null(strstr(err, "mixture of experts"), "%s", err);
        lf_model_close(m);
    }
    /* layer 1 of the batch, stream against mmap: the same experts and weights */
    double num = 0, den = 0;
    for (int i = 0; i < T * D; i++) {
        num += (y_batch[i] - y_mmap[i]) * (double)(y_batch[i] - y_mmap[i]);
        den += (double)y_mmap[i] * y_mmap[i];
    }
    cr_assert_lt(sqrt(num / den), 1e-5, "stream and mmap disagree");
    unlink(src);
    unlink(flash);
}
