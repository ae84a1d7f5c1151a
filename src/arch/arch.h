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
    bool moe_only;           /* its FFNs are always mixtures of experts (Qwen3-MoE) */
    float rms_eps;           /* defaults where a file omits the key */
    float rope_freq_base;
} lf_arch;

/* The row for `name`, or NULL. */
const lf_arch *lf__arch_find(lf_gguf_str name);
/* The row named by a file's general.architecture. LF_E_UNSUPPORTED names the
 * architecture (and the supported ones) when there is no row, LF_E_MODEL
 * when the key is missing. */
lf_status lf__arch_of(const lf_gguf *g, const lf_arch **out, lf_err *err);
/* The FFN's shape under the file's architecture prefix. A dense FFN is one
 * expert of ARCH.feed_forward_length neurons, always used. A mixture of
 * experts (ARCH.expert_count above 1: Mixtral's layout, Qwen3-MoE) has
 * n_expert experts of ARCH.expert_feed_forward_length neurons (else
 * ARCH.feed_forward_length), n_expert_used of them routed per token:
 * softmax over the router's logits, the top n_expert_used, their weights
 * renormalised to sum to 1. */
typedef struct lf_ffn_shape {
    uint32_t n_embd, n_layer;
    uint32_t n_ff;          /* neurons of one expert (the dense FFN's) */
    uint32_t n_expert;      /* 1: dense */
    uint32_t n_expert_used; /* 1: dense */
} lf_ffn_shape;
/* Reads it (what the model loader, convert and the flash reader need).
 * Variants whose layer this routing would compute wrongly (shared
 * experts, sigmoid gating, scaled or unnormalised weights, expert groups,
 * leading dense layers) are refused with LF_E_UNSUPPORTED naming the key;
 * inconsistent counts are LF_E_MODEL naming it. lf__arch_of's errors too. */
lf_status lf__arch_ffn_shape(const lf_gguf *g, lf_ffn_shape *out, lf_err *err);
/* "llama, qwen2, qwen3": static. */
const char *lf__arch_names(void);
/* "<arch>.<suffix>" in buf (cap >= 64 is always enough for our suffixes). */
const char *lf__arch_key(const lf_arch *a, const char *suffix, char *buf, size_t cap);

#endif
