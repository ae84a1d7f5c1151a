/* test_tokenizer.c - SentencePiece encode/decode on stories260K's vocabulary. */
#include <criterion/criterion.h>

#include "llmflash.h"
#include "test_support.h"

#include <string.h>

static lf_model *model;

static void setup(void) {
    require_shared();
    char err[256];
    const lf_status st = lf_model_open(shared_path("models/stories260K.gguf"), NULL, &model, err, sizeof err);
    cr_assert_eq(st, LF_OK, "%s", err);
}
static void teardown(void) { lf_model_close(model); }

static size_t encode(const char *text, bool bos, lf_token *out, size_t cap) {
    size_t n;
    cr_assert_eq(lf_tokenize(model, text, strlen(text), bos, out, cap, &n), LF_OK);
    return n;
}

/* Decodes tokens (skipping BOS) the way SentencePiece does: the leading
 * space of the text is dropped. */
static void decode(const lf_token *t, size_t n, char *out, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char piece[64];
        const int len = lf_token_to_piece(model, t[i], piece, sizeof piece);
        cr_assert(len >= 0);
        cr_assert(k + (size_t)len < cap);
        memcpy(out + k, piece, (size_t)len);
        k += (size_t)len;
    }
    out[k] = '\0';
    if (out[0] == ' ') memmove(out, out + 1, k);
}

TestSuite(tokenizer, .init = setup, .fini = teardown);

Test(tokenizer, round_trips) {
    const char *texts[] = {
        "Once upon a time, there was a little girl named Lily.",
        "Hello world",
        "  two leading spaces and trailing  ",
        "Numbers 12345 and punctuation!?;:",
        "Unicode: café, naïve, 日本語, emoji 🙂",
        "line one\nline two\ttab",
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        lf_token toks[512];
        const size_t n = encode(texts[i], false, toks, 512);
        cr_assert(n > 0);
        char out[1024];
        decode(toks, n, out, sizeof out);
        cr_assert_str_eq(out, texts[i]);
    }
}

Test(tokenizer, merges_into_whole_words) {
    lf_token toks[64];
    const size_t n = encode("Once upon a time", false, toks, 64);
    /* the vocabulary of 512 holds these frequent words whole */
    cr_assert(n <= 6, "%zu tokens", n);
    char piece[32];
    const int len = lf_token_to_piece(model, toks[0], piece, sizeof piece);
    cr_assert(len >= 2 && piece[0] == ' ', "first piece carries the SentencePiece space");
}

Test(tokenizer, byte_fallback) {
    lf_token toks[64];
    const char *text = "日"; /* not in a 512-token vocabulary */
    const size_t n = encode(text, false, toks, 64);
    /* "▁" plus three UTF-8 bytes, each a byte token */
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        char piece[8];
        const int len = lf_token_to_piece(model, toks[i], piece, sizeof piece);
        if (len == 1 && (unsigned char)piece[0] >= 0x80) bytes++;
    }
    cr_assert_eq(bytes, 3);
    char out[64];
    decode(toks, n, out, sizeof out);
    cr_assert_str_eq(out, text);
}

Test(tokenizer, bos_handling) {
    lf_token toks[8];
    cr_assert_eq(lf_token_bos(model), 1);
    cr_assert_eq(lf_token_eos(model), 2);
    cr_assert_eq(encode("", true, toks, 8), 1);
    cr_assert_eq(toks[0], 1);
    cr_assert_eq(encode("", false, toks, 8), 0);
    const size_t n = encode("Hi", true, toks, 8);
    cr_assert(n >= 2 && toks[0] == 1 && toks[1] != 1);
    char piece[8];
    cr_assert_eq(lf_token_to_piece(model, 1, piece, sizeof piece), 0, "BOS has no text");
}

Test(tokenizer, small_buffer_reports_needed_size) {
    lf_token toks[2];
    size_t n;
    const char *text = "a long sentence with many words in it";
    cr_assert_eq(lf_tokenize(model, text, strlen(text), true, toks, 2, &n), LF_E_INVALID_ARG);
    cr_assert(n > 2);
    cr_assert_eq(lf_tokenize(model, text, strlen(text), true, NULL, 0, &n), LF_E_INVALID_ARG);
    cr_assert_eq(lf_token_to_piece(model, 99999, NULL, 0), LF_E_INVALID_ARG);
    cr_assert_eq(lf_token_to_piece(model, -1, NULL, 0), LF_E_INVALID_ARG);
}

Test(tokenizer, long_text_is_fast_enough_to_finish) {
    size_t len;
    char *text = slurp(shared_path("data/tinystories-valid-excerpt.txt"), &len);
    cr_assert_not_null(text);
    size_t n;
    lf_tokenize(model, text, len, true, NULL, 0, &n);
    lf_token *toks = malloc(n * sizeof *toks);
    cr_assert_eq(lf_tokenize(model, text, len, true, toks, n, &n), LF_OK);
    cr_assert(n > 5000 && n < len, "%zu tokens for %zu bytes", n, len);
    char *out = malloc(len + 16);
    decode(toks + 1, n - 1, out, len + 16);
    cr_assert_str_eq(out, text[0] == ' ' ? text + 1 : text);
    free(out);
    free(toks);
    free(text);
}

