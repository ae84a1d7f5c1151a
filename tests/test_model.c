/* test_model.c - the model through the public API: golden outputs of the
 * real stories260K models, errors on bad files, synthetic models of every
 * type. */
#include <criterion/criterion.h>

#include "llmflash.h"
#include "test_support.h"

#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void golden(const char *model_rel, const char *golden_rel, int threads) {
    char err[256];
    lf_model_params mp = lf_model_default_params();
    mp.n_threads = threads;
    lf_model *m;
    cr_assert_eq(lf_model_open(shared_path(model_rel), &mp, &m, err, sizeof err), LF_OK, "%s", err);
    lf_session *s;
    cr_assert_eq(lf_session_create(m, NULL, &s, err, sizeof err), LF_OK, "%s", err);
    lf_sampler_params gp = {.temperature = 0.0f};
    lf_sampler *g;
    cr_assert_eq(lf_sampler_create(&gp, &g), LF_OK);
    text_buf out = {.len = 0};
    lf_generate_stats st;
    cr_assert_eq(generate_text(s, g, "", 200, &out, &st), LF_OK);
    cr_assert_eq(st.n_generated, 200);
    cr_assert_eq(st.n_prompt, 1);
    size_t len;
    char *want = slurp(shared_path(golden_rel), &len);
    cr_assert_not_null(want);
    cr_assert_eq(out.len, len);
    cr_assert_str_eq(out.data, want);
    free(want);
    lf_sampler_destroy(g);
    lf_session_destroy(s);
    lf_model_close(m);
}


static void need_shared(void) { require_shared(); }
TestSuite(model, .init = need_shared);

Test(model, golden_silu) { golden("models/stories260K.gguf", "models/stories260K.greedy200.txt", 1); }
Test(model, golden_silu_threads) { golden("models/stories260K.gguf", "models/stories260K.greedy200.txt", 3); }
Test(model, golden_relu80) { golden("models/stories260K-relu80.gguf", "models/stories260K-relu80.greedy200.txt", 2); }
Test(model, golden_relu64) { golden("models/stories260K-relu64.gguf", "models/stories260K-relu64.greedy200.txt", 2); }

/* The golden texts with each kernel family this CPU has forced; the ones it
 * lacks are named as skipped. */
Test(model, golden_on_every_kernel_path) {
    const char *families[] = {"scalar", "avx2", "avx512"};
    int ran = 0;
    for (int i = 0; i < 3; i++) {
        setenv("LLMFLASH_KERNELS", families[i], 1);
        char err[256];
        lf_model *probe = NULL;
        const lf_status st = lf_model_open(shared_path("models/stories260K.gguf"), NULL, &probe, err, sizeof err);
        lf_model_close(probe);
        if (st == LF_E_INVALID_ARG && strstr(err, "cannot run")) {
            fprintf(stderr, "golden texts on %s kernels skipped: %s\n", families[i], err);
            continue;
        }
        cr_assert_eq(st, LF_OK, "%s", err);
        golden("models/stories260K.gguf", "models/stories260K.greedy200.txt", 2);
        golden("models/stories260K-relu80.gguf", "models/stories260K-relu80.greedy200.txt", 1);
        golden("models/stories260K-relu64.gguf", "models/stories260K-relu64.greedy200.txt", 2);
        ran++;
    }
    unsetenv("LLMFLASH_KERNELS");
    cr_assert_geq(ran, 1);
}

