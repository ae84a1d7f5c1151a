/* test_tokenizer.c - SentencePiece encode/decode on stories260K's vocabulary. */
#include <criterion/criterion.h>

#include "llmflash.h"
#include "test_support.h"

#include <string.h>

static lf_model *model;

static void setup(void) {
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
