/* test_stream.c - the streamed FFN through the public API: the golden text
 * of stories260K at several budgets, masks and modes, budget errors, stats. */
#include <criterion/criterion.h>

#include "llmflash.h"
#include "test_support.h"

#include <string.h>
#include <unistd.h>

static char flash_path[128], relu_path[128];

static void convert_one(const char *src_rel, char *out) {
    snprintf(out, 128, "/tmp/lf_test_stream_%d_%s", (int)getpid(), strrchr(src_rel, '/') + 1);
    lf_convert_params p = lf_convert_default_params();
    p.force = true;
    char err[256];
    cr_assert_eq(lf_convert(shared_path(src_rel), out, &p, NULL, err, sizeof err), LF_OK, "%s", err);
}

static void setup(void) {
    require_shared();
    convert_one("models/stories260K.gguf", flash_path);
    convert_one("models/stories260K-relu80.gguf", relu_path);
}

static void teardown(void) {
    unlink(flash_path);
    unlink(relu_path);
}

TestSuite(stream, .init = setup, .fini = teardown);

typedef struct run_cfg {
    const char *path;
    const char *golden_rel;
    lf_mode mode;
    uint64_t budget;
    lf_mask_source mask;
    uint32_t window;
    lf_cache_split split;
    bool unbundled;
    uint32_t queue_depth; /* 0: the default */
} run_cfg;

/* Generates 200 greedy tokens; returns the status of the session's creation
 * and fills stats on success. */
static lf_layer_stats *layers; /* when set, run() fills 5 layers' counters */

static lf_status run(const run_cfg *c, lf_session_stats *stats, char *err, size_t errcap) {
    lf_model_params mp = lf_model_default_params();
    mp.mode = c->mode;
    mp.dram_budget = c->budget;
    mp.unbundled_reads = c->unbundled;
    mp.io_queue_depth = c->queue_depth;
    lf_model *m;
    lf_status st = lf_model_open(c->path, &mp, &m, err, errcap);
    if (st) return st;
    lf_session_params sp = lf_session_default_params();
    sp.n_ctx = 256;
    sp.mask = c->mask;
    if (c->window) sp.window = c->window;
    sp.split = c->split;
    lf_session *s;
    st = lf_session_create(m, &sp, &s, err, errcap);
    if (st) {
        lf_model_close(m);
        return st;
    }
    lf_sampler_params gp = {.temperature = 0.0f};
    lf_sampler *g;
    lf_sampler_create(&gp, &g);
    text_buf out = {.len = 0};
    cr_assert_eq(generate_text(s, g, "", 200, &out, NULL), LF_OK, "%s", lf_session_errmsg(s));
    char *want = slurp(shared_path(c->golden_rel), NULL);
    cr_assert_str_eq(out.data, want, "mode %s budget %lu mask %d", lf_mode_name(c->mode), (unsigned long)c->budget,
                     (int)c->mask);
    free(want);
    if (stats) lf_session_get_stats(s, stats);
    if (layers)
        for (uint32_t l = 0; l < 5; l++) cr_assert_eq(lf_session_layer_stats(s, l, &layers[l]), LF_OK);
    char json[8192];
    const size_t n = lf_session_stats_json(s, json, sizeof json);
    cr_assert(n > 0 && n < sizeof json);
    cr_assert(strstr(json, "\"cache_hit_rate\"") && strstr(json, "\"layers\""), "%s", json);
    lf_sampler_destroy(g);
    lf_session_destroy(s);
    lf_model_close(m);
    return LF_OK;
}

/* The bytes a session needs before any neuron is cached, and the FFN size. */
static void sizes_at_depth(const char *path, lf_mask_source mask, uint32_t depth, uint64_t *min, uint64_t *ffn) {
    lf_model_params mp = lf_model_default_params();
    mp.mode = LF_MODE_STREAM;
    mp.io_queue_depth = depth;
    lf_model *m;
    char err[256];
    cr_assert_eq(lf_model_open(path, &mp, &m, err, sizeof err), LF_OK, "%s", err);
    lf_session_params sp = lf_session_default_params();
    sp.n_ctx = 256;
    sp.mask = mask;
    *min = lf_session_min_budget(m, &sp);
    lf_model_info in;
    lf_model_get_info(m, &in);
    *ffn = (uint64_t)in.n_layer * in.n_ff * in.bundle_record_bytes;
    lf_model_close(m);
}

