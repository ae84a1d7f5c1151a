/* session.h - a session's state: the forward pass's buffers and KV cache,
 * its FFN engine, counters and its part of the budget. */
#ifndef LF_SESSION_H
#define LF_SESSION_H

#include "model.h"

#include <math.h>
#include "ffn_engine.h"
#include "ffn_kernel.h"

/* An activation vector, quantized on demand for the weight type at hand. */
/* A batch of nt activation vectors of n elements, quantized on demand for
 * the weight type at hand. */
typedef struct act {
    const float *f;       /* (nt, n) */
    lf_block_q8a *q;      /* (nt, n/32) scratch */
    int64_t n;
    uint32_t nt;
    bool quantized;
} act;

struct lf_session {
    lf_model *m;
    lf_err err;
    lf_pool *pool;
    bool own_pool;      /* started by the session (params.threadpool NULL) */
    lf_logger log;      /* params.log, else the model's */
    uint32_t n_ctx;
    uint32_t pos;
    uint32_t n_batch;   /* tokens per forward pass, at most */
    bool has_logits;
    lf_trace *trace;    /* params.trace (borrowed), or NULL */
    int track_compute, track_io;
    /* activations, one row per token of the batch (B = n_batch) */
    float *x;           /* (B, n_embd) residual stream */
    float *xb;          /* (B, n_embd) normalised input of a block */
    float *xb2;         /* (B, n_embd) block output */
    float *q;           /* (B, n_head*head_dim) */
    float *att;         /* (n_threads, n_ctx) attention scores of the head each worker is on */
    float *att_out;     /* (B, n_head*head_dim) */
    float *k_new;       /* (B, kv_dim) the batch's keys, before they are stored as F16/F32 */
    float *v_new;       /* (B, kv_dim) its values */
    float *hb;          /* (B, n_ff) gate / activation */
    float *hb2;         /* (B, n_ff) up */
    float *logits;      /* (n_vocab) of the batch's last token */
    float *rope_cos;    /* (B, n_rot/2 + 1) for each token's position */
    float *rope_sin;    /* (B, n_rot/2 + 1) */
    lf_block_q8a *xq;   /* (B, max(n_embd, n_ff, q_dim)/32) quantized activations */
    float *thread_scratch; /* (n_threads, n_embd) per-thread scratch of the attention workers */
    uint8_t *embed_row;    /* one embedding row, taken out of an x8 group (tied tables) */
    void *key_cache;    /* (n_layer, n_ctx, kv_dim) of F16 or F32 (params.kv_type) */
    lf_ffn_engine *ffn;        /* flash files: the FFN engine (every mode) */
    /* a plain GGUF's mixture of experts (flash files route in the engine) */
    float *moe_logits;  /* (B, n_expert) */
    uint32_t *moe_expert; /* (B, n_expert_used) each token's experts */
    float *moe_weight;  /* (B, n_expert_used) and their weights */
    float *moe_x;       /* (B, n_embd) the inputs of one expert's tokens, gathered */
    float *moe_y;       /* (B, n_embd) its outputs */
    uint32_t *moe_tok;  /* (B) which token each gathered row is */
    float *moe_w;       /* (B) and its weight */
    /* calibration: called with each layer's normalised FFN input (n_embd) */
    void (*ffn_tap)(void *user, uint32_t layer, const float *x);
    void *ffn_tap_user;
    lf_session_params params;
    double compute_ms;  /* in eval, since creation or the last reset_stats */
    uint64_t tokens;    /* evaluated, same span */
    bool in_prompt;     /* generate() is evaluating its prompt */
    lf_phase_stats prompt, generation;
    uint64_t budget_taken; /* bytes of the model's budget ledger this session holds */
    uint64_t plan_parts[LF_BUDGET_PARTS]; /* planned bytes by part, the model's shared ones included */
    uint64_t plan_own;     /* the session's own share of them, before its neuron cache */
    /* process counters at creation or reset_stats (mmap mode's device traffic) */
    uint64_t base_read_bytes, base_major_faults;
    void *value_cache;  /* (n_layer, n_ctx, kv_dim) of F16 or F32 */
};


#endif
