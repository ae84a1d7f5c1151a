/* test_kernels.c - every kernel path this CPU has against the scalar
 * reference: row dots of every type, the x8 layout's gemm over batches of
 * 1-9 tokens and odd lengths, repacking round trips, and path selection.
 * Paths the CPU cannot run are named as skipped. */
#include <criterion/criterion.h>

#include "../src/tensor/cpu_features.h"
#include "../src/tensor/kernels.h"
#include "../src/tensor/repack.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint32_t k_types[] = {LF_TYPE_F32, LF_TYPE_F16, LF_TYPE_BF16, LF_TYPE_Q8_0, LF_TYPE_Q4_0, LF_TYPE_Q4_1,
                                   LF_TYPE_Q5_0, LF_TYPE_Q5_1, LF_TYPE_Q4_K, LF_TYPE_Q5_K, LF_TYPE_Q6_K};

static void fill_normal(float *x, int64_t n, uint64_t seed, float scale) {
    lf_rng rng;
    lf__rng_seed(&rng, seed);
    for (int64_t i = 0; i < n; i++) x[i] = scale * lf__rng_normal(&rng);
}

/* Names the paths that are not on this CPU, once per test. */
static void log_skipped(void) {
    const lf_kernels *(*getters[])(void) = {lf__kernels_avx2, lf__kernels_avx2_vnni, lf__kernels_avx512,
                                            lf__kernels_avx512_vnni};
    const char *names[] = {"avx2", "avx2-vnni", "avx512", "avx512-vnni"};
    for (int i = 0; i < 4; i++)
        if (!getters[i]()) fprintf(stderr, "kernel path %s skipped: this CPU (%s) cannot run it\n", names[i], lf__cpu_features_string());
}

/* Scale of a dot product's terms, for a relative bound on summation order. */
static double term_scale(uint32_t type, const void *wq, const float *x, int64_t n) {
    float *wf = malloc(n * sizeof *wf);
    lf__dequantize_row(type, wq, wf, n);
    double mag = 0.0;
    for (int64_t i = 0; i < n; i++) mag += fabs((double)wf[i] * x[i]);
    free(wf);
    return mag;
}

Test(kernels, every_path_matches_scalar_row_dots) {
    log_skipped();
    const lf_kernels *paths[LF_KERNEL_PATHS];
    const int np = lf__kernels_available(paths);
    const lf_kernels *ref = lf__kernels_scalar();
    cr_assert_str_eq(paths[0]->name, "scalar");
    for (int p = 1; p < np; p++) {
        for (size_t t = 0; t < sizeof k_types / sizeof *k_types; t++) {
            const uint32_t type = k_types[t];
            const int64_t blk = lf__type_traits_get(type)->block == 256 ? 256 : 32;
            const int64_t lens[] = {blk, 3 * blk, 17 * blk, lf__type_uses_q8a(type) ? 129 * blk : 4099};
            for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
                const int64_t n = lens[li];
                float *w = malloc(n * sizeof *w), *x = malloc(n * sizeof *x);
                uint8_t *wq = malloc(n * 4 + 64);
                lf_block_q8a *xq = malloc((n / 32 + 1) * sizeof *xq);
                fill_normal(w, n, 10 + t * 13 + li, 0.2f);
                fill_normal(x, n, 20 + t * 13 + li, 1.5f);
                cr_assert_eq(lf__quantize_row(type, w, wq, n), LF_OK);
                const void *xa = x;
                if (lf__type_uses_q8a(type)) {
                    ref->quantize_q8a(x, xq, n);
                    xa = xq;
                }
                const float want = ref->dot[type](wq, xa, n), got = paths[p]->dot[type](wq, xa, n);
                const double tol = 1e-5 * term_scale(type, wq, x, n) + 1e-6;
                cr_assert(fabs(got - want) <= tol, "%s %s n=%ld: %g vs scalar %g", paths[p]->name,
                          lf_type_name((int)type), (long)n, got, want);
                free(w);
                free(x);
                free(wq);
                free(xq);
            }
        }
    }
}

