/* test_flash.c - the flash layout: conversion round trips, bundle records
 * against the source tensors, corruption and truncation detection,
 * interrupted conversion. */
#include <criterion/criterion.h>

#include "../src/flash/flash_format.h"
#include "../src/tensor/kernels.h"
#include "llmflash.h"
#include "test_support.h"

#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmp_path(const char *tag) {
    static char buf[4][256];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 256, "/tmp/lf_test_flash_%s_%d.gguf", tag, (int)getpid());
    return p;
}

static void expect_golden(const char *model_path, const char *golden_rel) {
    lf_model *m;
    char err[256];
    cr_assert_eq(lf_model_open(model_path, NULL, &m, err, sizeof err), LF_OK, "%s", err);
    lf_model_info in;
    lf_model_get_info(m, &in);
    cr_assert(in.is_flash);
    lf_session *s;
    cr_assert_eq(lf_session_create(m, NULL, &s, err, sizeof err), LF_OK);
    lf_sampler_params gp = {.temperature = 0.0f};
    lf_sampler *g;
    lf_sampler_create(&gp, &g);
    text_buf out = {.len = 0};
    cr_assert_eq(generate_text(s, g, "", 200, &out, NULL), LF_OK);
    char *want = slurp(shared_path(golden_rel), NULL);
    cr_assert_str_eq(out.data, want);
    free(want);
    lf_sampler_destroy(g);
    lf_session_destroy(s);
    lf_model_close(m);
}

static void convert(const char *in, const char *out, int type, lf_compression c, uint32_t group) {
    lf_convert_params p = lf_convert_default_params();
    p.bundle_type = type;
    p.compression = c;
    p.group = group;
    p.force = true;
    char err[256];
    lf_convert_stats st;
    cr_assert_eq(lf_convert(in, out, &p, &st, err, sizeof err), LF_OK, "%s", err);
    cr_assert(st.out_bytes > 0 && st.ffn_stored_bytes > 0);
    cr_assert(st.peak_rss_bytes > 0);
}


static void need_shared(void) { require_shared(); }
TestSuite(flash, .init = need_shared);

Test(flash, keep_round_trips_reproduce_golden) {
    const lf_compression cs[] = {LF_COMPRESS_NONE, LF_COMPRESS_LZ4, LF_COMPRESS_ZSTD};
    for (size_t i = 0; i < 3; i++) {
        const char *out = tmp_path(lf__compression_name(cs[i]));
        convert(shared_path("models/stories260K.gguf"), out, LF_BUNDLE_KEEP, cs[i], 0);
        expect_golden(out, "models/stories260K.greedy200.txt");
        uint64_t groups;
        char err[256];
        cr_assert_eq(lf_verify(out, &groups, err, sizeof err), LF_OK, "%s", err);
        cr_assert_eq(groups, cs[i] == LF_COMPRESS_NONE ? 5 * 172 : 5 * 11 /* 172 / 16 rounded up */);
        unlink(out);
    }
    const char *relu = tmp_path("relu");
    convert(shared_path("models/stories260K-relu80.gguf"), relu, LF_BUNDLE_KEEP, LF_COMPRESS_ZSTD, 7);
    expect_golden(relu, "models/stories260K-relu80.greedy200.txt");
    unlink(relu);
}

Test(flash, inspect_info) {
    const char *out = tmp_path("info");
    convert(shared_path("models/stories260K.gguf"), out, LF_TYPE_Q8_0, LF_COMPRESS_NONE, 0);
    lf_model *m;
    char err[256];
    cr_assert_eq(lf_model_open(out, NULL, &m, err, sizeof err), LF_OK, "%s", err);
    lf_model_info in;
    lf_model_get_info(m, &in);
    cr_assert(in.is_flash);
    cr_assert_eq(in.bundle_type, LF_TYPE_Q8_0);
    cr_assert_eq(in.bundle_rows, 3);
    cr_assert_eq(in.bundle_record_bytes, 3 * 2 * 34);
    cr_assert_eq(in.bundle_stride, 256, "204-byte records pad to a power of two");
    cr_assert_eq(in.streamed_bytes, 5ull * 172 * 256);
    cr_assert_eq(in.class_bytes[LF_CLASS_FFN], in.streamed_bytes);
    cr_assert_eq(in.resident_bytes + in.streamed_bytes,
                 in.class_bytes[0] + in.class_bytes[1] + in.class_bytes[2] + in.class_bytes[3]);
    lf_model_close(m);
    unlink(out);
}

