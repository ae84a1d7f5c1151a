/* tokenizer.h - tokenizers stored in GGUF metadata.
 *
 * One lf_tokenizer holds the vocabulary shared by every algorithm (pieces,
 * scores, token types, a piece->id hash) and an encode function chosen by
 * tokenizer.ggml.model. Today: "llama" (SentencePiece with byte fallback).
 * A GPT-2 byte-level BPE plugs in beside it as another encode function. */
#ifndef LF_TOKENIZER_H
#define LF_TOKENIZER_H

#include "../gguf/gguf.h"

enum lf_token_type {
    LF_TOKEN_NORMAL = 1, LF_TOKEN_UNKNOWN = 2, LF_TOKEN_CONTROL = 3,
    LF_TOKEN_USER_DEFINED = 4, LF_TOKEN_UNUSED = 5, LF_TOKEN_BYTE = 6,
};

typedef struct lf_tokenizer lf_tokenizer;

lf_status lf_tokenizer_load(const lf_gguf *g, lf_tokenizer **out, lf_err *err);
void lf_tokenizer_free(lf_tokenizer *t);

uint32_t lf_tokenizer_vocab_size(const lf_tokenizer *t);
lf_token lf_tokenizer_bos(const lf_tokenizer *t);
lf_token lf_tokenizer_eos(const lf_tokenizer *t);
/* Token id of an exact piece, or -1. */
lf_token lf_tokenizer_find(const lf_tokenizer *t, const char *piece, size_t len);

/* See lf_tokenize in llmflash.h for the contract. */
lf_status lf_tokenizer_encode(const lf_tokenizer *t, const char *text, size_t len, bool add_bos,
                              lf_token *out, size_t cap, size_t *n_out);
/* See lf_token_to_piece. */
int lf_tokenizer_piece(const lf_tokenizer *t, lf_token token, char *buf, size_t cap);

#endif
