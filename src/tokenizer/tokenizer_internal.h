/* tokenizer_internal.h - what the tokenizer's files share: the vocabulary,
 * the merge queue of both algorithms, and the output of an encoder. */
#ifndef LF_TOKENIZER_INTERNAL_H
#define LF_TOKENIZER_INTERNAL_H

#include "tokenizer.h"

typedef struct lf_bpe lf_bpe;

/* Encodes raw text (no special tokens in it) by appending to out. */
typedef struct tok_emitter {
    lf_token *out;
    size_t cap, n;
} tok_emitter;

static inline void tok_emit(tok_emitter *e, lf_token id) {
    if (e->n < e->cap) e->out[e->n] = id;
    e->n++;
}

typedef lf_status (*encode_fn)(const lf_tokenizer *t, const char *text, size_t len, tok_emitter *e);

struct lf_vocab {
    uint32_t n_vocab;
    char **pieces;      /* NUL-terminated copies */
    uint32_t *lens;
    float *scores;
    uint8_t *types;     /* enum lf_token_type */
    int32_t *hash;      /* open addressing: token ids, -1 empty */
    uint64_t hash_cap;
    lf_token bos, eos, eot;
    lf_token byte_tokens[256]; /* SentencePiece <0xNN> ids, -1 when missing */
    bool add_bos, add_space_prefix;
    encode_fn encode;
    lf_bpe *bpe;        /* byte-level BPE state, or NULL */
    lf_token *specials; /* control and user-defined tokens, by first byte, longest first */
    uint32_t n_specials;
    uint32_t special_from[257]; /* specials[special_from[b] .. special_from[b + 1]) start with byte b */
    char *chat_template; /* tokenizer.chat_template (NUL-terminated copy), or NULL */
};

/* Symbols being merged: a linked list over byte ranges of the text. */
typedef struct tok_symbol {
    int32_t prev, next; /* -1 ends */
    uint32_t start, n;  /* n = 0: merged away */
} tok_symbol;

typedef struct tok_bigram {
    float score;        /* higher first (SentencePiece: the piece's score; BPE: minus the merge rank) */
    int32_t left, right;
    uint32_t size;      /* combined bytes when queued, to detect stale entries */
} tok_bigram;

typedef struct tok_heap {
    tok_bigram *v;
    size_t n, cap;
} tok_heap;

/* Ties go to the leftmost pair, as SentencePiece and BPE both do. */
bool tok_heap_push(tok_heap *h, tok_bigram b);
tok_bigram tok_heap_pop(tok_heap *h);
/* "<0xNN>" with exactly two hex digits: SentencePiece's byte tokens. */
bool tok_parse_byte_piece(const char *p, uint32_t len, int *byte);
/* Byte length of the UTF-8 character starting with c (1 for invalid bytes). */
uint32_t tok_utf8_len(uint8_t c);

lf_status tok_spm_encode(const lf_tokenizer *t, const char *text, size_t len, tok_emitter *e);
int tok_spm_piece(const lf_tokenizer *t, lf_token token, char *buf, size_t cap);

/* Byte-level BPE: merges and the pre-tokenizer named by tokenizer.ggml.pre. */
lf_status tok_bpe_load(const lf_gguf *g, lf_tokenizer *t, lf_err *err);
void tok_bpe_free(lf_bpe *b);
lf_status tok_bpe_encode(const lf_tokenizer *t, const char *text, size_t len, tok_emitter *e);
int tok_bpe_piece(const lf_tokenizer *t, lf_token token, char *buf, size_t cap);

#endif