Test(model, info_and_tensors) {
    lf_model *m;
    char err[256];
    cr_assert_eq(lf_model_open(shared_path("models/stories260K-relu80.gguf"), NULL, &m, err, sizeof err), LF_OK);
    lf_model_info in;
    cr_assert_eq(lf_model_get_info(m, &in), LF_OK);
    cr_assert_str_eq(in.architecture, "llama");
    cr_assert_eq(in.n_embd, 64);
    cr_assert_eq(in.n_layer, 5);
    cr_assert_eq(in.n_head, 8);
    cr_assert_eq(in.n_head_kv, 4);
    cr_assert_eq(in.n_ff, 172);
    cr_assert_eq(in.n_vocab, 512);
    cr_assert_eq(in.activation, LF_ACT_RELU_GATED);
    cr_assert(!in.tied_output);
    cr_assert_eq(in.class_bytes[LF_CLASS_FFN], 5ull * 3 * 64 * 172 * 4);
    uint64_t sum = 0;
    for (size_t i = 0; i < lf_model_tensor_count(m); i++) {
        lf_tensor_info t;
        cr_assert_eq(lf_model_tensor_get(m, i, &t), LF_OK);
        sum += t.bytes;
    }
    cr_assert_eq(sum, in.class_bytes[0] + in.class_bytes[1] + in.class_bytes[2] + in.class_bytes[3]);
    lf_tensor_info t;
    cr_assert_eq(lf_model_tensor_get(m, 9999, &t), LF_E_INVALID_ARG);
    char val[128];
    bool found = false;
    for (size_t i = 0; i < lf_model_meta_count(m); i++)
        if (strcmp(lf_model_meta_get(m, i, val, sizeof val), "llmflash.ffn_activation") == 0) {
            cr_assert_str_eq(val, "\"relu\"");
            found = true;
        }
    cr_assert(found);
    lf_model_close(m);
}

Test(model, open_errors_are_specific) {
    lf_model *m = (lf_model *)1;
    char err[256];
    cr_assert_eq(lf_model_open("/nonexistent.gguf", NULL, &m, err, sizeof err), LF_E_IO);
    cr_assert_null(m);
    cr_assert(strstr(err, "/nonexistent.gguf"), "%s", err);
    /* a truncated copy of a real model */
    size_t len;
    char *data = slurp(shared_path("models/stories260K.gguf"), &len);
    cr_assert_not_null(data);
    char path[] = "/tmp/lf_test_trunc_XXXXXX";
    const int fd = mkstemp(path);
    cr_assert(write(fd, data, len / 2) == (ssize_t)(len / 2));
    close(fd);
    cr_assert_eq(lf_model_open(path, NULL, &m, err, sizeof err), LF_E_GGUF_BOUNDS);
    cr_assert(strstr(err, "tensor"), "%s", err);
    unlink(path);
    free(data);
    cr_assert_eq(lf_model_open(NULL, NULL, &m, NULL, 0), LF_E_INVALID_ARG);
    lf_model_close(NULL);
}

Test(model, session_errors) {
    lf_model *m;
    char err[256];
    cr_assert_eq(lf_model_open(shared_path("models/stories260K.gguf"), NULL, &m, err, sizeof err), LF_OK);
    lf_session_params sp = lf_session_default_params();
    sp.n_ctx = 4;
    lf_session *s;
    cr_assert_eq(lf_session_create(m, &sp, &s, err, sizeof err), LF_OK);
    cr_assert_null(lf_session_logits(s));
    const lf_token bad = 512;
    cr_assert_eq(lf_session_eval(s, &bad, 1), LF_E_INVALID_ARG);
    cr_assert(strstr(lf_session_errmsg(s), "512"), "%s", lf_session_errmsg(s));
    const lf_token toks[5] = {1, 100, 101, 102, 103};
    /* a batch that does not fit fails before any work: nothing evaluated */
    cr_assert_eq(lf_session_eval(s, toks, 5), LF_E_CONTEXT_FULL);
    cr_assert_eq(lf_session_position(s), 0);
    cr_assert_null(lf_session_logits(s));
    cr_assert(strstr(lf_session_errmsg(s), "do not fit"), "%s", lf_session_errmsg(s));
    cr_assert_eq(lf_session_eval(s, toks, 4), LF_OK);
    cr_assert_eq(lf_session_eval(s, toks, 1), LF_E_CONTEXT_FULL);
    cr_assert_eq(lf_session_position(s), 4);
    cr_assert_not_null(lf_session_logits(s));
    lf_session_reset(s);
    cr_assert_eq(lf_session_position(s), 0);
    cr_assert_eq(lf_session_eval(s, toks, 2), LF_OK);
    lf_session_destroy(s);
    lf_model_close(m);
}