/* Records of a converted file against the source's gate/up rows and down
 * columns, dequantized. tol = 0 demands exact equality. */
static void check_records(const char *src, const char *flash, float rel_tol) {
    lf_err err = {{0}};
    lf_gguf *gs, *gf;
    cr_assert_eq(lf__gguf_read_file(src, &gs, &err), LF_OK, "%s", err.msg);
    cr_assert_eq(lf__gguf_read_file(flash, &gf, &err), LF_OK, "%s", err.msg);
    size_t slen;
    uint8_t *sdata = (uint8_t *)slurp(src, &slen);
    const int fd = open(flash, O_RDONLY);
    lf_flash *f;
    cr_assert_eq(lf__flash_open(gf, fd, &f, &err), LF_OK, "%s", err.msg);
    const lf_bundle_layout *B = &f->layout;
    const uint32_t d = f->n_embd, ff = f->n_ff;
    uint8_t *rec = malloc((uint64_t)ff * B->record_bytes);
    float *got = malloc(d * sizeof(float)), *want = malloc(LF_MAX(d, ff) * sizeof(float));
    float *downrow = malloc(ff * sizeof(float));
    for (uint32_t l = 0; l < f->n_layer; l++) {
        cr_assert_eq(lf__flash_read_layer(f, fd, l, rec, true, &err), LF_OK, "%s", err.msg);
        char name[64];
        const char *parts[3] = {"ffn_gate", "ffn_up", "ffn_down"};
        const lf_gguf_tensor *t[3];
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "blk.%u.%s.weight", l, parts[k]);
            t[k] = lf__gguf_find_tensor(gs, name);
        }
        cr_assert_eq(B->n_rows, t[0] ? 3u : 2u);
        for (uint32_t i = 0; i < ff; i++) {
            for (uint32_t r = 0; r < B->n_rows; r++) {
                const lf_gguf_tensor *src_t = t[B->n_rows == 3 ? r : r + 1];
                lf__dequantize_row(B->type, rec + (uint64_t)i * B->record_bytes + r * B->row_bytes, got, d);
                if (r + 1 < B->n_rows) { /* gate or up row i */
                    const uint64_t rb = lf__type_row_bytes(src_t->type, d);
                    lf__dequantize_row(src_t->type, sdata + src_t->file_offset + i * rb, want, d);
                } else { /* column i of down */
                    const uint64_t rb = lf__type_row_bytes(src_t->type, ff);
                    for (uint32_t j = 0; j < d; j++) {
                        lf__dequantize_row(src_t->type, sdata + src_t->file_offset + j * rb, downrow, ff);
                        want[j] = downrow[i];
                    }
                }
                float amax = 0.0f;
                for (uint32_t j = 0; j < d; j++) amax = fmaxf(amax, fabsf(want[j]));
                for (uint32_t j = 0; j < d; j++) {
                    if (rel_tol == 0.0f)
                        cr_assert_eq(got[j], want[j], "layer %u neuron %u row %u elem %u: %g vs %g", l, i, r, j, got[j], want[j]);
                    else
                        cr_assert(fabsf(got[j] - want[j]) <= rel_tol * amax, "layer %u neuron %u row %u elem %u: %g vs %g",
                                  l, i, r, j, got[j], want[j]);
                }
            }
        }
    }
    free(rec);
    free(got);
    free(want);
    free(downrow);
    lf__flash_free(f);
    close(fd);
    free(sdata);
    lf__gguf_free(gs);
    lf__gguf_free(gf);
}

