/* moe.c - expert routing (see moe.h). */
#include "moe.h"

#include <math.h>

void lf__moe_route(const float *logits, uint32_t n_expert, uint32_t k, uint32_t *experts, float *weights) {
    /* top k by insertion: k is small (2 to 8 in the models people run) */
    uint32_t n = 0;
    for (uint32_t e = 0; e < n_expert; e++) {
        const float v = logits[e];
        if (n == k && !(v > logits[experts[k - 1]])) continue;
        uint32_t at = n < k ? n++ : k - 1;
        while (at > 0 && v > logits[experts[at - 1]]) {
            experts[at] = experts[at - 1];
            at--;
        }
        experts[at] = e;
    }
    /* softmax over all experts, renormalised over the chosen ones, is a
     * softmax over the chosen logits */
    const float top = logits[experts[0]];
    double sum = 0.0;
    for (uint32_t i = 0; i < k; i++) {
        weights[i] = expf(logits[experts[i]] - top);
        sum += weights[i];
    }
    for (uint32_t i = 0; i < k; i++) weights[i] = (float)(weights[i] / sum);
}
