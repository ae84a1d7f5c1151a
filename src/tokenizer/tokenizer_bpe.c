/* tokenizer_bpe.c - byte-level BPE (tokenizer.ggml.model = "gpt2"), as
 * GPT-2, Llama 3, Qwen2/2.5/3, DeepSeek and StarCoder use it.
 *
 * 1. Pre-tokenizer: the regexes that tokenizer.ggml.pre names split the text
 *    into words, each regex splitting every fragment the previous one left
 *    (matches and the text between them both stay). PCRE2 in UTF and UCP
 *    mode gives \p{L}, \p{N} and \s their Unicode meaning; invalid UTF-8 never
 *    matches, so its bytes end up as words of their own.
 * 2. Each word's bytes become characters of GPT-2's byte alphabet (printable
 *    bytes stand for themselves, the other 68 for U+0100..U+0143).
 * 3. Adjacent symbols are merged lowest merge rank first, leftmost on ties.
 * Decoding maps the alphabet back to bytes. */
#include "tokenizer_internal.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <inttypes.h>
#include <stdlib.h>

#define MAX_REGEXES 8

struct lf_bpe {
    char **merges;          /* "left right", the rank is the index */
    uint32_t *merge_lens;
    uint32_t n_merges;
    int32_t *merge_hash;    /* open addressing: merge ranks, -1 empty */
    uint64_t merge_cap;
    pcre2_code *re[MAX_REGEXES];
    int n_re;
    bool ignore_merges;     /* a word that is a token as a whole is not merged (Llama 3) */
    uint16_t byte_char[256]; /* byte -> code point of its alphabet character */
    int16_t char_byte[324];  /* code point (< 324) -> byte, -1 for none */
};

/* ---- pre-tokenizers ----------------------------------------------------- */

#define CONTRACTIONS_ANY_CASE "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define GPT2_WORDS "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

typedef struct pre_tokenizer {
    const char *names[4];   /* tokenizer.ggml.pre values */
    bool ignore_merges;
    const char *regexes[MAX_REGEXES];
} pre_tokenizer;

