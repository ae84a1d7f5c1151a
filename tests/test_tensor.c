/* test_tensor.c - quant formats and kernels: quantize/dequantize error
 * bounds, scalar dots against float math, SIMD against the scalar reference
 * on random data of odd lengths, half-float conversion. */
#include <criterion/criterion.h>

#include "../src/tensor/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const uint32_t k_types[] = {LF_TYPE_F32, LF_TYPE_F16, LF_TYPE_BF16, LF_TYPE_Q8_0, LF_TYPE_Q4_0, LF_TYPE_Q4_1,
                                   LF_TYPE_Q5_0, LF_TYPE_Q5_1, LF_TYPE_Q4_K, LF_TYPE_Q5_K, LF_TYPE_Q6_K};

static void fill_normal(float *x, int64_t n, uint64_t seed, float scale) {
    lf_rng rng;
    lf__rng_seed(&rng, seed);
    for (int64_t i = 0; i < n; i++) x[i] = scale * lf__rng_normal(&rng);
}

/* Largest error a type may make on a block, relative to the block's largest
 * magnitude: half a quantization step plus slack for fp16 scales. */
static float step_bound(uint32_t type) {
    switch (type) {
    case LF_TYPE_F32: return 0.0f;
    case LF_TYPE_F16: return 1e-3f;
    case LF_TYPE_BF16: return 8e-3f;
    case LF_TYPE_Q8_0: return 0.5f / 127 + 1e-3f;
    /* ggml's Q4_0/Q5_0 map the signed extreme to -8 (-16): the opposite
     * extreme clips at 7/8 (15/16) of it, an error of one step */
    case LF_TYPE_Q4_0: return 1.0f / 8 + 1e-2f;
    case LF_TYPE_Q4_1: return 2 * 0.5f / 15 + 1e-2f;
    case LF_TYPE_Q5_0: return 1.0f / 16 + 1e-2f;
    case LF_TYPE_Q5_1: return 2 * 0.5f / 31 + 1e-2f;
    /* K-quants: 6-bit scales and mins relative to the super-block */
    case LF_TYPE_Q4_K: return 2 * (0.5f / 15 + 1.0f / 63) + 2e-2f;
    case LF_TYPE_Q5_K: return 2 * (0.5f / 31 + 1.0f / 63) + 2e-2f;
    case LF_TYPE_Q6_K: return 0.5f / 31 + 1.0f / 127 + 1e-2f;
    }
    return 0.0f;
}

Test(tensor, quantize_dequantize_within_bounds) {
    const int64_t n = 256 * 7;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    void *q = malloc(n * 4);
    for (size_t t = 0; t < sizeof k_types / sizeof *k_types; t++) {
        const uint32_t type = k_types[t];
        const uint32_t blk = lf__type_traits_get(type)->block == 1 ? 32 : lf__type_traits_get(type)->block;
        for (uint64_t seed = 1; seed <= 5; seed++) {
            fill_normal(x, n, seed * 31 + t, seed == 5 ? 1000.0f : 1.0f);
            if (seed == 4) /* a block of zeros and one of a constant */
                for (int i = 0; i < 256; i++) x[i] = 0.0f, x[256 + i] = 0.25f;
            cr_assert_eq(lf__quantize_row(type, x, q, n), LF_OK);
            lf__dequantize_row(type, q, y, n);
            for (int64_t b = 0; b < n / blk; b++) {
                float amax = 0.0f;
                for (uint32_t i = 0; i < blk; i++) amax = fmaxf(amax, fabsf(x[b * blk + i]));
                for (uint32_t i = 0; i < blk; i++) {
                    const int64_t k = b * blk + i;
                    const float bound = step_bound(type) * amax + 1e-6f * fabsf(x[k]);
                    cr_assert(fabsf(x[k] - y[k]) <= bound, "%s seed %lu elem %ld: %g vs %g (bound %g)",
                              lf_type_name((int)type), (unsigned long)seed, (long)k, x[k], y[k], bound);
                }
            }
        }
    }
    free(x);
    free(y);
    free(q);
}

Test(tensor, quantize_rejects_bad_lengths) {
    float x[48] = {0};
    uint8_t q[256];
    cr_assert_eq(lf__quantize_row(LF_TYPE_Q4_0, x, q, 48), LF_E_UNSUPPORTED);
    cr_assert_eq(lf__quantize_row(LF_TYPE_Q4_K, x, q, 32), LF_E_UNSUPPORTED);
    cr_assert_eq(lf__quantize_row(10 /* Q2_K */, x, q, 256), LF_E_UNSUPPORTED);
}

