/* vocab.c - the public tokenizer API (llmflash.h, lf_vocab_*): a tokenizer
 * read from any GGUF file, or the one a model holds. */
#include "tokenizer.h"

#include <stdio.h>

lf_status lf_vocab_open(const char *path, lf_vocab **out, char *errbuf, size_t errcap) {
    if (out) *out = NULL;
    if (!path || !out) return LF_E_INVALID_ARG;
    lf_err err = {{0}};
    lf_gguf *g = NULL;
    lf_status st = lf__gguf_read_file(path, &g, &err);
    if (st == LF_OK) st = lf__tokenizer_load(g, out, &err);
    lf__gguf_free(g); /* the tokenizer keeps copies of what it needs */
    if (st && errbuf && errcap) snprintf(errbuf, errcap, "%s: %s", path, err.msg[0] ? err.msg : lf_strerror(st));
    return st;
}

void lf_vocab_close(lf_vocab *v) { lf__tokenizer_free(v); }

uint32_t lf_vocab_n_tokens(const lf_vocab *v) { return v ? lf__tokenizer_vocab_size(v) : 0; }
lf_token lf_vocab_bos(const lf_vocab *v) { return v ? lf__tokenizer_bos(v) : -1; }
lf_token lf_vocab_eos(const lf_vocab *v) { return v ? lf__tokenizer_eos(v) : -1; }
lf_token lf_vocab_eot(const lf_vocab *v) { return v ? lf__tokenizer_eot(v) : -1; }
bool lf_vocab_is_end(const lf_vocab *v, lf_token t) { return v && lf__tokenizer_is_end(v, t); }
bool lf_vocab_adds_bos(const lf_vocab *v) { return v && lf__tokenizer_adds_bos(v); }

lf_status lf_vocab_tokenize(const lf_vocab *v, const char *text, size_t len, unsigned flags, lf_token *tokens, size_t cap,
                            size_t *n_tokens) {
    if (!v || (!text && len) || !n_tokens || (!tokens && cap)) return LF_E_INVALID_ARG;
    return lf__tokenizer_encode_ex(v, text ? text : "", len, flags & LF_TOKENIZE_ADD_BOS, flags & LF_TOKENIZE_SPECIAL,
                                   tokens, cap, n_tokens);
}

int lf_vocab_piece(const lf_vocab *v, lf_token t, char *buf, size_t cap) {
    if (!v || (!buf && cap)) return LF_E_INVALID_ARG;
    return lf__tokenizer_piece(v, t, buf, cap);
}

const char *lf_vocab_raw_piece(const lf_vocab *v, lf_token t, uint32_t *len) {
    if (!v || !len) return NULL;
    return lf__tokenizer_raw_piece(v, t, len);
}

int lf_vocab_token_type(const lf_vocab *v, lf_token t) { return v ? lf__tokenizer_type(v, t) : 0; }
