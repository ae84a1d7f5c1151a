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
 * Dense linear algebra (SVD, matrix products) goes through LAPACK and BLAS.
 * Depends only on src/common. */
#ifndef LF_PREDICTOR_LOWRANK_H
#define LF_PREDICTOR_LOWRANK_H

#include "../src/common/lf_common.h"

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

/* The form a predictor runs in: A and B as IEEE half floats (half the DRAM
 * of F32), the bias and threshold as float. Calibrate rounds a fitted
 * predictor's weights to F16 (lf__lowrank_round_f16) before it sets the
 * threshold, so the threshold is the one for these very weights and the
 * target recall holds for them. */
typedef struct lf_lowrank_f16 {
    uint32_t n_in, n_out, rank;
    uint16_t *A;       /* (rank, n_in) */
    uint16_t *B;       /* (n_out, rank), or NULL once transposed into Bt */
    uint16_t *Bt;      /* (rank, n_out): the form that runs, or NULL */
    float *b;          /* (n_out) */
    float threshold;
} lf_lowrank_f16;

/* The kernels' F16 products: n halves at w against n floats at x, and
 * y += a * w over n halves. */
typedef struct lf_f16_ops {
    float (*dot)(const void *w, const void *x, int64_t n);
    void (*axpy)(const void *w, float a, float *y, int64_t n);
} lf_f16_ops;

/* Rounds A and B to the nearest F16 values, in place. */
void lf__lowrank_round_f16(lf_lowrank *p);
lf_status lf__lowrank_f16_alloc(lf_lowrank_f16 *p, uint32_t n_in, uint32_t n_out, uint32_t rank);
/* dst (allocated by it) becomes src in half precision. */
lf_status lf__lowrank_f16_from(lf_lowrank_f16 *dst, const lf_lowrank *src);
void lf__lowrank_f16_free(lf_lowrank_f16 *p);
uint64_t lf__lowrank_f16_bytes(uint32_t n_in, uint32_t n_out, uint32_t rank);
/* Logits of one input, as lf__lowrank_logits: h (rank) scratch, z (n_out). */
void lf__lowrank_f16_logits(const lf_lowrank_f16 *p, const lf_f16_ops *k, const float *x, float *h, float *z);
/* Transposes B into Bt, the form that runs: z = b + Σ_r h_r·Bt_r, a few
 * long vector updates instead of n_out short dot products. */
lf_status lf__lowrank_f16_transpose(lf_lowrank_f16 *p);

/* Reorders the outputs: output q becomes the old output order[q] (rows of
 * B and b), for a layer whose neurons were placed in that order. */
lf_status lf__lowrank_f16_permute_outputs(lf_lowrank_f16 *p, const uint32_t *order);

/* One layer's predictor as it runs: a single low-rank predictor whose
 * logits are thresholded (ReLU-type FFNs), or the SwiGLU pair whose
 * |silu(zg)·zu| is. */
typedef struct lf_layer_predictor {
    lf_lowrank_f16 gate;   /* the gate's (up's for plain ReLU) */
    lf_lowrank_f16 up;     /* the pair's up (rank 0: no pair) */
    float threshold;
} lf_layer_predictor;

/* Scores of one input (n_out): scratch holds 2 * (rank + n_out) floats. */
void lf__layer_predictor_scores(const lf_layer_predictor *p, const lf_f16_ops *k, const float *x, float *scratch,
                                float *score);
uint64_t lf__layer_predictor_bytes(const lf_layer_predictor *p);
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