/* Dot of the dequantized row with the dequantized activation, in double. */
static double exact_dot(uint32_t type, const void *w, const void *xa, const float *xf, int64_t n) {
    float *wf = malloc(n * sizeof *wf), *xd = malloc(n * sizeof *xd);
    lf__dequantize_row(type, w, wf, n);
    if (lf__type_uses_q8a(type)) {
        const lf_block_q8a *y = xa;
        for (int64_t i = 0; i < n; i++) xd[i] = y[i / 32].d * (float)y[i / 32].qs[i % 32];
    } else {
        memcpy(xd, xf, n * sizeof *xd);
    }
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)wf[i] * (double)xd[i];
    free(wf);
    free(xd);
    return s;
}

static void check_kernels(const lf_kernels *k, const char *label) {
    const lf_kernels *ref = lf__kernels_scalar();
    for (size_t t = 0; t < sizeof k_types / sizeof *k_types; t++) {
        const uint32_t type = k_types[t];
        const uint32_t blk = lf__type_traits_get(type)->block == 1 ? 32 : lf__type_traits_get(type)->block;
        /* odd numbers of blocks; for float types odd element counts too */
        const int64_t lens[] = {blk, 3 * (int64_t)blk, 13 * (int64_t)blk, blk == 32 ? 32 * 129 : 256 * 17,
                                lf__type_uses_q8a(type) ? 5 * (int64_t)blk : 37};
        for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
            const int64_t n = lens[li];
            float *w = malloc(n * sizeof *w), *x = malloc(n * sizeof *x);
            uint8_t *wq = malloc(n * 4 + 64);
            lf_block_q8a *xq = malloc((n / 32 + 1) * sizeof *xq), *xq_ref = malloc((n / 32 + 1) * sizeof *xq_ref);
            fill_normal(w, n, 100 + t * 7 + li, 0.1f);
            fill_normal(x, n, 200 + t * 7 + li, 2.0f);
            cr_assert_eq(lf__quantize_row(type, w, wq, n), LF_OK);
            const void *xa = x;
            if (lf__type_uses_q8a(type)) {
                k->quantize_q8a(x, xq, n);
                ref->quantize_q8a(x, xq_ref, n);
                for (int64_t b = 0; b < n / 32; b++) {
                    cr_assert_eq(memcmp(xq[b].qs, xq_ref[b].qs, 32), 0, "%s q8a values differ at block %ld", label, (long)b);
                    cr_assert_eq(xq[b].sum[0], xq_ref[b].sum[0]);
                    cr_assert_eq(xq[b].sum[1], xq_ref[b].sum[1]);
                    cr_assert_float_eq(xq[b].d, xq_ref[b].d, 0);
                }
                xa = xq_ref;
            }
            const double exact = exact_dot(type, wq, xa, x, n);
            const float got_ref = ref->dot[type](wq, xa, n);
            const float got = k->dot[type](wq, xa, n);
            double mag = 0.0; /* scale of the sum's terms, for a relative bound */
            {
                float *wf = malloc(n * sizeof *wf);
                lf__dequantize_row(type, wq, wf, n);
                for (int64_t i = 0; i < n; i++) mag += fabs((double)wf[i] * x[i]);
                free(wf);
            }
            const double tol = 1e-5 * mag + 1e-6;
            cr_assert(fabs(got_ref - exact) <= tol, "scalar %s n=%ld: %g vs exact %g", lf_type_name((int)type),
                      (long)n, got_ref, exact);
            cr_assert(fabs(got - got_ref) <= tol, "%s %s n=%ld: %g vs scalar %g", label, lf_type_name((int)type),
                      (long)n, got, got_ref);
            free(w);
            free(x);
            free(wq);
            free(xq);
            free(xq_ref);
        }
    }
}

Test(tensor, scalar_dots_match_float_math) { check_kernels(lf__kernels_scalar(), "scalar"); }

Test(tensor, avx2_matches_scalar) {
    const lf_kernels *k = lf__kernels_avx2();
    if (!k) cr_skip_test("CPU has no AVX2");
    check_kernels(k, "avx2");
}

Test(tensor, q8a_activation_error_is_bounded) {
    float x[256];
    lf_block_q8a q[8];
    fill_normal(x, 256, 5, 3.0f);
    lf__kernels_scalar()->quantize_q8a(x, q, 256);
    for (int i = 0; i < 256; i++) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[i / 32 * 32 + j]));
        cr_assert(fabsf(q[i / 32].d * q[i / 32].qs[i % 32] - x[i]) <= amax / 254.0f * 1.001f);
    }
}

