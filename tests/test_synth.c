/* test_synth.c - synthetic models with realistic activations: a real forward
 * pass, measured by llmflash's own statistics, shows the sparsity, hot-set
 * share and window union that were asked for. */
#include <criterion/criterion.h>

#include "llmflash.h"
#include "../src/common/lf_common.h"
#include "test_support.h"

#include <math.h>
#include <unistd.h>

typedef struct measured {
    double density, hot, union5, new_share;
} measured;

/* Writes the model, converts it, runs n random tokens through the stream
 * engine with the oracle alongside, and averages the layers' statistics. */
static measured measure(const lf_synth_params *sp, lf_activation truth, uint32_t n_tokens, uint64_t seed) {
    char gguf[96], flash[96];
    snprintf(gguf, sizeof gguf, "/tmp/lf_test_synth_%d.gguf", (int)getpid());
    snprintf(flash, sizeof flash, "/tmp/lf_test_synth_%d.flash.gguf", (int)getpid());
    char err[512];
    cr_assert_eq(lf_synth_write(gguf, sp, err, sizeof err), LF_OK, "%s", err);
    lf_convert_params cp = lf_convert_default_params();
    cp.force = true;
    cr_assert_eq(lf_convert(gguf, flash, &cp, NULL, err, sizeof err), LF_OK, "%s", err);
    lf_model_params mp = lf_model_default_params();
    mp.mode = LF_MODE_STREAM;
    mp.activation = truth; /* SwiGLU: the structure is in the gate's sign */
    lf_model *m;
    cr_assert_eq(lf_model_open(flash, &mp, &m, err, sizeof err), LF_OK, "%s", err);
    lf_session_params p = lf_session_default_params();
    p.n_ctx = n_tokens + 1;
    p.mask = LF_MASK_ALL;
    p.measure_recall = true;
    lf_session *s;
    cr_assert_eq(lf_session_create(m, &p, &s, err, sizeof err), LF_OK, "%s", err);
    lf_rng rng;
    lf__rng_seed(&rng, seed);
    for (uint32_t t = 0; t < n_tokens; t++) {
        const lf_token tok = (lf_token)(3 + lf__rng_next(&rng) % (sp->n_vocab - 3));
        cr_assert_eq(lf_session_eval(s, &tok, 1), LF_OK, "%s", lf_session_errmsg(s));
    }
    measured r = {0};
    for (uint32_t l = 0; l < sp->n_layer; l++) {
        lf_layer_stats ls;
        cr_assert_eq(lf_session_layer_stats(s, l, &ls), LF_OK);
        cr_assert_eq(ls.oracle_tokens, n_tokens);
        const double per_token = (double)ls.oracle_token_units / (double)ls.oracle_tokens;
        r.density += per_token / sp->n_ff / sp->n_layer;
        r.hot += ls.oracle_hot_share / sp->n_layer;
        r.union5 += (double)ls.oracle_window_units / (double)ls.oracle_token_units / sp->n_layer;
        r.new_share += (double)ls.oracle_new_units / (double)ls.oracle_tokens / sp->n_ff / sp->n_layer;
    }
    lf_session_destroy(s);
    lf_model_close(m);
    unlink(gguf);
    unlink(flash);
    return r;
}

static lf_synth_params shape(const char *preset) {
    lf_synth_params p = lf_synth_default_params();
    cr_assert_eq(lf_synth_shape_preset(preset, &p), LF_OK);
    p.n_ff = 2048; /* enough neurons for a stable hot-set share */
    return p;
}

static void check(const lf_synth_params *p, const measured *r) {
    lf_synth_activity a;
    char err[256];
    cr_assert_eq(lf_synth_predict_activity(p, &a, err, sizeof err), LF_OK, "%s", err);
    cr_log_info("asked S %.3f H %.3f U %.2f; predicted density %.4f hot %.3f union %.2f new %.4f; "
                "measured density %.4f hot %.3f union %.2f new %.4f",
                p->sparsity, p->hot, p->temporal, a.density, a.hot_share, a.union5, a.new_share, r->density, r->hot,
                r->union5, r->new_share);
    const double want_density = 1.0 - p->sparsity;
    cr_expect(fabs(r->density - want_density) <= 0.2 * want_density, "density %.4f, asked %.4f", r->density,
              want_density);
    if (p->hot > 0) cr_expect(fabs(r->hot - p->hot) <= 0.06, "hot share %.3f, asked %.3f", r->hot, p->hot);
    if (p->temporal > 0)
        cr_expect(fabs(r->union5 - p->temporal) <= 0.15 * p->temporal, "5-token union %.2fx, asked %.2fx", r->union5,
                  p->temporal);
    /* and what the design predicted for it, within the same bounds */
    cr_expect(fabs(r->union5 - a.union5) <= 0.15 * a.union5, "union %.2f, predicted %.2f", r->union5, a.union5);
    cr_expect(fabs(r->new_share - a.new_share) <= 0.3 * a.new_share, "new %.4f, predicted %.4f", r->new_share,
              a.new_share);
}

Test(synth, relu_statistics_as_asked, .timeout = 240) {
    lf_synth_params p = shape("tiny-relu");
    measured r = measure(&p, LF_ACT_FROM_FILE, 400, 7);
    check(&p, &r);
}

Test(synth, other_knobs_land_too, .timeout = 240) {
    lf_synth_params p = shape("tiny-relu");
    p.sparsity = 0.9;
    p.hot = 0.6;
    p.temporal = 1.6;
    p.seed = 3;
    measured r = measure(&p, LF_ACT_FROM_FILE, 400, 11);
    check(&p, &r);
}

Test(synth, silu_gate_structure_as_asked, .timeout = 240) {
    /* the SwiGLU model's gates are positive as often as asked: read as
     * ReLU-gated, its oracle counts them */
    lf_synth_params p = shape("tiny-silu");
    measured r = measure(&p, LF_ACT_RELU_GATED, 300, 5);
    check(&p, &r);
}

Test(synth, out_of_reach_knobs_are_refused_with_the_range) {
    lf_synth_params p = shape("tiny-relu");
    lf_synth_activity a;
    char err[256];
    p.temporal = 4.9; /* more than independent tokens give */
    cr_assert_eq(lf_synth_predict_activity(&p, &a, err, sizeof err), LF_E_INVALID_ARG);
    cr_assert(strstr(err, "temporal") && strstr(err, "times one token's set"), "%s", err);
    p.temporal = 2.0;
    p.sparsity = 0.3;
    p.hot = 0.9; /* 70% active: the top fifth cannot carry 90% */
    cr_assert_eq(lf_synth_predict_activity(&p, &a, err, sizeof err), LF_E_INVALID_ARG);
    cr_assert(strstr(err, "hot") && strstr(err, "at most"), "%s", err);
    p = shape("tiny");
    p.hot = 0.5; /* without --sparsity */
    cr_assert_eq(lf_synth_write("/tmp/lf_test_synth_never.gguf", &p, err, sizeof err), LF_E_INVALID_ARG);
    cr_assert(access("/tmp/lf_test_synth_never.gguf", F_OK) != 0);
}
