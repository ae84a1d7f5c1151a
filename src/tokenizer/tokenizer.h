/* tokenizer.h - tokenizers stored in GGUF metadata.
 *
 * One lf_tokenizer holds the vocabulary shared by every algorithm (pieces,
 * scores, token types, a piece->id hash) and an encode function chosen by
 * tokenizer.ggml.model: "llama" (SentencePiece with byte fallback) or
 * "gpt2" (byte-level BPE, with the pre-tokenizer tokenizer.ggml.pre names).
 * Control and user-defined tokens written in the text are split off first. */
#ifndef LF_TOKENIZER_H
#define LF_TOKENIZER_H

#include "../gguf/gguf.h"

enum lf_token_type {
    LF_TOKEN_NORMAL = 1, LF_TOKEN_UNKNOWN = 2, LF_TOKEN_CONTROL = 3,
    LF_TOKEN_USER_DEFINED = 4, LF_TOKEN_UNUSED = 5, LF_TOKEN_BYTE = 6,
};

/* The public lf_vocab (llmflash.h) is this tokenizer. */
typedef struct lf_vocab lf_tokenizer;

lf_status lf__tokenizer_load(const lf_gguf *g, lf_tokenizer **out, lf_err *err);
void lf__tokenizer_free(lf_tokenizer *t);

uint32_t lf__tokenizer_vocab_size(const lf_tokenizer *t);
lf_token lf__tokenizer_bos(const lf_tokenizer *t);
lf_token lf__tokenizer_eos(const lf_tokenizer *t);
lf_token lf__tokenizer_eot(const lf_tokenizer *t); /* -1 when the vocabulary has none */
/* Whether generation stops at this token: EOS or EOT. */
bool lf__tokenizer_is_end(const lf_tokenizer *t, lf_token id);
/* Whether SentencePiece adds a space before the text (decoders drop it). */
bool lf__tokenizer_space_prefix(const lf_tokenizer *t);
/* tokenizer.ggml.add_bos_token (default: true for SentencePiece, false for BPE). */
bool lf__tokenizer_adds_bos(const lf_tokenizer *t);
/* A token's stored piece (not decoded) and its lf_token_type; NULL / 0 for
 * ids out of range. */
const char *lf__tokenizer_raw_piece(const lf_tokenizer *t, lf_token token, uint32_t *len);
uint8_t lf__tokenizer_type(const lf_tokenizer *t, lf_token token);
/* Token id of an exact piece, or -1. */
lf_token lf__tokenizer_find(const lf_tokenizer *t, const char *piece, size_t len);

/* See lf_tokenize in llmflash.h for the contract. */
lf_status lf__tokenizer_encode(const lf_tokenizer *t, const char *text, size_t len, bool add_bos,
                               lf_token *out, size_t cap, size_t *n_out);
/* lf__tokenizer_encode, and with parse_special control tokens written in the
 * text (such as "<|eot_id|>") become their tokens; without it they are
 * plain text. User-defined tokens are always matched. */
lf_status lf__tokenizer_encode_ex(const lf_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                                  lf_token *out, size_t cap, size_t *n_out);
/* See lf_token_to_piece. The bytes a token stands for: byte-level BPE pieces
 * map back to raw bytes, which may be part of a UTF-8 character. */
int lf__tokenizer_piece(const lf_tokenizer *t, lf_token token, char *buf, size_t cap);

#endif
