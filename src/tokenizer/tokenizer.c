/* tokenizer.c - the vocabulary shared by every tokenizer algorithm, the
 * split of text at special tokens, and the merge queue. The algorithms are
 * tokenizer_spm.c (SentencePiece) and tokenizer_bpe.c (byte-level BPE). */
#include "tokenizer_internal.h"

#include <float.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t hash_piece(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

lf_token lf__tokenizer_find(const lf_tokenizer *t, const char *piece, size_t len) {
    uint64_t h = hash_piece(piece, len) & (t->hash_cap - 1);
    for (;;) {
        const int32_t id = t->hash[h];
        if (id < 0) return -1;
        if (t->lens[id] == len && memcmp(t->pieces[id], piece, len) == 0) return id;
        h = (h + 1) & (t->hash_cap - 1);
    }
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "<0xNN>" with exactly two hex digits: no sign, no spaces, no prefix games
 * (strtoul would take "<0x-D>" and give a negative index). */
bool tok_parse_byte_piece(const char *p, uint32_t len, int *byte) {
    if (len != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return false;
    const int hi = hex_digit(p[3]), lo = hex_digit(p[4]);
    if (hi < 0 || lo < 0) return false;
    *byte = hi * 16 + lo;
    return true;
}

/* A metadata number as a token type: an integer in 0..255, else -1. */
static int token_type_of(double v) {
    if (!(v >= 0.0 && v <= 255.0) || v != (double)(int)v) return -1;
    return (int)v;
}


/* By first byte, then longest first (qsort_r's context: the tokenizer). */
static int by_first_byte_longer_first(const void *a, const void *b, void *ctx) {
    const lf_tokenizer *t = ctx;
    const lf_token x = *(const lf_token *)a, y = *(const lf_token *)b;
    const uint8_t fx = (uint8_t)t->pieces[x][0], fy = (uint8_t)t->pieces[y][0];
    if (fx != fy) return fx < fy ? -1 : 1;
    if (t->lens[x] != t->lens[y]) return t->lens[x] > t->lens[y] ? -1 : 1;
    return (x > y) - (x < y);
}

/* Control and user-defined tokens, grouped by first byte and longest
 * first within a group: the text is split at them before the algorithm
 * runs (user-defined always, control only when special tokens are
 * parsed), as llama.cpp and Hugging Face do. The groups make the scan one
 * table lookup per byte of text that no special token starts with. */
static lf_status collect_specials(lf_tokenizer *t) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->n_vocab; i++)
        if ((t->types[i] == LF_TOKEN_CONTROL || t->types[i] == LF_TOKEN_USER_DEFINED) && t->lens[i] > 0) n++;
    t->specials = malloc((n ? n : 1) * sizeof *t->specials);
    if (!t->specials) return LF_E_NOMEM;
    n = 0;
    for (uint32_t i = 0; i < t->n_vocab; i++)
        if ((t->types[i] == LF_TOKEN_CONTROL || t->types[i] == LF_TOKEN_USER_DEFINED) && t->lens[i] > 0)
            t->specials[n++] = (lf_token)i;
    qsort_r(t->specials, n, sizeof *t->specials, by_first_byte_longer_first, t);
    t->n_specials = n;
    memset(t->special_from, 0, sizeof t->special_from);
    for (uint32_t k = 0; k < n; k++) t->special_from[(uint8_t)t->pieces[t->specials[k]][0] + 1] = k + 1;
    for (int b = 1; b <= 256; b++) /* group b runs from special_from[b] to special_from[b + 1] */
        if (t->special_from[b] < t->special_from[b - 1]) t->special_from[b] = t->special_from[b - 1];
    return LF_OK;
}

void lf__tokenizer_free(lf_tokenizer *t) {
    if (!t) return;
    if (t->pieces)
        for (uint32_t i = 0; i < t->n_vocab; i++) free(t->pieces[i]);
    free(t->pieces);
    free(t->lens);
    free(t->scores);
    free(t->types);
    free(t->hash);
    free(t->specials);
    free(t->chat_template);
    tok_bpe_free(t->bpe);
    free(t);
}