/* A random quantized row of n elements, and its activation as dot[] takes it. */
typedef struct test_row {
    uint8_t *q;
    float *x;
    lf_block_q8a *xq;
    const void *xa;
} test_row;

static test_row make_row(const lf_kernels *ref, uint32_t type, int64_t n, uint64_t seed) {
    test_row r = {malloc(n * 4 + 64), malloc(n * sizeof(float)), malloc((n / 32 + 1) * sizeof(lf_block_q8a)), NULL};
    float *w = malloc(n * sizeof *w);
    fill_normal(w, n, seed, 0.3f);
    fill_normal(r.x, n, seed + 1, 1.0f);
    cr_assert_eq(lf__quantize_row(type, w, r.q, n), LF_OK);
    free(w);
    r.xa = r.x;
    if (lf__type_uses_q8a(type)) {
        ref->quantize_q8a(r.x, r.xq, n);
        r.xa = r.xq;
    }
    return r;
}

static void free_row(test_row *r) {
    free(r->q);
    free(r->x);
    free(r->xq);
}

static int64_t odd_length(uint32_t type, int li) {
    const int64_t blk = lf__type_traits_get(type)->block == 256 ? 256 : 32;
    const int64_t blocks[] = {1, 3, 37};
    if (li < 3) return blocks[li] * blk;
    return lf__type_uses_q8a(type) ? 129 * blk : 4099; /* float types: a tail of 3 */
}

/* The bundle kernel's multi-row dots and multi-column axpys give the bits of
 * the single-row kernels of the same path, for every row and column count. */
Test(kernels, dot_rows_and_axpy_cols_equal_the_single_row_kernels) {
    log_skipped();
    const lf_kernels *paths[LF_KERNEL_PATHS];
    const int np = lf__kernels_available(paths);
    const lf_kernels *ref = lf__kernels_scalar();
    for (int p = 0; p < np; p++) {
        const lf_kernels *k = paths[p];
        for (size_t t = 0; t < sizeof k_types / sizeof *k_types; t++) {
            const uint32_t type = k_types[t];
            if (p > 0) cr_assert_not_null(k->dot_rows[type], "%s: no dot_rows for %s", k->name, lf_type_name((int)type));
            if (p > 0) cr_assert_not_null(k->axpy_cols[type], "%s: no axpy_cols for %s", k->name, lf_type_name((int)type));
            for (int li = 0; li < 4; li++) {
                const int64_t n = odd_length(type, li);
                test_row rows[LF_AXPY_COLS];
                const void *q[LF_AXPY_COLS];
                for (int r = 0; r < LF_AXPY_COLS; r++) {
                    rows[r] = make_row(ref, type, n, 500 + 10 * t + 100 * li + 2 * r);
                    q[r] = rows[r].q;
                }
                for (int nr = 1; nr <= LF_DOT_ROWS; nr++) {
                    float out[LF_DOT_ROWS];
                    lf__dot_rows(k, type, q, nr, rows[0].xa, out, n);
                    for (int r = 0; r < nr; r++) {
                        const float want = k->dot[type](q[r], rows[0].xa, n);
                        cr_assert(memcmp(&out[r], &want, sizeof want) == 0, "%s %s n=%ld nr=%d row %d: %g vs dot %g",
                                  k->name, lf_type_name((int)type), (long)n, nr, r, out[r], want);
                    }
                }
                float *y0 = malloc(n * sizeof(float)), *y1 = malloc(n * sizeof(float)), *s = malloc(n * sizeof(float));
                const float a[LF_AXPY_COLS] = {-1.75f, 0.5f, 3.0f, -0.01f, 1.0f, 2.5f, -4.0f, 0.125f};
                for (int nc = 1; nc <= LF_AXPY_COLS; nc++) {
                    fill_normal(y0, n, 77 + nc, 1.0f);
                    memcpy(y1, y0, n * sizeof(float));
                    lf__axpy_cols(k, type, q, a, nc, y0, n, s);
                    for (int j = 0; j < nc; j++) lf__axpy_row(k, type, q[j], a[j], y1, n, s);
                    cr_assert(memcmp(y0, y1, n * sizeof(float)) == 0, "%s %s n=%ld: axpy_cols of %d columns differs",
                              k->name, lf_type_name((int)type), (long)n, nc);
                }
                free(y0);
                free(y1);
                free(s);
                for (int r = 0; r < LF_AXPY_COLS; r++) free_row(&rows[r]);
            }
        }
    }
}

