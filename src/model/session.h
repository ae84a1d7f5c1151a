/* session.h - a session's state, shared by the forward pass and the
 * streaming FFN. */
#ifndef LF_SESSION_H
#define LF_SESSION_H

#include "model.h"

#include <math.h>
#include "../cache/neuron_cache.h"

/* An activation vector, quantized on demand for the weight type at hand. */
typedef struct act {
    const float *f;       /* (n) */
    lf_block_q8a *q;      /* (n/32) scratch */
    int64_t n;
    bool quantized;
} act;

typedef struct lf_stream lf_stream;

/* A neuron's activation from its gate and up projections: the one place
 * the dense FFN, the bundle FFN and the oracle mask take it from. */
static inline float lf_ffn_activate(lf_activation a, float gate, float up) {
    switch (a) {
    case LF_ACT_SILU_GATED: return gate * (1.0f / (1.0f + expf(-gate))) * up;
    case LF_ACT_RELU_GATED: return (gate > 0.0f ? gate : 0.0f) * up;
    case LF_ACT_RELU: return up > 0.0f ? up : 0.0f;
    case LF_ACT_FROM_FILE: break; /* resolved at open */
    }
    return 0.0f;
}

struct lf_session {
    lf_model *m;
    lf_err err;
    lf_pool *pool;
    uint32_t n_ctx;
    uint32_t pos;
    bool has_logits;
    /* activations */
    float *x;           /* (n_embd) residual stream */
    float *xb;          /* (n_embd) normalised input of a block */
    float *xb2;         /* (n_embd) block output */
    float *q;           /* (n_head*head_dim) */
    float *att;         /* (n_head, n_ctx) attention scores */
    float *att_out;     /* (n_head*head_dim) */
    float *k_new;       /* (kv_dim) this token's key, before it is stored as F16/F32 */
    float *v_new;       /* (kv_dim) this token's value */
    float *hb;          /* (n_ff) gate / activation */
    float *hb2;         /* (n_ff) up */
    float *logits;      /* (n_vocab) */
    float *rope_cos;    /* (n_rot/2) for the current position */
    float *rope_sin;    /* (n_rot/2) */
    lf_block_q8a *xq;   /* (max(n_embd, n_ff, q_dim)/32) quantized activation */
    float *ffn_acc;     /* (n_threads, n_embd) per-thread partial FFN outputs */
    float *ffn_scratch; /* (n_threads, n_embd) dequantized down rows */
    void *key_cache;    /* (n_layer, n_ctx, kv_dim) of F16 or F32 (params.kv_type) */
    lf_stream *stream;  /* stream, naive and hybrid modes */
    uint8_t **recs;     /* mmap'ed flash file: (n_ff) record pointers of the layer at hand */
    lf_session_params params;
    double compute_ms;  /* in eval, since creation or the last reset_stats */
    uint64_t tokens;    /* evaluated, same span */
    bool in_prompt;     /* generate() is evaluating its prompt */
    lf_phase_stats prompt, generation;
    uint64_t budget_taken; /* bytes of the model's budget ledger this session holds */
    /* process counters at creation or reset_stats (mmap mode's device traffic) */
    uint64_t base_read_bytes, base_major_faults;
    void *value_cache;  /* (n_layer, n_ctx, kv_dim) of F16 or F32 */
};


/* Accumulating FFN over neuron records: begin zeroes the per-thread
 * accumulators, accumulate adds sum_i down_i * act(gate_i.x)(up_i.x) over the
 * given records (multithreaded), end adds the total to the residual. */
void lf_ffn_begin(lf_session *s);
void lf_ffn_accumulate(lf_session *s, const uint8_t *const *recs, size_t n, const void *x);
void lf_ffn_end(lf_session *s);
/* The activation in the form the bundle kernels take (quantizes once). */
const void *lf_ffn_input(lf_session *s, act *xb);

/* Streaming engine (ffn_stream.c). */
uint64_t lf_stream_plan_bytes(const lf_model *m, const lf_session_params *p, uint64_t *io_bytes, uint64_t *oracle_bytes,
                              uint64_t *scratch_bytes);
lf_status lf_stream_create(lf_session *s, uint64_t cache_bytes, lf_err *err);
void lf_stream_destroy(lf_stream *st);
/* Waits for reads still in flight into the session's buffers. */
void lf_stream_shutdown(lf_session *s);
/* After an error: waits for every read in flight and drops cached units
 * whose reads were not confirmed, so a retried token starts clean. */
void lf_stream_abort(lf_session *s);
/* Plans layer l for the current token and issues its reads (mask "all" can
 * do this before attention). Idempotent per layer and token. */
lf_status lf_stream_issue(lf_session *s, uint32_t l, act *xb);
/* Computes layer l's FFN into the residual; issues first if needed. */
lf_status lf_stream_ffn(lf_session *s, uint32_t l, act *xb);
void lf_stream_next_token(lf_session *s);
void lf_stream_stats(const lf_session *s, lf_session_stats *out);
void lf_stream_reset_stats(lf_session *s);
void lf_stream_cache_bytes(const lf_session *s, uint64_t *bytes);
void lf_stream_layer_stats(const lf_session *s, uint32_t l, lf_layer_stats *out);

#endif