/* The patterns of each model's tokenizer.json, and the order they apply in. */
static const pre_tokenizer k_pre[] = {
    {{"llama-bpe", "llama3", "llama-v3"}, true,
     {CONTRACTIONS_ANY_CASE "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {{"qwen2"}, false,
     {CONTRACTIONS_ANY_CASE "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {{"gpt-2", "gpt2"}, false, {GPT2_WORDS}},
    {{"starcoder"}, false, {"\\p{N}", GPT2_WORDS}},
    /* as code points: Unicode normalisation by an editor would turn U+1F7D
     * into U+03CE and U+212A into K, and break the ranges */
    {{"deepseek-llm"}, false,
     {"[\\r\\n]",
      "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+",
      "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+", "\\s+$", "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}+"}},
    /* what llama.cpp applies when a file names no pre-tokenizer */
    {{"default"}, false,
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
      "\\p{N}+", "[0-9][0-9][0-9]"}},
};

static const pre_tokenizer *find_pre(lf_gguf_str name) {
    for (size_t i = 0; i < sizeof k_pre / sizeof *k_pre; i++)
        for (int k = 0; k < 4 && k_pre[i].names[k]; k++)
            if (lf__gguf_str_eq(name, k_pre[i].names[k])) return &k_pre[i];
    return NULL;
}

/* ---- merges --------------------------------------------------------------- */

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

/* The rank of merging `left` and `right` (adjacent in memory: a + na == b is
 * not assumed), or -1. */
static int32_t merge_rank(const lf_bpe *b, const char *left, uint32_t nl, const char *right, uint32_t nr) {
    char key[4100];
    if ((size_t)nl + nr + 1 > sizeof key) return -1; /* longer than any stored merge */
    memcpy(key, left, nl);
    key[nl] = ' ';
    memcpy(key + nl + 1, right, nr);
    const uint32_t n = nl + nr + 1;
    for (uint64_t h = hash_bytes(key, n) & (b->merge_cap - 1);; h = (h + 1) & (b->merge_cap - 1)) {
        const int32_t r = b->merge_hash[h];
        if (r < 0) return -1;
        if (b->merge_lens[r] == n && memcmp(b->merges[r], key, n) == 0) return r;
    }
}

void tok_bpe_free(lf_bpe *b) {
    if (!b) return;
    if (b->merges)
        for (uint32_t i = 0; i < b->n_merges; i++) free(b->merges[i]);
    free(b->merges);
    free(b->merge_lens);
    free(b->merge_hash);
    for (int i = 0; i < b->n_re; i++) pcre2_code_free(b->re[i]);
    free(b);
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes keep their code point,
 * the others get U+0100 onwards in byte order. */
static void byte_alphabet(lf_bpe *b) {
    for (int i = 0; i < 324; i++) b->char_byte[i] = -1;
    int next = 256;
    for (int c = 0; c < 256; c++) {
        const bool printable = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255);
        b->byte_char[c] = (uint16_t)(printable ? c : next++);
        b->char_byte[b->byte_char[c]] = (int16_t)c;
    }
}

static uint32_t put_utf8(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6)); /* the alphabet stays below U+0800 */
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

lf_status tok_bpe_load(const lf_gguf *g, lf_tokenizer *t, lf_err *err) {
    lf_gguf_str pre_name = {0};
    lf_status st = lf__gguf_get_str(g, "tokenizer.ggml.pre", &pre_name, err);
    if (st) return st;
    const pre_tokenizer *pre = pre_name.ptr ? find_pre(pre_name) : &k_pre[sizeof k_pre / sizeof *k_pre - 1];
    if (!pre)
        return lf__err_set(err, LF_E_UNSUPPORTED,
                           "tokenizer.ggml.pre '%.*s' is not supported (llama-bpe, qwen2, gpt-2, starcoder, "
                           "deepseek-llm and default are)",
                           (int)LF_MIN(pre_name.len, (uint64_t)64), pre_name.ptr);
    const lf_gguf_kv *merges = lf__gguf_find(g, "tokenizer.ggml.merges");
    if (!merges || merges->type != LF_GGUF_ARRAY || merges->arr_type != LF_GGUF_STRING || merges->arr_n > (1u << 24))
        return lf__err_set(err, LF_E_MODEL, "metadata key 'tokenizer.ggml.merges' is missing or not a string array");
    lf_bpe *b = calloc(1, sizeof *b);
    if (!b) return LF_E_NOMEM;
    t->bpe = b; /* freed with the tokenizer from here on */
    b->ignore_merges = pre->ignore_merges;
    byte_alphabet(b);
    const uint32_t n = (uint32_t)merges->arr_n;
    b->merges = calloc(n ? n : 1, sizeof *b->merges);
    b->merge_lens = calloc(n ? n : 1, sizeof *b->merge_lens);
    b->merge_cap = 16;
    while (b->merge_cap < (uint64_t)n * 2) b->merge_cap *= 2;
    b->merge_hash = malloc(b->merge_cap * sizeof *b->merge_hash);
    if (!b->merges || !b->merge_lens || !b->merge_hash) return lf__err_set(err, LF_E_NOMEM, "%u merges", n);
    for (uint64_t i = 0; i < b->merge_cap; i++) b->merge_hash[i] = -1;
    uint64_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        lf_gguf_str s;
        if (!lf__gguf_arr_next_str(merges, &pos, &s) || s.len > 4096 || !memchr(s.ptr, ' ', s.len))
            return lf__err_set(err, LF_E_MODEL, "merge %u is unreadable, too long, or not two pieces 'a b'", i);
        if (!(b->merges[i] = malloc(s.len + 1))) return LF_E_NOMEM;
        memcpy(b->merges[i], s.ptr, s.len);
        b->merges[i][s.len] = '\0';
        b->merge_lens[i] = (uint32_t)s.len;
        b->n_merges = i + 1;
        uint64_t h = hash_bytes(s.ptr, s.len) & (b->merge_cap - 1);
        bool dup = false;
        for (; b->merge_hash[h] >= 0; h = (h + 1) & (b->merge_cap - 1)) {
            const int32_t r = b->merge_hash[h];
            if (b->merge_lens[r] == s.len && memcmp(b->merges[r], s.ptr, s.len) == 0) dup = true; /* first rank wins */
        }
        if (!dup) b->merge_hash[h] = (int32_t)i;
    }
    for (int i = 0; i < MAX_REGEXES && pre->regexes[i]; i++) {
        int code;
        PCRE2_SIZE at;
        b->re[i] = pcre2_compile((PCRE2_SPTR)pre->regexes[i], PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &at, NULL);
        if (!b->re[i]) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(code, msg, sizeof msg);
            return lf__err_set(err, LF_E_UNSUPPORTED, "pre-tokenizer regex %d does not compile (a PCRE2 without Unicode support?) at %zu: %s", i, (size_t)at,
                               (const char *)msg);
        }
        b->n_re = i + 1;
        (void)pcre2_jit_compile(b->re[i], PCRE2_JIT_COMPLETE); /* interpreted matching when JIT is unavailable */
    }
    return LF_OK;
}

