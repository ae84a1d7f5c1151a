/* test_calibrate.c - predictors calibrated on the real ReLU models: held-out
 * recall, perplexity against the dense ReLU run on held-out text, flash
 * bytes against mask all, and the predictor file's checks. */
#include <criterion/criterion.h>

#include "llmflash.h"
#include "test_support.h"

#include <math.h>
#include <unistd.h>

static char relu80[128], relu64[128], silu[128];
static char *text;
static size_t text_len;

static void convert_to(const char *rel, char *out, const char *tag) {
    snprintf(out, 128, "/tmp/lf_test_calibrate_%d_%s.gguf", (int)getpid(), tag);
    lf_convert_params p = lf_convert_default_params();
    p.force = true;
    char err[256];
    cr_assert_eq(lf_convert(shared_path(rel), out, &p, NULL, err, sizeof err), LF_OK, "%s", err);
}

static void predictor_path(const char *model, char *out, size_t cap) { snprintf(out, cap, "%s.predictor", model); }

static void setup(void) {
    convert_to("models/stories260K-relu80.gguf", relu80, "relu80");
    convert_to("models/stories260K-relu64.gguf", relu64, "relu64");
    convert_to("models/stories260K.gguf", silu, "silu");
    text = slurp(shared_path("data/tinystories-valid-excerpt.txt"), &text_len);
    cr_assert_not_null(text);
}

static void teardown(void) {
    char p[160];
    const char *models[] = {relu80, relu64, silu};
    for (int i = 0; i < 3; i++) {
        predictor_path(models[i], p, sizeof p);
        unlink(p);
        snprintf(p, sizeof p, "%s.ahead", models[i]);
        unlink(p);
        unlink(models[i]);
    }
    free(text);
}

TestSuite(calibrate, .init = setup, .fini = teardown);

/* Perplexity of text[0..len) in chunks of 127 tokens after a BOS. Also the
 * FFN density the mask let through and the flash bytes read per token. */
static double perplexity(const char *model, lf_mode mode, lf_mask_source mask, const char *t, size_t len, double *density,
                         double *bytes_per_token) {
    lf_model_params mp = lf_model_default_params();
    mp.mode = mode;
    lf_model *m;
    char err[512];
    cr_assert_eq(lf_model_open(model, &mp, &m, err, sizeof err), LF_OK, "%s", err);
    lf_session_params sp = lf_session_default_params();
    sp.n_ctx = 128;
    sp.mask = mask;
    lf_session *s;
    cr_assert_eq(lf_session_create(m, &sp, &s, err, sizeof err), LF_OK, "%s", err);
    size_t n = 0;
    lf_tokenize(m, t, len, false, NULL, 0, &n);
    lf_token *toks = malloc(n * sizeof *toks);
    cr_assert_eq(lf_tokenize(m, t, len, false, toks, n, &n), LF_OK);
    double nll = 0;
    size_t scored = 0;
    const uint32_t nv = lf_vocab_size(m);
    for (size_t c0 = 0; c0 < n; c0 += 127) {
        lf_session_reset(s);
        lf_token prev = lf_token_bos(m);
        for (size_t i = c0; i < n && i < c0 + 127; i++) {
            cr_assert_eq(lf_session_eval(s, &prev, 1), LF_OK, "%s", lf_session_errmsg(s));
            const float *lg = lf_session_logits(s);
            double mx = lg[0], sum = 0;
            for (uint32_t v = 1; v < nv; v++) mx = lg[v] > mx ? lg[v] : mx;
            for (uint32_t v = 0; v < nv; v++) sum += exp(lg[v] - mx);
            nll += -(lg[toks[i]] - mx - log(sum));
            scored++;
            prev = toks[i];
        }
    }
    lf_session_stats st;
    lf_session_get_stats(s, &st);
    lf_model_info in;
    lf_model_get_info(m, &in);
    if (density) *density = (double)st.neurons_used / ((double)st.tokens * in.n_layer * in.n_ff);
    if (bytes_per_token) *bytes_per_token = (double)st.ffn_bytes_read / (double)st.tokens;
    free(toks);
    lf_session_destroy(s);
    lf_model_close(m);
    return exp(nll / (double)scored);
}