/* Every path's axpy (y += a * row, the down columns) against the reference:
 * dequantize, then one fused multiply-add per element. */
Test(kernels, every_path_axpy_matches_the_reference) {
    log_skipped();
    const lf_kernels *paths[LF_KERNEL_PATHS];
    const int np = lf__kernels_available(paths);
    for (int p = 1; p < np; p++)
        for (size_t t = 0; t < sizeof k_types / sizeof *k_types; t++) {
            const uint32_t type = k_types[t];
            for (int li = 0; li < 4; li++) {
                const int64_t n = odd_length(type, li);
                float *w = malloc(n * sizeof *w), *y0 = malloc(n * sizeof *y0), *y1 = malloc(n * sizeof *y1);
                float *scratch = malloc(n * sizeof *scratch);
                uint8_t *q = malloc(n * 4 + 64);
                fill_normal(w, n, 900 + t, 0.5f);
                fill_normal(y0, n, 901 + t, 1.0f);
                memcpy(y1, y0, n * sizeof *y0);
                cr_assert_eq(lf__quantize_row(type, w, q, n), LF_OK);
                lf__axpy_row(NULL, type, q, -1.75f, y0, n, scratch); /* reference: dequantize and add */
                lf__axpy_row(paths[p], type, q, -1.75f, y1, n, scratch);
                for (int64_t i = 0; i < n; i++)
                    cr_assert(fabsf(y0[i] - y1[i]) <= 1e-5f * (1.0f + fabsf(y0[i])), "%s %s n=%ld elem %ld: %g vs %g",
                              paths[p]->name, lf_type_name((int)type), (long)n, (long)i, y1[i], y0[i]);
                free(w);
                free(y0);
                free(y1);
                free(scratch);
                free(q);
            }
        }
}

Test(kernels, x8_gemm_matches_row_dots_on_every_path) {
    log_skipped();
    const lf_kernels *paths[LF_KERNEL_PATHS];
    const int np = lf__kernels_available(paths);
    const lf_kernels *ref = lf__kernels_scalar();
    const uint32_t types[] = {LF_TYPE_Q4_0, LF_TYPE_Q4_1, LF_TYPE_Q5_0, LF_TYPE_Q5_1,
                              LF_TYPE_Q8_0, LF_TYPE_Q4_K, LF_TYPE_Q5_K, LF_TYPE_Q6_K};
    const int64_t lens[] = {32, 96, 32 * 37, 4096};
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const uint32_t type = types[ti];
        cr_assert(lf__repack_supported(type));
        for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
            const int64_t n = lf__type_traits_get(type)->block == 256 ? 256 * (int64_t)(li * 3 + 1) : lens[li];
            const uint64_t rows = 8, rb = lf__type_row_bytes(type, (uint64_t)n);
            const int max_nt = 9;
            float *w = malloc(rows * n * sizeof *w), *x = malloc(max_nt * n * sizeof *x);
            uint8_t *wq = malloc(rows * rb), *scratch = malloc(rows * rb);
            const uint64_t xs = (uint64_t)(n / 32) * sizeof(lf_block_q8a);
            lf_block_q8a *xq = malloc(max_nt * xs);
            fill_normal(w, rows * n, 31 + li, 0.3f);
            fill_normal(x, max_nt * n, 41 + li, 1.0f);
            for (uint64_t r = 0; r < rows; r++) cr_assert_eq(lf__quantize_row(type, w + r * n, wq + r * rb, n), LF_OK);
            for (int t = 0; t < max_nt; t++) ref->quantize_q8a(x + t * n, (lf_block_q8a *)((uint8_t *)xq + t * xs), n);
            float want[9][8];
            double mag[9][8];
            for (int t = 0; t < max_nt; t++)
                for (uint64_t r = 0; r < rows; r++) {
                    want[t][r] = ref->dot[type](wq + r * rb, (uint8_t *)xq + t * xs, n);
                    mag[t][r] = term_scale(type, wq + r * rb, x + t * n, n);
                }
            lf__repack_x8(type, wq, rows, (uint64_t)n, scratch);
            for (int p = 0; p < np; p++) {
                cr_assert_not_null(paths[p]->gemm_x8[type], "%s has no x8 %s kernel", paths[p]->name, lf_type_name((int)type));
                for (int nt = 1; nt <= max_nt; nt++) {
                    float got[9][16];
                    for (int t = 0; t < nt; t++)
                        for (int r = 0; r < 16; r++) got[t][r] = -12345.0f; /* rows 8-15 must stay untouched */
                    paths[p]->gemm_x8[type](wq, xq, xs, nt, &got[0][0], 16, n);
                    for (int t = 0; t < nt; t++) {
                        for (uint64_t r = 0; r < rows; r++) {
                            const double tol = 1e-5 * mag[t][r] + 1e-6;
                            cr_assert(fabs(got[t][r] - want[t][r]) <= tol, "%s %s n=%ld nt=%d token %d row %lu: %g vs %g",
                                      paths[p]->name, lf_type_name((int)type), (long)n, nt, t, (unsigned long)r,
                                      got[t][r], want[t][r]);
                        }
                        for (int r = 8; r < 16; r++) cr_assert_eq(got[t][r], -12345.0f, "%s wrote past its 8 rows", paths[p]->name);
                    }
                }
            }
            free(w);
            free(x);
            free(wq);
            free(scratch);
            free(xq);
        }
    }
}

