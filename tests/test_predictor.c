/* test_predictor.c - low-rank predictors on synthetic data with a known
 * low-rank structure: the SVD initialisation is exact for a rank-r gate,
 * the fit recovers a mask from a perturbed start, and the calibrated
 * threshold reaches the target recall on held-out samples. */
#include <criterion/criterion.h>

#include "../predictor/lowrank.h"

#include <math.h>
#include <stdlib.h>

enum { D = 64, M = 200, R = 8, N_FIT = 6000, N_HELD = 2000 };

typedef struct problem {
    float *W;  /* (M, D) of rank R */
    float *X;  /* (N_FIT + N_HELD, D) */
    uint8_t *Y;
    float c;   /* activity threshold: about 15% of units fire */
} problem;

static problem make_problem(uint64_t seed) {
    problem p;
    lf_rng rng;
    lf__rng_seed(&rng, seed);
    float *U = malloc(M * R * sizeof *U), *V = malloc(R * D * sizeof *V);
    for (int i = 0; i < M * R; i++) U[i] = lf__rng_normal(&rng);
    for (int i = 0; i < R * D; i++) V[i] = lf__rng_normal(&rng) / sqrtf((float)D);
    p.W = calloc(M * D, sizeof *p.W);
    for (int i = 0; i < M; i++)
        for (int r = 0; r < R; r++)
            for (int j = 0; j < D; j++) p.W[i * D + j] += U[i * R + r] * V[r * D + j];
    const int n = N_FIT + N_HELD;
    p.X = malloc((size_t)n * D * sizeof *p.X);
    p.Y = malloc((size_t)n * M);
    for (int i = 0; i < n * D; i++) p.X[i] = lf__rng_normal(&rng);
    p.c = 2.9f; /* z has variance about R = 8: P(z > 2.9) is about 15% */
    uint64_t on = 0;
    for (int k = 0; k < n; k++)
        for (int i = 0; i < M; i++) {
            float z = 0;
            for (int j = 0; j < D; j++) z += p.W[i * D + j] * p.X[k * D + j];
            p.Y[k * M + i] = z > p.c;
            on += p.Y[k * M + i];
        }
    cr_assert((double)on / ((double)n * M) > 0.05 && (double)on / ((double)n * M) < 0.3, "density %g",
              (double)on / ((double)n * M));
    free(U);
    free(V);
    return p;
}

static void free_problem(problem *p) {
    free(p->W);
    free(p->X);
    free(p->Y);
}

Test(predictor, svd_of_a_rank_r_gate_is_exact) {
    problem p = make_problem(1);
    lf_lowrank lr;
    lf_err err = {{0}};
    cr_assert_eq(lf__lowrank_init_svd(&lr, p.W, M, D, R, &err), LF_OK, "%s", err.msg);
    float h[R], z[M];
    for (int k = 0; k < 20; k++) {
        lf__lowrank_logits(&lr, p.X + k * D, h, z);
        for (int i = 0; i < M; i++) {
            float want = 0;
            for (int j = 0; j < D; j++) want += p.W[i * D + j] * p.X[k * D + j];
            cr_assert_float_eq(z[i], want, 1e-3f * (1 + fabsf(want)), "sample %d unit %d", k, i);
        }
    }
    /* training-free: with the threshold set on samples it is a perfect predictor */
    cr_assert_eq(lf__lowrank_calibrate(&lr, p.X, p.Y, N_FIT, 0.99, &err), LF_OK);
    lf_lowrank_quality q;
    cr_assert_eq(lf__lowrank_evaluate(&lr, p.X + (size_t)N_FIT * D, p.Y + (size_t)N_FIT * M, N_HELD, &q), LF_OK);
    cr_assert(q.recall >= 0.98 && q.precision > 0.95, "recall %g precision %g", q.recall, q.precision);
    cr_assert_eq(lf__lowrank_init_svd(&lr, p.W, M, D, D + 1, &err), LF_E_INVALID_ARG);
    lf__lowrank_free(&lr);
    free_problem(&p);
}

