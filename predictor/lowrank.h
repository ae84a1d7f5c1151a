/* lowrank.h - a low-rank sparsity predictor for one FFN layer, as in "LLM in
 * a Flash": logits z = B·(A·x) + b, and unit i is predicted active when
 * z_i > threshold.
 *
 *   A  (rank, n_in)   row-major
 *   B  (n_out, rank)
 *   b  (n_out)
 *
 * Built in three steps, each usable on its own:
 *   1. lf__lowrank_init_svd: from a truncated SVD of the layer's gate matrix
 *      (of up for plain ReLU), z approximates the gate's pre-activation; for
 *      ReLU-type FFNs its sign is already a training-free predictor;
 *   2. lf__lowrank_fit: weighted binary cross-entropy on collected samples,
 *      positives weighted so that recall is favoured (Adam, mini-batches);
 *   3. lf__lowrank_calibrate: the threshold that reaches a target recall on
 *      held-out samples.
 * Dense linear algebra (SVD, matrix products) goes through LAPACK and BLAS;
 * the form that runs (lf_lowrank_run) through src/tensor's kernels.
 * Depends only on src/common and src/tensor. */
#ifndef LF_PREDICTOR_LOWRANK_H
#define LF_PREDICTOR_LOWRANK_H

#include "../src/common/lf_common.h"
#include "../src/tensor/kernels.h"

typedef struct lf_lowrank {
    uint32_t n_in, n_out, rank;
    float *A;          /* (rank, n_in) */
    float *B;          /* (n_out, rank) */
    float *b;          /* (n_out) */
    float threshold;   /* on z */
} lf_lowrank;

typedef struct lf_lowrank_fit_params {
    uint32_t epochs;       /* passes over the samples (0: 20) */
    uint32_t batch;        /* samples per step (0: 256) */
    float lr;              /* Adam step size (0: 3e-3) */
    float pos_weight;      /* weight of a positive's loss; 0: negatives/positives, at most 20 */
    uint64_t seed;         /* sample order */
} lf_lowrank_fit_params;

typedef struct lf_lowrank_quality {
    double recall;         /* active units predicted active */
    double precision;      /* predicted units that were active */
    double predicted_density, true_density;
    uint64_t false_negatives;
} lf_lowrank_quality;

/* Allocates a predictor of the given shape, all zero. */
lf_status lf__lowrank_alloc(lf_lowrank *p, uint32_t n_in, uint32_t n_out, uint32_t rank);
void lf__lowrank_free(lf_lowrank *p);
/* dst becomes a copy of src (dst allocated by it). */
lf_status lf__lowrank_copy(lf_lowrank *dst, const lf_lowrank *src);
/* Bytes its weights take as F32. */
uint64_t lf__lowrank_bytes(uint32_t n_in, uint32_t n_out, uint32_t rank);

/* A = Σ_r V_rᵀ, B = U_r, b = 0 from the truncated SVD of W (n_out, n_in),
 * so that B·A is W's best rank-r approximation. rank <= min(n_out, n_in).
 * LF_E_NOMEM, or LF_E_INVALID_ARG when LAPACK fails (detail in err). */
lf_status lf__lowrank_init_svd(lf_lowrank *p, const float *W, uint32_t n_out, uint32_t n_in, uint32_t rank, lf_err *err);

/* Fits A, B and b on n samples: X (n, n_in), labels Y (n, n_out) of 0 or 1. */
lf_status lf__lowrank_fit(lf_lowrank *p, const float *X, const uint8_t *Y, uint64_t n, const lf_lowrank_fit_params *fp,
                          lf_err *err);

/* Sets the threshold to the largest value whose recall on (X, Y) is at least
 * `recall` (0 < recall <= 1). With no positive at all, the threshold is +inf. */
lf_status lf__lowrank_calibrate(lf_lowrank *p, const float *X, const uint8_t *Y, uint64_t n, double recall, lf_err *err);

/* Recall, precision and densities of the thresholded predictor on (X, Y). */
lf_status lf__lowrank_evaluate(const lf_lowrank *p, const float *X, const uint8_t *Y, uint64_t n, lf_lowrank_quality *q);

/* Logits of one input: h (rank) is scratch, z (n_out) the output. */
void lf__lowrank_logits(const lf_lowrank *p, const float *x, float *h, float *z);

/* The form a predictor runs in: A and B as IEEE half floats (F16, half the
 * DRAM of F32) or as Q8_0 (34 bytes per 32 weights, 53% of F16); the bias
 * and threshold as float. Q8_0 rows are quantized along their length (A's
 * rows of n_in, B's of rank: both multiples of 32), and the input and then
 * h are rounded to q8a blocks first, as the model's own quantized
 * projections round theirs. Calibrate sets each threshold on this very form
 * (lf__layer_predictor_calibrate), so the target recall holds for it. */
typedef struct lf_lowrank_run {
    uint32_t type;     /* LF_TYPE_F16 or LF_TYPE_Q8_0 */
    uint32_t n_in, n_out, rank;
    void *A;           /* rank rows of n_in */
    void *B;           /* n_out rows of rank, or NULL once transposed into Bt */
    void *Bt;          /* F16 only: (rank, n_out), the form that runs where the kernels have an F16 axpy */
    float *b;          /* (n_out) */
} lf_lowrank_run;

/* Rounds A and B to the nearest F16 values, in place: a fast stand-in for
 * the run form while candidates are compared. */