Test(model, eval_matches_generate) {
    /* feeding tokens one call at a time equals feeding them at once */
    lf_model *m;
    char err[256];
    cr_assert_eq(lf_model_open(shared_path("models/stories260K.gguf"), NULL, &m, err, sizeof err), LF_OK);
    lf_session *a, *b;
    cr_assert_eq(lf_session_create(m, NULL, &a, err, sizeof err), LF_OK);
    cr_assert_eq(lf_session_create(m, NULL, &b, err, sizeof err), LF_OK);
    const lf_token toks[4] = {1, 400, 401, 30};
    cr_assert_eq(lf_session_eval(a, toks, 4), LF_OK);
    for (int i = 0; i < 4; i++) cr_assert_eq(lf_session_eval(b, &toks[i], 1), LF_OK);
    cr_assert_eq(memcmp(lf_session_logits(a), lf_session_logits(b), 512 * sizeof(float)), 0);
    lf_session_destroy(a);
    lf_session_destroy(b);
    lf_model_close(m);
}

static char *synth_path(const char *tag) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/lf_test_synth_%s_%d.gguf", tag, (int)getpid());
    return path;
}

/* Last-token logits of a fixed prompt, in a given mode. */
static void logits_in_mode(const char *path, lf_mode mode, float *out, uint32_t n) {
    lf_model *m;
    char err[256];
    lf_model_params mp = lf_model_default_params();
    mp.mode = mode;
    cr_assert_eq(lf_model_open(path, &mp, &m, err, sizeof err), LF_OK, "%s: %s", path, err);
    cr_assert_eq(lf_vocab_size(m), n);
    lf_session *s;
    cr_assert_eq(lf_session_create(m, NULL, &s, err, sizeof err), LF_OK);
    const lf_token toks[3] = {1, 200, 201};
    cr_assert_eq(lf_session_eval(s, toks, 3), LF_OK);
    memcpy(out, lf_session_logits(s), n * sizeof(float));
    lf_session_destroy(s);
    lf_model_close(m);
}

static void logits_of(const char *path, float *out, uint32_t n) { logits_in_mode(path, LF_MODE_AUTO, out, n); }

/* ram mode repacks the weights it can (x8 groups, with tail rows: 300
 * vocabulary rows are 37 groups and 4); mmap computes on the file's rows.
 * Only the summation order may differ. */
Test(model, repacked_weights_give_the_mapped_logits) {
    lf_synth_params p = lf_synth_default_params();
    p.n_embd = 256; /* a K-quant super-block */
    p.n_layer = 2;
    p.n_ff = 768;
    p.n_head = 4;
    p.n_vocab = 300;
    p.force = true;
    char err[256];
    const lf_type types[] = {LF_TYPE_Q4_0, LF_TYPE_Q4_1, LF_TYPE_Q5_0, LF_TYPE_Q5_1, LF_TYPE_Q8_0,
                             LF_TYPE_Q4_K, LF_TYPE_Q5_K, LF_TYPE_Q6_K, LF_TYPE_F16};
    /* tied: the embedding table is repacked for the output projection, and
     * each token's row comes out of its x8 group */
    for (size_t t = 0; t < 2 * sizeof types / sizeof *types; t++) {
        p.type = types[t / 2];
        p.tied = t % 2;
        const char *path = synth_path(lf_type_name(p.type));
        cr_assert_eq(lf_synth_write(path, &p, err, sizeof err), LF_OK, "%s", err);
        float mapped[300], ram[300];
        logits_in_mode(path, LF_MODE_MMAP, mapped, 300);
        logits_in_mode(path, LF_MODE_RAM, ram, 300);
        double num = 0, den = 0;
        for (int i = 0; i < 300; i++) {
            num += (ram[i] - mapped[i]) * (ram[i] - mapped[i]);
            den += mapped[i] * mapped[i];
        }
        cr_assert(den > 0 && sqrt(num / den) < 1e-4, "%s%s: ram and mmap logits differ by %g", lf_type_name(p.type),
                  p.tied ? " (tied)" : "", sqrt(num / den));
        unlink(path);
    }
}