/* Calibrates on the first half of the text: the second half is held out. */
static lf_calibrate_stats calibrate_half(const char *model, float sparsity) {
    lf_calibrate_params p = lf_calibrate_default_params();
    p.force = true;
    if (sparsity > 0) p.sparsity = sparsity;
    lf_calibrate_stats st;
    char err[512];
    cr_assert_eq(lf_calibrate(model, text, text_len / 2, NULL, &p, &st, err, sizeof err), LF_OK, "%s", err);
    return st;
}

Test(calibrate, relu_models_reach_the_recall_and_keep_the_perplexity) {
    const char *models[] = {relu80, relu64};
    for (int k = 0; k < 2; k++) {
        const lf_calibrate_stats cs = calibrate_half(models[k], 0);
        cr_assert(cs.recall >= 0.99, "%s: held-out recall %g", models[k], cs.recall);
        cr_assert(cs.predicted_density < 0.6, "%s: predicted density %g", models[k], cs.predicted_density);
        const char *held = text + text_len / 2;
        const size_t held_len = 8192;
        double d_all, d_pred, b_all, b_pred;
        /* perplexity with everything cached (stream mode, no budget) */
        const double p_all = perplexity(models[k], LF_MODE_STREAM, LF_MASK_ALL, held, held_len, &d_all, NULL);
        const double p_pred = perplexity(models[k], LF_MODE_STREAM, LF_MASK_PREDICTOR, held, held_len, &d_pred, NULL);
        /* flash bytes in naive mode, which reads what the mask names every
         * token, over the first 2 KiB of the held-out text */
        perplexity(models[k], LF_MODE_NAIVE, LF_MASK_ALL, held, 2048, NULL, &b_all);
        perplexity(models[k], LF_MODE_NAIVE, LF_MASK_PREDICTOR, held, 2048, &d_pred, &b_pred);
        cr_log_info("%s: perplexity %.4f dense, %.4f with the predictor at FFN density %.3f; flash bytes/token %.0f "
                    "against %.0f", models[k], p_all, p_pred, d_pred, b_pred, b_all);
        cr_assert(p_pred <= p_all * 1.01, "%s: predictor perplexity %g against dense %g", models[k], p_pred, p_all);
        cr_assert(d_all == 1.0 && d_pred < 0.6);
        /* the bytes fall by the density the stats report */
        cr_assert(b_pred < b_all, "fewer flash bytes per token");
        cr_assert(fabs(b_pred / b_all - d_pred) < 0.02, "bytes ratio %g against density %g", b_pred / b_all, d_pred);
    }
}

Test(calibrate, silu_sparsity_sweep) {
    /* for S in {0.1, 0.2, 0.3, 0.5}: dense, the oracle at S (|h| >= tau_l),
     * and the predictor at S, on the held-out half. At the largest S where
     * the oracle loses at most 2%, the predictor loses at most 1% more */
    const float S[] = {0.1f, 0.2f, 0.3f, 0.5f};
    /* 8 KiB of the held-out half (about 2000 tokens) keeps the sweep's nine
     * runs short */
    const char *held = text + text_len / 2;
    const size_t held_len = 8192;
    const double dense = perplexity(silu, LF_MODE_STREAM, LF_MASK_ALL, held, held_len, NULL, NULL);
    double prev_loss = -1.0, oracle_loss[4], pred_loss[4];
    int best = -1;
    for (int k = 0; k < 4; k++) {
        const lf_calibrate_stats cs = calibrate_half(silu, S[k]);
        double d_or, d_pr;
        const double oracle = perplexity(silu, LF_MODE_STREAM, LF_MASK_ORACLE, held, held_len, &d_or, NULL);
        const double pred = perplexity(silu, LF_MODE_STREAM, LF_MASK_PREDICTOR, held, held_len, &d_pr, NULL);
        oracle_loss[k] = oracle / dense - 1;
        pred_loss[k] = pred / dense - 1;
        cr_log_info("S %.1f: perplexity dense %.4f, oracle %.4f (%+.2f%%, density %.3f), predictor %.4f (%+.2f%%, "
                    "density %.3f, held-out recall %.4f)", S[k], dense, oracle, 100 * oracle_loss[k], d_or, pred,
                    100 * pred_loss[k], d_pr, cs.recall);
        cr_assert(cs.recall >= 0.99, "held-out recall %g at S %.1f", cs.recall, S[k]);
        cr_assert(fabs(d_or - (1.0 - S[k])) < 0.06, "the oracle at S %.1f keeps %.3f of the FFN", S[k], d_or);
        cr_assert(oracle_loss[k] >= prev_loss - 1e-4, "the oracle loses more as S grows");
        prev_loss = oracle_loss[k];
        if (oracle_loss[k] <= 0.02) best = k;
    }
    cr_assert(best >= 0, "the oracle loses at most 2%% at S = 0.1 at least");
    cr_assert(pred_loss[best] <= oracle_loss[best] + 0.01, "at S %.1f the predictor loses %.2f%%, the oracle %.2f%%",
              S[best], 100 * pred_loss[best], 100 * oracle_loss[best]);
}