static void sizes(const char *path, lf_mask_source mask, uint64_t *min, uint64_t *ffn) {
    sizes_at_depth(path, mask, 0, min, ffn);
}

Test(stream, golden_at_cache_fractions_all_and_oracle) {
    const lf_mask_source masks[] = {LF_MASK_ALL, LF_MASK_ORACLE};
    for (int k = 0; k < 2; k++) {
        uint64_t min, ffn;
        sizes(flash_path, masks[k], &min, &ffn);
        const double fracs[] = {1.0, 0.6, 0.35, 0.0};
        for (size_t i = 0; i < 4; i++) {
            run_cfg c = {flash_path, "models/stories260K.greedy200.txt", LF_MODE_STREAM,
                         min + (uint64_t)(fracs[i] * (double)ffn * 1.02), masks[k], 0, LF_SPLIT_EVEN, false, 0};
            lf_session_stats st;
            char err[512];
            cr_assert_eq(run(&c, &st, err, sizeof err), LF_OK, "%s", err);
            const uint64_t all = st.ffn_bytes_read + st.ffn_bytes_served;
            if (fracs[i] == 1.0) cr_assert(st.ffn_bytes_served > all * 9 / 10, "everything cached after the first token");
            if (fracs[i] == 0.0) cr_assert_eq(st.ffn_bytes_served, 0, "nothing fits in the cache");
            if (fracs[i] == 0.6)
                cr_assert(st.ffn_bytes_served > all / 2 && st.ffn_bytes_served < all * 7 / 10, "60%%: served %lu of %lu",
                          (unsigned long)st.ffn_bytes_served, (unsigned long)all);
            uint64_t planned = 0;
            for (int p = 0; p < LF_BUDGET_PARTS; p++) planned += st.budget_bytes[p];
            cr_assert(planned <= c.budget, "planned %lu within budget %lu", (unsigned long)planned, (unsigned long)c.budget);
        }
    }
}

Test(stream, golden_at_percent_of_model_bytes) {
    lf_model *m;
    char err[512];
    cr_assert_eq(lf_model_open(flash_path, NULL, &m, err, sizeof err), LF_OK);
    lf_model_info in;
    lf_model_get_info(m, &in);
    lf_model_close(m);
    uint64_t min, ffn;
    sizes(flash_path, LF_MASK_ALL, &min, &ffn);
    const double pcts[] = {1.0, 0.6, 0.35};
    for (size_t i = 0; i < 3; i++) {
        /* the file's bytes plus what a session needs besides weights */
        const uint64_t budget = (uint64_t)(pcts[i] * (double)in.file_bytes) + (min - in.resident_bytes);
        run_cfg c = {flash_path, "models/stories260K.greedy200.txt", LF_MODE_STREAM, budget, LF_MASK_ALL, 0, LF_SPLIT_EVEN, false, 0};
        const lf_status st = run(&c, NULL, err, sizeof err);
        if (budget >= min) cr_assert_eq(st, LF_OK, "%.0f%%: %s", pcts[i] * 100, err);
        else cr_assert_eq(st, LF_E_BUDGET, "%.0f%%", pcts[i] * 100);
    }
}

Test(stream, relu_oracle_loads_only_active_neurons) {
    uint64_t min, ffn;
    sizes(relu_path, LF_MASK_ORACLE, &min, &ffn);
    run_cfg dense = {relu_path, "models/stories260K-relu80.greedy200.txt", LF_MODE_STREAM, min + ffn / 3, LF_MASK_ALL, 1, LF_SPLIT_EVEN, false, 0};
    run_cfg oracle = dense;
    oracle.mask = LF_MASK_ORACLE;
    lf_session_stats sd, so;
    char err[512];
    cr_assert_eq(run(&dense, &sd, err, sizeof err), LF_OK, "%s", err);
    cr_assert_eq(run(&oracle, &so, err, sizeof err), LF_OK, "%s", err);
    /* relu80 leaves about 80% of neurons inactive */
    cr_assert(so.neurons_used < sd.neurons_used / 3, "oracle used %lu neurons, dense %lu", (unsigned long)so.neurons_used,
              (unsigned long)sd.neurons_used);
    cr_assert(so.ffn_bytes_read < sd.ffn_bytes_read, "oracle reads less");
    cr_assert(so.expirations > 0, "a window of 1 drops neurons");
}