/* Two and four groups at once (gemm_x16, gemm_x32) give the bits of
 * gemm_x8 on each group, for every token count, and write only their rows. */
Test(kernels, x16_and_x32_gemms_equal_x8_groups_bit_for_bit) {
    log_skipped();
    const lf_kernels *paths[LF_KERNEL_PATHS];
    const int np = lf__kernels_available(paths);
    int tested = 0;
    for (int p = 0; p < np; p++)
        for (uint32_t type = 0; type < LF_TYPE_ID_MAX; type++) {
            if (!paths[p]->gemm_x16[type] && !paths[p]->gemm_x32[type]) continue;
            cr_assert_not_null(paths[p]->gemm_x8[type]);
            for (int li = 0; li < 3; li++) {
                const int64_t n = lf__type_traits_get(type)->block == 256 ? 256 * (int64_t)(li * 3 + 1) : 32 * (int64_t)(1 + li * 18);
                const uint64_t rb = lf__type_row_bytes(type, (uint64_t)n);
                const int max_nt = 9;
                float *w = malloc(32 * n * sizeof *w), *x = malloc(max_nt * n * sizeof *x);
                uint8_t *wq = malloc(32 * rb), *scratch = malloc(8 * rb);
                fill_normal(w, 32 * n, 91 + li, 0.3f);
                fill_normal(x, max_nt * n, 97 + li, 1.0f);
                for (int r = 0; r < 32; r++) cr_assert_eq(lf__quantize_row(type, w + r * n, wq + r * rb, n), LF_OK);
                lf__repack_x8(type, wq, 32, (uint64_t)n, scratch);
                const uint64_t xs = (uint64_t)(n / 32) * sizeof(lf_block_q8a);
                lf_block_q8a *xq = malloc(max_nt * xs);
                for (int t = 0; t < max_nt; t++) paths[p]->quantize_q8a(x + t * n, (lf_block_q8a *)((uint8_t *)xq + t * xs), n);
                for (int nt = 1; nt <= max_nt; nt++) {
                    float want[9][40];
                    for (int t = 0; t < nt; t++)
                        for (int r = 0; r < 40; r++) want[t][r] = -12345.0f; /* rows 32-39 stay untouched */
                    for (int gi = 0; gi < 4; gi++) paths[p]->gemm_x8[type](wq + 8 * gi * rb, xq, xs, nt, &want[0][8 * gi], 40, n);
                    for (int rows = 16; rows <= 32; rows += 16) {
                        const lf_gemm_x8_fn f = rows == 16 ? paths[p]->gemm_x16[type] : paths[p]->gemm_x32[type];
                        if (!f) continue;
                        float got[9][40];
                        for (int t = 0; t < nt; t++)
                            for (int r = 0; r < 40; r++) got[t][r] = r < rows ? 0.0f : -12345.0f;
                        f(wq, xq, xs, nt, &got[0][0], 40, n);
                        for (int t = 0; t < nt; t++) {
                            cr_assert(memcmp(want[t], got[t], (size_t)rows * sizeof(float)) == 0,
                                      "%s %s x%d n=%ld nt=%d token %d differs from gemm_x8", paths[p]->name,
                                      lf_type_name((int)type), rows, (long)n, nt, t);
                            for (int r = rows; r < 40; r++) cr_assert_eq(got[t][r], -12345.0f, "x%d wrote past its rows", rows);
                        }
                    }
                }
                tested++;
                free(w), free(x), free(wq), free(scratch), free(xq);
            }
        }
    /* every AVX-512 path has both for the types of the llama.cpp presets */
    for (int p = 0; p < np; p++)
        if (!strncmp(paths[p]->name, "avx512", 6))
            for (uint32_t type = 0; type < LF_TYPE_ID_MAX; type++)
                if (type == LF_TYPE_Q4_0 || type == LF_TYPE_Q8_0 || type == LF_TYPE_Q4_K || type == LF_TYPE_Q6_K) {
                    cr_assert_not_null(paths[p]->gemm_x16[type], "%s has no x16 %s kernel", paths[p]->name, lf_type_name((int)type));
                    cr_assert_not_null(paths[p]->gemm_x32[type], "%s has no x32 %s kernel", paths[p]->name, lf_type_name((int)type));
                }
    if (!tested) fprintf(stderr, "gemm_x16/gemm_x32: no path on this CPU has them (AVX-512 only): skipped\n");
}