Test(calibrate, a_predictor_belongs_to_its_model) {
    char err[512];
    lf_model_params mp = lf_model_default_params();
    lf_model *m;
    cr_assert_eq(lf_model_open(relu64, &mp, &m, err, sizeof err), LF_OK, "%s", err);
    lf_session_params sp = lf_session_default_params();
    sp.mask = LF_MASK_PREDICTOR;
    sp.predictor_path = "/nonexistent/x.predictor";
    lf_session *s;
    cr_assert_eq(lf_session_create(m, &sp, &s, err, sizeof err), LF_E_INVALID_ARG);
    cr_assert(strstr(err, "calibrate the model first"), "%s", err);
    /* relu80's predictor on relu64: same shape, another model */
    calibrate_half(relu80, 0);
    char other[160];
    predictor_path(relu80, other, sizeof other);
    sp.predictor_path = other;
    cr_assert_eq(lf_session_create(m, &sp, &s, err, sizeof err), LF_E_MODEL);
    cr_assert(strstr(err, "another model"), "%s", err);
    lf_model_close(m);
    /* a truncated predictor file is refused with the GGUF reader's reason */
    cr_assert_eq(lf_model_open(relu80, NULL, &m, err, sizeof err), LF_OK, "%s", err);
    size_t plen;
    char *pbytes = slurp(other, &plen);
    cr_assert_not_null(pbytes);
    char cut[192];
    snprintf(cut, sizeof cut, "%s.cut", other);
    FILE *fc = fopen(cut, "wb");
    cr_assert_eq(fwrite(pbytes, 1, plen / 2, fc), plen / 2);
    fclose(fc);
    free(pbytes);
    sp.predictor_path = cut;
    const lf_status cst = lf_session_create(m, &sp, &s, err, sizeof err);
    cr_assert(cst == LF_E_TRUNCATED || cst == LF_E_GGUF_BOUNDS, "%s (%s)", err, lf_strerror(cst));
    cr_assert(err[0]);
    unlink(cut);
    lf_model_close(m);
    /* a plain GGUF cannot be calibrated; a text too short is refused */
    lf_calibrate_params p = lf_calibrate_default_params();
    cr_assert_eq(lf_calibrate(shared_path("models/stories260K.gguf"), text, text_len, "/tmp/x", &p, NULL, err, sizeof err),
                 LF_E_INVALID_ARG);
    cr_assert(strstr(err, "plain GGUF"), "%s", err);
    cr_assert_eq(lf_calibrate(relu80, "Once upon a time", 16, "/tmp/x", &p, NULL, err, sizeof err), LF_E_INVALID_ARG);
    cr_assert(strstr(err, "at least 64"), "%s", err);
}

Test(calibrate, the_predictor_counts_against_the_budget) {
    calibrate_half(relu80, 0);
    char err[512];
    lf_model_params mp = lf_model_default_params();
    mp.dram_budget = 8u << 20;
    lf_model *m;
    cr_assert_eq(lf_model_open(relu80, &mp, &m, err, sizeof err), LF_OK, "%s", err);
    lf_session_params sp = lf_session_default_params();
    sp.mask = LF_MASK_PREDICTOR;
    sp.n_ctx = 64;
    lf_session *s;
    cr_assert_eq(lf_session_create(m, &sp, &s, err, sizeof err), LF_OK, "%s", err);
    lf_session_stats st;
    lf_session_get_stats(s, &st);
    cr_assert(st.budget_bytes[5] > 100000, "predictor part %lu", (unsigned long)st.budget_bytes[5]);
    lf_session_destroy(s);
    lf_model_close(m);
}