Test(model, synth_every_type_runs_close_to_f32) {
    lf_synth_params p = lf_synth_default_params();
    p.n_embd = 256;
    p.n_layer = 2;
    p.n_ff = 544; /* not a multiple of 256: K-quant FFN tensors use fallbacks */
    p.n_head = 4;
    p.n_head_kv = 2;
    p.n_vocab = 300;
    p.force = true;
    char err[256];
    float ref[300], got[300];
    p.type = LF_TYPE_F32;
    cr_assert_eq(lf_synth_write(synth_path("f32"), &p, err, sizeof err), LF_OK, "%s", err);
    logits_of(synth_path("f32"), ref, 300);
    const lf_type types[] = {LF_TYPE_F16, LF_TYPE_BF16, LF_TYPE_Q8_0, LF_TYPE_Q4_0, LF_TYPE_Q4_1,
                             LF_TYPE_Q5_0, LF_TYPE_Q5_1, LF_TYPE_Q4_K, LF_TYPE_Q5_K, LF_TYPE_Q6_K};
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        p.type = types[t];
        const char *path = synth_path(lf_type_name(types[t]));
        cr_assert_eq(lf_synth_write(path, &p, err, sizeof err), LF_OK, "%s", err);
        struct stat sb;
        cr_assert_eq(stat(path, &sb), 0);
        cr_assert_eq((uint64_t)sb.st_size, lf_synth_file_bytes(&p));
        logits_of(path, got, 300);
        double num = 0, den = 0;
        for (int i = 0; i < 300; i++) {
            cr_assert(isfinite(got[i]));
            num += (got[i] - ref[i]) * (got[i] - ref[i]);
            den += ref[i] * ref[i];
        }
        /* 4-bit types drift most; all must stay well correlated with F32 */
        const double rel = sqrt(num / den);
        cr_assert(rel < 0.35, "%s: relative logit error %g", lf_type_name(types[t]), rel);
        unlink(path);
    }
    unlink(synth_path("f32"));
}

Test(model, synth_copies_tokenizer_and_refuses_overwrite) {
    lf_synth_params p = lf_synth_default_params();
    p.n_layer = 1;
    p.tokenizer_from = shared_path("models/stories260K.gguf");
    p.force = true;
    char err[256];
    const char *path = synth_path("tok");
    cr_assert_eq(lf_synth_write(path, &p, err, sizeof err), LF_OK, "%s", err);
    lf_model *m;
    cr_assert_eq(lf_model_open(path, NULL, &m, err, sizeof err), LF_OK, "%s", err);
    cr_assert_eq(lf_vocab_size(m), 512);
    lf_token toks[16];
    size_t n;
    cr_assert_eq(lf_tokenize(m, "Once upon", 9, true, toks, 16, &n), LF_OK);
    cr_assert(n >= 3 && n <= 4);
    lf_model_close(m);
    p.force = false;
    cr_assert_eq(lf_synth_write(path, &p, err, sizeof err), LF_E_EXISTS);
    unlink(path);
    p.tokenizer_from = "/nonexistent.gguf";
    cr_assert_eq(lf_synth_write(path, &p, err, sizeof err), LF_E_IO);
    cr_assert_neq(access(path, F_OK), 0);
    p.tokenizer_from = NULL;
    p.n_vocab = 100;
    cr_assert_eq(lf_synth_write(path, &p, err, sizeof err), LF_E_INVALID_ARG);
    cr_assert(strstr(err, "259"), "%s", err);
}