Test(tensor, fp16_conversion_matches_hardware_rounding) {
    /* every half converts to a float and back unchanged */
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = lf__fp16_to_fp32((uint16_t)h);
        if (isnan(f)) continue;
        cr_assert_eq(lf__fp32_to_fp16(f), h, "half 0x%04x", h);
    }
    cr_assert_eq(lf__fp32_to_fp16(1.0f), 0x3c00);
    cr_assert_eq(lf__fp32_to_fp16(65520.0f), 0x7c00, "rounds to infinity");
    cr_assert_eq(lf__fp32_to_fp16(1.0f + 1.0f / 2048), 0x3c00, "ties to even");
    cr_assert_eq(lf__fp32_to_fp16(1.0f + 3.0f / 2048), 0x3c02, "ties to even");
    cr_assert_eq(lf__fp32_to_fp16(5.96046448e-08f), 0x0001, "smallest subnormal");
    cr_assert_eq(lf__fp32_to_bf16(1.0f), 0x3f80);
    cr_assert_float_eq(lf__bf16_to_fp32(0x3f80), 1.0f, 0);
}

Test(tensor, type_table) {
    cr_assert_str_eq(lf_type_name(LF_TYPE_Q4_K), "Q4_K");
    cr_assert_str_eq(lf_type_name(999), "?");
    lf_type t;
    cr_assert_eq(lf_type_from_name("q5_k", &t), LF_OK);
    cr_assert_eq(t, LF_TYPE_Q5_K);
    cr_assert_eq(lf_type_from_name("Q2_K", &t), LF_E_INVALID_ARG, "known but unsupported");
    cr_assert(!lf_type_supported(10));
    cr_assert_eq(lf__type_row_bytes(LF_TYPE_Q6_K, 512), 420);
    cr_assert_eq(lf__type_row_bytes(LF_TYPE_Q6_K, 500), 0);
}

/* ---- against ggml's own output ------------------------------------------ */
/* tests/data/ggml_golden.h holds what ggml's reference code makes of the
 * input below: quantized bytes for each type, and a hash and the first
 * values of its dequantization. Files quantized by llama.cpp are read with
 * our dequantizers and dot kernels, so those must agree with ggml exactly. */
#include "data/ggml_golden.h"

#define GOLDEN_N 512

/* Exactly representable values (integers / 64), so both sides see the same
 * floats: a 32-bit LCG, with an outlier every 97 elements. */
static void golden_input(float *x) {
    uint32_t s = 12345;
    for (int i = 0; i < GOLDEN_N; i++) {
        s = s * 1103515245u + 12345u;
        int v = (int)((s >> 8) % 2001) - 1000;
        if (i % 97 == 5) v *= 7;
        x[i] = (float)v / 64.0f;
    }
}

