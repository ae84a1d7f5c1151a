/* arch.h - what differs between the transformer architectures llmflash runs.
 *
 * Every supported `general.architecture` is one row of a table: the prefix
 * of its metadata keys, how its rotary embedding pairs dimensions, and the
 * optional pieces of its attention block. The model loader, the flash
 * converter and synth read the table; nothing else names an architecture.
 * Adding one (Phi-3, Gemma 3) is a row here plus whatever new piece of the
 * forward pass it needs. The FFN is the same SwiGLU (or ReLU) everywhere. */
#ifndef LF_ARCH_H
#define LF_ARCH_H

#include "../common/lf_common.h"
#include "../gguf/gguf.h"

typedef enum lf_rope_kind {
    LF_ROPE_NORM = 0, /* rotate (x[2i], x[2i+1]): llama, whose GGUF Q/K rows are permuted for it */
    LF_ROPE_NEOX = 1, /* rotate (x[i], x[i + n_rot/2]): Qwen2/Qwen3, rows as trained */
} lf_rope_kind;

typedef struct lf_arch {
    const char *name;        /* general.architecture, also the prefix of its keys */
    lf_rope_kind rope;
    bool qkv_bias;           /* blk.N.attn_{q,k,v}.bias added after the projections (Qwen2) */
    bool qk_norm;            /* blk.N.attn_{q,k}_norm.weight: an RMS norm per head before rope (Qwen3) */
    bool rope_freqs;         /* may carry rope_freqs.weight, Llama 3.1's per-frequency divisors */
    float rms_eps;           /* defaults where a file omits the key */
    float rope_freq_base;
} lf_arch;

/* The row for `name`, or NULL. */
const lf_arch *lf__arch_find(lf_gguf_str name);
/* The row named by a file's general.architecture. LF_E_UNSUPPORTED names the
 * architecture (and the supported ones) when there is no row, LF_E_MODEL
 * when the key is missing. */
lf_status lf__arch_of(const lf_gguf *g, const lf_arch **out, lf_err *err);
/* The FFN's shape under the file's architecture prefix: ARCH.embedding_length,
 * ARCH.feed_forward_length and ARCH.block_count (what convert and the flash
 * reader need). lf__arch_of's errors, or a missing key's. */
lf_status lf__arch_ffn_shape(const lf_gguf *g, uint32_t *n_embd, uint32_t *n_ff, uint32_t *n_layer, lf_err *err);
/* "llama, qwen2, qwen3": static. */
const char *lf__arch_names(void);
/* "<arch>.<suffix>" in buf (cap >= 64 is always enough for our suffixes). */
const char *lf__arch_key(const lf_arch *a, const char *suffix, char *buf, size_t cap);

#endif
