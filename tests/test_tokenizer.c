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
    cr_assert_eq(lf__gguf_writer_create(32, &w), LF_OK);
    lf_gguf_str strs[16];
    for (uint64_t i = 0; i < n; i++) strs[i] = (lf_gguf_str){pieces[i], strlen(pieces[i])};
    cr_assert_eq(lf__gguf_writer_set_str(w, "tokenizer.ggml.model", "llama"), LF_OK);
    cr_assert_eq(lf__gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, n), LF_OK);
    if (types) cr_assert_eq(lf__gguf_writer_set_arr(w, "tokenizer.ggml.token_type", types_type, types, n), LF_OK);
    if (scores) cr_assert_eq(lf__gguf_writer_set_arr(w, "tokenizer.ggml.scores", scores_type, scores, n), LF_OK);
    const int fd = memfd_create("vocab", 0);
    cr_assert(fd >= 0);
    cr_assert_eq(lf__gguf_writer_write_header(w, fd, err), LF_OK, "%s", err->msg);
    const uint64_t size = lf__gguf_writer_file_size(w);
    lf__gguf_writer_destroy(w);
    lf_gguf *g;
    cr_assert_eq(lf__gguf_read_fd(fd, size, &g, err), LF_OK, "%s", err->msg);
    const lf_status st = lf__tokenizer_load(g, t, err);
    lf__gguf_free(g);
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
        const int len = lf__tokenizer_piece(t, i, buf, sizeof buf);
        cr_assert_eq(len, 6, "piece %d is printed as text, not as a byte", i);
        cr_assert_eq(memcmp(buf, pieces[i], 6), 0);
    }
    cr_assert_eq(lf__tokenizer_piece(t, 7, buf, sizeof buf), 1);
    cr_assert_eq(buf[0], 'A');
    /* encoding falls back to the only real byte token */
    lf_token out[8];
    size_t n;
    cr_assert_eq(lf__tokenizer_encode(t, "A", 1, false, out, 8, &n), LF_OK);
    cr_assert(n >= 1 && out[n - 1] == 7, "A is byte token 7");
    lf__tokenizer_free(t);
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
    lf__tokenizer_free(t);
}

/* ---- real tokenizers against their own reference outputs ----------------
 * ../shared/vocab holds vocab-only GGUF files and, for each, test strings
 * (.inp, separated by __ggml_vocab_test__ lines) with the ids the model's
 * own Hugging Face tokenizer gives them (.out, one line each, no BOS). */
static const char *const k_vocabs[] = {"llama3", "qwen3", "gpt-2", "deepseek-llm", "starcoder", "llama-spm", "phi-3"};

/* Splits the .inp text at its separators; returns the number of cases. */
static size_t split_cases(char *inp, size_t len, char **cases, size_t *lens, size_t max) {
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t n = 0;
    char *p = inp, *end = inp + len;
    while (p < end && n < max) {
        char *q = memmem(p, (size_t)(end - p), sep, sizeof sep - 1);
        if (!q) break; /* text after the last separator is not a case */
        cases[n] = p;
        lens[n++] = (size_t)(q - p);
        p = q + sizeof sep - 1;
    }
    return n;
}