Test(predictor, fitting_recovers_the_mask_from_a_perturbed_start) {
    problem p = make_problem(2);
    /* start from the SVD of a noisy gate and no bias: the fit must learn
     * the rest from the samples alone */
    lf_rng rng;
    lf__rng_seed(&rng, 9);
    float *noisy = malloc(M * D * sizeof *noisy);
    for (int i = 0; i < M * D; i++) noisy[i] = p.W[i] + 2.0f * lf__rng_normal(&rng) / sqrtf((float)D);
    lf_lowrank lr;
    lf_err err = {{0}};
    cr_assert_eq(lf__lowrank_init_svd(&lr, noisy, M, D, R, &err), LF_OK, "%s", err.msg);
    lf_lowrank_quality before, after;
    cr_assert_eq(lf__lowrank_calibrate(&lr, p.X, p.Y, N_FIT, 0.99, &err), LF_OK);
    lf__lowrank_evaluate(&lr, p.X + (size_t)N_FIT * D, p.Y + (size_t)N_FIT * M, N_HELD, &before);
    lf_lowrank_fit_params fp = {.epochs = 30, .seed = 3};
    cr_assert_eq(lf__lowrank_fit(&lr, p.X, p.Y, N_FIT, &fp, &err), LF_OK, "%s", err.msg);
    cr_assert_eq(lf__lowrank_calibrate(&lr, p.X, p.Y, N_FIT, 0.99, &err), LF_OK);
    lf__lowrank_evaluate(&lr, p.X + (size_t)N_FIT * D, p.Y + (size_t)N_FIT * M, N_HELD, &after);
    cr_log_info("perturbed SVD: recall %.4f precision %.3f density %.3f; fitted: recall %.4f precision %.3f density %.3f"
                " (true %.3f)", before.recall, before.precision, before.predicted_density, after.recall, after.precision,
                after.predicted_density, after.true_density);
    cr_assert(after.recall >= 0.985, "held-out recall %g", after.recall);
    cr_assert(after.precision > before.precision, "fitting improved precision at the same recall: %g -> %g",
              before.precision, after.precision);
    cr_assert(after.predicted_density < 2.0 * after.true_density, "predicted %g for true %g", after.predicted_density,
              after.true_density);
    free(noisy);
    lf__lowrank_free(&lr);
    free_problem(&p);
}

Test(predictor, threshold_meets_the_target_recall_exactly_on_its_samples) {
    problem p = make_problem(3);
    lf_lowrank lr;
    lf_err err = {{0}};
    cr_assert_eq(lf__lowrank_init_svd(&lr, p.W, M, D, 2, &err), LF_OK); /* a poor rank-2 predictor */
    const double targets[] = {0.9, 0.99, 1.0};
    for (int t = 0; t < 3; t++) {
        cr_assert_eq(lf__lowrank_calibrate(&lr, p.X, p.Y, N_FIT, targets[t], &err), LF_OK);
        lf_lowrank_quality q;
        lf__lowrank_evaluate(&lr, p.X, p.Y, N_FIT, &q);
        cr_assert(q.recall >= targets[t], "target %g: recall %g", targets[t], q.recall);
    }
    cr_assert_eq(lf__lowrank_calibrate(&lr, p.X, p.Y, N_FIT, 0.0, &err), LF_E_INVALID_ARG);
    lf__lowrank_free(&lr);
    free_problem(&p);
}

/* A matrix too large for the exact SVD takes the randomised path: its rank-r
 * approximation is as good as the best one, up to the noise beyond rank r. */
Test(predictor, randomised_svd_of_a_large_matrix_is_near_optimal) {
    enum { BM = 3000, BD = 512, BR = 24 };
    lf_rng rng;
    lf__rng_seed(&rng, 21);
    float *U = malloc((size_t)BM * BR * sizeof *U), *V = malloc((size_t)BR * BD * sizeof *V);
    float *W = malloc((size_t)BM * BD * sizeof *W), *noise = malloc((size_t)BM * BD * sizeof *noise);
    for (int i = 0; i < BM * BR; i++) U[i] = lf__rng_normal(&rng);
    for (int i = 0; i < BR * BD; i++) V[i] = lf__rng_normal(&rng);
    double noise2 = 0;
    for (int i = 0; i < BM; i++)
        for (int j = 0; j < BD; j++) {
            float w = 0;
            for (int r = 0; r < BR; r++) w += U[i * BR + r] * V[r * BD + j];
            noise[(size_t)i * BD + j] = 0.05f * lf__rng_normal(&rng);
            noise2 += (double)noise[(size_t)i * BD + j] * noise[(size_t)i * BD + j];
            W[(size_t)i * BD + j] = w + noise[(size_t)i * BD + j];
        }
    lf_lowrank lr;
    lf_err err = {{0}};
    cr_assert_eq(lf__lowrank_init_svd(&lr, W, BM, BD, BR, &err), LF_OK, "%s", err.msg);
    double err2 = 0, w2 = 0;
    for (int i = 0; i < BM; i++)
        for (int j = 0; j < BD; j++) {
            float a = 0;
            for (int r = 0; r < BR; r++) a += lr.B[(size_t)i * BR + r] * lr.A[(size_t)r * BD + j];
            const double e = (double)W[(size_t)i * BD + j] - a;
            err2 += e * e;
            w2 += (double)W[(size_t)i * BD + j] * W[(size_t)i * BD + j];
        }
    cr_log_info("rank-%d error %.4g of %.4g; noise %.4g", BR, sqrt(err2), sqrt(w2), sqrt(noise2));
    /* the best rank-r error is below the noise's norm; allow 2% over it */
    cr_expect(sqrt(err2) <= 1.02 * sqrt(noise2), "error %.4g against noise %.4g", sqrt(err2), sqrt(noise2));
    lf__lowrank_free(&lr);
    free(U);
    free(V);
    free(W);
    free(noise);
}