/* ---- encode --------------------------------------------------------------- */

typedef struct span {
    size_t start, len;
} span;

typedef struct spans {
    span *v;
    size_t n, cap;
} spans;

static bool spans_add(spans *s, size_t start, size_t len) {
    if (len == 0) return true;
    if (s->n == s->cap) {
        const size_t nc = s->cap ? 2 * s->cap : 64;
        span *nv = realloc(s->v, nc * sizeof *nv);
        if (!nv) return false;
        s->v = nv;
        s->cap = nc;
    }
    s->v[s->n++] = (span){start, len};
    return true;
}

/* Splits every fragment of `in` at the matches of re into `out`. */
static lf_status split_by(const pcre2_code *re, const char *text, const spans *in, spans *out, pcre2_match_data *md) {
    out->n = 0;
    for (size_t f = 0; f < in->n; f++) {
        const PCRE2_SPTR subject = (PCRE2_SPTR)(text + in->v[f].start);
        const size_t len = in->v[f].len;
        size_t pos = 0, last = 0;
        while (pos < len) {
            const int rc = pcre2_match(re, subject, len, pos, 0, md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) return rc == PCRE2_ERROR_NOMEMORY ? LF_E_NOMEM : LF_E_INVALID_ARG; /* a match limit hit */
            const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            if (ov[1] == ov[0]) { /* an empty match: move on one byte */
                pos = ov[0] + 1;
                continue;
            }
            if (!spans_add(out, in->v[f].start + last, ov[0] - last) || !spans_add(out, in->v[f].start + ov[0], ov[1] - ov[0]))
                return LF_E_NOMEM;
            last = pos = ov[1];
        }
        if (!spans_add(out, in->v[f].start + last, len - last)) return LF_E_NOMEM;
    }
    return LF_OK;
}

static bool queue_pair(const lf_bpe *b, const char *w, const tok_symbol *syms, int32_t l, int32_t r, tok_heap *h) {
    if (l < 0 || r < 0) return true;
    const int32_t rank = merge_rank(b, w + syms[l].start, syms[l].n, w + syms[r].start, syms[r].n);
    if (rank < 0) return true;
    return tok_heap_push(h, (tok_bigram){-(float)rank, l, r, syms[l].n + syms[r].n});
}