/* ---- hostile vocabularies: built in memory, no shared files needed ------ */
#include "../src/tokenizer/tokenizer.h"

#include <sys/mman.h>
#include <unistd.h>

/* Writes a vocabulary-only GGUF (SentencePiece keys) to a memfd and loads
 * its tokenizer. types/scores may be NULL. */
static lf_status load_vocab(const char *const *pieces, uint64_t n, uint32_t types_type, const void *types,
                            uint32_t scores_type, const void *scores, lf_tokenizer **t, lf_err *err) {
    lf_gguf_writer *w;
    cr_assert_eq(lf_gguf_writer_create(32, &w), LF_OK);
    lf_gguf_str strs[16];
    for (uint64_t i = 0; i < n; i++) strs[i] = (lf_gguf_str){pieces[i], strlen(pieces[i])};
    cr_assert_eq(lf_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama"), LF_OK);
    cr_assert_eq(lf_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, n), LF_OK);
    if (types) cr_assert_eq(lf_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", types_type, types, n), LF_OK);
    if (scores) cr_assert_eq(lf_gguf_writer_set_arr(w, "tokenizer.ggml.scores", scores_type, scores, n), LF_OK);
    const int fd = memfd_create("vocab", 0);
    cr_assert(fd >= 0);
    cr_assert_eq(lf_gguf_writer_write_header(w, fd, err), LF_OK, "%s", err->msg);
    const uint64_t size = lf_gguf_writer_file_size(w);
    lf_gguf_writer_destroy(w);
    lf_gguf *g;
    cr_assert_eq(lf_gguf_read_fd(fd, size, &g, err), LF_OK, "%s", err->msg);
    const lf_status st = lf_tokenizer_load(g, t, err);
    lf_gguf_free(g);
    close(fd);
    return st;
}

Test(tokenizer_hostile, byte_pieces_need_exactly_two_hex_digits) {
    /* "<0x-D>" once passed strtoul, indexed byte_tokens[-13] and overwrote
     * the tokenizer; none of these is a byte piece */
    const char *pieces[] = {"<unk>", "<s>", "</s>", "<0x-D>", "<0x+1>", "<0x 1>", "<0xG0>", "<0x41>", "a"};
    const int32_t types[] = {2, 3, 3, 6, 6, 6, 6, 6, 1};
    lf_tokenizer *t;
    lf_err err = {{0}};
    cr_assert_eq(load_vocab(pieces, 9, LF_GGUF_I32, types, 0, NULL, &t, &err), LF_OK, "%s", err.msg);
    char buf[16];
    for (int i = 3; i <= 6; i++) {
        const int len = lf_tokenizer_piece(t, i, buf, sizeof buf);
        cr_assert_eq(len, 6, "piece %d is printed as text, not as a byte", i);
        cr_assert_eq(memcmp(buf, pieces[i], 6), 0);
    }
    cr_assert_eq(lf_tokenizer_piece(t, 7, buf, sizeof buf), 1);
    cr_assert_eq(buf[0], 'A');
    /* encoding falls back to the only real byte token */
    lf_token out[8];
    size_t n;
    cr_assert_eq(lf_tokenizer_encode(t, "A", 1, false, out, 8, &n), LF_OK);
    cr_assert(n >= 1 && out[n - 1] == 7, "A is byte token 7");
    lf_tokenizer_free(t);
}

Test(tokenizer_hostile, out_of_range_types_and_scores_are_errors) {
    const char *pieces[] = {"<unk>", "a", "b"};
    lf_tokenizer *t;
    lf_err err = {{0}};
    const int32_t big[] = {2, 300, 1}, neg[] = {2, -1, 1};
    cr_assert_eq(load_vocab(pieces, 3, LF_GGUF_I32, big, 0, NULL, &t, &err), LF_E_MODEL);
    cr_assert(strstr(err.msg, "token 1") && strstr(err.msg, "type"), "%s", err.msg);
    cr_assert_eq(load_vocab(pieces, 3, LF_GGUF_I32, neg, 0, NULL, &t, &err), LF_E_MODEL);
    const float frac[] = {2.0f, 1.5f, 1.0f};
    cr_assert_eq(load_vocab(pieces, 3, LF_GGUF_F32, frac, 0, NULL, &t, &err), LF_E_MODEL);
    const double huge[] = {0.0, 1e300, 0.0}, nan_score[] = {0.0, 0.0, __builtin_nan("")};
    cr_assert_eq(load_vocab(pieces, 3, 0, NULL, LF_GGUF_F64, huge, &t, &err), LF_E_MODEL);
    cr_assert(strstr(err.msg, "score"), "%s", err.msg);
    cr_assert_eq(load_vocab(pieces, 3, 0, NULL, LF_GGUF_F64, nan_score, &t, &err), LF_E_MODEL);
    const int32_t ok[] = {2, 1, 1};
    const double fine[] = {0.0, -3.5, 1e30};
    cr_assert_eq(load_vocab(pieces, 3, LF_GGUF_I32, ok, LF_GGUF_F64, fine, &t, &err), LF_OK, "%s", err.msg);
    lf_tokenizer_free(t);
}