lf_status lf__tokenizer_load(const lf_gguf *g, lf_tokenizer **out, lf_err *err) {
    *out = NULL;
    lf_gguf_str model;
    lf_status st = lf__gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (st) return st;
    if (!model.ptr) return lf__err_set(err, LF_E_MODEL, "metadata key 'tokenizer.ggml.model' is missing");
    const bool spm = lf__gguf_str_eq(model, "llama"), bpe = lf__gguf_str_eq(model, "gpt2");
    if (!spm && !bpe)
        return lf__err_set(err, LF_E_UNSUPPORTED,
                           "tokenizer.ggml.model '%.*s' is not supported ('llama' SentencePiece and 'gpt2' byte-level BPE are)",
                           (int)LF_MIN(model.len, (uint64_t)64), model.ptr);
    const lf_gguf_kv *tokens = lf__gguf_find(g, "tokenizer.ggml.tokens");
    if (!tokens || tokens->type != LF_GGUF_ARRAY || tokens->arr_type != LF_GGUF_STRING)
        return lf__err_set(err, LF_E_MODEL, "metadata key 'tokenizer.ggml.tokens' is missing or not a string array");
    if (tokens->arr_n == 0 || tokens->arr_n > (1u << 24))
        return lf__err_set(err, LF_E_MODEL, "tokenizer has %" PRIu64 " tokens", tokens->arr_n);
    const uint32_t n = (uint32_t)tokens->arr_n;
    const lf_gguf_kv *scores = lf__gguf_find(g, "tokenizer.ggml.scores");
    const lf_gguf_kv *types = lf__gguf_find(g, "tokenizer.ggml.token_type");
    if (scores && (scores->type != LF_GGUF_ARRAY || scores->arr_n != n || !lf__gguf_vtype_size(scores->arr_type)))
        return lf__err_set(err, LF_E_MODEL, "tokenizer.ggml.scores does not hold %u numbers", n);
    if (types && (types->type != LF_GGUF_ARRAY || types->arr_n != n || !lf__gguf_vtype_size(types->arr_type)))
        return lf__err_set(err, LF_E_MODEL, "tokenizer.ggml.token_type does not hold %u numbers", n);

    lf_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return LF_E_NOMEM;
    t->n_vocab = n;
    t->pieces = calloc(n, sizeof *t->pieces);
    t->lens = calloc(n, sizeof *t->lens);
    t->scores = calloc(n, sizeof *t->scores);
    t->types = calloc(n, sizeof *t->types);
    t->hash_cap = 16;
    while (t->hash_cap < (uint64_t)n * 2) t->hash_cap *= 2;
    t->hash = malloc(t->hash_cap * sizeof *t->hash);
    if (!t->pieces || !t->lens || !t->scores || !t->types || !t->hash) {
        lf__tokenizer_free(t);
        return lf__err_set(err, LF_E_NOMEM, "vocabulary of %u tokens", n);
    }
    for (uint64_t i = 0; i < t->hash_cap; i++) t->hash[i] = -1;
    for (int b = 0; b < 256; b++) t->byte_tokens[b] = -1;
    uint64_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        lf_gguf_str s;
        if (!lf__gguf_arr_next_str(tokens, &pos, &s) || s.len > 1024) {
            lf__tokenizer_free(t);
            return lf__err_set(err, LF_E_MODEL, "token %u is unreadable or longer than 1024 bytes", i);
        }
        t->pieces[i] = malloc(s.len + 1);
        if (!t->pieces[i]) {
            lf__tokenizer_free(t);
            return LF_E_NOMEM;
        }
        memcpy(t->pieces[i], s.ptr, s.len);
        t->pieces[i][s.len] = '\0';
        t->lens[i] = (uint32_t)s.len;
        /* numbers from the file are range-checked before any cast */
        const double score = scores ? lf__gguf_arr_get_num(scores, i) : 0.0;
        if (!(score >= -FLT_MAX && score <= FLT_MAX)) {
            lf__tokenizer_free(t);
            return lf__err_set(err, LF_E_MODEL, "token %u has score %g, not a finite float", i, score);
        }
        t->scores[i] = (float)score;
        int byte;
        const bool is_byte = tok_parse_byte_piece(t->pieces[i], t->lens[i], &byte);
        const int type = types ? token_type_of(lf__gguf_arr_get_num(types, i)) : (is_byte ? LF_TOKEN_BYTE : LF_TOKEN_NORMAL);
        if (type < 0) {
            lf__tokenizer_free(t);
            return lf__err_set(err, LF_E_MODEL, "token %u has type %g, not an integer in 0..255", i,
                               lf__gguf_arr_get_num(types, i));
        }
        t->types[i] = (uint8_t)type;
        if (t->types[i] == LF_TOKEN_BYTE && is_byte) t->byte_tokens[byte] = (lf_token)i;
        /* first occurrence wins for duplicate pieces */
        if (lf__tokenizer_find(t, t->pieces[i], t->lens[i]) < 0) {
            uint64_t h = hash_piece(t->pieces[i], t->lens[i]) & (t->hash_cap - 1);
            while (t->hash[h] >= 0) h = (h + 1) & (t->hash_cap - 1);
            t->hash[h] = (int32_t)i;
        }
    }
    uint32_t bos, eos, eot;
    if ((st = lf__gguf_get_u32_or(g, "tokenizer.ggml.bos_token_id", spm ? 1 : UINT32_MAX, &bos, err)) ||
        (st = lf__gguf_get_u32_or(g, "tokenizer.ggml.eos_token_id", spm ? 2 : UINT32_MAX, &eos, err)) ||
        (st = lf__gguf_get_u32_or(g, "tokenizer.ggml.eot_token_id", UINT32_MAX, &eot, err)) ||
        (st = lf__gguf_get_bool_or(g, "tokenizer.ggml.add_bos_token", spm, &t->add_bos, err)) ||
        (st = lf__gguf_get_bool_or(g, "tokenizer.ggml.add_space_prefix", spm, &t->add_space_prefix, err))) {
        lf__tokenizer_free(t);
        return st;
    }
    t->bos = bos < n ? (lf_token)bos : -1;
    t->eos = eos < n ? (lf_token)eos : -1;
    t->eot = eot < n ? (lf_token)eot : -1;
    /* files often name no EOT; llama.cpp then finds it by its text */
    static const char *const end_of_turn[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|end_of_turn|>", "<EOT>"};
    for (size_t k = 0; t->eot < 0 && k < sizeof end_of_turn / sizeof *end_of_turn; k++) {
        const lf_token id = lf__tokenizer_find(t, end_of_turn[k], strlen(end_of_turn[k]));
        if (id >= 0 && (t->types[id] == LF_TOKEN_CONTROL || t->types[id] == LF_TOKEN_USER_DEFINED)) t->eot = id;
    }
    lf_gguf_str tmpl;
    if ((st = lf__gguf_get_str(g, "tokenizer.chat_template", &tmpl, err)) ||
        (tmpl.ptr && !(t->chat_template = strndup(tmpl.ptr, tmpl.len)))) {
        lf__tokenizer_free(t);
        return st ? st : LF_E_NOMEM;
    }
    t->encode = spm ? tok_spm_encode : tok_bpe_encode;
    if (bpe && (st = tok_bpe_load(g, t, err))) {
        lf__tokenizer_free(t);
        return st;
    }
    if ((st = collect_specials(t))) {
        lf__tokenizer_free(t);
        return lf__err_set(err, st, "vocabulary of %u tokens", n);
    }
    *out = t;
    return LF_OK;
}