static bool stop_after_two(void *user, uint64_t done, uint64_t total) {
    (void)done;
    (void)total;
    return ++*(int *)user < 2;
}

Test(model, interrupted_synth_leaves_no_file) {
    lf_synth_params p = lf_synth_default_params();
    int calls = 0;
    p.progress = stop_after_two;
    p.progress_user = &calls;
    p.force = true;
    char err[256];
    const char *path = synth_path("intr");
    cr_assert_eq(lf_synth_write(path, &p, err, sizeof err), LF_E_INTERRUPTED);
    cr_assert_neq(access(path, F_OK), 0, "no file after an interrupted write");
}

Test(model, unsupported_architecture_and_type) {
    /* a synthetic model whose architecture key is changed in place */
    lf_synth_params p = lf_synth_default_params();
    p.n_layer = 1;
    p.force = true;
    char err[256];
    const char *path = synth_path("arch");
    cr_assert_eq(lf_synth_write(path, &p, err, sizeof err), LF_OK);
    size_t len = 0;
    char *data = slurp(path, &len);
    cr_assert_not_null(data);
    char *at = memmem(data, len, "llama", 5);
    memcpy(at, "gpt2x", 5);
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
    lf_model *m;
    cr_assert_eq(lf_model_open(path, NULL, &m, err, sizeof err), LF_E_UNSUPPORTED);
    cr_assert(strstr(err, "gpt2x"), "%s", err);
    /* restore the architecture, change a tensor's type to Q2_K (id 10) */
    memcpy(at, "llama", 5);
    char *name = memmem(data, len, "blk.0.ffn_up.weight", 19);
    cr_assert_not_null(name);
    const uint32_t q2k = 10;
    /* after the name: n_dims (4), two dims (16), then the type */
    uint32_t old_type;
    memcpy(&old_type, name + 19 + 4 + 16, 4);
    cr_assert_eq(old_type, LF_TYPE_Q8_0);
    memcpy(name + 19 + 4 + 16, &q2k, 4);
    f = fopen(path, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
    const lf_status st = lf_model_open(path, NULL, &m, err, sizeof err);
    /* Q2_K blocks are smaller, so offsets may no longer line up: either way
     * a clear error naming the tensor */
    cr_assert(st == LF_E_UNSUPPORTED || st == LF_E_GGUF_OVERLAP || st == LF_E_GGUF_ALIGNMENT, "%s", lf_strerror(st));
    cr_assert(strstr(err, "ffn_up"), "%s", err);
    free(data);
    unlink(path);
}

LF_TEST_MAIN_NEEDS_SHARED

/* ---- rope scaling (Llama 3.1's rope_freqs.weight, linear) and refusals ---- */
#include "../src/gguf/gguf.h"

#include <fcntl.h>

typedef struct rewrite {
    const char *scaling_type; /* llama.rope.scaling.type, or NULL */
    float factor;             /* llama.rope.scaling.factor, 0: absent */
    const float *freqs;       /* rope_freqs.weight of n_freqs floats, or NULL */
    uint32_t n_freqs;
    const char *u32_key;      /* another key, set to 4096, or NULL */
    const char *extra_tensor; /* another F32 tensor of 64 floats, or NULL */
} rewrite;

/* stories260K with the changes of r, written to dst. */
static void rewrite_260k(const char *dst, const rewrite *r) {
    lf_err err = {{0}};
    lf_gguf *g;
    const char *src = shared_path("models/stories260K.gguf");
    cr_assert_eq(lf__gguf_read_file(src, &g, &err), LF_OK, "%s", err.msg);
    lf_gguf_writer *w;
    cr_assert_eq(lf__gguf_writer_create(g->alignment, &w), LF_OK);
    for (uint64_t i = 0; i < g->n_kv; i++) cr_assert_eq(lf__gguf_writer_copy_kv(w, &g->kv[i]), LF_OK);
    if (r->scaling_type) cr_assert_eq(lf__gguf_writer_set_str(w, "llama.rope.scaling.type", r->scaling_type), LF_OK);
    if (r->factor != 0.0f) cr_assert_eq(lf__gguf_writer_set_f32(w, "llama.rope.scaling.factor", r->factor), LF_OK);
    if (r->u32_key) cr_assert_eq(lf__gguf_writer_set_u32(w, r->u32_key, 4096), LF_OK);
    char name[128];
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const lf_gguf_tensor *t = &g->tensors[i];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        cr_assert_eq(lf__gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, NULL), LF_OK);
    }
    const uint64_t nf = r->n_freqs, n64 = 64;
    if (r->freqs) cr_assert_eq(lf__gguf_writer_add_tensor(w, "rope_freqs.weight", 0, 1, &nf, NULL), LF_OK);
    if (r->extra_tensor) cr_assert_eq(lf__gguf_writer_add_tensor(w, r->extra_tensor, 0, 1, &n64, NULL), LF_OK);
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
    if (r->freqs) cr_assert_eq(lf__gguf_writer_write_data(w, out, r->freqs, nf * sizeof(float), &err), LF_OK);
    if (r->extra_tensor) {
        float zeros[64] = {0};
        cr_assert_eq(lf__gguf_writer_write_data(w, out, zeros, sizeof zeros, &err), LF_OK);
    }
    cr_assert_eq(lf__gguf_writer_finish(w, &err), LF_OK, "%s", err.msg);
    lf__gguf_writer_destroy(w);
    lf__gguf_free(g);
    close(in);
    close(out);
}