static void synth(const char *path, lf_type type, lf_activation act, uint64_t seed) {
    lf_synth_params p = lf_synth_default_params();
    p.n_embd = 256;
    p.n_layer = 2;
    p.n_ff = 96;
    p.n_head = 4;
    p.n_head_kv = 4;
    p.n_vocab = 300;
    p.type = type;
    p.activation = act;
    p.seed = seed;
    p.force = true;
    char err[256];
    cr_assert_eq(lf_synth_write(path, &p, err, sizeof err), LF_OK, "%s", err);
}

Test(flash, records_equal_source_exactly_for_keep) {
    const lf_type types[] = {LF_TYPE_F32, LF_TYPE_F16, LF_TYPE_BF16};
    for (size_t i = 0; i < 3; i++) {
        const char *src = tmp_path("src"), *out = tmp_path("out");
        synth(src, types[i], i == 2 ? LF_ACT_RELU : LF_ACT_SILU_GATED, 10 + i);
        convert(src, out, LF_BUNDLE_KEEP, i == 1 ? LF_COMPRESS_LZ4 : LF_COMPRESS_NONE, 5);
        check_records(src, out, 0.0f);
        unlink(src);
        unlink(out);
    }
}

Test(flash, requantized_records_within_bound) {
    struct {
        lf_type src;
        int bundle;
        float tol;
    } cases[] = {
        {LF_TYPE_F32, LF_TYPE_Q8_0, 1.0f / 127 + 2e-3f},
        {LF_TYPE_F32, LF_TYPE_Q4_0, 1.0f / 8 + 1e-2f},
        {LF_TYPE_F16, LF_TYPE_Q4_K, 2 * (0.5f / 15 + 1.0f / 63) + 2e-2f},
        {LF_TYPE_Q8_0, LF_TYPE_F16, 1e-3f},
        /* keep of a quantized source: gate/up copied, down re-quantized */
        {LF_TYPE_Q4_0, LF_BUNDLE_KEEP, 1.0f / 8 + 1e-2f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *src = tmp_path("rsrc"), *out = tmp_path("rout");
        synth(src, cases[i].src, LF_ACT_RELU_GATED, 20 + i);
        convert(src, out, cases[i].bundle, i % 2 ? LF_COMPRESS_ZSTD : LF_COMPRESS_NONE, 3);
        check_records(src, out, cases[i].tol);
        unlink(src);
        unlink(out);
    }
}

static void flip_byte(const char *path, uint64_t off) {
    const int fd = open(path, O_RDWR);
    uint8_t b;
    cr_assert_eq(pread(fd, &b, 1, (off_t)off), 1);
    b ^= 0x5a;
    cr_assert_eq(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

Test(flash, any_flipped_bundle_byte_is_detected) {
    const lf_compression cs[] = {LF_COMPRESS_NONE, LF_COMPRESS_ZSTD};
    for (size_t ci = 0; ci < 2; ci++) {
        const char *out = tmp_path("corrupt");
        convert(shared_path("models/stories260K.gguf"), out, LF_BUNDLE_KEEP, cs[ci], 16);
        lf_err e = {{0}};
        lf_gguf *g;
        cr_assert_eq(lf__gguf_read_file(out, &g, &e), LF_OK);
        const int fd = open(out, O_RDONLY);
        lf_flash *f;
        cr_assert_eq(lf__flash_open(g, fd, &f, &e), LF_OK, "%s", e.msg);
        close(fd);
        lf_rng rng;
        lf__rng_seed(&rng, 99 + ci);
        for (int trial = 0; trial < 12; trial++) {
            const uint32_t l = (uint32_t)(lf__rng_next(&rng) % f->n_layer);
            const uint64_t gi = lf__rng_next(&rng) % f->layers[l].n_groups;
            const lf_bundle_entry *en = &f->layers[l].index[gi];
            const uint64_t off = f->layers[l].data_offset + en->offset + lf__rng_next(&rng) % en->stored;
            flip_byte(out, off);
            char err[256];
            cr_assert_eq(lf_verify(out, NULL, err, sizeof err), LF_E_CORRUPT, "flip at %lu undetected", (unsigned long)off);
            uint64_t first, count;
            lf__flash_group_neurons(f, gi, &first, &count);
            char want[64];
            snprintf(want, sizeof want, "layer %u, neurons %lu-%lu", l, (unsigned long)first,
                     (unsigned long)(first + count - 1));
            cr_assert(strstr(err, want), "'%s' does not name '%s'", err, want);
            /* a streamed run checks each group as it is read */
            lf_model *m;
            cr_assert_eq(lf_model_open(out, NULL, &m, err, sizeof err), LF_OK, "%s", err);
            lf_session *sess;
            cr_assert_eq(lf_session_create(m, NULL, &sess, err, sizeof err), LF_OK);
            const lf_token bos = 1;
            cr_assert_eq(lf_session_eval(sess, &bos, 1), LF_E_CORRUPT, "reads check groups by default");
            cr_assert(strstr(lf_session_errmsg(sess), want), "%s", lf_session_errmsg(sess));
            lf_session_destroy(sess);
            lf_model_close(m);
            flip_byte(out, off); /* restore */
        }
        char err[256];
        cr_assert_eq(lf_verify(out, NULL, err, sizeof err), LF_OK, "%s", err);
        /* with verification off, a flipped byte in an uncompressed record loads */
        if (cs[ci] == LF_COMPRESS_NONE) {
            flip_byte(out, f->layers[0].data_offset + 10);
            lf_model_params mp = lf_model_default_params();
            mp.verify_checksums = false;
            lf_model *m;
            cr_assert_eq(lf_model_open(out, &mp, &m, err, sizeof err), LF_OK, "%s", err);
            lf_session *sess;
            cr_assert_eq(lf_session_create(m, NULL, &sess, err, sizeof err), LF_OK);
            const lf_token bos = 1;
            cr_assert_eq(lf_session_eval(sess, &bos, 1), LF_OK, "%s", lf_session_errmsg(sess));
            lf_session_destroy(sess);
            lf_model_close(m);
        }
        lf__flash_free(f);
        lf__gguf_free(g);
        unlink(out);
    }
}

Test(flash, header_and_tensor_corruption_is_detected) {
    const char *out = tmp_path("hdr");
    convert(shared_path("models/stories260K.gguf"), out, LF_BUNDLE_KEEP, LF_COMPRESS_NONE, 0);
    size_t len = 0;
    char *data = slurp(out, &len);
    cr_assert_not_null(data);
    /* a metadata value: the rope/rms keys are numbers, change the name */
    char *at = memmem(data, len, "llama.attention.layer_norm_rms_epsilon", 38);
    cr_assert_not_null(at);
    const uint64_t value_off = (uint64_t)(at - data) + 38 + 4;
    free(data);
    flip_byte(out, value_off);
    char err[256];
    cr_assert_eq(lf_verify(out, NULL, err, sizeof err), LF_E_CORRUPT);
    cr_assert(strstr(err, "header"), "%s", err);
    flip_byte(out, value_off);
    lf_gguf *g;
    lf_err e = {{0}};
    cr_assert_eq(lf__gguf_read_file(out, &g, &e), LF_OK);
    const lf_gguf_tensor *t = lf__gguf_find_tensor(g, "token_embd.weight");
    flip_byte(out, t->file_offset + 1000);
    cr_assert_eq(lf_verify(out, NULL, err, sizeof err), LF_E_CORRUPT);
    cr_assert(strstr(err, "token_embd.weight"), "%s", err);
    lf__gguf_free(g);
    unlink(out);
}

Test(flash, truncation_is_detected_at_open) {
    const char *out = tmp_path("trunc");
    convert(shared_path("models/stories260K.gguf"), out, LF_BUNDLE_KEEP, LF_COMPRESS_LZ4, 0);
    struct stat sb;
    stat(out, &sb);
    const off_t cuts[] = {sb.st_size - 1, sb.st_size - 5000, sb.st_size / 2, 100};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(truncate(out, cuts[i]), 0);
        lf_model *m;
        char err[256];
        const lf_status st = lf_model_open(out, NULL, &m, err, sizeof err);
        cr_assert(st == LF_E_GGUF_BOUNDS || st == LF_E_TRUNCATED || st == LF_E_GGUF_COUNT, "cut at %ld: %s", (long)cuts[i], lf_strerror(st));
        cr_assert_eq(lf_verify(out, NULL, err, sizeof err), st);
    }
    unlink(out);
}

static bool stop_now(void *user, uint64_t done, uint64_t total) {
    (void)done;
    (void)total;
    return --*(int *)user > 0;
}

Test(flash, interrupted_or_failed_conversion_leaves_nothing) {
    const char *out = tmp_path("intr");
    unlink(out);
    lf_convert_params p = lf_convert_default_params();
    int budget = 5;
    p.progress = stop_now;
    p.progress_user = &budget;
    char err[256];
    cr_assert_eq(lf_convert(shared_path("models/stories260K.gguf"), out, &p, NULL, err, sizeof err), LF_E_INTERRUPTED);
    cr_assert_neq(access(out, F_OK), 0);
    /* bad inputs */
    cr_assert_eq(lf_convert("/nonexistent.gguf", out, NULL, NULL, err, sizeof err), LF_E_IO);
    p = lf_convert_default_params();
    p.bundle_type = LF_TYPE_Q4_K;
    cr_assert_eq(lf_convert(shared_path("models/stories260K.gguf"), out, &p, NULL, err, sizeof err), LF_E_UNSUPPORTED);
    cr_assert(strstr(err, "256"), "%s", err);
    cr_assert_neq(access(out, F_OK), 0);
    /* a flash file is not converted again, and no output overwrites its input */
    convert(shared_path("models/stories260K.gguf"), out, LF_BUNDLE_KEEP, LF_COMPRESS_NONE, 0);
    const char *again = tmp_path("again");
    cr_assert_eq(lf_convert(out, again, NULL, NULL, err, sizeof err), LF_E_INVALID_ARG);
    cr_assert(strstr(err, "already"), "%s", err);
    p = lf_convert_default_params();
    p.force = true;
    cr_assert_eq(lf_convert(out, out, &p, NULL, err, sizeof err), LF_E_INVALID_ARG);
    p.force = false;
    cr_assert_eq(lf_convert(shared_path("models/stories260K.gguf"), out, &p, NULL, err, sizeof err), LF_E_EXISTS);
    unlink(out);
}

Test(flash, disk_full_is_an_io_error) {
    if (access("/dev/full", W_OK) != 0) cr_skip_test("no /dev/full");
    /* /dev/full is not in a directory we can create files in; use a tiny
     * tmpfs instead when we are root, else skip */
    if (geteuid() != 0) cr_skip_test("needs root to mount a tiny tmpfs");
    char dir[] = "/tmp/lf_full_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char cmd[256];
    snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=256k tmpfs %s 2>/dev/null", dir);
    if (system(cmd) != 0) {
        rmdir(dir);
        cr_skip_test("cannot mount tmpfs here");
    }
    char out[300];
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    char err[256];
    const lf_status st = lf_convert(shared_path("models/stories260K.gguf"), out, NULL, NULL, err, sizeof err);
    snprintf(cmd, sizeof cmd, "ls -A %s | wc -l > %s.count", dir, dir);
    (void)system(cmd);
    const int unmounted = system((snprintf(cmd, sizeof cmd, "umount %s", dir), cmd));
    rmdir(dir);
    cr_assert_eq(unmounted, 0);
    cr_assert_eq(st, LF_E_IO, "%s", lf_strerror(st));
    cr_assert(strstr(err, "No space left"), "%s", err);
    char countf[300];
    snprintf(countf, sizeof countf, "%s.count", dir);
    char *count = slurp(countf, NULL);
    unlink(countf);
    cr_assert_str_eq(count, "0\n", "no file left on the full disk");
    free(count);
}

LF_TEST_MAIN_NEEDS_SHARED
