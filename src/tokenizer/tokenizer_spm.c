/* tokenizer_spm.c - the SentencePiece ("llama") tokenizer: whitespace
 * becomes U+2581, the text is split into UTF-8 characters, and adjacent
 * symbols are merged best-score-first while the merged piece is in the
 * vocabulary. Characters left without a token are emitted as byte tokens
 * <0xNN>. */
#include "tokenizer_internal.h"

#include <stdlib.h>

static bool try_bigram(const lf_tokenizer *t, const char *text, const tok_symbol *syms, int32_t l, int32_t r, tok_heap *h) {
    if (l < 0 || r < 0) return true;
    const uint32_t size = syms[l].n + syms[r].n;
    const lf_token id = lf__tokenizer_find(t, text + syms[l].start, size);
    if (id < 0) return true;
    return tok_heap_push(h, (tok_bigram){t->scores[id], l, r, size});
}

lf_status tok_spm_encode(const lf_tokenizer *t, const char *text, size_t len, tok_emitter *em) {
    if (len == 0) return LF_OK;
    /* normalise: optional leading space, then ' ' -> U+2581 (3 bytes) */
    size_t spaces = t->add_space_prefix ? 1 : 0;
    for (size_t i = 0; i < len; i++) spaces += text[i] == ' ';
    const size_t nlen = len + 2 * spaces + (t->add_space_prefix ? 1 : 0);
    if (nlen > UINT32_MAX / 2) return LF_E_INVALID_ARG;
    char *norm = malloc(nlen + 1);
    tok_symbol *syms = malloc((nlen + 1) * sizeof *syms);
    tok_heap h = {0};
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
        const uint32_t cl = (uint32_t)LF_MIN((size_t)tok_utf8_len((uint8_t)norm[off]), k - off);
        syms[ns] = (tok_symbol){ns - 1, ns + 1, off, cl};
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
        const tok_bigram b = tok_heap_pop(&h);
        tok_symbol *l = &syms[b.left], *r = &syms[b.right];
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
        const lf_token id = lf__tokenizer_find(t, norm + syms[i].start, syms[i].n);
        if (id >= 0) {
            tok_emit(em, id);
            continue;
        }
        for (uint32_t j = 0; j < syms[i].n; j++) {
            const lf_token bt = t->byte_tokens[(uint8_t)norm[syms[i].start + j]];
            /* no byte fallback in this vocabulary: the unknown token, if any */
            tok_emit(em, bt >= 0 ? bt : lf__tokenizer_find(t, "<unk>", 5) >= 0 ? lf__tokenizer_find(t, "<unk>", 5) : 0);
        }
    }
out:
    free(h.v);
    free(syms);
    free(norm);
    return st;
}

int tok_spm_piece(const lf_tokenizer *t, lf_token token, char *buf, size_t cap) {
    const char *p = t->pieces[token];
    const uint32_t len = t->lens[token];
    const uint8_t type = t->types[token];
    int byte;
    if (type == LF_TOKEN_BYTE && tok_parse_byte_piece(p, len, &byte)) {
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