static double rel_diff(const float *a, const float *b, uint32_t n) {
    double num = 0, den = 0;
    for (uint32_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / den);
}

/* Dividing every rotary frequency by F (rope_freqs.weight, as Llama 3.1
 * files carry it) is the same rotation as dividing every position by F
 * (linear scaling): two different inputs that must agree. All-ones
 * divisors change nothing, bit for bit. */
Test(model, rope_freqs_and_linear_scaling_rotate_as_they_should) {
    need_shared();
    float plain[512], ones[512], freqs2[512], linear2[512];
    logits_of(shared_path("models/stories260K.gguf"), plain, 512);
    const float one[4] = {1, 1, 1, 1}, two[4] = {2, 2, 2, 2};
    const char *path = synth_path("rope");
    rewrite_260k(path, &(rewrite){.freqs = one, .n_freqs = 4});
    logits_of(path, ones, 512);
    cr_assert_eq(memcmp(plain, ones, sizeof plain), 0, "divisors of 1 changed the logits");
    rewrite_260k(path, &(rewrite){.freqs = two, .n_freqs = 4});
    logits_of(path, freqs2, 512);
    rewrite_260k(path, &(rewrite){.scaling_type = "linear", .factor = 2.0f});
    logits_of(path, linear2, 512);
    cr_assert_gt(rel_diff(freqs2, plain, 512), 1e-3, "rope_freqs.weight was ignored");
    cr_assert_lt(rel_diff(freqs2, linear2, 512), 1e-5, "frequencies / 2 and positions / 2 differ by %g",
                 rel_diff(freqs2, linear2, 512));
    /* a flash file keeps rope_freqs.weight resident: stream mode agrees (up to
     * the bundle kernel's summation order) */
    rewrite_260k(path, &(rewrite){.freqs = two, .n_freqs = 4});
    char flash[300], err[256];
    snprintf(flash, sizeof flash, "%s.flash", path);
    lf_convert_params cp = lf_convert_default_params();
    cp.force = true;
    cr_assert_eq(lf_convert(path, flash, &cp, NULL, err, sizeof err), LF_OK, "%s", err);
    float streamed[512];
    logits_in_mode(flash, LF_MODE_STREAM, streamed, 512);
    cr_assert_lt(rel_diff(streamed, freqs2, 512), 1e-5, "stream mode differs from the source GGUF by %g",
                 rel_diff(streamed, freqs2, 512));
    unlink(flash);
    unlink(path);
}