/* Rows gathered from anywhere (the bundle kernel's gate and up rows) give
 * the bits of gemm_x8 on the same rows repacked, for every token count. */
Test(kernels, gathered_rows_equal_the_x8_gemm_bit_for_bit) {
    log_skipped();
    const lf_kernels *paths[LF_KERNEL_PATHS];
    const int np = lf__kernels_available(paths);
    const int64_t lens[] = {32, 96, 32 * 37, 4096};
    int tested = 0;
    for (int p = 0; p < np; p++)
        for (uint32_t type = 0; type < LF_TYPE_ID_MAX; type++) {
            if (!paths[p]->gemm_rows8[type]) continue;
            cr_assert_not_null(paths[p]->gemm_x8[type]);
            for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
                const int64_t n = lens[li];
                const uint64_t rb = lf__type_row_bytes(type, (uint64_t)n);
                const int max_nt = 9;
                float *w = malloc(8 * n * sizeof *w), *x = malloc(max_nt * n * sizeof *x);
                /* each row in a block of its own, 3 rows apart, at odd offsets */
                uint8_t *spread = malloc(8 * 3 * rb + 64), *group = malloc(8 * rb), *scratch = malloc(8 * rb);
                const void *rows[8];
                fill_normal(w, 8 * n, 71 + li, 0.3f);
                fill_normal(x, max_nt * n, 81 + li, 1.0f);
                for (int r = 0; r < 8; r++) {
                    uint8_t *at = spread + 3 * rb * (uint64_t)r + 2 * (uint64_t)r + 1;
                    cr_assert_eq(lf__quantize_row(type, w + r * n, group + r * rb, n), LF_OK);
                    memcpy(at, group + r * rb, rb);
                    rows[r] = at;
                }
                lf__repack_x8(type, group, 8, (uint64_t)n, scratch);
                const uint64_t xs = (uint64_t)(n / 32) * sizeof(lf_block_q8a);
                lf_block_q8a *xq = malloc(max_nt * xs);
                for (int t = 0; t < max_nt; t++) paths[p]->quantize_q8a(x + t * n, (lf_block_q8a *)((uint8_t *)xq + t * xs), n);
                for (int nt = 1; nt <= max_nt; nt++) {
                    float want[9][8], got[9][8];
                    paths[p]->gemm_x8[type](group, xq, xs, nt, &want[0][0], 8, n);
                    paths[p]->gemm_rows8[type](rows, xq, xs, nt, &got[0][0], 8, n);
                    cr_assert(memcmp(want, got, (size_t)nt * sizeof want[0]) == 0, "%s %s n=%ld nt=%d differs from gemm_x8",
                              paths[p]->name, lf_type_name((int)type), (long)n, nt);
                }
                tested++;
                free(w), free(x), free(spread), free(group), free(scratch), free(xq);
            }
        }
    /* every SIMD path has them for the bundle types Q4_0 and Q8_0 */
    for (int p = 1; p < np; p++) {
        cr_assert_not_null(paths[p]->gemm_rows8[LF_TYPE_Q4_0], "%s", paths[p]->name);
        cr_assert_not_null(paths[p]->gemm_rows8[LF_TYPE_Q8_0], "%s", paths[p]->name);
    }
    cr_assert(np < 2 || tested > 0);
}

