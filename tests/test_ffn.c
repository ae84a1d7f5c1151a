/* test_ffn.c - the FFN engine on its own, as an engine with attention of its
 * own would use it: batches of tokens against single tokens, each unit read
 * once per batch, mask sources (a custom one included), every mode. */
#include <criterion/criterion.h>

#include "../src/model/ffn_engine.h"
#include "../src/model/session.h"
#include "test_support.h"

#include <math.h>
#include <unistd.h>

static char flash_path[128], relu_path[128];

static void convert_to(const char *rel, char *out, const char *tag) {
    snprintf(out, 128, "/tmp/lf_test_ffn_%d_%s.gguf", (int)getpid(), tag);
    lf_convert_params p = lf_convert_default_params();
    p.force = true;
    char err[256];
    cr_assert_eq(lf_convert(shared_path(rel), out, &p, NULL, err, sizeof err), LF_OK, "%s", err);
}

static void setup(void) {
    convert_to("models/stories260K.gguf", flash_path, "silu");
    convert_to("models/stories260K-relu80.gguf", relu_path, "relu");
}

static void teardown(void) {
    unlink(flash_path);
    unlink(relu_path);
}

TestSuite(ffn, .init = setup, .fini = teardown);

typedef struct rig {
    lf_model *m;
    lf_pool *pool;
    lf_ffn_engine *f;
    uint32_t d;
} rig;

static rig make(const char *path, lf_mode mode, lf_mask_source mask, uint32_t max_batch, const lf_mask_ops *ops,
                void *state) {
    rig r = {0};
    lf_model_params mp = lf_model_default_params();
    mp.mode = mode;
    char err[512];
    cr_assert_eq(lf_model_open(path, &mp, &r.m, err, sizeof err), LF_OK, "%s", err);
    cr_assert_eq(lf__pool_create(2, &r.pool), LF_OK);
    lf_ffn_engine_params fp = {.window = 5, .mask = mask, .max_batch = max_batch, .mask_ops = ops, .mask_state = state};
    lf_err e = {{0}};
    cr_assert_eq(lf__ffn_create(r.m, r.pool, &fp, &r.f, &e), LF_OK, "%s", e.msg);
    r.d = r.m->info.n_embd;
    return r;
}

static void unmake(rig *r) {
    lf__ffn_destroy(r->f);
    lf__pool_destroy(r->pool);
    lf_model_close(r->m);
}

/* Inputs that look like normalised residuals: seeded, unit variance. */
static void inputs(float *x, size_t n, uint64_t seed) {
    lf_rng rng;
    lf__rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) x[i] = lf__rng_normal(&rng);
}

Test(ffn, a_batch_equals_its_tokens_one_by_one_in_every_mode) {
    const lf_mode modes[] = {LF_MODE_STREAM, LF_MODE_NAIVE, LF_MODE_HYBRID, LF_MODE_MMAP};
    const lf_mask_source masks[] = {LF_MASK_ALL, LF_MASK_ORACLE};
    for (int mi = 0; mi < 4; mi++)
        for (int ki = 0; ki < 2; ki++) {
            rig r = make(relu_path, modes[mi], masks[ki], 3, NULL, NULL);
            float x[3 * 64], yb[3 * 64], y1[64];
            inputs(x, 3 * r.d, 7);
            for (uint32_t l = 0; l < r.m->info.n_layer; l++) {
                lf__ffn_next_tokens(r.f, 3);
                cr_assert_eq(lf__ffn_forward(r.f, l, x, 3, yb), LF_OK, "%s", lf__ffn_errmsg(r.f));
                for (size_t t = 0; t < 3; t++) {
                    lf__ffn_next_tokens(r.f, 1);
                    cr_assert_eq(lf__ffn_forward(r.f, l, x + t * r.d, 1, y1), LF_OK, "%s", lf__ffn_errmsg(r.f));
                    /* equal up to float summation order: a batch may split its
                     * records across threads differently from a single token
                     * (more work), and with the oracle it computes the union
                     * of its tokens' units (zero for the others) */
                    for (uint32_t i = 0; i < r.d; i++)
                        cr_assert(fabsf(yb[t * r.d + i] - y1[i]) <= 1e-5f * (1.0f + fabsf(y1[i])),
                                  "%s/%s layer %u token %zu [%u]: batch %.9g, alone %.9g", lf_mode_name(modes[mi]),
                                  ki ? "oracle" : "all", l, t, i, yb[t * r.d + i], y1[i]);
                }
            }
            unmake(&r);
        }
}