#include "../predictor/placement.h"

/* Neurons in scattered clusters that fire together: placement puts each
 * cluster in one contiguous run, and the hottest cluster first. */
Test(predictor, placement_gathers_coactivated_neurons) {
    enum { PN = 240, PK = 8, PT = 3000 }; /* 240 neurons in 8 clusters of 30 */
    lf_rng rng;
    lf__rng_seed(&rng, 5);
    uint32_t cluster[PN];
    for (uint32_t i = 0; i < PN; i++) cluster[i] = i % PK; /* interleaved: neighbours never share a cluster */
    uint8_t *Y = calloc((size_t)PT * PN, 1);
    for (uint32_t t = 0; t < PT; t++)
        for (uint32_t k = 0; k < PK; k++) {
            /* cluster k fires in a share of tokens falling with k; its
             * members mostly fire together */
            if (lf__rng_uniform(&rng) >= 0.4f / (float)(k + 1)) continue;
            for (uint32_t i = 0; i < PN; i++)
                if (cluster[i] == k && lf__rng_uniform(&rng) < 0.9f) Y[(size_t)t * PN + i] = 1;
        }
    uint32_t order[PN];
    lf_err err = {{0}};
    cr_assert_eq(lf__placement_order(Y, PT, PN, order, &err), LF_OK, "%s", err.msg);
    uint8_t seen[PN] = {0};
    for (uint32_t q = 0; q < PN; q++) {
        cr_assert(order[q] < PN && !seen[order[q]], "a permutation");
        seen[order[q]] = 1;
    }
    uint32_t changes = 0;
    for (uint32_t q = 1; q < PN; q++) changes += cluster[order[q]] != cluster[order[q - 1]];
    cr_assert_eq(changes, PK - 1, "each cluster is one run: %u cluster changes along the order", changes);
    cr_assert_eq(cluster[order[0]], 0, "the hottest cluster comes first");
    free(Y);
}

/* The run form in F16 and in Q8_0 on every kernel path this CPU has: its
 * logits follow the F32 predictor's, a threshold set on its own scores
 * meets the target recall exactly on those samples, Q8_0 keeps as many
 * units as F16 within a few percent in 55% of the bytes, and reordering the
 * outputs reorders the logits bit for bit. */