/* axpy_cols with 8-bit coefficients: every path gives the reference's
 * bits, including zero coefficients, zero-scale blocks and a non-finite
 * coefficient, and the result stays within the rounding bound of the float
 * axpy: each coefficient is off by at most max |c| / 254 in its block. */
Test(kernels, axpy_cols_i8_matches_its_reference_and_the_float_sum) {
    log_skipped();
    const lf_kernels *paths[LF_KERNEL_PATHS];
    const int np = lf__kernels_available(paths);
    const lf_kernels *ref = lf__kernels_scalar();
    const int64_t n = 32 * 37;
    int tested = 0;
    for (uint32_t type = 0; type < LF_TYPE_ID_MAX; type++) {
        if (!ref->axpy_cols_i8[type]) continue;
        const uint64_t rb = lf__type_row_bytes(type, (uint64_t)n);
        float *w = malloc(LF_AXPY_COLS * n * sizeof *w), *deq = malloc(LF_AXPY_COLS * n * sizeof *deq);
        uint8_t *q = malloc(LF_AXPY_COLS * rb);
        fill_normal(w, LF_AXPY_COLS * n, 91, 0.5f);
        for (int64_t i = 0; i < 32; i++) w[2 * n + 64 + i] = 0.0f; /* a zero block in column 2 */
        for (int64_t i = 0; i < 32; i++) w[128 + i] = 0.0f;        /* and in column 0: nc = 1 skips it */
        for (int j = 0; j < LF_AXPY_COLS; j++) {
            cr_assert_eq(lf__quantize_row(type, w + j * n, q + j * rb, n), LF_OK);
            lf__dequantize_row(type, q + j * rb, deq + j * n, n);
        }
        const void *cols[LF_AXPY_COLS];
        for (int j = 0; j < LF_AXPY_COLS; j++) cols[j] = q + j * rb;
        for (int nc = 1; nc <= LF_AXPY_COLS; nc++) {
            float a[LF_AXPY_COLS] = {0.7f, -1.3f, 0.0f, 2.5f, -0.01f, 0.4f, -3.0f, 1e-3f};
            float *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got), *exact = malloc(n * sizeof *exact);
            fill_normal(want, n, 100 + nc, 1.0f);
            memcpy(exact, want, n * sizeof *exact);
            ref->axpy_cols_i8[type](cols, a, nc, want, n);
            for (int64_t e = 0; e < n; e++)
                for (int j = 0; j < nc; j++) exact[e] += a[j] * deq[j * n + e];
            /* the rounding bound, block by block */
            for (int64_t u = 0; u < n / 32; u++) {
                float amax = 0.0f;
                for (int j = 0; j < nc; j++) amax = fmaxf(amax, fabsf(a[j] * lf__fp16_to_fp32(((const lf_block_q4_0 *)cols[j])[u].d)));
                for (int64_t e = 32 * u; e < 32 * u + 32; e++) {
                    double bound = 1e-5 * (fabs(exact[e]) + 1.0);
                    for (int j = 0; j < nc; j++) bound += amax / 254.0 * 8.0;
                    cr_assert(fabs(want[e] - exact[e]) <= bound, "%s nc=%d element %ld: %g vs %g (bound %g)",
                              lf_type_name((int)type), nc, (long)e, want[e], exact[e], bound);
                }
            }
            for (int p = 0; p < np; p++) {
                cr_assert_not_null(paths[p]->axpy_cols_i8[type], "%s", paths[p]->name);
                fill_normal(got, n, 100 + nc, 1.0f);
                paths[p]->axpy_cols_i8[type](cols, a, nc, got, n);
                cr_assert(memcmp(got, want, n * sizeof *got) == 0, "%s %s nc=%d differs from the reference", paths[p]->name,
                          lf_type_name((int)type), nc);
            }
            /* a non-finite coefficient makes its blocks NaN on every path */
            a[0] = INFINITY;
            for (int p = 0; p < np; p++) {
                fill_normal(got, n, 7, 1.0f);
                paths[p]->axpy_cols_i8[type](cols, a, nc, got, n);
                cr_assert(isnan(got[0]) && isnan(got[n - 1]), "%s: infinite coefficient gave %g", paths[p]->name, got[0]);
            }
            free(want), free(got), free(exact);
        }
        tested++;
        free(w), free(deq), free(q);
    }
    cr_assert(tested > 0);
}