Test(ffn, each_unit_is_read_once_per_batch) {
    /* naive mode caches nothing: a batch reads the union of its tokens'
     * units once, a token alone reads its own */
    rig r = make(relu_path, LF_MODE_NAIVE, LF_MASK_ORACLE, 4, NULL, NULL);
    float x[4 * 64], y[4 * 64];
    inputs(x, 4 * r.d, 11);
    lf_session_stats a = {0}, b = {0};
    lf__ffn_next_tokens(r.f, 4);
    cr_assert_eq(lf__ffn_forward(r.f, 1, x, 4, y), LF_OK);
    lf__ffn_stats(r.f, &a);
    uint64_t singles = 0, largest = 0;
    for (int t = 0; t < 4; t++) {
        lf__ffn_reset_stats(r.f);
        lf__ffn_next_tokens(r.f, 1);
        cr_assert_eq(lf__ffn_forward(r.f, 1, x + t * r.d, 1, y), LF_OK);
        memset(&b, 0, sizeof b);
        lf__ffn_stats(r.f, &b);
        singles += b.ffn_bytes_read;
        largest = b.ffn_bytes_read > largest ? b.ffn_bytes_read : largest;
    }
    cr_assert(a.ffn_bytes_read >= largest && a.ffn_bytes_read < singles,
              "batch read %lu bytes: at least one token's %lu, less than the four alone %lu",
              (unsigned long)a.ffn_bytes_read, (unsigned long)largest, (unsigned long)singles);
    unmake(&r);
}

/* A mask source of the caller's: units of one parity, or all, or none. */
typedef struct parity_mask {
    uint32_t n_units;
    int which; /* 0 even, 1 odd, 2 all, 3 none */
    uint32_t calls;
} parity_mask;

static uint32_t parity_select(void *state, uint32_t layer, const float *x, size_t n, uint32_t *units) {
    (void)layer, (void)n;
    parity_mask *pm = state;
    cr_assert_not_null(x, "needs_input: the engine never asks without the input");
    pm->calls++;
    uint32_t m = 0;
    for (uint32_t u = 0; u < pm->n_units; u++)
        if (pm->which == 2 || (pm->which < 2 && (int)(u % 2) == pm->which)) units[m++] = u;
    return m;
}

static void parity_destroy(void *state) { (void)state; }

static const lf_mask_ops parity_ops = {.name = "parity", .needs_input = true, .select = parity_select,
                                       .destroy = parity_destroy};

Test(ffn, a_custom_mask_source_selects_what_is_computed) {
    float x[64], y[4][64];
    for (int which = 0; which < 4; which++) {
        parity_mask pm = {172, which, 0};
        rig r = make(flash_path, LF_MODE_STREAM, LF_MASK_ALL, 1, &parity_ops, &pm);
        inputs(x, r.d, 3);
        lf__ffn_next_tokens(r.f, 1);
        cr_assert_eq(lf__ffn_prefetch(r.f, 2, NULL, 1), LF_OK, "no input yet: nothing to do for this source");
        cr_assert_eq(pm.calls, 0);
        cr_assert_eq(lf__ffn_forward(r.f, 2, x, 1, y[which]), LF_OK, "%s", lf__ffn_errmsg(r.f));
        cr_assert_eq(pm.calls, 1);
        unmake(&r);
    }
    /* the FFN is a sum over neurons: even + odd = all, none = 0 */
    for (uint32_t i = 0; i < 64; i++) {
        cr_assert_float_eq(y[0][i] + y[1][i], y[2][i], 1e-4f * (1.0f + fabsf(y[2][i])), "[%u]", i);
        cr_assert_eq(y[3][i], 0.0f);
    }
}

Test(ffn, batches_larger_than_planned_are_refused) {
    rig r = make(flash_path, LF_MODE_STREAM, LF_MASK_ALL, 2, NULL, NULL);
    float x[3 * 64], y[3 * 64];
    inputs(x, 3 * r.d, 1);
    cr_assert_eq(lf__ffn_forward(r.f, 0, x, 3, y), LF_E_INVALID_ARG);
    cr_assert(strstr(lf__ffn_errmsg(r.f), "1 to 2"), "%s", lf__ffn_errmsg(r.f));
    unmake(&r);
}

LF_TEST_MAIN_NEEDS_SHARED