Test(predictor, the_run_form_in_f16_and_q8_0) {
    problem p = make_problem(5);
    enum { RK = 32 };
    lf_lowrank lr;
    lf_err err = {{0}};
    cr_assert_eq(lf__lowrank_init_svd(&lr, p.W, M, D, RK, &err), LF_OK, "%s", err.msg);
    for (int i = 0; i < M; i++) lr.b[i] = 0.01f * (float)(i % 7);
    const lf_kernels *paths[LF_KERNEL_PATHS];
    const int n_paths = lf__kernels_available(paths);
    float z[M], z2[M], h[RK];
    float *scratch = malloc(lf__layer_predictor_scratch(D, M, RK) * sizeof *scratch);
    for (int kp = 0; kp < n_paths; kp++) {
        const lf_kernels *k = paths[kp];
        double density[2];
        const uint32_t types[2] = {LF_TYPE_F16, LF_TYPE_Q8_0};
        for (int t = 0; t < 2; t++) {
            lf_layer_predictor lp = {0};
            cr_assert_eq(lf__lowrank_run_from(&lp.gate, &lr, types[t]), LF_OK);
            double e2 = 0, z2sum = 0;
            for (int s = 0; s < 50; s++) {
                lf__lowrank_logits(&lr, p.X + s * D, h, z);
                lf__layer_predictor_scores(&lp, k, p.X + s * D, scratch, z2);
                for (int i = 0; i < M; i++) e2 += (z[i] - z2[i]) * (z[i] - z2[i]), z2sum += z[i] * z[i];
            }
            /* F16 rounds the weights; Q8_0 also rounds x and h to 8 bits */
            const double rel = sqrt(e2 / z2sum);
            cr_log_info("%s %s: relative RMS error of the logits %.2e", k->name, t ? "Q8_0" : "F16", rel);
            cr_assert(rel < (t ? 0.02 : 0.002), "%s %s: logits off by %g (RMS, relative)", k->name, t ? "Q8_0" : "F16", rel);
            cr_assert_eq(lf__layer_predictor_calibrate(&lp, k, p.X, p.Y, N_FIT, 0.99, &err), LF_OK, "%s", err.msg);
            lf_lowrank_quality q;
            cr_assert_eq(lf__layer_predictor_evaluate(&lp, k, p.X, p.Y, N_FIT, &q), LF_OK);
            cr_assert(q.recall >= 0.99, "%s: recall %g on its own samples", k->name, q.recall);
            cr_assert_eq(lf__layer_predictor_evaluate(&lp, k, p.X + (size_t)N_FIT * D, p.Y + (size_t)N_FIT * M, N_HELD, &q),
                         LF_OK);
            cr_assert(q.recall > 0.975, "%s: held-out recall %g", k->name, q.recall);
            density[t] = q.predicted_density;
            /* placed outputs: the same logits in the new order, bit for bit */
            uint32_t order[M];
            for (int i = 0; i < M; i++) order[i] = (uint32_t)((i * 37 + 11) % M);
            lf__layer_predictor_scores(&lp, k, p.X, scratch, z);
            cr_assert_eq(lf__lowrank_run_permute_outputs(&lp.gate, order), LF_OK);
            lf__layer_predictor_scores(&lp, k, p.X, scratch, z2);
            for (int i = 0; i < M; i++) cr_assert_eq(z2[i], z[order[i]], "%s: output %d", k->name, i);
            lf__layer_predictor_free(&lp);
        }
        cr_log_info("%s: predicted density %.4f with F16 weights, %.4f with Q8_0", k->name, density[0], density[1]);
        cr_assert(density[1] < density[0] * 1.05, "%s: Q8_0 keeps %g against F16's %g", k->name, density[1], density[0]);
    }
    const double ratio = (double)lf__lowrank_run_bytes(LF_TYPE_Q8_0, D, M, RK) / lf__lowrank_run_bytes(LF_TYPE_F16, D, M, RK);
    cr_assert(ratio > 0.5 && ratio < 0.6, "Q8_0 takes %g of F16's bytes", ratio);
    /* shapes that are not whole blocks stay F16 */
    cr_assert(lf__lowrank_run_fits(LF_TYPE_F16, D, 8) && !lf__lowrank_run_fits(LF_TYPE_Q8_0, D, 8) &&
              !lf__lowrank_run_fits(LF_TYPE_Q8_0, 48, 32) && !lf__lowrank_run_fits(LF_TYPE_Q4_0, D, 32));
    lf_lowrank_run bad;
    cr_assert_eq(lf__lowrank_run_alloc(&bad, LF_TYPE_Q8_0, D, M, 8), LF_E_UNSUPPORTED);
    free(scratch);
    lf__lowrank_free(&lr);
    free_problem(&p);
}

/* The weights rule of `calibrate --weights auto`: the cheaper predictor is
 * kept while the records the bytes it saves can cache are at least the
 * units it adds per token. */
Test(predictor, cheaper_weights_pay_while_their_saved_bytes_cache_their_extra_units) {
    /* 7B relu shape: 11008 units of 6912 bytes; 3.7 MB saved = 535 records,
     * and 0.004 more density is 44 units: it pays */
    cr_assert(lf__cheaper_predictor_pays(0.177, 0.181, 11008, 7700000, 4000000, 6912));
    /* the same predictor, 5% more density (550 units): it does not */
    cr_assert_not(lf__cheaper_predictor_pays(0.177, 0.227, 11008, 7700000, 4000000, 6912));
    /* at the boundary (densities exact in binary): 10 records saved, 10
     * more units predicted of 1024, then 11 */
    cr_assert(lf__cheaper_predictor_pays(0.0625, 0.0625 + 10.0 / 1024, 1024, 20000, 10000, 1000));
    cr_assert_not(lf__cheaper_predictor_pays(0.0625, 0.0625 + 11.0 / 1024, 1024, 20000, 10000, 1000));
    /* fewer units predicted always pays, even with nothing saved */
    cr_assert(lf__cheaper_predictor_pays(0.2, 0.19, 1000, 10000, 10000, 1000));
    /* a larger predictor never pays by bytes alone */
    cr_assert_not(lf__cheaper_predictor_pays(0.2, 0.2 + 1e-9, 1000, 10000, 12000, 1000));
}