Test(calibrate, measured_false_negatives_match_the_recall) {
    calibrate_half(relu80, 0);
    const lf_mask_source masks[] = {LF_MASK_ALL, LF_MASK_PREDICTOR};
    for (int k = 0; k < 2; k++) {
        char err[512];
        lf_model *m;
        cr_assert_eq(lf_model_open(relu80, NULL, &m, err, sizeof err), LF_OK, "%s", err);
        lf_session_params sp = lf_session_default_params();
        sp.mask = masks[k];
        sp.measure_recall = true;
        sp.n_ctx = 128;
        lf_session *s;
        cr_assert_eq(lf_session_create(m, &sp, &s, err, sizeof err), LF_OK, "%s", err);
        size_t n = 0;
        lf_token toks[128];
        const char *held = text + text_len / 2;
        cr_assert_eq(lf_tokenize(m, held, 200, true, toks, 128, &n), LF_OK, "%zu tokens", n);
        cr_assert_eq(lf_session_eval(s, toks, n), LF_OK, "%s", lf_session_errmsg(s));
        uint64_t want = 0, missed = 0;
        for (uint32_t l = 0; l < 5; l++) {
            lf_layer_stats ls;
            cr_assert_eq(lf_session_layer_stats(s, l, &ls), LF_OK);
            want += ls.oracle_units;
            missed += ls.false_negatives;
        }
        cr_assert(want > 0);
        if (k == 0) cr_assert_eq(missed, 0, "mask all misses nothing");
        else cr_assert((double)missed <= 0.02 * (double)want, "predictor misses %lu of %lu", (unsigned long)missed,
                       (unsigned long)want);
        lf_session_destroy(s);
        lf_model_close(m);
    }
}

LF_TEST_MAIN_NEEDS_SHARED

/* Greedy text from a session on model in stream mode with three quarters
 * of the FFN cacheable (room for the window's union and the guesses read
 * early), through the given predictor file (NULL: the model's own), with or
 * without lookahead, with the given window (0: the default); failures counts the evals a fault failed (each is
 * retried). */
static void greedy_with(const char *model, const char *predictor, bool lookahead, uint32_t window, const char *fault,
                        text_buf *out, lf_session_stats *st, int *failures, double *ahead_recall) {
    char err[512];
    lf_model *m;
    lf_model_params mp = lf_model_default_params();
    cr_assert_eq(lf_model_open(model, &mp, &m, err, sizeof err), LF_OK, "%s", err);
    lf_session_params sp = lf_session_default_params();
    sp.mask = LF_MASK_PREDICTOR;
    sp.predictor_path = predictor;
    sp.lookahead = lookahead;
    if (window) sp.window = window;
    sp.n_ctx = 128;
    lf_model_info in;
    lf_model_get_info(m, &in);
    const uint64_t budget =
        lf_session_min_budget(m, &sp) + (uint64_t)in.n_layer * in.n_ff * in.bundle_record_bytes * 3 / 4;
    lf_model_close(m);
    if (fault) setenv("LLMFLASH_TEST_FAULT", fault, 1);
    mp.dram_budget = budget;
    cr_assert_eq(lf_model_open(model, &mp, &m, err, sizeof err), LF_OK, "%s", err);
    unsetenv("LLMFLASH_TEST_FAULT");
    lf_session *s;
    cr_assert_eq(lf_session_create(m, &sp, &s, err, sizeof err), LF_OK, "%s", err);
    cr_assert_eq(greedy(m, s, 80, 8, out, failures), LF_OK, "%s", lf_session_errmsg(s));
    lf_session_get_stats(s, st);
    uint64_t used = 0, late = 0;
    for (uint32_t l = 0; l < in.n_layer; l++) {
        lf_layer_stats ls;
        cr_assert_eq(lf_session_layer_stats(s, l, &ls), LF_OK);
        used += ls.ahead_used;
        late += ls.ahead_late;
        if (l == 0) cr_assert_eq(ls.ahead_units, 0, "nothing is read before layer 0");
    }
    *ahead_recall = used + late ? (double)used / (double)(used + late) : 0.0;
    lf_session_destroy(s);
    lf_model_close(m);
}