void lf__lowrank_round_f16(lf_lowrank *p);
/* Whether a predictor of this shape can be stored as `type`: F16 always,
 * Q8_0 when n_in and rank are multiples of 32. */
bool lf__lowrank_run_fits(uint32_t type, uint32_t n_in, uint32_t rank);
/* Bytes of A's and of B's rows, and of the whole predictor (with b). */
uint64_t lf__lowrank_run_a_bytes(uint32_t type, uint32_t n_in, uint32_t rank);
uint64_t lf__lowrank_run_b_bytes(uint32_t type, uint32_t n_out, uint32_t rank);
uint64_t lf__lowrank_run_bytes(uint32_t type, uint32_t n_in, uint32_t n_out, uint32_t rank);
/* Floats of scratch one predictor's logits need (h, and q8a blocks of x and h). */
uint64_t lf__lowrank_run_scratch(uint32_t n_in, uint32_t rank);
/* LF_E_UNSUPPORTED when the shape does not fit the type, LF_E_NOMEM. */
lf_status lf__lowrank_run_alloc(lf_lowrank_run *p, uint32_t type, uint32_t n_in, uint32_t n_out, uint32_t rank);
/* dst (allocated by it) becomes src rounded to `type`. */
lf_status lf__lowrank_run_from(lf_lowrank_run *dst, const lf_lowrank *src, uint32_t type);
void lf__lowrank_run_free(lf_lowrank_run *p);
/* Logits of one input, as lf__lowrank_logits: scratch holds
 * lf__lowrank_run_scratch floats, z (n_out) is the output. */
void lf__lowrank_run_logits(const lf_lowrank_run *p, const lf_kernels *k, const float *x, float *scratch, float *z);
/* F16: transposes B into Bt, the form that runs: z = b + Σ_r h_r·Bt_r, a
 * few long vector updates instead of n_out short dot products. Q8_0 keeps
 * its rows (their dot products run on 8-bit integers). */
lf_status lf__lowrank_run_transpose(lf_lowrank_run *p);

/* Reorders the outputs: output q becomes the old output order[q] (rows of
 * B and b), for a layer whose neurons were placed in that order. */
lf_status lf__lowrank_run_permute_outputs(lf_lowrank_run *p, const uint32_t *order);

/* One layer's predictor as it runs: a single low-rank predictor whose
 * logits are thresholded (ReLU-type FFNs), or the SwiGLU pair whose
 * |silu(zg)·zu| is. */
typedef struct lf_layer_predictor {
    lf_lowrank_run gate;   /* the gate's (up's for plain ReLU) */
    lf_lowrank_run up;     /* the pair's up (rank 0: no pair) */
    float threshold;
} lf_layer_predictor;

/* Floats of scratch lf__layer_predictor_scores needs. */
uint64_t lf__layer_predictor_scratch(uint32_t n_in, uint32_t n_out, uint32_t rank);
/* Scores of one input (n_out). */
void lf__layer_predictor_scores(const lf_layer_predictor *p, const lf_kernels *k, const float *x, float *scratch,
                                float *score);
/* The threshold for a target recall on (X, Y), and the quality, computed
 * on the run form's own scores (as lf__lowrank_calibrate and _evaluate). */
lf_status lf__layer_predictor_calibrate(lf_layer_predictor *p, const lf_kernels *k, const float *X, const uint8_t *Y,
                                        uint64_t n, double recall, lf_err *err);
lf_status lf__layer_predictor_evaluate(const lf_layer_predictor *p, const lf_kernels *k, const float *X,
                                       const uint8_t *Y, uint64_t n, lf_lowrank_quality *q);
uint64_t lf__layer_predictor_bytes(const lf_layer_predictor *p);
/* Whether a layer's predictor in cheaper weights (bytes_cheap, predicting
 * density_cheap of n_units) beats the one in bytes_full (density_full),
 * under a budget where every byte of predictor is one the neuron cache
 * lacks: yes unless the units it predicts beyond the other's, per token,
 * outnumber the units of unit_bytes each that the bytes it saves can hold. */
bool lf__cheaper_predictor_pays(double density_full, double density_cheap, uint32_t n_units, uint64_t bytes_full,
                                uint64_t bytes_cheap, uint64_t unit_bytes);
void lf__layer_predictor_free(lf_layer_predictor *p);

/* SwiGLU FFNs: whether |silu(gate·x) · (up·x)| is large depends on both
 * projections, and a predictor of the gate alone misses neurons whose up is
 * large. This one is a pair of low-rank predictors, of the gate's and of
 * up's pre-activations (both from truncated SVDs, training-free), and
 * scores neuron i as |silu(zg_i) · zu_i|: active when the score exceeds the
 * threshold. */
typedef struct lf_swiglu_predictor {
    lf_lowrank gate, up;       /* thresholds unused */
    float threshold;           /* on the score */
} lf_swiglu_predictor;

/* Scores of one input: scratch holds 2 * (rank + n_out) floats. */
void lf__swiglu_scores(const lf_swiglu_predictor *p, const float *x, float *scratch, float *score);
/* The threshold for a target recall, and the quality, as for lf_lowrank. */
lf_status lf__swiglu_calibrate(lf_swiglu_predictor *p, const float *X, const uint8_t *Y, uint64_t n, double recall,
                               lf_err *err);
lf_status lf__swiglu_evaluate(const lf_swiglu_predictor *p, const float *X, const uint8_t *Y, uint64_t n,
                              lf_lowrank_quality *q);

#endif
