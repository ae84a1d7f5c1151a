/* tokenizer_spm.c - vocabulary loading and the SentencePiece ("llama")
 * tokenizer: whitespace becomes U+2581, the text is split into UTF-8
 * characters, and adjacent symbols are merged best-score-first while the
 * merged piece is in the vocabulary. Characters left without a token are
 * emitted as byte tokens <0xNN>. */
#include "tokenizer.h"

#include <float.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

typedef lf_status (*encode_fn)(const lf_tokenizer *t, const char *text, size_t len, lf_token *out, size_t cap,
                               size_t *n);

struct lf_tokenizer {
    uint32_t n_vocab;
    char **pieces;      /* NUL-terminated copies */
    uint32_t *lens;
    float *scores;
    uint8_t *types;     /* enum lf_token_type */
    int32_t *hash;      /* open addressing: token ids, -1 empty */
    uint64_t hash_cap;
    lf_token bos, eos;
    lf_token byte_tokens[256]; /* <0xNN> ids, -1 when missing */
    bool add_bos, add_space_prefix;
    encode_fn encode;
};

static uint64_t hash_piece(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

lf_token lf_tokenizer_find(const lf_tokenizer *t, const char *piece, size_t len) {
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
static bool parse_byte_piece(const char *p, uint32_t len, int *byte) {
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

static lf_status encode_spm(const lf_tokenizer *t, const char *text, size_t len, lf_token *out, size_t cap, size_t *n);

void lf_tokenizer_free(lf_tokenizer *t) {
    if (!t) return;
    if (t->pieces)
        for (uint32_t i = 0; i < t->n_vocab; i++) free(t->pieces[i]);
    free(t->pieces);
    free(t->lens);
    free(t->scores);
    free(t->types);
    free(t->hash);
    free(t);
}

lf_status lf_tokenizer_load(const lf_gguf *g, lf_tokenizer **out, lf_err *err) {
    *out = NULL;
    lf_gguf_str model;
    lf_status st = lf_gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (st) return st;
    if (!model.ptr) return lf_err_set(err, LF_E_MODEL, "metadata key 'tokenizer.ggml.model' is missing");
    if (!lf_gguf_str_eq(model, "llama"))
        return lf_err_set(err, LF_E_UNSUPPORTED, "tokenizer model '%.*s' is not supported (only 'llama' SentencePiece)",
                          (int)LF_MIN(model.len, (uint64_t)64), model.ptr);
    const lf_gguf_kv *tokens = lf_gguf_find(g, "tokenizer.ggml.tokens");
    if (!tokens || tokens->type != LF_GGUF_ARRAY || tokens->arr_type != LF_GGUF_STRING)
        return lf_err_set(err, LF_E_MODEL, "metadata key 'tokenizer.ggml.tokens' is missing or not a string array");
    if (tokens->arr_n == 0 || tokens->arr_n > (1u << 24))
        return lf_err_set(err, LF_E_MODEL, "tokenizer has %" PRIu64 " tokens", tokens->arr_n);
    const uint32_t n = (uint32_t)tokens->arr_n;
    const lf_gguf_kv *scores = lf_gguf_find(g, "tokenizer.ggml.scores");
    const lf_gguf_kv *types = lf_gguf_find(g, "tokenizer.ggml.token_type");
    if (scores && (scores->type != LF_GGUF_ARRAY || scores->arr_n != n || !lf_gguf_vtype_size(scores->arr_type)))
        return lf_err_set(err, LF_E_MODEL, "tokenizer.ggml.scores does not hold %u numbers", n);
    if (types && (types->type != LF_GGUF_ARRAY || types->arr_n != n || !lf_gguf_vtype_size(types->arr_type)))
        return lf_err_set(err, LF_E_MODEL, "tokenizer.ggml.token_type does not hold %u numbers", n);

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
        lf_tokenizer_free(t);
        return lf_err_set(err, LF_E_NOMEM, "vocabulary of %u tokens", n);
    }
    for (uint64_t i = 0; i < t->hash_cap; i++) t->hash[i] = -1;
    for (int b = 0; b < 256; b++) t->byte_tokens[b] = -1;
    uint64_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        lf_gguf_str s;
        if (!lf_gguf_arr_next_str(tokens, &pos, &s) || s.len > 1024) {
            lf_tokenizer_free(t);
            return lf_err_set(err, LF_E_MODEL, "token %u is unreadable or longer than 1024 bytes", i);
        }
        t->pieces[i] = malloc(s.len + 1);
        if (!t->pieces[i]) {
            lf_tokenizer_free(t);
            return LF_E_NOMEM;
        }
        memcpy(t->pieces[i], s.ptr, s.len);
        t->pieces[i][s.len] = '\0';
        t->lens[i] = (uint32_t)s.len;
        /* numbers from the file are range-checked before any cast */
        const double score = scores ? lf_gguf_arr_get_num(scores, i) : 0.0;
        if (!(score >= -FLT_MAX && score <= FLT_MAX)) {
            lf_tokenizer_free(t);
            return lf_err_set(err, LF_E_MODEL, "token %u has score %g, not a finite float", i, score);
        }
        t->scores[i] = (float)score;
        int byte;
        const bool is_byte = parse_byte_piece(t->pieces[i], t->lens[i], &byte);
        const int type = types ? token_type_of(lf_gguf_arr_get_num(types, i)) : (is_byte ? LF_TOKEN_BYTE : LF_TOKEN_NORMAL);
        if (type < 0) {
            lf_tokenizer_free(t);
            return lf_err_set(err, LF_E_MODEL, "token %u has type %g, not an integer in 0..255", i,
                              lf_gguf_arr_get_num(types, i));
        }
        t->types[i] = (uint8_t)type;
        if (t->types[i] == LF_TOKEN_BYTE && is_byte) t->byte_tokens[byte] = (lf_token)i;
        /* first occurrence wins for duplicate pieces */
        if (lf_tokenizer_find(t, t->pieces[i], t->lens[i]) < 0) {
            uint64_t h = hash_piece(t->pieces[i], t->lens[i]) & (t->hash_cap - 1);
            while (t->hash[h] >= 0) h = (h + 1) & (t->hash_cap - 1);
            t->hash[h] = (int32_t)i;
        }
    }
    uint32_t bos, eos;
    if ((st = lf_gguf_get_u32_or(g, "tokenizer.ggml.bos_token_id", 1, &bos, err)) ||
        (st = lf_gguf_get_u32_or(g, "tokenizer.ggml.eos_token_id", 2, &eos, err)) ||
        (st = lf_gguf_get_bool_or(g, "tokenizer.ggml.add_bos_token", true, &t->add_bos, err)) ||
        (st = lf_gguf_get_bool_or(g, "tokenizer.ggml.add_space_prefix", true, &t->add_space_prefix, err))) {
        lf_tokenizer_free(t);
        return st;
    }
    t->bos = bos < n ? (lf_token)bos : -1;
    t->eos = eos < n ? (lf_token)eos : -1;
    t->encode = encode_spm;
    *out = t;
    return LF_OK;
}

uint32_t lf_tokenizer_vocab_size(const lf_tokenizer *t) { return t->n_vocab; }
lf_token lf_tokenizer_bos(const lf_tokenizer *t) { return t->bos; }
lf_token lf_tokenizer_eos(const lf_tokenizer *t) { return t->eos; }

/* ---- SentencePiece encode ----------------------------------------------- */

typedef struct symbol {
    int32_t prev, next; /* linked list over symbols; -1 ends */
    uint32_t start, n;  /* byte range in the normalised text; n = 0: merged away */
} symbol;

typedef struct bigram {
    float score;
    int32_t left, right;
    uint32_t size;      /* combined bytes when queued, to detect stale entries */
} bigram;

typedef struct heap {
    bigram *v;
    size_t n, cap;
} heap;

/* Higher score first; ties go to the leftmost pair, as SentencePiece does. */
static bool bigram_before(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static bool heap_push(heap *h, bigram b) {
    if (h->n == h->cap) {
        const size_t nc = h->cap ? h->cap * 2 : 64;
        bigram *nv = realloc(h->v, nc * sizeof *nv);
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

static bigram heap_pop(heap *h) {
    const bigram top = h->v[0];
    const bigram last = h->v[--h->n];
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

static bool try_bigram(const lf_tokenizer *t, const char *text, const symbol *syms, int32_t l, int32_t r, heap *h) {
    if (l < 0 || r < 0) return true;
    const uint32_t size = syms[l].n + syms[r].n;
    const lf_token id = lf_tokenizer_find(t, text + syms[l].start, size);
    if (id < 0) return true;
    return heap_push(h, (bigram){t->scores[id], l, r, size});
}

static uint32_t utf8_len(uint8_t c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1; /* stray continuation or invalid byte: a symbol of its own */
}

typedef struct emitter {
    lf_token *out;
    size_t cap, n;
} emitter;

static void emit(emitter *e, lf_token id) {
    if (e->n < e->cap) e->out[e->n] = id;
    e->n++;
}

static lf_status encode_spm(const lf_tokenizer *t, const char *text, size_t len, lf_token *out, size_t cap, size_t *n) {
    emitter em = {out, cap, *n};
    if (len == 0) {
        *n = em.n;
        return LF_OK;
    }
    /* normalise: optional leading space, then ' ' -> U+2581 (3 bytes) */
    size_t spaces = t->add_space_prefix ? 1 : 0;
    for (size_t i = 0; i < len; i++) spaces += text[i] == ' ';
    const size_t nlen = len + 2 * spaces + (t->add_space_prefix ? 1 : 0);
    if (nlen > UINT32_MAX / 2) return LF_E_INVALID_ARG;
    char *norm = malloc(nlen + 1);
    symbol *syms = malloc((nlen + 1) * sizeof *syms);
    heap h = {0};
    lf_status st = LF_OK;
    if (!norm || !syms) {
        st = LF_E_NOMEM;
        goto out;
    }
    size_t k = 0;
    if (t->add_space_prefix) {
        memcpy(norm + k, "\xE2\x96\x81", 3);
        k += 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(norm + k, "\xE2\x96\x81", 3);
            k += 3;
        } else {
            norm[k++] = text[i];
        }
    }
    int32_t ns = 0;
    for (uint32_t off = 0; off < k;) {
        const uint32_t cl = (uint32_t)LF_MIN((size_t)utf8_len((uint8_t)norm[off]), k - off);
        syms[ns] = (symbol){ns - 1, ns + 1, off, cl};
        ns++;
        off += cl;
    }
    syms[ns - 1].next = -1;
    for (int32_t i = 1; i < ns; i++)
        if (!try_bigram(t, norm, syms, i - 1, i, &h)) {
            st = LF_E_NOMEM;
            goto out;
        }
    while (h.n > 0) {
        const bigram b = heap_pop(&h);
        symbol *l = &syms[b.left], *r = &syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size || l->next != b.right) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) syms[r->next].prev = b.left;
        if (!try_bigram(t, norm, syms, l->prev, b.left, &h) || !try_bigram(t, norm, syms, b.left, l->next, &h)) {
            st = LF_E_NOMEM;
            goto out;
        }
    }
    for (int32_t i = 0; i >= 0; i = syms[i].next) {
        const lf_token id = lf_tokenizer_find(t, norm + syms[i].start, syms[i].n);
        if (id >= 0) {
            emit(&em, id);
            continue;
        }
        for (uint32_t j = 0; j < syms[i].n; j++) {
            const lf_token bt = t->byte_tokens[(uint8_t)norm[syms[i].start + j]];
            /* no byte fallback in this vocabulary: the unknown token, if any */
            emit(&em, bt >= 0 ? bt : lf_tokenizer_find(t, "<unk>", 5) >= 0 ? lf_tokenizer_find(t, "<unk>", 5) : 0);
        }
    }
out:
    *n = em.n;
    free(h.v);
    free(syms);
    free(norm);
    return st;
}

lf_status lf_tokenizer_encode(const lf_tokenizer *t, const char *text, size_t len, bool add_bos, lf_token *out,
                              size_t cap, size_t *n_out) {
    size_t n = 0;
    if (add_bos && t->bos >= 0) {
        if (cap > 0) out[0] = t->bos;
        n = 1;
    }
    lf_status st = t->encode(t, text, len, out, cap, &n);
    *n_out = n;
    if (st) return st;
    return n > cap ? LF_E_INVALID_ARG : LF_OK;
}

int lf_tokenizer_piece(const lf_tokenizer *t, lf_token token, char *buf, size_t cap) {
    if (token < 0 || (uint32_t)token >= t->n_vocab) return LF_E_INVALID_ARG;
    const char *p = t->pieces[token];
    const uint32_t len = t->lens[token];
    const uint8_t type = t->types[token];
    if (type == LF_TOKEN_CONTROL || type == LF_TOKEN_UNUSED) return 0;
    int byte;
    if (type == LF_TOKEN_BYTE && parse_byte_piece(p, len, &byte)) {
        if (cap > 0) buf[0] = (char)byte;
        return 1;
    }
    size_t n = 0;
    for (uint32_t i = 0; i < len;) {
        if (i + 3 <= len && memcmp(p + i, "\xE2\x96\x81", 3) == 0) {
            if (n < cap) buf[n] = ' ';
            n++;
            i += 3;
        } else {
            if (n < cap) buf[n] = p[i];
            n++;
            i++;
        }
    }
    return (int)n;
}