static uint64_t fnv1a(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

typedef struct golden {
    uint32_t type;
    const uint8_t *bytes;
    size_t n_bytes;
    uint64_t dequant_fnv;
    const float *first;
    bool same_quantizer; /* our quantizer is ggml's reference algorithm */
} golden;

#define G(T, same) {LF_TYPE_##T, golden_##T, sizeof golden_##T, GOLDEN_##T##_DEQUANT_FNV, golden_##T##_first, same}
static const golden goldens[] = {
    G(F16, true), G(BF16, true), G(Q4_0, true), G(Q4_1, true), G(Q5_0, true), G(Q5_1, true), G(Q8_0, true),
    /* K-quants: ggml's reference searches scales iteratively (make_qkx2_quants);
     * ours is simpler, so only its error is compared */
    G(Q4_K, false), G(Q5_K, false), G(Q6_K, false),
};

Test(tensor, dequantize_equals_ggml_bit_for_bit) {
    float out[GOLDEN_N];
    for (size_t k = 0; k < sizeof goldens / sizeof *goldens; k++) {
        const golden *g = &goldens[k];
        cr_assert_eq(lf__type_row_bytes(g->type, GOLDEN_N), g->n_bytes, "%s row size", lf_type_name((int)g->type));
        lf__dequantize_row(g->type, g->bytes, out, GOLDEN_N);
        for (int i = 0; i < 4; i++)
            cr_assert_eq(out[i], g->first[i], "%s element %d: %.9g, ggml %.9g", lf_type_name((int)g->type), i, out[i],
                         g->first[i]);
        cr_assert_eq(fnv1a(out, sizeof out), g->dequant_fnv, "%s: every dequantized value equals ggml's",
                     lf_type_name((int)g->type));
    }
}

Test(tensor, golden_blocks_decoded_by_hand) {
    /* Q8_0 block 0: fp16 scale d, then 32 int8: x0 = d * q0 */
    const float d8 = lf__fp16_to_fp32(lf__load_u16(golden_Q8_0));
    cr_assert_eq(d8 * (float)(int8_t)golden_Q8_0[2], golden_Q8_0_first[0]);
    cr_assert_eq(d8 * (float)(int8_t)golden_Q8_0[3], golden_Q8_0_first[1]);
    /* Q4_0 block 0: fp16 scale, 16 bytes; element j is the low nibble of
     * byte j, element j+16 the high one, each minus 8 */
    const float d4 = lf__fp16_to_fp32(lf__load_u16(golden_Q4_0));
    cr_assert_eq(d4 * (float)((golden_Q4_0[2] & 0xF) - 8), golden_Q4_0_first[0]);
    cr_assert_eq(d4 * (float)((golden_Q4_0[3] & 0xF) - 8), golden_Q4_0_first[1]);
    /* Q4_1 block 0: fp16 d and m, then nibbles: x = d * q + m */
    const float d41 = lf__fp16_to_fp32(lf__load_u16(golden_Q4_1)), m41 = lf__fp16_to_fp32(lf__load_u16(golden_Q4_1 + 2));
    cr_assert_eq(d41 * (float)(golden_Q4_1[4] & 0xF) + m41, golden_Q4_1_first[0]);
    /* BF16: the top half of the float's bits */
    cr_assert_eq(lf__bf16_to_fp32(lf__load_u16(golden_BF16)), golden_BF16_first[0]);
}

Test(tensor, quantize_equals_ggml_or_is_as_accurate) {
    float x[GOLDEN_N], ours_f[GOLDEN_N], ggml_f[GOLDEN_N];
    golden_input(x);
    uint8_t ours[GOLDEN_N * 4];
    for (size_t k = 0; k < sizeof goldens / sizeof *goldens; k++) {
        const golden *g = &goldens[k];
        cr_assert_eq(lf__quantize_row(g->type, x, ours, GOLDEN_N), LF_OK);
        if (g->same_quantizer) {
            cr_assert_eq(memcmp(ours, g->bytes, g->n_bytes), 0, "%s: the same bytes as ggml's quantize_row_*_ref",
                         lf_type_name((int)g->type));
            continue;
        }
        lf__dequantize_row(g->type, ours, ours_f, GOLDEN_N);
        lf__dequantize_row(g->type, g->bytes, ggml_f, GOLDEN_N);
        double e_ours = 0, e_ggml = 0;
        for (int i = 0; i < GOLDEN_N; i++) {
            e_ours += ((double)ours_f[i] - x[i]) * ((double)ours_f[i] - x[i]);
            e_ggml += ((double)ggml_f[i] - x[i]) * ((double)ggml_f[i] - x[i]);
        }
        cr_assert(e_ours <= e_ggml * 1.5, "%s: squared error %g against ggml's %g", lf_type_name((int)g->type), e_ours,
                  e_ggml);
    }
}

/* Dots of every kernel table with ggml-quantized rows, against the float
 * dot of ggml's own dequantization. */
static void check_golden_dots(const lf_kernels *k, const char *name) {
    float y[GOLDEN_N], w[GOLDEN_N];
    fill_normal(y, GOLDEN_N, 99, 1.0f);
    lf_block_q8a ya[GOLDEN_N / 32];
    k->quantize_q8a(y, ya, GOLDEN_N);
    for (size_t j = 0; j < sizeof goldens / sizeof *goldens; j++) {
        const golden *g = &goldens[j];
        lf__dequantize_row(g->type, g->bytes, w, GOLDEN_N);
        double ref = 0, mag = 0;
        for (int i = 0; i < GOLDEN_N; i++) {
            ref += (double)w[i] * y[i];
            mag += fabs((double)w[i] * y[i]);
        }
        const float got = k->dot[g->type](g->bytes, lf__type_uses_q8a(g->type) ? (const void *)ya : (const void *)y, GOLDEN_N);
        /* quantized types see y through its 8-bit quantization */
        const double tol = lf__type_uses_q8a(g->type) ? 0.01 * mag : 1e-5 * mag;
        cr_assert(fabs(got - ref) <= tol, "%s %s: dot %g, ggml's values give %g", name, lf_type_name((int)g->type), got,
                  ref);
    }
}

Test(tensor, dots_on_ggml_blocks) {
    check_golden_dots(lf__kernels_scalar(), "scalar");
    const lf_kernels *avx2 = lf__kernels_avx2();
    if (avx2) check_golden_dots(avx2, "avx2");
    else fprintf(stderr, "AVX2 kernels not available on this CPU: only the scalar path was checked\n");
}