Test(calibrate, lookahead_reads_early_and_changes_nothing) {
    calibrate_half(relu80, 0);
    char ahead[160], err[512];
    snprintf(ahead, sizeof ahead, "%s.ahead", relu80);
    lf_calibrate_params p = lf_calibrate_default_params();
    p.force = true;
    p.lookahead = true;
    lf_calibrate_stats cs;
    cr_assert_eq(lf_calibrate(relu80, text, text_len / 2, ahead, &p, &cs, err, sizeof err), LF_OK, "%s", err);
    cr_log_info("lookahead held out: recall %.4f precision %.3f", cs.ahead_recall, cs.ahead_precision);
    cr_assert(cs.ahead_recall >= 0.85, "lookahead recall %.4f", cs.ahead_recall);
    text_buf plain, early;
    lf_session_stats s_plain, s_early;
    int failures;
    double r_plain, r_early;
    greedy_with(relu80, NULL, false, 0, NULL, &plain, &s_plain, &failures, &r_plain);
    greedy_with(relu80, ahead, true, 0, NULL, &early, &s_early, &failures, &r_early);
    /* the in-layer predictor decides what is computed: the same text, and
     * the same units up to the float summation order (units read early are
     * added in another order, which can move a logit across a threshold) */
    cr_assert_str_eq(early.data, plain.data);
    cr_assert(fabs((double)s_plain.neurons_used - (double)s_early.neurons_used) <= 1e-3 * (double)s_plain.neurons_used,
              "the same units computed: %lu against %lu", (unsigned long)s_plain.neurons_used,
              (unsigned long)s_early.neurons_used);
    cr_log_info("lookahead at run time: recall %.3f; I/O wait %.2f of %.2f ms span, against %.2f of %.2f", r_early,
                s_early.io_wait_ms, s_early.io_span_ms, s_plain.io_wait_ms, s_plain.io_span_ms);
    cr_assert(r_early >= 0.8, "at run time the lookahead read %.3f of what the layers then read", r_early);
    cr_assert_eq(r_plain, 0.0);
    /* a predictor file without lookahead predictors: each layer's own
     * predictor guesses from the layer before's input, for no further bytes */
    text_buf own;
    lf_session_stats s_own;
    double r_own;
    greedy_with(relu80, NULL, true, 0, NULL, &own, &s_own, &failures, &r_own);
    cr_assert_str_eq(own.data, plain.data);
    cr_assert_eq(s_own.budget_bytes[5], s_plain.budget_bytes[5], "own lookahead holds %lu predictor bytes, not %lu",
                 (unsigned long)s_own.budget_bytes[5], (unsigned long)s_plain.budget_bytes[5]);
    cr_log_info("own lookahead at run time: recall %.3f; I/O wait %.2f of %.2f ms span", r_own, s_own.io_wait_ms,
                s_own.io_span_ms);
    cr_assert(r_own >= 0.5, "at run time the own lookahead read %.3f of what the layers then read", r_own);
    /* a window of one token: the guesses, counted as the token before's,
     * are not expired before the layer uses them */
    text_buf plain1, own1;
    lf_session_stats s_plain1, s_own1;
    double r_plain1, r_own1;
    greedy_with(relu80, NULL, false, 1, NULL, &plain1, &s_plain1, &failures, &r_plain1);
    greedy_with(relu80, NULL, true, 1, NULL, &own1, &s_own1, &failures, &r_own1);
    cr_assert_str_eq(own1.data, plain1.data);
    cr_log_info("own lookahead, window 1: recall %.3f", r_own1);
    cr_assert(r_own1 >= 0.5, "window 1: the own lookahead read %.3f of what the layers then read", r_own1);
    /* faults in early reads are errors like any other: retried, the same text */
    const char *faults[] = {"eio:3:1", "eio:40:3", "corrupt:30:6"};
    for (size_t f = 0; f < sizeof faults / sizeof *faults; f++) {
        text_buf t;
        lf_session_stats st;
        double r;
        greedy_with(relu80, ahead, true, 0, faults[f], &t, &st, &failures, &r);
        cr_assert(failures > 0, "%s: the fault was injected", faults[f]);
        cr_assert_str_eq(t.data, plain.data, "%s", faults[f]);
    }
    unlink(ahead);
}

