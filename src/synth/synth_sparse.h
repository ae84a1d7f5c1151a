/* synth_sparse.h - weights whose forward pass has the activation statistics
 * of a real sparse model.
 *
 * Random weights activate about half of the FFN neurons, each as often as
 * any other, and independently from token to token. Real ReLU models
 * activate 3-10% per token, a fifth of the neurons carry most activations,
 * and consecutive tokens share most of their sets. The construction:
 *
 *   - every token embedding is mu*u + eps_v, with u one fixed coordinate and
 *     eps_v a random vector of fixed norm orthogonal to it, half of its energy
 *     in a 96-dimensional subspace (real streams are anisotropic: that is
 *     what lets a low-rank predictor work);
 *   - layer 0's attention attends to the last few positions (rotary scores
 *     from a constant query and key along u, in the low-frequency pairs) and
 *     adds their average, gain g, to the residual stream: the stream's
 *     varying part v_t is a moving average of the recent eps, so it changes
 *     slowly (the temporal knob sets g);
 *   - every other attention and every FFN down projection adds only a small
 *     perturbation, so all layers see nearly the same stream (as real
 *     residual streams change slowly from layer to layer);
 *   - neuron i's gate row (up's for ungated ReLU) is -b_i*u + w_i, with w_i a
 *     unit vector (half of it shared with the 63 other neurons of a random
 *     co-activation cluster): it fires when w_i.v_t exceeds b_i's threshold,
 *     and b_i is set so that it fires in a chosen fraction f_i of tokens.
 *     The f_i follow a power law in rank, scaled to the mean density and
 *     skewed to the hot-set share asked for.
 *
 * The statistics the forward pass will show are predicted by simulating the
 * Gaussian process w_i.v_t, and knobs out of reach are refused. */
#ifndef LF_SYNTH_SPARSE_H
#define LF_SYNTH_SPARSE_H

#include "../common/lf_common.h"

typedef struct lf_sparse_design {
    /* asked for */
    uint32_t n_embd, n_head, n_head_kv, n_ff;
    float rope_base;
    double sparsity;      /* mean share of inactive neurons per token */
    double hot;           /* share of activations on the busiest 20% of neurons */
    double temporal;      /* union over 5 tokens / one token's set; 0: context share 0.9 */
    /* solved */
    double freq_exp, freq_amp; /* f(r) = min(amp * (r + r0)^-exp, f_max), r the rank share */
    double ctx_share;          /* share of the recent-token average in the varying part */
    double ctx_gain;           /* layer 0's output projection gain */
    double mu, x0;             /* embedding's u coordinate, and x's after the norm */
    double h0, sigma_v, h_norm;/* the FFN input: u coordinate, sd of w.v, norm */
    double qk;                 /* query/key amplitude per rotary pair */
    uint32_t first_pair;       /* rotary pairs from here on carry the recency score */
    uint32_t subspace;         /* the varying part's main subspace: coordinates 1..subspace */
    float *profile;            /* attention weights by distance, steady state */
    uint32_t n_profile;
    /* the statistics predicted for a long run */
    double pred_density, pred_hot, pred_union5, pred_new;
} lf_sparse_design;

/* Solves the design for the shape and knobs set in sd. LF_E_INVALID_ARG,
 * with the reachable range in err, when a knob cannot be met. */
lf_status lf__sparse_design_solve(lf_sparse_design *sd, lf_err *err);
void lf__sparse_design_free(lf_sparse_design *sd);

/* The tensors the design shapes. */
typedef enum lf_sparse_role {
    LF_SPARSE_RANDOM = 0,   /* as the dense synth: normal, the plan's sd */
    LF_SPARSE_EMBED,
    LF_SPARSE_Q0, LF_SPARSE_K0, LF_SPARSE_V0, LF_SPARSE_O0, /* layer 0's attention */
    LF_SPARSE_QUIET,        /* an output projection scaled to a small perturbation */
    LF_SPARSE_GATE,         /* the rows that decide a neuron's activity */
    LF_SPARSE_UP,           /* a gated FFN's up rows: unit rows aligned with the subspace too */
} lf_sparse_role;

/* One tensor's generator: per-neuron thresholds and clusters for GATE. */
typedef struct lf_sparse_tensor lf_sparse_tensor;
lf_status lf__sparse_tensor_begin(const lf_sparse_design *sd, lf_sparse_role role, uint64_t rows, uint64_t cols,
                                  float sd_random, lf_rng *rng, lf_sparse_tensor **out);
/* Rows r0 .. r0 + nr - 1, in order, into rows (nr, cols). */
void lf__sparse_tensor_rows(lf_sparse_tensor *t, uint64_t r0, uint64_t nr, lf_rng *rng, float *rows);
void lf__sparse_tensor_end(lf_sparse_tensor *t);

#endif
