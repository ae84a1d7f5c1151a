/* ffn_kernel.h - the bundle kernel: an FFN computed over neuron records
 * (gate row, up row, down column, see flash_format.h) for a batch of tokens.
 *
 *   y_t = sum over records i of w_it * down_i * act(gate_i . x_t, up_i . x_t)
 *
 * w_it is 1, or the routing weight of record i's expert for token t.
 *
 * Records come in any number of calls (hits from the cache, then misses as
 * their reads land); each record is applied to every token of the batch, so
 * a unit read once serves them all. Each thread owns a range of records and
 * its own accumulators, summed in thread order at the end, so results do not
 * depend on scheduling. */
#ifndef LF_FFN_KERNEL_H
#define LF_FFN_KERNEL_H

#include "../common/lf_common.h"
#include "../flash/flash_format.h"
#include "../tensor/kernels.h"

#include <math.h>

typedef struct lf_ffn_kernel {
    const lf_kernels *k;
    lf_bundle_layout layout;
    lf_activation act;
    uint32_t n_embd;
    uint32_t max_batch;
    lf_pool *pool;           /* borrowed */
    int nth;
    float *acc;              /* (nth, max_batch, n_embd) per-thread partial outputs */
    float *scratch;          /* (nth, n_embd) dequantized down columns */
    lf_block_q8a *xq;        /* (max_batch, n_embd / 32) the batch, quantized once */
    const void **x;          /* (max_batch) each token's input as the dot kernels take it */
    size_t n;                /* tokens of the batch in progress */
} lf_ffn_kernel;

/* Bytes lf__ffn_kernel_init allocates. */
uint64_t lf__ffn_kernel_bytes(uint32_t n_embd, uint32_t max_batch, int nth);
lf_status lf__ffn_kernel_init(lf_ffn_kernel *fk, const lf_kernels *k, const lf_bundle_layout *layout, lf_activation act,
                              uint32_t n_embd, uint32_t max_batch, lf_pool *pool);
void lf__ffn_kernel_free(lf_ffn_kernel *fk);

/* Starts a batch of n (<= max_batch) tokens, x (n, n_embd). x must stay
 * valid until end. */
void lf__ffn_kernel_begin(lf_ffn_kernel *fk, const float *x, size_t n);
/* Adds n_recs records (record_bytes each, any alignment) to the batch. w:
 * NULL, or each record's weights, one per token of the batch (a mixture of
 * experts: the routing weight of the record's expert, 0 for a token not
 * routed to it, which is then not computed): token t gets w[i][t] times
 * record i's output. */
void lf__ffn_kernel_accumulate(lf_ffn_kernel *fk, const uint8_t *const *recs, const float *const *w, size_t n_recs);
/* Writes the batch's output, y (n, n_embd). */
void lf__ffn_kernel_end(lf_ffn_kernel *fk, float *y);

/* A neuron's activation from its gate and up projections: the one place
 * the dense FFN, the bundle kernel and the oracle mask take it from. */
static inline float lf__ffn_activate(lf_activation a, float gate, float up) {
    switch (a) {
    case LF_ACT_SILU_GATED: return gate * (1.0f / (1.0f + expf(-gate))) * up;
    case LF_ACT_RELU_GATED: return (gate > 0.0f ? gate : 0.0f) * up;
    case LF_ACT_RELU: return up > 0.0f ? up : 0.0f;
    case LF_ACT_FROM_FILE: break; /* resolved at open */
    }
    return 0.0f;
}

#endif
