/* test_hardening.c - hostile files and I/O faults through a model and its
 * sessions: corrupt resident tensors, headers and bundles are caught in
 * every mode; an injected I/O error poisons nothing and a retried eval
 * gives the clean run's text; the first error is the one reported; the
 * budget is one ledger shared by sessions. */
#include <criterion/criterion.h>

#include "llmflash.h"
#include "test_support.h"
#include "../src/gguf/gguf.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

static char flash_path[128];

static void setup(void) {
    require_shared();
    snprintf(flash_path, sizeof flash_path, "/tmp/lf_test_hardening_%d.gguf", (int)getpid());
    lf_convert_params p = lf_convert_default_params();
    p.force = true;
    char err[256];
    cr_assert_eq(lf_convert(shared_path("models/stories260K.gguf"), flash_path, &p, NULL, err, sizeof err), LF_OK, "%s",
                 err);
}

static void teardown(void) {
    if (flash_path[0]) unlink(flash_path);
}

TestSuite(hardening, .init = setup, .fini = teardown);

/* A copy of the flash file with byte `off` XORed with 0x5a. */
static void corrupt_copy(const char *dst, uint64_t off) {
    size_t len;
    char *data = slurp(flash_path, &len);
    cr_assert_not_null(data);
    cr_assert(off < len);
    data[off] ^= 0x5a;
    FILE *f = fopen(dst, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
    free(data);
}

/* Offset of a tensor's data in the flash file. */
static uint64_t tensor_offset(const char *name) {
    lf_gguf *g;
    lf_err e = {{0}};
    cr_assert_eq(lf__gguf_read_file(flash_path, &g, &e), LF_OK, "%s", e.msg);
    const lf_gguf_tensor *t = lf__gguf_find_tensor(g, name);
    cr_assert_not_null(t, "%s", name);
    const uint64_t off = t->file_offset;
    lf__gguf_free(g);
    return off;
}

/* Greedy generation driven token by token; an eval that fails is retried
 * up to `retries` times. Returns the status of the last failure not
 * recovered, and the text. */
static lf_model *open_model(const char *path, lf_mode mode, uint64_t budget, bool verify, char *err, size_t cap,
                            lf_status *st) {
    lf_model_params mp = lf_model_default_params();
    mp.mode = mode;
    mp.dram_budget = budget;
    mp.verify_checksums = verify;
    lf_model *m = NULL;
    *st = lf_model_open(path, &mp, &m, err, cap);
    return m;
}

Test(hardening, flipped_resident_tensor_fails_at_open_in_every_mode) {
    char bad[160], err[512];
    snprintf(bad, sizeof bad, "%s.embd", flash_path);
    corrupt_copy(bad, tensor_offset("token_embd.weight") + 100);
    const lf_mode modes[] = {LF_MODE_STREAM, LF_MODE_MMAP, LF_MODE_NAIVE};
    for (int k = 0; k < 3; k++) {
        lf_status st;
        lf_model *m = open_model(bad, modes[k], 0, true, err, sizeof err, &st);
        cr_assert_eq(st, LF_E_CORRUPT, "%s: %s", lf_mode_name(modes[k]), err);
        cr_assert(strstr(err, "token_embd.weight"), "%s", err);
        cr_assert_null(m);
    }
    /* --no-verify opens it: the check is what refused it */
    lf_status st;
    lf_model *m = open_model(bad, LF_MODE_STREAM, 0, false, err, sizeof err, &st);
    cr_assert_eq(st, LF_OK, "%s", err);
    lf_model_close(m);
    unlink(bad);
    snprintf(bad, sizeof bad, "%s.attn", flash_path);
    corrupt_copy(bad, tensor_offset("blk.3.attn_v.weight") + 7);
    m = open_model(bad, LF_MODE_STREAM, 0, true, err, sizeof err, &st);
    cr_assert_eq(st, LF_E_CORRUPT, "%s", err);
    cr_assert(strstr(err, "blk.3.attn_v.weight"), "%s", err);
    unlink(bad);
}

Test(hardening, flipped_header_byte_fails_at_open) {
    /* a byte inside the metadata: the vocabulary strings, early in the header */
    char bad[160], err[512];
    snprintf(bad, sizeof bad, "%s.hdr", flash_path);
    size_t len;
    char *data = slurp(flash_path, &len);
    char *hit = memmem(data, 65536, "<0x41>", 6);
    cr_assert_not_null(hit);
    const uint64_t off = (uint64_t)(hit - data) + 1; /* a piece's text: the header still parses */
    free(data);
    corrupt_copy(bad, off);
    lf_status st;
    lf_model *m = open_model(bad, LF_MODE_STREAM, 0, true, err, sizeof err, &st);
    cr_assert_eq(st, LF_E_CORRUPT, "%s", err);
    cr_assert(strstr(err, "header"), "%s", err);
    cr_assert_null(m);
    unlink(bad);
}

Test(hardening, mmap_mode_checks_bundles_before_use) {
    char bad[160], err[512];
    snprintf(bad, sizeof bad, "%s.bundle", flash_path);
    /* neuron 10 of layer 2: records of 768 bytes at a stride of 1024 */
    corrupt_copy(bad, tensor_offset("blk.2.ffn_bundle") + 1024 * 10 + 3);
    lf_status st;
    lf_model *m = open_model(bad, LF_MODE_MMAP, 0, true, err, sizeof err, &st);
    cr_assert_eq(st, LF_OK, "%s", err);
    lf_session *s;
    cr_assert_eq(lf_session_create(m, NULL, &s, err, sizeof err), LF_OK, "%s", err);
    const lf_token bos = lf_token_bos(m);
    cr_assert_eq(lf_session_eval(s, &bos, 1), LF_E_CORRUPT);
    cr_assert(strstr(lf_session_errmsg(s), "layer 2, neurons 10-10"), "%s", lf_session_errmsg(s));
    lf_session_destroy(s);
    lf_model_close(m);
    /* the stream modes catch it as they read it */
    m = open_model(bad, LF_MODE_STREAM, 0, true, err, sizeof err, &st);
    cr_assert_eq(lf_session_create(m, NULL, &s, err, sizeof err), LF_OK, "%s", err);
    cr_assert_eq(lf_session_eval(s, &bos, 1), LF_E_CORRUPT);
    cr_assert(strstr(lf_session_errmsg(s), "layer 2"), "%s", lf_session_errmsg(s));
    lf_session_destroy(s);
    lf_model_close(m);
    unlink(bad);
}

/* A budget where about a third of the FFN is cached: misses stream through
 * transient chunks, hits come from the cache, and the next layer is planned
 * early - every path where an unconfirmed unit could linger. */
static uint64_t partial_budget(void) {
    char err[256];
    lf_status st;
    lf_model *m = open_model(flash_path, LF_MODE_STREAM, 0, true, err, sizeof err, &st);
    cr_assert_eq(st, LF_OK, "%s", err);
    lf_session_params sp = lf_session_default_params();
    const uint64_t min = lf_session_min_budget(m, &sp);
    lf_model_info in;
    lf_model_get_info(m, &in);
    lf_model_close(m);
    return min + (uint64_t)in.n_layer * in.n_ff * in.bundle_record_bytes / 3;
}

Test(hardening, retried_eval_after_eio_gives_the_clean_text) {
    const uint64_t budget = partial_budget();
    char err[512];
    lf_status st;
    char *want = slurp(shared_path("models/stories260K.greedy200.txt"), NULL);
    /* faults at several points: the first token, mid-run, and a burst */
    const char *faults[] = {"eio:0:1", "eio:37:1", "eio:120:4", "short:60:3", "corrupt:75:2"};
    for (size_t f = 0; f < sizeof faults / sizeof *faults; f++) {
        setenv("LLMFLASH_TEST_FAULT", faults[f], 1);
        lf_model *m = open_model(flash_path, LF_MODE_STREAM, budget, true, err, sizeof err, &st);
        cr_assert_eq(st, LF_OK, "%s", err);
        lf_session *s;
        cr_assert_eq(lf_session_create(m, NULL, &s, err, sizeof err), LF_OK, "%s", err);
        text_buf out;
        int failures;
        cr_assert_eq(greedy(m, s, 100, 8, &out, &failures), LF_OK, "%s: %s", faults[f], lf_session_errmsg(s));
        if (strncmp(faults[f], "short", 5) != 0) /* short reads are retried inside the loader */
            cr_assert(failures > 0, "%s: the fault was injected", faults[f]);
        cr_assert(out.len > 100 && strncmp(out.data, want, out.len) == 0, "%s: retried text equals the clean run's: %s",
                  faults[f], out.data);
        lf_session_destroy(s);
        lf_model_close(m);
    }
    unsetenv("LLMFLASH_TEST_FAULT");
    free(want);
}

Test(hardening, first_error_is_the_one_reported) {
    /* every read fails: layer 0's reads are issued first, so its failure is
     * the first, and nothing after it may overwrite the message */
    setenv("LLMFLASH_TEST_FAULT", "eio:0:100000", 1);
    char err[512];
    lf_status st;
    lf_model *m = open_model(flash_path, LF_MODE_STREAM, partial_budget(), true, err, sizeof err, &st);
    cr_assert_eq(st, LF_OK, "%s", err);
    lf_session *s;
    cr_assert_eq(lf_session_create(m, NULL, &s, err, sizeof err), LF_OK, "%s", err);
    const lf_token bos = lf_token_bos(m);
    cr_assert_eq(lf_session_eval(s, &bos, 1), LF_E_IO);
    const char *msg = lf_session_errmsg(s);
    cr_assert(strstr(msg, "layer 0") && strstr(msg, "neurons") && strstr(msg, "offset"), "%s", msg);
    cr_assert(strstr(msg, "Input/output error"), "%s", msg);
    cr_assert_eq(lf_session_position(s), 0);
    lf_session_destroy(s);
    lf_model_close(m);
    unsetenv("LLMFLASH_TEST_FAULT");
    setenv("LLMFLASH_TEST_FAULT", "bogus", 1);
    cr_assert_null(open_model(flash_path, LF_MODE_STREAM, 0, true, err, sizeof err, &st));
    cr_assert_eq(st, LF_E_INVALID_ARG);
    cr_assert(strstr(err, "LLMFLASH_TEST_FAULT"), "%s", err);
    unsetenv("LLMFLASH_TEST_FAULT");
}

Test(hardening, sessions_share_one_budget_ledger) {
    char err[512];
    lf_status st;
    lf_model *m = open_model(flash_path, LF_MODE_STREAM, 0, true, err, sizeof err, &st);
    lf_session_params sp = lf_session_default_params();
    sp.n_ctx = 64;
    const uint64_t min = lf_session_min_budget(m, &sp);
    lf_model_close(m);
    m = open_model(flash_path, LF_MODE_STREAM, 2 * min, true, err, sizeof err, &st);
    cr_assert_eq(st, LF_OK, "%s", err);
    const uint64_t left0 = lf_model_budget_left(m);
    sp.budget_bytes = left0 / 3; /* three fit, a fourth does not */
    lf_session *a, *b, *c;
    cr_assert_eq(lf_session_create(m, &sp, &a, err, sizeof err), LF_OK, "%s", err);
    cr_assert_eq(lf_model_budget_left(m), left0 - sp.budget_bytes);
    cr_assert_eq(lf_session_create(m, &sp, &b, err, sizeof err), LF_OK, "%s", err);
    cr_assert_eq(lf_session_create(m, &sp, &c, err, sizeof err), LF_OK, "%s", err);
    lf_session *d;
    cr_assert_eq(lf_session_create(m, &sp, &d, err, sizeof err), LF_E_BUDGET, "a fourth does not fit");
    cr_assert(strstr(err, "are left") && strstr(err, "other sessions"), "%s", err);
    lf_session_stats ss;
    cr_assert_eq(lf_session_get_stats(a, &ss), LF_OK);
    cr_assert_eq(ss.budget_session, sp.budget_bytes);
    lf_session_destroy(b); /* gives its part back */
    cr_assert_eq(lf_session_create(m, &sp, &d, err, sizeof err), LF_OK, "%s", err);
    /* each session still computes the golden text within its part */
    lf_sampler_params gp = {.temperature = 0.0f};
    lf_sampler *g;
    lf_sampler_create(&gp, &g);
    char *want = slurp(shared_path("models/stories260K.greedy200.txt"), NULL);
    lf_session *both[2] = {a, d};
    for (int k = 0; k < 2; k++) {
        text_buf out = {.len = 0};
        cr_assert_eq(generate_text(both[k], g, "", 60, &out, NULL), LF_OK, "%s", lf_session_errmsg(both[k]));
        cr_assert_eq(strncmp(out.data, want, out.len), 0, "session %d", k);
    }
    free(want);
    lf_sampler_destroy(g);
    lf_session_destroy(a);
    lf_session_destroy(c);
    lf_session_destroy(d);
    cr_assert_eq(lf_model_budget_left(m), left0, "every byte given back");
    lf_model_close(m);
}

Test(hardening, budget_is_refused_where_it_cannot_hold) {
    char err[512];
    lf_status st;
    cr_assert_null(open_model(shared_path("models/stories260K.gguf"), LF_MODE_AUTO, 64 << 20, true, err, sizeof err, &st));
    cr_assert_eq(st, LF_E_INVALID_ARG);
    cr_assert(strstr(err, "plain GGUF") && strstr(err, "convert"), "%s", err);
    cr_assert_null(open_model(flash_path, LF_MODE_MMAP, 64 << 20, true, err, sizeof err, &st));
    cr_assert_eq(st, LF_E_INVALID_ARG);
    cr_assert(strstr(err, "mmap"), "%s", err);
}

Test(hardening, non_regular_files_are_refused_at_once) {
    char fifo[160], err[512];
    snprintf(fifo, sizeof fifo, "/tmp/lf_test_fifo_%d", (int)getpid());
    unlink(fifo);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    lf_status st;
    cr_assert_null(open_model(fifo, LF_MODE_AUTO, 0, true, err, sizeof err, &st)); /* returns: no writer needed */
    cr_assert_eq(st, LF_E_IO);
    cr_assert(strstr(err, "FIFO"), "%s", err);
    cr_assert_eq(lf_verify(fifo, NULL, err, sizeof err), LF_E_IO);
    cr_assert_null(open_model("/tmp", LF_MODE_AUTO, 0, true, err, sizeof err, &st));
    cr_assert(strstr(err, "directory"), "%s", err);
    /* a forced conversion never replaces a FIFO (or a device) */
    lf_convert_params p = lf_convert_default_params();
    p.force = true;
    cr_assert_eq(lf_convert(shared_path("models/stories260K.gguf"), fifo, &p, NULL, err, sizeof err), LF_E_EXISTS);
    cr_assert(strstr(err, "not a regular file"), "%s", err);
    struct stat sb;
    cr_assert_eq(lstat(fifo, &sb), 0);
    cr_assert(S_ISFIFO(sb.st_mode), "the FIFO is still there");
    unlink(fifo);
}

Test(hardening, stats_are_per_session_and_coherent) {
    char err[512];
    lf_status st;
    lf_model *m = open_model(flash_path, LF_MODE_STREAM, partial_budget() * 2, true, err, sizeof err, &st);
    lf_session_params sp = lf_session_default_params();
    sp.n_ctx = 64;
    sp.budget_bytes = lf_model_budget_left(m) / 2;
    lf_session *a, *b;
    cr_assert_eq(lf_session_create(m, &sp, &a, err, sizeof err), LF_OK, "%s", err);
    cr_assert_eq(lf_session_create(m, &sp, &b, err, sizeof err), LF_OK, "%s", err);
    lf_sampler_params gp = {.temperature = 0.0f};
    lf_sampler *g;
    lf_sampler_create(&gp, &g);
    text_buf out = {.len = 0};
    cr_assert_eq(generate_text(a, g, "Once upon a time", 10, &out, NULL), LF_OK);
    lf_session_stats sa, sb;
    lf_session_get_stats(a, &sa);
    lf_session_get_stats(b, &sb);
    cr_assert(sa.io_bytes > 0 && sa.io_reads > 0);
    cr_assert_eq(sb.io_bytes, 0, "b read nothing: a's reads are not b's");
    cr_assert_eq(sb.tokens, 0);
    const uint64_t t1 = sa.tokens;
    cr_assert_eq(t1, sa.prompt.tokens + sa.generation.tokens);
    cr_assert(sa.prompt.tokens >= 2 && sa.generation.tokens == 9, "prompt %lu, generation %lu",
              (unsigned long)sa.prompt.tokens, (unsigned long)sa.generation.tokens);
    cr_assert_eq(sa.ffn_bytes_read, sa.prompt.ffn_bytes_read + sa.generation.ffn_bytes_read);
    /* generate resets the position, not the counters */
    out.len = 0;
    cr_assert_eq(generate_text(a, g, "Once upon a time", 10, &out, NULL), LF_OK);
    lf_session_get_stats(a, &sa);
    cr_assert_eq(sa.tokens, 2 * t1);
    lf_session_reset_stats(a);
    lf_session_get_stats(a, &sa);
    cr_assert(sa.tokens == 0 && sa.ffn_bytes_read == 0 && sa.io_bytes == 0 && sa.prompt.tokens == 0);
    cr_assert(sa.budget_total > 0, "budget figures survive reset_stats");
    lf_sampler_destroy(g);
    lf_session_destroy(a);
    lf_session_destroy(b);
    lf_model_close(m);
}

Test(hardening, kv_cache_f16_is_counted_exactly) {
    char err[512];
    lf_status st;
    lf_model *m = open_model(flash_path, LF_MODE_STREAM, 0, true, err, sizeof err, &st);
    lf_model_info in;
    lf_model_get_info(m, &in);
    const uint64_t kv_dim = (uint64_t)in.n_head_kv * (in.n_embd / in.n_head);
    const lf_kv_type types[] = {LF_KV_F16, LF_KV_F32};
    for (int k = 0; k < 2; k++) {
        lf_session_params sp = lf_session_default_params();
        sp.n_ctx = 128;
        sp.kv_type = types[k];
        lf_session *s;
        cr_assert_eq(lf_session_create(m, &sp, &s, err, sizeof err), LF_OK, "%s", err);
        lf_session_stats ss;
        lf_session_get_stats(s, &ss);
        cr_assert_eq(ss.budget_bytes[1], 2ull * in.n_layer * 128 * kv_dim * (k == 0 ? 2 : 4), "%s KV bytes",
                     k == 0 ? "F16" : "F32");
        lf_session_destroy(s);
    }
    /* stories260K's heads have 8 values: no Q8_0 blocks of 32 */
    lf_session_params sp = lf_session_default_params();
    sp.kv_type = LF_KV_Q8_0;
    lf_session *s = NULL;
    cr_assert_eq(lf_session_create(m, &sp, &s, err, sizeof err), LF_E_INVALID_ARG);
    cr_assert_null(s);
    cr_assert(strstr(err, "multiple of 32"), "%s", err);
    lf_model_close(m);
}

LF_TEST_MAIN_NEEDS_SHARED
