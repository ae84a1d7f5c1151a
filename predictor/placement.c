/* placement.c - co-activation placement (see placement.h). */
#include "placement.h"

#include <cblas.h>
#include <inttypes.h>
#include <stdlib.h>

/* How much of a placed neuron's pull is left one step later. */
#define PULL_DECAY 0.5f

lf_status lf__placement_order(const uint8_t *Y, uint64_t N, uint32_t n, uint32_t *order, lf_err *err) {
    float *Yf = malloc(N * n * sizeof *Yf), *C = malloc((uint64_t)n * n * sizeof *C);
    float *pull = calloc(n, sizeof *pull), *freq = calloc(n, sizeof *freq);
    uint8_t *placed = calloc(n, 1);
    if (!Yf || !C || !pull || !freq || !placed) {
        free(Yf), free(C), free(pull), free(freq), free(placed);
        return lf__err_set(err, LF_E_NOMEM, "co-activation counts of %u neurons over %" PRIu64 " tokens", n, N);
    }
    for (uint64_t k = 0; k < N * n; k++) Yf[k] = (float)Y[k];
    for (uint64_t t = 0; t < N; t++)
        for (uint32_t i = 0; i < n; i++) freq[i] += Yf[t * n + i];
    /* C = Yᵀ·Y, upper triangle (row-major), mirrored below */
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)N, 1.0f, Yf, (int)n, 0.0f, C, (int)n);
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < i; j++) C[(uint64_t)i * n + j] = C[(uint64_t)j * n + i];
    free(Yf);
    uint32_t q = 0;
    while (q < n) {
        /* the next: the strongest pull, else the most frequent left (a new chain) */
        int64_t best = -1;
        float best_pull = 0.0f, best_freq = -1.0f;
        for (uint32_t j = 0; j < n; j++) {
            if (placed[j]) continue;
            if (pull[j] > best_pull || (pull[j] == best_pull && best_pull == 0.0f && freq[j] > best_freq)) {
                best = j;
                best_pull = pull[j];
                best_freq = freq[j];
            }
        }
        if (best < 0 || (best_pull == 0.0f && best_freq == 0.0f)) break; /* only silent neurons left */
        placed[best] = 1;
        order[q++] = (uint32_t)best;
        const float *row = C + (uint64_t)best * n;
        for (uint32_t j = 0; j < n; j++) pull[j] = PULL_DECAY * pull[j] + row[j];
    }
    for (uint32_t j = 0; j < n; j++) /* silent neurons, in their own order */
        if (!placed[j]) order[q++] = j;
    free(C), free(pull), free(freq), free(placed);
    return LF_OK;
}