/* The largest integer sums a kernel can meet: every packed value at its
 * maximum (payload bytes 0xFF: 15 for 4-bit types, 31 for 5-bit, 63 for
 * Q6_K) against activations of +-127, where kernels that add maddubs pairs
 * as int16 before widening would overflow if they added too many. */
Test(kernels, x8_gemm_is_exact_at_the_largest_values) {
    log_skipped();
    const lf_kernels *paths[LF_KERNEL_PATHS];
    const int np = lf__kernels_available(paths);
    const lf_kernels *ref = lf__kernels_scalar();
    /* each type's fp16 scale fields in a block (offsets), set to 2^-7 */
    const struct { uint32_t type; int n_f16; int at[2]; } types[] = {
        {LF_TYPE_Q4_0, 1, {0}},    {LF_TYPE_Q4_1, 2, {0, 2}}, {LF_TYPE_Q5_0, 1, {0}},   {LF_TYPE_Q5_1, 2, {0, 2}},
        {LF_TYPE_Q8_0, 1, {0}},    {LF_TYPE_Q4_K, 2, {0, 2}}, {LF_TYPE_Q5_K, 2, {0, 2}}, {LF_TYPE_Q6_K, 1, {208}},
    };
    const int64_t n = 512;
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const uint32_t type = types[ti].type;
        const lf_type_traits *tr = lf__type_traits_get(type);
        const uint64_t rows = 8, rb = lf__type_row_bytes(type, (uint64_t)n);
        uint8_t *wq = malloc(rows * rb), *scratch = malloc(rows * rb);
        memset(wq, 0xFF, rows * rb);
        for (uint64_t b = 0; b < rows * rb / tr->block_size; b++)
            for (int f = 0; f < types[ti].n_f16; f++) {
                const uint16_t h = 0x2000;
                memcpy(wq + b * tr->block_size + types[ti].at[f], &h, sizeof h);
            }
        const uint64_t xs = (uint64_t)(n / 32) * sizeof(lf_block_q8a);
        lf_block_q8a *xq = malloc(2 * xs);
        float *x = malloc(2 * n * sizeof *x);
        for (int64_t i = 0; i < n; i++) x[i] = 1.0f, x[n + i] = -1.0f;
        for (int t = 0; t < 2; t++) ref->quantize_q8a(x + t * n, (lf_block_q8a *)((uint8_t *)xq + t * xs), n);
        float want[2][8];
        for (int t = 0; t < 2; t++)
            for (uint64_t r = 0; r < rows; r++) want[t][r] = ref->dot[type](wq + r * rb, (uint8_t *)xq + t * xs, n);
        lf__repack_x8(type, wq, rows, (uint64_t)n, scratch);
        for (int p = 0; p < np; p++) {
            float got[2][8];
            paths[p]->gemm_x8[type](wq, xq, xs, 2, &got[0][0], 8, n);
            for (int t = 0; t < 2; t++)
                for (uint64_t r = 0; r < rows; r++)
                    cr_assert(fabs(got[t][r] - want[t][r]) <= 1e-5 * fabs(want[t][r]) + 1e-6,
                              "%s %s token %d row %lu: %g vs %g", paths[p]->name, lf_type_name((int)type), t,
                              (unsigned long)r, got[t][r], want[t][r]);
        }
        free(wq);
        free(scratch);
        free(xq);
        free(x);
    }
}

