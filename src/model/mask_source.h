/* mask_source.h - who decides which FFN units a batch of tokens needs.
 *
 * A mask source is a small table of functions and its state. The FFN engine
 * asks it, per layer, for the units (neuron records, compressed groups of
 * them, and later experts) that the batch's tokens need; the engine reads the
 * missing ones and computes only those. Sources:
 *   all     every unit, known before the layer's input: its reads can start
 *           before the layer's attention runs;
 *   oracle  exactly the units with a non-zero activation, from a resident
 *           copy of gate/up (tests and measurement: the upper bound of any
 *           predictor).
 * A sparsity predictor and MoE routing (router.h) are further sources. */
#ifndef LF_MASK_SOURCE_H
#define LF_MASK_SOURCE_H

#include "../common/lf_common.h"
#include "../flash/flash_format.h"
#include "../tensor/kernels.h"

typedef struct lf_mask_ops {
    const char *name;
    /* false: the units do not depend on the layer's input, so the engine may
     * ask before it has it (select gets x == NULL) */
    bool needs_input;
    /* Writes the units layer `layer` needs for the n tokens x (n, n_embd),
     * the FFN's normalised input, to units in ascending order; returns how
     * many. units has room for every unit of the layer. */
    uint32_t (*select)(void *state, uint32_t layer, const float *x, size_t n, uint32_t *units);
    /* Optional (NULL: none): the units layer `layer` (>= 1) will need, guessed
     * from layer - 1's FFN input x_prev (n, n_embd), so that their reads can
     * start a layer early. The engine still asks select once the layer's own
     * input is known, and reads only what this missed. */
    uint32_t (*select_ahead)(void *state, uint32_t layer, const float *x_prev, size_t n, uint32_t *units);
    void (*destroy)(void *state);
    /* Optional (NULL: every token of the batch applies every unit it is
     * given in full): select with each token's weight for each unit, as a
     * router routes experts. weights has room for (n_units, n) floats; it
     * gets weights[u * n + t], token t's weight for unit u, for every unit
     * returned, 0 where token t does not use u. The engine calls it instead
     * of select. */
    uint32_t (*route)(void *state, uint32_t layer, const float *x, size_t n, uint32_t *units, float *weights);
    /* true: select_ahead asks select's own predictor, on the input before,
     * so its guess is as good a forecast as the token before's use, and
     * the engine lets the guess evict what the token before used and the
     * guess left out. false: guesses evict only units older than that. */
    bool ahead_outranks_recent;
} lf_mask_ops;

typedef struct lf_mask {
    const lf_mask_ops *ops;
    void *state;
    uint64_t bytes;      /* what the state holds, for the budget */
} lf_mask;

/* Every unit of every layer. */
lf_status lf__mask_all_create(uint32_t n_units, lf_mask *out);

/* Exact activations from a resident copy of every layer's gate and up rows,
 * read from the flash file open on fd (verified when verify is set). A
 * neuron is active when |activation| >= taus[layer], or, where taus is NULL
 * or 0 (ReLU-type FFNs), when its activation is not zero. taus is copied. */
lf_status lf__mask_oracle_create(const lf_flash *f, int fd, bool verify, const lf_kernels *k, lf_activation act,
                                 const float *taus, lf_mask *out, lf_err *err);
/* Bytes the oracle's copy takes, for planning a budget. */
uint64_t lf__mask_oracle_bytes(const lf_flash *f);

/* A calibrated predictor (see predictor_file.h), whose set the mask takes
 * over (set is emptied). With lookahead, the mask has select_ahead: the
 * set's lookahead predictors, or where it has none, each layer's own
 * predictor applied to the layer before's input (no further bytes). Products run on k's F16 kernels, split over pool
 * (borrowed, may be NULL), which is idle while a layer's units are chosen. */
typedef struct lf_predictor_set lf_predictor_set;
lf_status lf__mask_predictor_create(const lf_flash *f, const lf_kernels *k, lf_pool *pool, lf_predictor_set *set,
                                    bool lookahead, lf_mask *out, lf_err *err);

void lf__mask_destroy(lf_mask *ms);

#endif