Test(tokenizer_vocab, every_reference_case_is_reproduced_and_decodes_back) {
    require_shared();
    for (size_t v = 0; v < sizeof k_vocabs / sizeof *k_vocabs; v++) {
        char path[512], err[512];
        snprintf(path, sizeof path, "%s", shared_path(""));
        snprintf(path + strlen(path), sizeof path - strlen(path), "vocab/ggml-vocab-%s.gguf", k_vocabs[v]);
        lf_vocab *voc;
        cr_assert_eq(lf_vocab_open(path, &voc, err, sizeof err), LF_OK, "%s", err);
        char inp_path[600], out_path[600];
        snprintf(inp_path, sizeof inp_path, "%s.inp", path);
        snprintf(out_path, sizeof out_path, "%s.out", path);
        size_t inp_len = 0, out_len = 0;
        char *inp = slurp(inp_path, &inp_len), *out = slurp(out_path, &out_len);
        cr_assert(inp && out);
        char *cases[64];
        size_t lens[64];
        const size_t n = split_cases(inp, inp_len, cases, lens, 64);
        cr_assert_gt(n, 40, "%s: %zu cases", k_vocabs[v], n);
        const bool spm = strstr(k_vocabs[v], "spm") || strstr(k_vocabs[v], "phi");
        char *line = out;
        for (size_t c = 0; c < n; c++) {
            char *eol = strchr(line, '\n');
            cr_assert_not_null(eol, "%s: fewer reference lines than cases", k_vocabs[v]);
            *eol = '\0';
            lf_token want[512], got[512];
            size_t nw = 0, ng;
            for (char *tok = strtok(line, " "); tok; tok = strtok(NULL, " ")) want[nw++] = (lf_token)atoi(tok);
            cr_assert_eq(lf_vocab_tokenize(voc, cases[c], lens[c], 0, got, 512, &ng), LF_OK);
            cr_assert_eq(ng, nw, "%s case %zu: %zu tokens, the reference has %zu", k_vocabs[v], c, ng, nw);
            for (size_t i = 0; i < nw; i++)
                cr_assert_eq(got[i], want[i], "%s case %zu token %zu: %d, the reference has %d", k_vocabs[v], c, i,
                             got[i], want[i]);
            /* decoding gives the bytes back (SentencePiece adds one leading space) */
            char text[4096];
            size_t tl = 0;
            for (size_t i = 0; i < ng; i++) {
                const int k = lf_vocab_piece(voc, got[i], text + tl, sizeof text - tl);
                cr_assert(k >= 0 && tl + (size_t)k < sizeof text);
                tl += (size_t)k;
            }
            const size_t skip = spm && tl > 0 && text[0] == ' ' ? 1 : 0;
            cr_assert(tl - skip == lens[c] && memcmp(text + skip, cases[c], lens[c]) == 0, "%s case %zu does not decode back",
                      k_vocabs[v], c);
            line = eol + 1;
        }
        free(inp);
        free(out);
        lf_vocab_close(voc);
    }
}