/* What the forward pass would silently skip is refused, by name. */
Test(model, unsupported_rope_and_attention_features_are_named) {
    need_shared();
    const char *path = synth_path("refuse");
    const struct {
        rewrite r;
        const char *needle;
    } cases[] = {
        {{.scaling_type = "yarn", .factor = 4.0f}, "llama.rope.scaling.type"},
        {{.u32_key = "llama.attention.sliding_window"}, "llama.attention.sliding_window"},
        /* experts without their routed count */
        {{.u32_key = "llama.expert_count"}, "llama.expert_used_count"},
        {{.extra_tensor = "blk.0.attn_q.bias"}, "blk.0.attn_q.bias"},
        {{.freqs = (const float[]){1, 1, 1}, .n_freqs = 3}, "rope_freqs.weight"},
        {{.freqs = (const float[]){1, 0, 1, 1}, .n_freqs = 4}, "rope_freqs.weight"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rewrite_260k(path, &cases[i].r);
        lf_model *m = NULL;
        char err[512];
        const lf_status st = lf_model_open(path, NULL, &m, err, sizeof err);
        cr_assert(st == LF_E_UNSUPPORTED || st == LF_E_MODEL, "case %zu opened (%d)", i, st);
        cr_assert_null(m);
        cr_assert_not_null(strstr(err, cases[i].needle), "case %zu: '%s' does not name %s", i, err, cases[i].needle);
    }
    unlink(path);
}

/* Sum of AnonHugePages over this process's mappings, in KiB. */
static long anon_huge_kib(void) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[256];
    long total = 0, kib;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "AnonHugePages: %ld kB", &kib) == 1) total += kib;
    fclose(f);
    return total;
}

/* Huge pages for the resident weights change where they live, not what
 * they compute: the same logits, bit for bit, with and without. */
Test(model, huge_pages_give_the_same_logits) {
    lf_synth_params p = lf_synth_default_params();
    p.n_embd = 512;
    p.n_layer = 2;
    p.n_ff = 1536;
    p.n_head = 8;
    p.n_vocab = 300;
    p.type = LF_TYPE_Q4_0;
    p.force = true;
    char err[256];
    const char *path = synth_path("huge");
    cr_assert_eq(lf_synth_write(path, &p, err, sizeof err), LF_OK, "%s", err);
    float logits[2][300];
    long huge_kib[2];
    for (int h = 0; h < 2; h++) {
        lf_model_params mp = lf_model_default_params();
        cr_assert(!mp.huge_pages, "4 KiB pages are the default");
        mp.mode = LF_MODE_RAM;
        mp.huge_pages = h;
        lf_model *m;
        cr_assert_eq(lf_model_open(path, &mp, &m, err, sizeof err), LF_OK, "%s", err);
        lf_session *s;
        cr_assert_eq(lf_session_create(m, NULL, &s, err, sizeof err), LF_OK, "%s", err);
        const lf_token toks[3] = {1, 200, 201};
        cr_assert_eq(lf_session_eval(s, toks, 3), LF_OK);
        memcpy(logits[h], lf_session_logits(s), sizeof logits[h]);
        huge_kib[h] = anon_huge_kib();
        lf_session_destroy(s);
        lf_model_close(m);
    }
    cr_assert(memcmp(logits[0], logits[1], sizeof logits[0]) == 0, "huge pages changed the logits");
    /* whether the kernel grants them is its choice (enabled, free memory) */
    cr_log_info("AnonHugePages with the model open: %ld KiB with huge_pages, %ld without", huge_kib[1], huge_kib[0]);
    unlink(path);
}