/* One word, already in the byte alphabet (w, n bytes). */
static lf_status encode_word(const lf_tokenizer *t, const char *w, uint32_t n, tok_symbol *syms, tok_heap *h,
                             tok_emitter *e) {
    const lf_bpe *b = t->bpe;
    if (b->ignore_merges) {
        const lf_token id = lf__tokenizer_find(t, w, n);
        if (id >= 0) {
            tok_emit(e, id);
            return LF_OK;
        }
    }
    int32_t ns = 0;
    for (uint32_t off = 0; off < n; ns++) {
        const uint32_t cl = (uint8_t)w[off] < 0x80 ? 1 : 2;
        syms[ns] = (tok_symbol){ns - 1, ns + 1, off, cl};
        off += cl;
    }
    syms[ns - 1].next = -1;
    h->n = 0;
    for (int32_t i = 1; i < ns; i++)
        if (!queue_pair(b, w, syms, i - 1, i, h)) return LF_E_NOMEM;
    while (h->n > 0) {
        const tok_bigram g = tok_heap_pop(h);
        tok_symbol *l = &syms[g.left], *r = &syms[g.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != g.size || l->next != g.right) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) syms[r->next].prev = g.left;
        if (!queue_pair(b, w, syms, l->prev, g.left, h) || !queue_pair(b, w, syms, g.left, l->next, h)) return LF_E_NOMEM;
    }
    for (int32_t i = 0; i >= 0; i = syms[i].next) {
        const lf_token id = lf__tokenizer_find(t, w + syms[i].start, syms[i].n);
        if (id >= 0) {
            tok_emit(e, id);
            continue;
        }
        /* no token for the merged piece: one per alphabet character (a
         * vocabulary has them all; a character missing is skipped) */
        for (uint32_t j = syms[i].start; j < syms[i].start + syms[i].n;) {
            const uint32_t cl = (uint8_t)w[j] < 0x80 ? 1 : 2;
            const lf_token c = lf__tokenizer_find(t, w + j, cl);
            if (c >= 0) tok_emit(e, c);
            j += cl;
        }
    }
    return LF_OK;
}

lf_status tok_bpe_encode(const lf_tokenizer *t, const char *text, size_t len, tok_emitter *e) {
    const lf_bpe *b = t->bpe;
    if (len == 0) return LF_OK;
    if (len > UINT32_MAX / 4) return LF_E_INVALID_ARG;
    spans a = {0}, c = {0};
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    char *w = malloc(2 * len);
    tok_symbol *syms = malloc(2 * len * sizeof *syms);
    tok_heap h = {0};
    lf_status st = LF_OK;
    if (!md || !w || !syms || !spans_add(&a, 0, len)) {
        st = LF_E_NOMEM;
        goto out;
    }
    for (int i = 0; i < b->n_re && st == LF_OK; i++) {
        st = split_by(b->re[i], text, &a, &c, md);
        const spans tmp = a;
        a = c;
        c = tmp;
    }
    for (size_t k = 0; k < a.n && st == LF_OK; k++) {
        uint32_t n = 0;
        for (size_t i = a.v[k].start; i < a.v[k].start + a.v[k].len; i++) n += put_utf8(b->byte_char[(uint8_t)text[i]], w + n);
        st = encode_word(t, w, n, syms, &h, e);
    }
out:
    free(h.v);
    free(syms);
    free(w);
    free(a.v);
    free(c.v);
    pcre2_match_data_free(md);
    return st;
}

int tok_bpe_piece(const lf_tokenizer *t, lf_token token, char *buf, size_t cap) {
    const lf_bpe *b = t->bpe;
    const char *p = t->pieces[token];
    const uint32_t len = t->lens[token];
    size_t n = 0;
    for (uint32_t i = 0; i < len;) {
        /* a character of the alphabet is one byte; anything else is copied */
        uint32_t cp = (uint8_t)p[i], cl = 1;
        if ((p[i] & 0xE0) == 0xC0 && i + 1 < len) {
            cp = ((uint32_t)(p[i] & 0x1F) << 6) | (uint32_t)(p[i + 1] & 0x3F);
            cl = 2;
        } else if ((uint8_t)p[i] >= 0x80) {
            cl = LF_MIN(tok_utf8_len((uint8_t)p[i]), len - i);
            cp = UINT32_MAX;
        }
        if (cp < 324 && b->char_byte[cp] >= 0) {
            if (n < cap) buf[n] = (char)b->char_byte[cp];
            n++;
        } else {
            for (uint32_t j = 0; j < cl; j++, n++)
                if (n < cap) buf[n] = p[i + j];
        }
        i += cl;
    }
    return (int)n;
}
