/* moe.h - mixture-of-experts routing, the one place both FFN paths take it
 * from (the dense forward pass and the flash engine's router mask).
 *
 * A token's router logits (ffn_gate_inp . x, one per expert) go through a
 * softmax; the k largest probabilities pick the experts, and their weights
 * are renormalised to sum to 1 (Mixtral's and Qwen3-MoE's rule). The layer's
 * output is the weighted sum of the picked experts' FFNs. */
#ifndef LF_MOE_H
#define LF_MOE_H

#include "../common/lf_common.h"

/* Routes one token: writes the k chosen experts in descending order of
 * probability (ties: the lower index first) and their weights. */
void lf__moe_route(const float *logits, uint32_t n_expert, uint32_t k, uint32_t *experts, float *weights);

#endif