Test(stream, unbundled_reads_ablation_reads_each_row_apart) {
    /* the ablation of the bundled layout: the same text, the same bytes of
     * records, three reads per neuron, and refused where it means nothing */
    uint64_t min, ffn;
    sizes(relu_path, LF_MASK_ORACLE, &min, &ffn);
    run_cfg bundled = {relu_path, "models/stories260K-relu80.greedy200.txt", LF_MODE_STREAM, min + ffn / 3, LF_MASK_ORACLE,
                       1, LF_SPLIT_EVEN, false, 0};
    run_cfg apart = bundled;
    apart.unbundled = true;
    lf_session_stats sb, sa;
    char err[512];
    cr_assert_eq(run(&bundled, &sb, err, sizeof err), LF_OK, "%s", err);
    cr_assert_eq(run(&apart, &sa, err, sizeof err), LF_OK, "%s", err);
    cr_assert_eq(sa.ffn_bytes_read, sb.ffn_bytes_read);
    cr_assert_eq(sa.neurons_loaded, sb.neurons_loaded);
    cr_assert(sa.io_reads >= 3 * sa.neurons_loaded, "%lu reads for %lu neurons", (unsigned long)sa.io_reads,
              (unsigned long)sa.neurons_loaded);
    cr_assert(sb.io_reads < sa.io_reads / 3, "bundled: %lu reads", (unsigned long)sb.io_reads);
    apart.mode = LF_MODE_MMAP;
    apart.budget = 0;
    cr_assert_eq(run(&apart, NULL, err, sizeof err), LF_E_INVALID_ARG);
    cr_assert(strstr(err, "unbundled"), "%s", err);
}

Test(stream, hybrid_pins_what_the_budget_holds) {
    /* a budget below half the FFN: hybrid pins less than half, and still
     * gives the golden text */
    uint64_t min, ffn;
    sizes(flash_path, LF_MASK_ALL, &min, &ffn);
    run_cfg c = {flash_path, "models/stories260K.greedy200.txt", LF_MODE_HYBRID, min + ffn / 4, LF_MASK_ALL, 0,
                 LF_SPLIT_EVEN, false, 0};
    lf_layer_stats ls[5];
    layers = ls;
    lf_session_stats st;
    char err[512];
    cr_assert_eq(run(&c, &st, err, sizeof err), LF_OK, "%s", err);
    layers = NULL;
    for (int l = 0; l < 5; l++)
        cr_assert(ls[l].cache_slots > 0 && ls[l].cache_slots < 172 / 2, "layer %d pins %u", l, ls[l].cache_slots);
    cr_assert(st.ffn_bytes_read > st.tokens * (5ull * 86 * 768), "more than half is read per token");
}

Test(stream, naive_hybrid_and_mmap_modes) {
    const lf_mode modes[] = {LF_MODE_NAIVE, LF_MODE_HYBRID, LF_MODE_MMAP};
    lf_session_stats st[3];
    char err[512];
    for (int k = 0; k < 3; k++) {
        run_cfg c = {flash_path, "models/stories260K.greedy200.txt", modes[k], 0, LF_MASK_ALL, 0, LF_SPLIT_EVEN, false, 0};
        cr_assert_eq(run(&c, &st[k], err, sizeof err), LF_OK, "%s: %s", lf_mode_name(modes[k]), err);
    }
    const uint64_t per_token = 5ull * 172 * 768; /* layers x neurons x record bytes */
    cr_assert_eq(st[0].ffn_bytes_read, st[0].tokens * per_token, "naive reads the whole FFN every token");
    cr_assert_eq(st[0].ffn_bytes_served, 0);
    cr_assert_eq(st[1].ffn_bytes_read, st[1].tokens * (5ull * (172 - 86) * 768), "hybrid reads the other half");
    cr_assert_eq(st[2].ffn_bytes_read, 0, "mmap counts no explicit reads");
}