Test(tokenizer_vocab, special_tokens_are_text_unless_asked_and_end_tokens_are_known) {
    require_shared();
    char path[512], err[512];
    snprintf(path, sizeof path, "%svocab/ggml-vocab-llama3.gguf", shared_path(""));
    lf_vocab *v;
    cr_assert_eq(lf_vocab_open(path, &v, err, sizeof err), LF_OK, "%s", err);
    const char *text = "<|start_header_id|>user<|end_header_id|>";
    lf_token t[64];
    size_t n;
    cr_assert_eq(lf_vocab_tokenize(v, text, strlen(text), LF_TOKENIZE_SPECIAL, t, 64, &n), LF_OK);
    cr_assert_eq(n, 3, "two control tokens around one word: %zu", n);
    cr_assert_eq(lf_vocab_token_type(v, t[0]), LF_TOKEN_CONTROL);
    uint32_t len;
    const char *raw = lf_vocab_raw_piece(v, t[0], &len);
    cr_assert(len == 19 && memcmp(raw, "<|start_header_id|>", 19) == 0);
    cr_assert_eq(lf_vocab_tokenize(v, text, strlen(text), 0, t, 64, &n), LF_OK);
    cr_assert_gt(n, 3, "without --special the markup is plain text");
    for (size_t i = 0; i < n; i++) cr_assert_neq(lf_vocab_token_type(v, t[i]), LF_TOKEN_CONTROL);
    /* BOS from metadata; Llama 3 ends a turn with <|eot_id|> */
    cr_assert(lf_vocab_adds_bos(v));
    cr_assert_eq(lf_vocab_tokenize(v, "hi", 2, LF_TOKENIZE_ADD_BOS, t, 64, &n), LF_OK);
    cr_assert_eq(t[0], lf_vocab_bos(v));
    const char *eot = "<|eot_id|>";
    cr_assert_eq(lf_vocab_tokenize(v, eot, strlen(eot), LF_TOKENIZE_SPECIAL, t, 64, &n), LF_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(lf_vocab_eot(v), t[0], "the file names no EOT: it is found by its text");
    cr_assert(lf_vocab_is_end(v, t[0]) && lf_vocab_is_end(v, lf_vocab_eos(v)));
    cr_assert(!lf_vocab_is_end(v, lf_vocab_bos(v)));
    lf_vocab_close(v);
    /* Qwen: <|im_end|> ends a turn, and no BOS is added */
    snprintf(path, sizeof path, "%svocab/ggml-vocab-qwen3.gguf", shared_path(""));
    cr_assert_eq(lf_vocab_open(path, &v, err, sizeof err), LF_OK, "%s", err);
    cr_assert_not(lf_vocab_adds_bos(v));
    cr_assert_eq(lf_vocab_tokenize(v, "<|im_end|>", 10, LF_TOKENIZE_SPECIAL, t, 64, &n), LF_OK);
    cr_assert(n == 1 && lf_vocab_is_end(v, t[0]));
    lf_vocab_close(v);
}

Test(tokenizer_hostile, unknown_pre_tokenizer_is_named) {
    lf_gguf_writer *w;
    cr_assert_eq(lf__gguf_writer_create(32, &w), LF_OK);
    lf_gguf_str strs[] = {{"a", 1}, {"b", 1}, {"ab", 2}};
    lf_gguf_str merges[] = {{"a b", 3}};
    cr_assert_eq(lf__gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2"), LF_OK);
    cr_assert_eq(lf__gguf_writer_set_str(w, "tokenizer.ggml.pre", "tekken-9000"), LF_OK);
    cr_assert_eq(lf__gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, 3), LF_OK);
    cr_assert_eq(lf__gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, 1), LF_OK);
    lf_err err = {{0}};
    const int fd = memfd_create("vocab", 0);
    cr_assert_eq(lf__gguf_writer_write_header(w, fd, &err), LF_OK, "%s", err.msg);
    const uint64_t size = lf__gguf_writer_file_size(w);
    lf__gguf_writer_destroy(w);
    lf_gguf *g;
    cr_assert_eq(lf__gguf_read_fd(fd, size, &g, &err), LF_OK, "%s", err.msg);
    lf_tokenizer *t = NULL;
    cr_assert_eq(lf__tokenizer_load(g, &t, &err), LF_E_UNSUPPORTED);
    cr_assert_not_null(strstr(err.msg, "tekken-9000"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "tokenizer.ggml.pre"), "%s", err.msg);
    cr_assert_null(t);
    lf__gguf_free(g);
    close(fd);
}

Test(tokenizer_hostile, output_holds_only_an_unfinished_utf8_character) {
    cr_assert_eq(lf_utf8_complete_prefix("a\xE2\x82", 3), 1, "the euro sign's first two bytes wait");
    cr_assert_eq(lf_utf8_complete_prefix("a\xE2\x82\xAC", 4), 4);
    cr_assert_eq(lf_utf8_complete_prefix("\xF0\x9F\xA6", 3), 0, "three bytes of a four-byte emoji");
    cr_assert_eq(lf_utf8_complete_prefix("\xF0\x9F\xA6\x99", 4), 4);
    cr_assert_eq(lf_utf8_complete_prefix("ok\xFF", 3), 3, "an invalid byte is not held");
    cr_assert_eq(lf_utf8_complete_prefix("\x80\x80\x80\x80", 4), 4, "stray continuation bytes are not held");
    cr_assert_eq(lf_utf8_complete_prefix("", 0), 0);
}