uint32_t lf__tokenizer_vocab_size(const lf_tokenizer *t) { return t->n_vocab; }
lf_token lf__tokenizer_bos(const lf_tokenizer *t) { return t->bos; }
lf_token lf__tokenizer_eos(const lf_tokenizer *t) { return t->eos; }
lf_token lf__tokenizer_eot(const lf_tokenizer *t) { return t->eot; }
bool lf__tokenizer_adds_bos(const lf_tokenizer *t) { return t->add_bos; }
bool lf__tokenizer_space_prefix(const lf_tokenizer *t) { return t->add_space_prefix; }

size_t lf_utf8_complete_prefix(const char *p, size_t n) {
    if (!p) return 0;
    /* look back at most 3 bytes for the lead byte of the last character */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        const uint8_t c = (uint8_t)p[n - back];
        if ((c & 0xC0) == 0x80) continue; /* a continuation byte */
        const uint32_t need = c >= 0xC2 && c <= 0xF4 ? tok_utf8_len(c) : 1;
        return need > back ? n - back : n;
    }
    return n;
}
bool lf__tokenizer_is_end(const lf_tokenizer *t, lf_token id) {
    return id >= 0 && (id == t->eos || id == t->eot);
}


/* Higher score first; ties go to the leftmost pair, as SentencePiece does. */
static bool bigram_before(const tok_bigram *a, const tok_bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

bool tok_heap_push(tok_heap *h, tok_bigram b) {
    if (h->n == h->cap) {
        const size_t nc = h->cap ? h->cap * 2 : 64;
        tok_bigram *nv = realloc(h->v, nc * sizeof *nv);
        if (!nv) return false;
        h->v = nv;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0) {
        const size_t p = (i - 1) / 2;
        if (!bigram_before(&b, &h->v[p])) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = b;
    return true;
}

tok_bigram tok_heap_pop(tok_heap *h) {
    const tok_bigram top = h->v[0];
    const tok_bigram last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && bigram_before(&h->v[c + 1], &h->v[c])) c++;
        if (!bigram_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

uint32_t tok_utf8_len(uint8_t c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1; /* stray continuation or invalid byte: a symbol of its own */
}

/* The first special token (longest first at a position) found in text,
 * at or after its start: its id and offset, or -1. */
static lf_token next_special(const lf_tokenizer *t, const char *text, size_t len, bool parse_special, size_t *at) {
    for (size_t i = 0; i < len; i++) {
        const uint8_t b = (uint8_t)text[i];
        for (uint32_t k = t->special_from[b]; k < t->special_from[b + 1]; k++) {
            const lf_token id = t->specials[k];
            if (!parse_special && t->types[id] == LF_TOKEN_CONTROL) continue;
            const uint32_t n = t->lens[id];
            if (n <= len - i && memcmp(text + i, t->pieces[id], n) == 0) {
                *at = i;
                return id;
            }
        }
    }
    return -1;
}

lf_status lf__tokenizer_encode_ex(const lf_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                                  lf_token *out, size_t cap, size_t *n_out) {
    tok_emitter e = {out, cap, 0};
    if (add_bos && t->bos >= 0) tok_emit(&e, t->bos);
    lf_status st = LF_OK;
    /* raw text between special tokens goes to the algorithm */
    while (len > 0 && st == LF_OK) {
        size_t at = len;
        const lf_token sp = t->n_specials ? next_special(t, text, len, parse_special, &at) : -1;
        if (at > 0) st = t->encode(t, text, sp >= 0 ? at : len, &e);
        if (sp < 0) break;
        tok_emit(&e, sp);
        text += at + t->lens[sp];
        len -= at + t->lens[sp];
    }
    *n_out = e.n;
    if (st) return st;
    return e.n > cap ? LF_E_INVALID_ARG : LF_OK;
}

lf_status lf__tokenizer_encode(const lf_tokenizer *t, const char *text, size_t len, bool add_bos, lf_token *out,
                               size_t cap, size_t *n_out) {
    return lf__tokenizer_encode_ex(t, text, len, add_bos, false, out, cap, n_out);
}

const char *lf__tokenizer_raw_piece(const lf_tokenizer *t, lf_token token, uint32_t *len) {
    if (token < 0 || (uint32_t)token >= t->n_vocab) return NULL;
    *len = t->lens[token];
    return t->pieces[token];
}

uint8_t lf__tokenizer_type(const lf_tokenizer *t, lf_token token) {
    return token >= 0 && (uint32_t)token < t->n_vocab ? t->types[token] : 0;
}

int lf__tokenizer_piece(const lf_tokenizer *t, lf_token token, char *buf, size_t cap) {
    if (token < 0 || (uint32_t)token >= t->n_vocab) return LF_E_INVALID_ARG;
    const uint8_t type = t->types[token];
    if (type == LF_TOKEN_CONTROL || type == LF_TOKEN_UNUSED) return 0;
    if (type == LF_TOKEN_USER_DEFINED) { /* added tokens are stored as their text */
        const uint32_t n = t->lens[token];
        memcpy(buf, t->pieces[token], LF_MIN((size_t)n, cap));
        return (int)n;
    }
    return t->bpe ? tok_bpe_piece(t, token, buf, cap) : tok_spm_piece(t, token, buf, cap);
}