Test(calibrate, placement_reads_less_often_and_changes_nothing) {
    char placed[160], err[512];
    snprintf(placed, sizeof placed, "%s.placed", relu80);
    lf_calibrate_params p = lf_calibrate_default_params();
    p.force = true;
    cr_assert_eq(lf_calibrate(relu80, text, text_len / 2, NULL, &p, NULL, err, sizeof err), LF_OK, "%s", err);
    p.reorder_path = placed;
    cr_assert_eq(lf_calibrate(relu80, text, text_len / 2, NULL, &p, NULL, err, sizeof err), LF_OK, "%s", err);
    char placed_pred[200];
    snprintf(placed_pred, sizeof placed_pred, "%s.predictor", placed);
    cr_assert(access(placed_pred, F_OK) == 0, "the placed copy's predictor is beside it");
    text_buf a, b;
    lf_session_stats sa, sb;
    int failures;
    double r;
    greedy_with(relu80, NULL, false, 0, NULL, &a, &sa, &failures, &r);
    cr_assert_eq(failures, 0);
    greedy_with(placed, NULL, false, 0, NULL, &b, &sb, &failures, &r);
    cr_assert_eq(failures, 0);
    cr_log_info("reads %lu -> %lu, %lu -> %lu bytes read (gaps included)", (unsigned long)sa.io_reads,
                (unsigned long)sb.io_reads, (unsigned long)sa.io_bytes, (unsigned long)sb.io_bytes);
    cr_assert_str_eq(b.data, a.data, "the same sum in another order");
    cr_assert(fabs((double)sa.neurons_used - (double)sb.neurons_used) <= 1e-3 * (double)sa.neurons_used);
    cr_assert(sb.io_reads < sa.io_reads, "placement merges reads: %lu against %lu", (unsigned long)sb.io_reads,
              (unsigned long)sa.io_reads);
    /* the same perplexity on held-out text, through the placed copy's predictor */
    double d0, d1;
    const double p0 = perplexity(relu80, LF_MODE_STREAM, LF_MASK_PREDICTOR, text + text_len / 2, 4096, &d0, NULL);
    const double p1 = perplexity(placed, LF_MODE_STREAM, LF_MASK_PREDICTOR, text + text_len / 2, 4096, &d1, NULL);
    cr_assert(fabs(p0 - p1) <= 1e-4 * p0 && fabs(d0 - d1) <= 1e-3, "perplexity %.5f vs %.5f, density %.4f vs %.4f", p0,
              p1, d0, d1);
    /* a compressed file cannot be placed, and says why */
    char packed[160];
    snprintf(packed, sizeof packed, "%s.zstd", relu80);
    lf_convert_params cp = lf_convert_default_params();
    cp.force = true;
    cp.compression = LF_COMPRESS_ZSTD;
    cr_assert_eq(lf_convert(shared_path("models/stories260K-relu80.gguf"), packed, &cp, NULL, err, sizeof err), LF_OK,
                 "%s", err);
    p.reorder_path = "/tmp/lf_test_never_placed.gguf";
    cr_assert_eq(lf_calibrate(packed, text, text_len / 2, "/tmp/lf_test_never.predictor", &p, NULL, err, sizeof err),
                 LF_E_UNSUPPORTED);
    cr_assert(strstr(err, "compressed"), "%s", err);
    cr_assert(access("/tmp/lf_test_never_placed.gguf", F_OK) != 0 && access("/tmp/lf_test_never.predictor", F_OK) != 0);
    unlink(packed);
    unlink(placed);
    unlink(placed_pred);
}

/* The share of active units the predictor at `predictor` missed over 200
 * bytes of held-out text, measured at run time on n_threads (0: all);
 * also the budget its session counted for it and the units it named. */
