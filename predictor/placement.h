/* placement.h - co-activation placement: an order of one FFN layer's
 * neurons in which neurons that fire together, and the hottest ones, sit
 * next to each other, so that the loader's coalescing turns a token's many
 * small reads into fewer large ones (as Ripple does on phones).
 *
 * From the activation labels of N calibration tokens, the co-activation
 * counts C = Yᵀ·Y (BLAS ssyrk) drive a greedy chain: it starts at the most
 * frequent neuron and appends, each step, the unplaced neuron with the most
 * co-activations with the recently placed ones (a decaying sum, so a
 * cluster is followed to its end); neurons that never fired go last. Memory:
 * N·n floats of labels and n² of counts, for one layer at a time. Depends
 * only on src/common. */
#ifndef LF_PREDICTOR_PLACEMENT_H
#define LF_PREDICTOR_PLACEMENT_H

#include "../src/common/lf_common.h"

/* order[q] = the neuron to place at position q, from labels Y (N, n) of 0/1. */
lf_status lf__placement_order(const uint8_t *Y, uint64_t N, uint32_t n, uint32_t *order, lf_err *err);

#endif