Test(stream, budget_errors) {
    char err[512];
    run_cfg c = {flash_path, "models/stories260K.greedy200.txt", LF_MODE_STREAM, 200000, LF_MASK_ALL, 0, LF_SPLIT_EVEN, false, 0};
    cr_assert_eq(run(&c, NULL, err, sizeof err), LF_E_BUDGET);
    cr_assert(strstr(err, "needs") && strstr(err, "raise the budget"), "%s", err);
    uint64_t min, ffn;
    sizes(flash_path, LF_MASK_ALL, &min, &ffn);
    c.budget = min - 1;
    cr_assert_eq(run(&c, NULL, err, sizeof err), LF_E_BUDGET);
    cr_assert(strstr(err, "before any neuron is cached") && strstr(err, "lower the context"), "%s", err);
    c.budget = min; /* exactly the minimum fits */
    cr_assert_eq(run(&c, NULL, err, sizeof err), LF_OK, "%s", err);
    /* streaming a plain GGUF is a usage error */
    lf_model_params mp = lf_model_default_params();
    mp.mode = LF_MODE_STREAM;
    lf_model *m;
    cr_assert_eq(lf_model_open(shared_path("models/stories260K.gguf"), &mp, &m, err, sizeof err), LF_E_INVALID_ARG);
    cr_assert(strstr(err, "convert") && strstr(err, "first"), "%s", err);
}

Test(stream, pread_backend_golden) {
    setenv("LLMFLASH_IO", "pread", 1);
    uint64_t min, ffn;
    sizes(flash_path, LF_MASK_ALL, &min, &ffn);
    run_cfg c = {flash_path, "models/stories260K.greedy200.txt", LF_MODE_STREAM, min + ffn / 2, LF_MASK_ALL, 0, LF_SPLIT_EVEN, false, 0};
    char err[512];
    cr_assert_eq(run(&c, NULL, err, sizeof err), LF_OK, "%s", err);
    unsetenv("LLMFLASH_IO");
}

/* The queue depth changes how many reads are in flight and how large the
 * largest read may be, never what is computed. */
Test(stream, golden_at_any_queue_depth) {
    const uint32_t depths[] = {1, 3, 256};
    for (size_t i = 0; i < 3; i++) {
        /* the I/O buffers hold a read per slot of the queue */
        uint64_t min, ffn;
        sizes_at_depth(flash_path, LF_MASK_ALL, depths[i], &min, &ffn);
        run_cfg c = {flash_path, "models/stories260K.greedy200.txt", LF_MODE_STREAM, min + ffn / 3, LF_MASK_ALL, 0,
                     LF_SPLIT_EVEN, false, depths[i]};
        lf_session_stats st;
        char err[512];
        cr_assert_eq(run(&c, &st, err, sizeof err), LF_OK, "depth %u: %s", depths[i], err);
        cr_assert(st.ffn_bytes_read > 0, "depth %u read from flash", depths[i]);
    }
    lf_model_params mp = lf_model_default_params();
    mp.mode = LF_MODE_STREAM;
    mp.io_queue_depth = 2000;
    lf_model *m = NULL;
    char err[256] = "";
    cr_assert_eq(lf_model_open(flash_path, &mp, &m, err, sizeof err), LF_E_INVALID_ARG);
    cr_assert(m == NULL && strstr(err, "at most 1024"), "%s", err);
}

Test(stream, measured_split_follows_each_layers_use) {
    /* relu80's layer 0 is 91% sparse, the others 77-79%: with the oracle
     * mask it needs the fewest slots */
    uint64_t min, ffn;
    sizes(relu_path, LF_MASK_ORACLE, &min, &ffn);
    run_cfg c = {relu_path, "models/stories260K-relu80.greedy200.txt", LF_MODE_STREAM, min + ffn / 4, LF_MASK_ORACLE, 2,
                 LF_SPLIT_MEASURED, false, 0};
    lf_layer_stats ls[5];
    layers = ls;
    char err[512];
    cr_assert_eq(run(&c, NULL, err, sizeof err), LF_OK, "%s", err);
    layers = NULL;
    uint32_t total = 0;
    for (int l = 0; l < 5; l++) total += ls[l].cache_slots;
    for (int l = 1; l < 5; l++)
        cr_assert(ls[0].cache_slots < ls[l].cache_slots, "layer 0 (%u slots) needs fewer than layer %d (%u)",
                  ls[0].cache_slots, l, ls[l].cache_slots);
    cr_assert(total > 0);
    for (int l = 0; l < 5; l++) cr_assert(ls[l].resident <= ls[l].cache_slots);
}