static double runtime_miss_rate(const char *model, const char *predictor, int n_threads, uint64_t *predictor_bytes,
                                uint64_t *units) {
    char err[512];
    lf_model *m;
    lf_model_params mp = lf_model_default_params();
    mp.n_threads = n_threads;
    cr_assert_eq(lf_model_open(model, &mp, &m, err, sizeof err), LF_OK, "%s", err);
    lf_session_params sp = lf_session_default_params();
    sp.mask = LF_MASK_PREDICTOR;
    sp.predictor_path = predictor;
    sp.measure_recall = true;
    sp.n_ctx = 128;
    lf_session *s;
    cr_assert_eq(lf_session_create(m, &sp, &s, err, sizeof err), LF_OK, "%s", err);
    size_t n = 0;
    lf_token toks[128];
    cr_assert_eq(lf_tokenize(m, text + text_len / 2, 200, true, toks, 128, &n), LF_OK);
    cr_assert_eq(lf_session_eval(s, toks, n), LF_OK, "%s", lf_session_errmsg(s));
    uint64_t want_units = 0, missed = 0;
    for (uint32_t l = 0; l < 5; l++) {
        lf_layer_stats ls;
        lf_session_layer_stats(s, l, &ls);
        want_units += ls.oracle_units;
        missed += ls.false_negatives;
    }
    lf_session_stats st;
    lf_session_get_stats(s, &st);
    if (predictor_bytes) *predictor_bytes = st.budget_bytes[5];
    if (units) *units = st.neurons_used;
    cr_assert(want_units > 0);
    lf_session_destroy(s);
    lf_model_close(m);
    return (double)missed / (double)want_units;
}

Test(calibrate, a_rank_schedule_grows_from_the_first_layer_to_the_last) {
    char path[160], err[512];
    snprintf(path, sizeof path, "%s.sched", relu80);
    lf_calibrate_params p = lf_calibrate_default_params();
    p.force = true;
    p.rank = 8;
    p.rank_last = 32;
    lf_calibrate_stats cs;
    cr_assert_eq(lf_calibrate(relu80, text, text_len / 2, path, &p, &cs, err, sizeof err), LF_OK, "%s", err);
    /* 5 layers: 8, 14, 20, 26, 32; F16 bytes of A, B and the bias per layer, a float per layer */
    uint64_t want = 5 * sizeof(float);
    const uint32_t ranks[5] = {8, 14, 20, 26, 32};
    for (int l = 0; l < 5; l++) want += (uint64_t)ranks[l] * (64 + 172) * 2 + 172 * 4;
    cr_assert_eq(cs.predictor_bytes, want, "%lu bytes, want %lu", (unsigned long)cs.predictor_bytes, (unsigned long)want);
    cr_assert(cs.recall >= 0.99, "recall %.4f", cs.recall);
    /* it runs, and reaches the same recall at run time */
    const double miss = runtime_miss_rate(relu80, path, 0, NULL, NULL);
    cr_assert(miss <= 0.02, "%g of the active units missed", miss);
    unlink(path);
}

/* Q8_0 predictor weights: the recall holds (at calibration and at run
 * time, on one thread or two), in 55% of F16's bytes, which the session's
 * budget counts; auto picks per layer between the two; shapes Q8_0 cannot
 * hold are refused when asked for and left in F16 by auto. */