Test(kernels, repack_round_trips_and_keeps_tail_rows) {
    const uint32_t types[] = {LF_TYPE_Q4_0, LF_TYPE_Q4_1, LF_TYPE_Q5_0, LF_TYPE_Q5_1,
                              LF_TYPE_Q8_0, LF_TYPE_Q4_K, LF_TYPE_Q5_K, LF_TYPE_Q6_K};
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const uint32_t type = types[ti];
        const uint64_t rows = 21, cols = lf__type_traits_get(type)->block == 256 ? 512 : 96, rb = lf__type_row_bytes(type, cols); /* two groups and 5 tail rows */
        uint8_t *a = malloc(rows * rb), *b = malloc(rows * rb), *scratch = malloc(8 * rb);
        for (uint64_t i = 0; i < rows * rb; i++) a[i] = (uint8_t)(i * 2654435761u >> 13);
        memcpy(b, a, rows * rb);
        lf__repack_x8(type, b, rows, cols, scratch);
        cr_assert_neq(memcmp(a, b, 16 * rb), 0, "repacking changed nothing");
        cr_assert_eq(memcmp(a + 16 * rb, b + 16 * rb, 5 * rb), 0, "the tail rows moved");
        /* block 1 of the second group, read back in ggml's layout */
        uint8_t blocks[8 * 210];
        const uint32_t bs = lf__type_traits_get(type)->block_size;
        lf__x8_block_rows(type, b + 8 * rb, 1, blocks);
        for (int r = 0; r < 8; r++) cr_assert_eq(memcmp(blocks + r * bs, a + (8 + r) * rb + bs, bs), 0, "row %d", r);
        lf__unpack_x8(type, b, rows, cols, scratch);
        cr_assert_eq(memcmp(a, b, rows * rb), 0, "unpack is not repack's inverse");
        free(a);
        free(b);
        free(scratch);
    }
    /* float rows keep ggml's layout (their dots are two FMA chains per row) */
    cr_assert_not(lf__repack_supported(LF_TYPE_F16));
    cr_assert_not(lf__repack_supported(LF_TYPE_F32));
}

Test(kernels, forced_paths_are_honoured_or_refused) {
    char why[160];
    setenv("LLMFLASH_KERNELS", "scalar", 1);
    cr_assert_str_eq(lf__kernels_select(why, sizeof why)->name, "scalar");
    setenv("LLMFLASH_KERNELS", "avx2", 1);
    const lf_kernels *k = lf__kernels_select(why, sizeof why);
    if (lf__kernels_avx2()) cr_assert(k && strncmp(k->name, "avx2", 4) == 0);
    else cr_assert(!k && strstr(why, "cannot run"), "%s", why);
    setenv("LLMFLASH_KERNELS", "avx512", 1);
    k = lf__kernels_select(why, sizeof why);
    if (lf__kernels_avx512()) cr_assert(k && strncmp(k->name, "avx512", 6) == 0);
    else cr_assert(!k && strstr(why, "cannot run"), "%s", why);
    setenv("LLMFLASH_KERNELS", "neon", 1);
    cr_assert_null(lf__kernels_select(why, sizeof why));
    cr_assert(strstr(why, "not a kernel family"), "%s", why);
    unsetenv("LLMFLASH_KERNELS");
    const lf_kernels *paths[LF_KERNEL_PATHS];
    const int np = lf__kernels_available(paths);
    cr_assert_eq(lf__kernels_select(why, sizeof why), paths[np - 1], "unforced, the fastest path runs");
}