LF_TEST_MAIN_NEEDS_SHARED

/* The resident part a session reports for the flash file in a mode. */
static uint64_t resident_part(const char *path, lf_mode mode) {
    lf_model_params mp = lf_model_default_params();
    mp.mode = mode;
    lf_model *m;
    char err[256];
    cr_assert_eq(lf_model_open(path, &mp, &m, err, sizeof err), LF_OK, "%s", err);
    lf_session_params sp = lf_session_default_params();
    sp.n_ctx = 64;
    lf_session *s;
    cr_assert_eq(lf_session_create(m, &sp, &s, err, sizeof err), LF_OK, "%s", err);
    lf_session_stats st;
    lf_session_get_stats(s, &st);
    lf_session_destroy(s);
    lf_model_close(m);
    return st.budget_bytes[0];
}

/* Stream modes read a token's embedding row from the file instead of
 * holding the table (stories260K has its own output.weight); the table is
 * still checked at open. */
Test(stream, embedding_table_stays_in_the_file_and_is_checked) {
    /* every tensor but the bundle data and the table, 64-byte aligned */
    char err[256];
    lf_gguf_file *g;
    cr_assert_eq(lf_gguf_file_open(flash_path, &g, err, sizeof err), LF_OK, "%s", err);
    uint64_t want = 0, table = 0;
    for (size_t i = 0; i < lf_gguf_file_tensor_count(g); i++) {
        lf_tensor_info ti;
        cr_assert_eq(lf_gguf_file_tensor_get(g, i, &ti), LF_OK);
        const size_t n = strlen(ti.name);
        if (strcmp(ti.name, "token_embd.weight") == 0) table = ti.bytes;
        else if (!(n > 11 && strcmp(ti.name + n - 11, ".ffn_bundle") == 0)) want += (ti.bytes + 63) / 64 * 64;
    }
    lf_gguf_file_close(g);
    cr_assert_eq(table, 512 * 64 * sizeof(float), "token_embd.weight: F32 [64, 512]");
    const uint64_t stream = resident_part(flash_path, LF_MODE_STREAM);
    cr_assert_eq(stream, want, "stream holds %lu resident bytes, the tensors but the table %lu", (unsigned long)stream,
                 (unsigned long)want);
    cr_assert_eq(resident_part(flash_path, LF_MODE_HYBRID), stream);
    /* a flipped byte of the table fails the open, in the mode that never holds it */
    char copy[160];
    snprintf(copy, sizeof copy, "%s.embd", flash_path);
    lf_convert_params p = lf_convert_default_params();
    p.force = true;
    cr_assert_eq(lf_convert(shared_path("models/stories260K.gguf"), copy, &p, NULL, err, sizeof err), LF_OK, "%s", err);
    lf_model_params mp = lf_model_default_params();
    mp.mode = LF_MODE_STREAM;
    lf_model *m = NULL;
    cr_assert_eq(lf_model_open(copy, &mp, &m, err, sizeof err), LF_OK, "%s", err);
    lf_model_close(m);
    cr_assert_eq(lf_gguf_file_open(copy, &g, err, sizeof err), LF_OK, "%s", err);
    uint64_t off = 0;
    for (size_t i = 0; i < lf_gguf_file_tensor_count(g); i++) {
        lf_tensor_info ti;
        cr_assert_eq(lf_gguf_file_tensor_get(g, i, &ti), LF_OK);
        if (strcmp(ti.name, "token_embd.weight") == 0) off = ti.file_offset + 4096;
    }
    cr_assert_gt(off, 4096, "the file has token_embd.weight");
    lf_gguf_file_close(g);
    FILE *f = fopen(copy, "r+b");
    cr_assert_not_null(f);
    fseek(f, (long)off, SEEK_SET);
    const int c = fgetc(f);
    fseek(f, (long)off, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
    m = NULL;
    cr_assert_eq(lf_model_open(copy, &mp, &m, err, sizeof err), LF_E_CORRUPT);
    cr_assert(m == NULL && strstr(err, "token_embd.weight"), "%s", err);
    unlink(copy);
}