Test(calibrate, q8_0_predictor_weights_hold_the_recall_in_about_half_the_bytes) {
    char path[160], err[512];
    snprintf(path, sizeof path, "%s.q8", relu80);
    const lf_calibrate_stats f = calibrate_half(relu80, 0);
    lf_calibrate_params p = lf_calibrate_default_params();
    p.force = true;
    p.weights = LF_PREDICTOR_Q8_0;
    lf_calibrate_stats q, a;
    cr_assert_eq(lf_calibrate(relu80, text, text_len / 2, path, &p, &q, err, sizeof err), LF_OK, "%s", err);
    cr_log_info("held-out recall %.4f, density %.4f, %lu bytes with F16 weights; %.4f, %.4f, %lu with Q8_0", f.recall,
                f.predicted_density, (unsigned long)f.predictor_bytes, q.recall, q.predicted_density,
                (unsigned long)q.predictor_bytes);
    cr_assert(f.q8_0_layers == 0 && q.q8_0_layers == 5 && q.n_layer == 5, "%u and %u layers in Q8_0", f.q8_0_layers,
              q.q8_0_layers);
    cr_assert(q.recall >= 0.99, "held-out recall %.4f", q.recall);
    cr_assert(q.predicted_density <= f.predicted_density * 1.05, "density %g against F16's %g", q.predicted_density,
              f.predicted_density);
    /* rank 64 (d_model) per layer: Q8_0 A, B; the bias; a float per layer */
    const uint64_t want = 5 * ((64 * 2 + 172 * 2) * 34 + 172 * 4 + sizeof(float));
    cr_assert_eq(q.predictor_bytes, want, "%lu bytes, want %lu", (unsigned long)q.predictor_bytes, (unsigned long)want);
    const double ratio = (double)q.predictor_bytes / (double)f.predictor_bytes;
    cr_assert(ratio > 0.5 && ratio < 0.6, "Q8_0 takes %g of F16's bytes", ratio);
    /* at run time: the file keeps the weights' type, the budget counts them,
     * and one thread and two name the same units */
    char f16_path[160];
    predictor_path(relu80, f16_path, sizeof f16_path);
    uint64_t b_f16, b_q8, units_1, units_2;
    const double miss_f16 = runtime_miss_rate(relu80, f16_path, 0, &b_f16, NULL);
    const double miss_1 = runtime_miss_rate(relu80, path, 1, &b_q8, &units_1);
    const double miss_2 = runtime_miss_rate(relu80, path, 2, NULL, &units_2);
    cr_log_info("run time: %.4f of the active units missed with F16 weights, %.4f with Q8_0; budget %lu and %lu bytes",
                miss_f16, miss_1, (unsigned long)b_f16, (unsigned long)b_q8);
    cr_assert(miss_1 <= 0.02 && miss_1 == miss_2 && units_1 == units_2, "missed %g and %g, units %lu and %lu", miss_1,
              miss_2, (unsigned long)units_1, (unsigned long)units_2);
    cr_assert(b_q8 < b_f16 && b_f16 - b_q8 == f.predictor_bytes - q.predictor_bytes,
              "the budget counts %lu against %lu bytes", (unsigned long)b_q8, (unsigned long)b_f16);
    /* auto: Q8_0 unless its extra units outnumber what its saved bytes
     * cache. Here a layer's Q8_0 predictor saves 14 160 bytes, 18 records of
     * 768 (the relu80 rows in F32, 3 of 64 floats; stride 1024), so it pays
     * unless it predicts 18 of 172 units more per token, and every layer's
     * Q8_0 density is within a few percent of F16's */
    p.weights = LF_PREDICTOR_AUTO;
    cr_assert_eq(lf_calibrate(relu80, text, text_len / 2, path, &p, &a, err, sizeof err), LF_OK, "%s", err);
    cr_log_info("auto: %u of 5 layers in Q8_0, density %.4f", a.q8_0_layers, a.predicted_density);
    cr_assert(a.recall >= 0.99);
    cr_assert_eq(a.q8_0_layers, 5, "auto kept %u of 5 layers in Q8_0", a.q8_0_layers);
    cr_assert_eq(a.predictor_bytes, q.predictor_bytes);
    /* rank 48: not whole blocks */
    p.rank = 48;
    cr_assert_eq(lf_calibrate(relu80, text, text_len / 2, path, &p, &a, err, sizeof err), LF_OK, "%s", err);
    cr_assert_eq(a.q8_0_layers, 0, "auto keeps F16 where Q8_0 does not fit");
    p.weights = LF_PREDICTOR_Q8_0;
    cr_assert_eq(lf_calibrate(relu80, text, text_len / 2, path, &p, &a, err, sizeof err), LF_E_INVALID_ARG);
    cr_assert(strstr(err, "multiples of 32"), "%s", err);
    p.weights = (lf_predictor_weights)7;
    cr_assert_eq(lf_calibrate(relu80, text, text_len / 2, path, &p, &a, err, sizeof err), LF_E_INVALID_ARG);
    unlink(path);
}
