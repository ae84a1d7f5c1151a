/* quant_avx512.c - AVX-512 F/BW/VL kernels for the x8 layout (repack.h).
 * Compiled with -mavx512f -mavx512bw -mavx512vl as lf__kernels_avx512(),
 * and again with -mavx512vnni -DLF_VNNI as lf__kernels_avx512_vnni(), whose
 * multiply-adds are vpdpbusd. Only called after the getter has checked the
 * CPU and the OS (cpu_features.h).
 *
 * A 512-bit register holds two 4-byte chunks of the 8 rows of a group, so
 * each instruction does the work of two in the AVX2 path; the activation
 * bytes of the two chunks reach their halves through one permute. Types
 * without an x8 layout keep the AVX2 table's kernels. */
#include "kernels.h"
#include "cpu_features.h"
#include "repack.h"

#include <pthread.h>

#if defined(__x86_64__) && defined(LF_HAVE_AVX512_BUILD)
#include <immintrin.h>

#include "x8_gemm.h"

static inline __m512i dot4_u8s8(__m512i acc, __m512i u, __m512i s) {
#ifdef LF_VNNI
    return _mm512_dpbusd_epi32(acc, u, s);
#else
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
#endif
}

/* Lanes 0-7 get 32-bit word a of the block's activation bytes, 8-15 word b. */
static inline __m512i pair_index(int a, int b) {
    return _mm512_setr_epi32(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b);
}

/* The 8 row sums of a 16-lane register: lane r plus lane r + 8. */
static inline __m256i fold_halves(__m512i s) {
    return _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
}

static inline __attribute__((always_inline)) void x8_q4_0_tile(const uint8_t *g, const void *x, uint64_t xs, const int nt,
                                                                float *y, uint64_t ys, int64_t nb) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i i01 = pair_index(0, 1), i23 = pair_index(2, 3), i45 = pair_index(4, 5), i67 = pair_index(6, 7);
    __m256 acc[X8_TILE];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, g += LF_X8 * sizeof(lf_block_q4_0)) {
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)g));
        const __m512i v0 = _mm512_loadu_si512((const void *)(g + 16)), v1 = _mm512_loadu_si512((const void *)(g + 80));
        const __m512i lo0 = _mm512_and_si512(v0, m4), hi0 = _mm512_and_si512(_mm512_srli_epi16(v0, 4), m4);
        const __m512i lo1 = _mm512_and_si512(v1, m4), hi1 = _mm512_and_si512(_mm512_srli_epi16(v1, 4), m4);
        for (int t = 0; t < nt; t++) {
            const lf_block_q8a *yb = tok_blocks(x, xs, t) + i;
            const __m512i a = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)yb->qs));
            __m512i s = dot4_u8s8(_mm512_setzero_si512(), lo0, _mm512_permutexvar_epi32(i01, a));
            __m512i s2 = dot4_u8s8(_mm512_setzero_si512(), lo1, _mm512_permutexvar_epi32(i23, a));
            s = dot4_u8s8(s, hi0, _mm512_permutexvar_epi32(i45, a));
            s2 = dot4_u8s8(s2, hi1, _mm512_permutexvar_epi32(i67, a));
            __m256i r = fold_halves(_mm512_add_epi32(s, s2));
            r = _mm256_sub_epi32(r, _mm256_set1_epi32(8 * (yb->sum[0] + yb->sum[1])));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(r), _mm256_mul_ps(dw, _mm256_set1_ps(yb->d)), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(y + (uint64_t)t * ys, acc[t]);
}

static inline __attribute__((always_inline)) void x8_q8_0_tile(const uint8_t *g, const void *x, uint64_t xs, const int nt,
                                                                float *y, uint64_t ys, int64_t nb) {
    const __m512i idx[4] = {pair_index(0, 1), pair_index(2, 3), pair_index(4, 5), pair_index(6, 7)};
    __m256 acc[X8_TILE];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, g += LF_X8 * sizeof(lf_block_q8_0)) {
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)g));
        __m512i w[4], u[4];
        for (int c = 0; c < 4; c++) {
            w[c] = _mm512_loadu_si512((const void *)(g + 16 + 64 * c));
#ifdef LF_VNNI
            u[c] = _mm512_xor_si512(w[c], _mm512_set1_epi8((char)0x80)); /* w + 128, corrected by the sums */
#else
            u[c] = _mm512_abs_epi8(w[c]);
#endif
        }
        for (int t = 0; t < nt; t++) {
            const lf_block_q8a *yb = tok_blocks(x, xs, t) + i;
            const __m512i a = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)yb->qs));
            __m512i s = _mm512_setzero_si512(), s2 = _mm512_setzero_si512();
            for (int c = 0; c < 4; c += 2) {
                __m512i a0 = _mm512_permutexvar_epi32(idx[c], a), a1 = _mm512_permutexvar_epi32(idx[c + 1], a);
#ifndef LF_VNNI
                /* signed x signed: |w| against a carrying w's sign (zero where w is) */
                const __mmask64 n0 = _mm512_movepi8_mask(w[c]), n1 = _mm512_movepi8_mask(w[c + 1]);
                a0 = _mm512_mask_sub_epi8(a0, n0, _mm512_setzero_si512(), a0);
                a1 = _mm512_mask_sub_epi8(a1, n1, _mm512_setzero_si512(), a1);
#endif
                s = dot4_u8s8(s, u[c], a0);
                s2 = dot4_u8s8(s2, u[c + 1], a1);
            }
            __m256i r = fold_halves(_mm512_add_epi32(s, s2));
#ifdef LF_VNNI
            r = _mm256_sub_epi32(r, _mm256_set1_epi32(128 * (yb->sum[0] + yb->sum[1])));
#endif
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(r), _mm256_mul_ps(dw, _mm256_set1_ps(yb->d)), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(y + (uint64_t)t * ys, acc[t]);
}

X8_GEMM(gemm_x8_q4_0, x8_q4_0_tile, 32)
X8_GEMM(gemm_x8_q8_0, x8_q8_0_tile, 32)

/* the K-quants in 256-bit registers, with AVX512-VNNI's 256-bit form */
static inline __m256i dot4_u8s8_256(__m256i acc, __m256i u, __m256i s) {
#ifdef LF_VNNI
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}
#define dot4_u8s8 dot4_u8s8_256
#include "x8_kquants.h"
#undef dot4_u8s8

/* Q4_K in 512-bit registers: two chunks of the 8 rows per register, the
 * activation words of the two chunks permuted into its halves. */
static inline __attribute__((always_inline)) void x8_q4_K_tile512(const uint8_t *g, const void *x, uint64_t xs,
                                                                   const int nt, float *y, uint64_t ys, int64_t nsb) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i idx[4] = {pair_index(0, 1), pair_index(2, 3), pair_index(4, 5), pair_index(6, 7)};
    __m256 acc[X8_TILE];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nsb; i++, g += LF_X8 * sizeof(lf_block_q4_K)) {
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)g));
        const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(g + 16)));
        const uint8_t *B = g + 32;
        for (int s = 0; s < 8; s++) {
            __m256 dsc, dmn;
            q4_K_sub_scales(B, s, d, dmin, &dsc, &dmn);
            const uint8_t *q = g + 128 + 32 * 8 * (s / 2);
            __m512i w[4];
            for (int m = 0; m < 4; m++) {
                const __m512i v = _mm512_loadu_si512((const void *)(q + 64 * m));
                w[m] = _mm512_and_si512(s & 1 ? _mm512_srli_epi16(v, 4) : v, m4);
            }
            for (int t = 0; t < nt; t++) {
                const lf_block_q8a *yb = tok_blocks(x, xs, t) + 8 * i + s;
                const __m512i a = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)yb->qs));
                __m512i s0 = dot4_u8s8(_mm512_setzero_si512(), w[0], _mm512_permutexvar_epi32(idx[0], a));
                __m512i s1 = dot4_u8s8(_mm512_setzero_si512(), w[1], _mm512_permutexvar_epi32(idx[1], a));
                s0 = dot4_u8s8(s0, w[2], _mm512_permutexvar_epi32(idx[2], a));
                s1 = dot4_u8s8(s1, w[3], _mm512_permutexvar_epi32(idx[3], a));
                const __m256i is = fold_halves(_mm512_add_epi32(s0, s1));
                const __m256 dy = _mm256_set1_ps(yb->d);
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_mul_ps(dsc, dy), acc[t]);
                acc[t] = _mm256_fnmadd_ps(dmn, _mm256_set1_ps(yb->d * (float)(yb->sum[0] + yb->sum[1])), acc[t]);
            }
        }
    }
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(y + (uint64_t)t * ys, acc[t]);
}
X8_GEMM(gemm_x8_q4_K_512, x8_q4_K_tile512, 256)

/* Q6_K in 512-bit registers: chunks m, m+1 of the 8 rows per register. */
static inline __attribute__((always_inline)) void x8_q6_K_tile512(const uint8_t *g, const void *x, uint64_t xs,
                                                                   const int nt, float *y, uint64_t ys, int64_t nsb) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3);
    const __m512i idx[4] = {pair_index(0, 1), pair_index(2, 3), pair_index(4, 5), pair_index(6, 7)};
    __m256 acc[X8_TILE];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nsb; i++, g += LF_X8 * sizeof(lf_block_q6_K)) {
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)g));
        for (int b = 0; b < 8; b++) {
            const int h = b / 4, gg = b % 4;
            const uint8_t *ql = g + Q6X8_QL(h, gg & 1), *qh = g + Q6X8_QH(h);
            const __m128i sl = _mm_cvtsi32_si128(4 * (gg >> 1)), sh = _mm_cvtsi32_si128(2 * gg);
            __m512i w[4];
            for (int m = 0; m < 4; m++) {
                const __m512i lo = _mm512_and_si512(_mm512_srl_epi16(_mm512_loadu_si512((const void *)(ql + 64 * m)), sl), m4);
                const __m512i hi = _mm512_and_si512(_mm512_srl_epi16(_mm512_loadu_si512((const void *)(qh + 64 * m)), sh), m2);
                w[m] = _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4));
            }
            const __m256i sc0 = bytes8_i32(g + 16 + 8 * (8 * h + 2 * gg)), sc1 = bytes8_i32(g + 16 + 8 * (8 * h + 2 * gg + 1));
            for (int t = 0; t < nt; t++) {
                const lf_block_q8a *yb = tok_blocks(x, xs, t) + 8 * i + b;
                const __m512i a = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)yb->qs));
                __m512i s0 = dot4_u8s8(_mm512_setzero_si512(), w[0], _mm512_permutexvar_epi32(idx[0], a));
                __m512i s1 = dot4_u8s8(_mm512_setzero_si512(), w[2], _mm512_permutexvar_epi32(idx[2], a));
                s0 = dot4_u8s8(s0, w[1], _mm512_permutexvar_epi32(idx[1], a));
                s1 = dot4_u8s8(s1, w[3], _mm512_permutexvar_epi32(idx[3], a));
                const __m256i i0 = _mm256_sub_epi32(fold_halves(s0), _mm256_set1_epi32(32 * yb->sum[0]));
                const __m256i i1 = _mm256_sub_epi32(fold_halves(s1), _mm256_set1_epi32(32 * yb->sum[1]));
                const __m256i it = _mm256_add_epi32(_mm256_mullo_epi32(i0, sc0), _mm256_mullo_epi32(i1, sc1));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(it), _mm256_mul_ps(d, _mm256_set1_ps(yb->d)), acc[t]);
            }
        }
    }
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(y + (uint64_t)t * ys, acc[t]);
}
X8_GEMM(gemm_x8_q6_K_512, x8_q6_K_tile512, 256)

/* ---- two x8 groups at once (gemm_x16) -----------------------------------
 * Lanes 0-7 hold the first group's 8 rows, lanes 8-15 the second's (gb
 * bytes on): a register is one 4-byte chunk of 16 rows, so an activation
 * word is one broadcast, no permute, and every scale multiply serves 16
 * rows. Each lane computes what the x8 tiles compute for its row, in the
 * same order, so the results have their bits. */

/* 32 bytes at p of each group. */
static inline __m512i load_x16(const uint8_t *p, uint64_t gb) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)p)),
                              _mm256_loadu_si256((const __m256i *)(const void *)(p + gb)), 1);
}
/* The 8 fp16 values at p of each group, as 16 floats. */
static inline __m512 halves_x16(const uint8_t *p, uint64_t gb) {
    const __m128i a = _mm_loadu_si128((const __m128i *)(const void *)p), b = _mm_loadu_si128((const __m128i *)(const void *)(p + gb));
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1));
}
/* The 8 bytes at p of each group, as 16 bytes. */
static inline __m128i bytes_x16(const uint8_t *p, uint64_t gb) {
    return _mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)(const void *)p), _mm_loadl_epi64((const __m128i *)(const void *)(p + gb)));
}
static inline __m512i word_x16(const int8_t *q, int m) { return _mm512_set1_epi32((int)lf__load_u32(q + 4 * m)); }

/* The tiles below run P pairs of groups side by side (P = 1: 16 rows;
 * P = 2: 32 rows, four groups), pair p at g + 2p * gb: more streams in
 * flight than one core's prefetchers keep busy with two (a 2.4 GB Q4_0
 * matrix on the 2-core Xeon: 24.9 GB/s with one pair per pass, 27.8 with
 * two). The tokens' activation words are loaded once for all pairs. */
#define PAIRS_MAX 2

static inline __attribute__((always_inline)) void x16_q4_0_tile(const uint8_t *g, const void *x, uint64_t xs, const int nt,
                                                                 float *y, uint64_t ys, int64_t nb, const int P) {
    const uint64_t gb = (uint64_t)nb * LF_X8 * sizeof(lf_block_q4_0);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[PAIRS_MAX][X8_TILE];
    for (int p = 0; p < P; p++)
        for (int t = 0; t < nt; t++) acc[p][t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++, g += LF_X8 * sizeof(lf_block_q4_0)) {
        __m512 dw[PAIRS_MAX];
        __m512i lo[PAIRS_MAX][4], hi[PAIRS_MAX][4];
        for (int p = 0; p < P; p++) {
            const uint8_t *gp = g + 2 * (uint64_t)p * gb;
            dw[p] = halves_x16(gp, gb);
            for (int c = 0; c < 4; c++) {
                const __m512i v = load_x16(gp + 16 + 32 * c, gb);
                lo[p][c] = _mm512_and_si512(v, m4);
                hi[p][c] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            }
        }
        for (int t = 0; t < nt; t++) {
            const lf_block_q8a *yb = tok_blocks(x, xs, t) + i;
            __m512i a[8];
            for (int m = 0; m < 8; m++) a[m] = word_x16(yb->qs, m);
            const __m512i off = _mm512_set1_epi32(8 * (yb->sum[0] + yb->sum[1]));
            const __m512 dy = _mm512_set1_ps(yb->d);
            for (int p = 0; p < P; p++) {
                __m512i s = dot4_u8s8(_mm512_setzero_si512(), lo[p][0], a[0]);
                __m512i s2 = dot4_u8s8(_mm512_setzero_si512(), lo[p][2], a[2]);
                s = dot4_u8s8(s, lo[p][1], a[1]);
                s2 = dot4_u8s8(s2, lo[p][3], a[3]);
                for (int c = 0; c < 4; c += 2) {
                    s = dot4_u8s8(s, hi[p][c], a[4 + c]);
                    s2 = dot4_u8s8(s2, hi[p][c + 1], a[5 + c]);
                }
                const __m512i r = _mm512_sub_epi32(_mm512_add_epi32(s, s2), off);
                acc[p][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(r), _mm512_mul_ps(dw[p], dy), acc[p][t]);
            }
        }
    }
    for (int p = 0; p < P; p++)
        for (int t = 0; t < nt; t++) _mm512_storeu_ps(y + (uint64_t)t * ys + 16 * p, acc[p][t]);
}

static inline __attribute__((always_inline)) void x16_q8_0_tile(const uint8_t *g, const void *x, uint64_t xs, const int nt,
                                                                 float *y, uint64_t ys, int64_t nb, const int P) {
    const uint64_t gb = (uint64_t)nb * LF_X8 * sizeof(lf_block_q8_0);
    __m512 acc[PAIRS_MAX][X8_TILE];
    for (int p = 0; p < P; p++)
        for (int t = 0; t < nt; t++) acc[p][t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++, g += LF_X8 * sizeof(lf_block_q8_0)) {
        __m512 dw[PAIRS_MAX];
        __m512i u[PAIRS_MAX][8];
#ifndef LF_VNNI
        __mmask64 neg[PAIRS_MAX][8];
#endif
        for (int p = 0; p < P; p++) {
            const uint8_t *gp = g + 2 * (uint64_t)p * gb;
            dw[p] = halves_x16(gp, gb);
            for (int c = 0; c < 8; c++) {
                const __m512i w = load_x16(gp + 16 + 32 * c, gb);
#ifdef LF_VNNI
                u[p][c] = _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80)); /* w + 128, corrected by the sums */
#else
                u[p][c] = _mm512_abs_epi8(w);
                neg[p][c] = _mm512_movepi8_mask(w);
#endif
            }
        }
        for (int t = 0; t < nt; t++) {
            const lf_block_q8a *yb = tok_blocks(x, xs, t) + i;
            const __m512 dy = _mm512_set1_ps(yb->d);
            for (int p = 0; p < P; p++) {
                __m512i s = _mm512_setzero_si512(), s2 = _mm512_setzero_si512();
                for (int c = 0; c < 8; c += 2) {
                    __m512i a0 = word_x16(yb->qs, c), a1 = word_x16(yb->qs, c + 1);
#ifndef LF_VNNI
                    a0 = _mm512_mask_sub_epi8(a0, neg[p][c], _mm512_setzero_si512(), a0);
                    a1 = _mm512_mask_sub_epi8(a1, neg[p][c + 1], _mm512_setzero_si512(), a1);
#endif
                    s = dot4_u8s8(s, u[p][c], a0);
                    s2 = dot4_u8s8(s2, u[p][c + 1], a1);
                }
                __m512i r = _mm512_add_epi32(s, s2);
#ifdef LF_VNNI
                r = _mm512_sub_epi32(r, _mm512_set1_epi32(128 * (yb->sum[0] + yb->sum[1])));
#endif
                acc[p][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(r), _mm512_mul_ps(dw[p], dy), acc[p][t]);
            }
        }
    }
    for (int p = 0; p < P; p++)
        for (int t = 0; t < nt; t++) _mm512_storeu_ps(y + (uint64_t)t * ys + 16 * p, acc[p][t]);
}

/* q4_K_sub_scales (x8_kquants.h) for 16 rows. */
static inline void q4_K_sub_scales_x16(const uint8_t *B, uint64_t gb, int s, __m512 d, __m512 dmin, __m512 *dsc, __m512 *dmn) {
    const __m512i m6 = _mm512_set1_epi32(63), l4 = _mm512_set1_epi32(0x0F);
    __m512i sc, mn;
    if (s < 4) {
        sc = _mm512_and_si512(_mm512_cvtepu8_epi32(bytes_x16(B + 8 * s, gb)), m6);
        mn = _mm512_and_si512(_mm512_cvtepu8_epi32(bytes_x16(B + 8 * (s + 4), gb)), m6);
    } else {
        const __m512i lo = _mm512_cvtepu8_epi32(bytes_x16(B + 8 * (s + 4), gb));
        const __m512i a = _mm512_cvtepu8_epi32(bytes_x16(B + 8 * (s - 4), gb)), b = _mm512_cvtepu8_epi32(bytes_x16(B + 8 * s, gb));
        sc = _mm512_or_si512(_mm512_and_si512(lo, l4), _mm512_slli_epi32(_mm512_srli_epi32(a, 6), 4));
        mn = _mm512_or_si512(_mm512_srli_epi32(lo, 4), _mm512_slli_epi32(_mm512_srli_epi32(b, 6), 4));
    }
    *dsc = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc));
    *dmn = _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(mn));
}

static inline __attribute__((always_inline)) void x16_q4_K_tile(const uint8_t *g, const void *x, uint64_t xs, const int nt,
                                                                 float *y, uint64_t ys, int64_t nsb, const int P) {
    const uint64_t gb = (uint64_t)nsb * X8_Q4K_BYTES;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[PAIRS_MAX][X8_TILE];
    for (int p = 0; p < P; p++)
        for (int t = 0; t < nt; t++) acc[p][t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nsb; i++, g += X8_Q4K_BYTES) {
        __m512 d[PAIRS_MAX], dmin[PAIRS_MAX];
        for (int p = 0; p < P; p++) {
            d[p] = halves_x16(g + 2 * (uint64_t)p * gb, gb);
            dmin[p] = halves_x16(g + 2 * (uint64_t)p * gb + 16, gb);
        }
        for (int s = 0; s < 8; s++) {
            __m512 dsc[PAIRS_MAX], dmn[PAIRS_MAX];
            __m512i w[PAIRS_MAX][8];
            for (int p = 0; p < P; p++) {
                const uint8_t *gp = g + 2 * (uint64_t)p * gb;
                q4_K_sub_scales_x16(gp + 32, gb, s, d[p], dmin[p], &dsc[p], &dmn[p]);
                const uint8_t *q = gp + 128 + 32 * 8 * (s / 2);
                for (int m = 0; m < 8; m++) {
                    const __m512i v = load_x16(q + 32 * m, gb);
                    w[p][m] = _mm512_and_si512(s & 1 ? _mm512_srli_epi16(v, 4) : v, m4);
                }
            }
            for (int t = 0; t < nt; t++) {
                const lf_block_q8a *yb = tok_blocks(x, xs, t) + 8 * i + s;
                const __m512 dy = _mm512_set1_ps(yb->d), dsum = _mm512_set1_ps(yb->d * (float)(yb->sum[0] + yb->sum[1]));
                for (int p = 0; p < P; p++) {
                    __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
                    for (int m = 0; m < 8; m += 2) {
                        s0 = dot4_u8s8(s0, w[p][m], word_x16(yb->qs, m));
                        s1 = dot4_u8s8(s1, w[p][m + 1], word_x16(yb->qs, m + 1));
                    }
                    const __m512i is = _mm512_add_epi32(s0, s1);
                    acc[p][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), _mm512_mul_ps(dsc[p], dy), acc[p][t]);
                    acc[p][t] = _mm512_fnmadd_ps(dmn[p], dsum, acc[p][t]);
                }
            }
        }
    }
    for (int p = 0; p < P; p++)
        for (int t = 0; t < nt; t++) _mm512_storeu_ps(y + (uint64_t)t * ys + 16 * p, acc[p][t]);
}

/* x16_q4_K_tile for one token (generation), with the same results: each
 * chunk register is loaded once for the two sub-blocks that share its bytes
 * (low and high nibbles), and the integer sums of the pair run in two chains;
 * the float updates keep the order s = 0..7. */
static inline __attribute__((always_inline)) void x16_q4_K_one(const uint8_t *g, const void *x, float *y, int64_t nsb,
                                                                const int P) {
    const uint64_t gb = (uint64_t)nsb * X8_Q4K_BYTES;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[PAIRS_MAX];
    for (int p = 0; p < P; p++) acc[p] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nsb; i++, g += X8_Q4K_BYTES) {
        const lf_block_q8a *yb = tok_blocks(x, 0, 0) + 8 * i;
        for (int p = 0; p < P; p++) {
            const uint8_t *gp = g + 2 * (uint64_t)p * gb;
            const __m512 d = halves_x16(gp, gb), dmin = halves_x16(gp + 16, gb);
            for (int s = 0; s < 8; s += 2) {
                const uint8_t *q = gp + 128 + 32 * 8 * (s / 2);
                const lf_block_q8a *ye = yb + s, *yo = yb + s + 1;
                __m512i e0 = _mm512_setzero_si512(), e1 = _mm512_setzero_si512();
                __m512i o0 = _mm512_setzero_si512(), o1 = _mm512_setzero_si512();
                for (int m = 0; m < 8; m += 2) {
                    const __m512i v0 = load_x16(q + 32 * m, gb), v1 = load_x16(q + 32 * (m + 1), gb);
                    e0 = dot4_u8s8(e0, _mm512_and_si512(v0, m4), word_x16(ye->qs, m));
                    e1 = dot4_u8s8(e1, _mm512_and_si512(v1, m4), word_x16(ye->qs, m + 1));
                    o0 = dot4_u8s8(o0, _mm512_and_si512(_mm512_srli_epi16(v0, 4), m4), word_x16(yo->qs, m));
                    o1 = dot4_u8s8(o1, _mm512_and_si512(_mm512_srli_epi16(v1, 4), m4), word_x16(yo->qs, m + 1));
                }
                __m512 dsc, dmn;
                q4_K_sub_scales_x16(gp + 32, gb, s, d, dmin, &dsc, &dmn);
                acc[p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(e0, e1)), _mm512_mul_ps(dsc, _mm512_set1_ps(ye->d)), acc[p]);
                acc[p] = _mm512_fnmadd_ps(dmn, _mm512_set1_ps(ye->d * (float)(ye->sum[0] + ye->sum[1])), acc[p]);
                q4_K_sub_scales_x16(gp + 32, gb, s + 1, d, dmin, &dsc, &dmn);
                acc[p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(o0, o1)), _mm512_mul_ps(dsc, _mm512_set1_ps(yo->d)), acc[p]);
                acc[p] = _mm512_fnmadd_ps(dmn, _mm512_set1_ps(yo->d * (float)(yo->sum[0] + yo->sum[1])), acc[p]);
            }
        }
    }
    for (int p = 0; p < P; p++) _mm512_storeu_ps(y + 16 * p, acc[p]);
}

static inline __attribute__((always_inline)) void x16_q6_K_tile(const uint8_t *g, const void *x, uint64_t xs, const int nt,
                                                                 float *y, uint64_t ys, int64_t nsb, const int P) {
    const uint64_t gb = (uint64_t)nsb * X8_Q6K_BYTES;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3);
    __m512 acc[PAIRS_MAX][X8_TILE];
    for (int p = 0; p < P; p++)
        for (int t = 0; t < nt; t++) acc[p][t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nsb; i++, g += X8_Q6K_BYTES) {
        __m512 d[PAIRS_MAX];
        for (int p = 0; p < P; p++) d[p] = halves_x16(g + 2 * (uint64_t)p * gb, gb);
        for (int b = 0; b < 8; b++) { /* activation block b: half h, group gg of 32 */
            const int h = b / 4, gg = b % 4;
            const __m128i sl = _mm_cvtsi32_si128(4 * (gg >> 1)), sh = _mm_cvtsi32_si128(2 * gg);
            __m512i w[PAIRS_MAX][8], sc0[PAIRS_MAX], sc1[PAIRS_MAX];
            for (int p = 0; p < P; p++) {
                const uint8_t *gp = g + 2 * (uint64_t)p * gb;
                const uint8_t *ql = gp + Q6X8_QL(h, gg & 1), *qh = gp + Q6X8_QH(h);
                for (int m = 0; m < 8; m++) {
                    const __m512i lo = _mm512_and_si512(_mm512_srl_epi16(load_x16(ql + 32 * m, gb), sl), m4);
                    const __m512i hi = _mm512_and_si512(_mm512_srl_epi16(load_x16(qh + 32 * m, gb), sh), m2);
                    w[p][m] = _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4));
                }
                sc0[p] = _mm512_cvtepi8_epi32(bytes_x16(gp + 16 + 8 * (8 * h + 2 * gg), gb));
                sc1[p] = _mm512_cvtepi8_epi32(bytes_x16(gp + 16 + 8 * (8 * h + 2 * gg + 1), gb));
            }
            for (int t = 0; t < nt; t++) {
                const lf_block_q8a *yb = tok_blocks(x, xs, t) + 8 * i + b;
                const __m512 dy = _mm512_set1_ps(yb->d);
                for (int p = 0; p < P; p++) {
                    __m512i i0 = dot4_u8s8(_mm512_setzero_si512(), w[p][0], word_x16(yb->qs, 0));
                    __m512i i1 = dot4_u8s8(_mm512_setzero_si512(), w[p][4], word_x16(yb->qs, 4));
                    for (int m = 1; m < 4; m++) {
                        i0 = dot4_u8s8(i0, w[p][m], word_x16(yb->qs, m));
                        i1 = dot4_u8s8(i1, w[p][4 + m], word_x16(yb->qs, 4 + m));
                    }
                    /* each half's sum minus the -32 offset, times its scale */
                    i0 = _mm512_sub_epi32(i0, _mm512_set1_epi32(32 * yb->sum[0]));
                    i1 = _mm512_sub_epi32(i1, _mm512_set1_epi32(32 * yb->sum[1]));
                    const __m512i it = _mm512_add_epi32(_mm512_mullo_epi32(i0, sc0[p]), _mm512_mullo_epi32(i1, sc1[p]));
                    acc[p][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(it), _mm512_mul_ps(d[p], dy), acc[p][t]);
                }
            }
        }
    }
    for (int p = 0; p < P; p++)
        for (int t = 0; t < nt; t++) _mm512_storeu_ps(y + (uint64_t)t * ys + 16 * p, acc[p][t]);
}

/* x16_q6_K_tile for one token (generation), with the same bits: each ql
 * chunk is loaded once for the two blocks that share its bytes (low and
 * high nibbles) and each qh chunk once for the four that share it, so a
 * super-block takes 24 chunk loads instead of 64; the float updates keep
 * the order b = 0..7. */
static inline __attribute__((always_inline)) void x16_q6_K_one(const uint8_t *g, const void *x, float *y, int64_t nsb,
                                                                const int P) {
    const uint64_t gb = (uint64_t)nsb * X8_Q6K_BYTES;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3);
    __m512 acc[PAIRS_MAX];
    for (int p = 0; p < P; p++) acc[p] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nsb; i++, g += X8_Q6K_BYTES) {
        const lf_block_q8a *yb = tok_blocks(x, 0, 0) + 8 * i;
        for (int p = 0; p < P; p++) {
            const uint8_t *gp = g + 2 * (uint64_t)p * gb;
            const __m512 d = halves_x16(gp, gb);
            for (int h = 0; h < 2; h++) {
                __m512i qh[8], it[4];
                for (int m = 0; m < 8; m++) qh[m] = load_x16(gp + Q6X8_QH(h) + 32 * m, gb);
                for (int j = 0; j < 2; j++) { /* blocks gg = j (low nibbles) and j + 2 (high) */
                    const uint8_t *ql = gp + Q6X8_QL(h, j);
                    const lf_block_q8a *ya = yb + 4 * h + j, *yc = ya + 2;
                    __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
                    __m512i c0 = _mm512_setzero_si512(), c1 = _mm512_setzero_si512();
                    for (int m = 0; m < 8; m++) {
                        const __m512i v = load_x16(ql + 32 * m, gb);
                        const __m512i wa = _mm512_or_si512(_mm512_and_si512(v, m4),
                                                           _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh[m], 2 * j), m2), 4));
                        const __m512i wc = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4),
                                                           _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh[m], 2 * j + 4), m2), 4));
                        if (m < 4) {
                            a0 = dot4_u8s8(a0, wa, word_x16(ya->qs, m));
                            c0 = dot4_u8s8(c0, wc, word_x16(yc->qs, m));
                        } else {
                            a1 = dot4_u8s8(a1, wa, word_x16(ya->qs, m));
                            c1 = dot4_u8s8(c1, wc, word_x16(yc->qs, m));
                        }
                    }
                    const int ba = 4 * h + j, bc = ba + 2; /* scales of 16 values: 2 per block */
                    const __m512i sa0 = _mm512_cvtepi8_epi32(bytes_x16(gp + 16 + 8 * (2 * ba), gb));
                    const __m512i sa1 = _mm512_cvtepi8_epi32(bytes_x16(gp + 16 + 8 * (2 * ba + 1), gb));
                    const __m512i sc0 = _mm512_cvtepi8_epi32(bytes_x16(gp + 16 + 8 * (2 * bc), gb));
                    const __m512i sc1 = _mm512_cvtepi8_epi32(bytes_x16(gp + 16 + 8 * (2 * bc + 1), gb));
                    a0 = _mm512_sub_epi32(a0, _mm512_set1_epi32(32 * ya->sum[0]));
                    a1 = _mm512_sub_epi32(a1, _mm512_set1_epi32(32 * ya->sum[1]));
                    c0 = _mm512_sub_epi32(c0, _mm512_set1_epi32(32 * yc->sum[0]));
                    c1 = _mm512_sub_epi32(c1, _mm512_set1_epi32(32 * yc->sum[1]));
                    it[j] = _mm512_add_epi32(_mm512_mullo_epi32(a0, sa0), _mm512_mullo_epi32(a1, sa1));
                    it[j + 2] = _mm512_add_epi32(_mm512_mullo_epi32(c0, sc0), _mm512_mullo_epi32(c1, sc1));
                }
                for (int gg = 0; gg < 4; gg++) {
                    const __m512 dy = _mm512_set1_ps(yb[4 * h + gg].d);
                    acc[p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(it[gg]), _mm512_mul_ps(d, dy), acc[p]);
                }
            }
        }
    }
    for (int p = 0; p < P; p++) _mm512_storeu_ps(y + 16 * p, acc[p]);
}

/* gemm_x16 (one pair per pass) and gemm_x32 (two; a single token only: a
 * batch has the activation reuse that keeps the bus busy, and two pairs of
 * K-quant registers for 4 tokens would spill). */
#define X16_GEMMS(type, elems)                                                                                       \
    static inline __attribute__((always_inline)) void type##_pair1(const uint8_t *g, const void *x, uint64_t xs,     \
                                                                   const int nt, float *y, uint64_t ys, int64_t nb) { \
        x16_##type##_tile(g, x, xs, nt, y, ys, nb, 1);                                                                 \
    }                                                                                                                 \
    X8_GEMM(gemm_x16_##type, type##_pair1, elems)                                                                    \
    static void gemm_x32_##type(const void *g, const void *x, uint64_t xs, int nt, float *y, uint64_t ys, int64_t n) { \
        if (nt == 1) {                                                                                                \
            type##_one_x32(g, x, y, n / (elems));                                                                    \
            return;                                                                                                   \
        }                                                                                                             \
        const uint64_t pair = 2 * LF_X8 * lf__type_row_bytes(LF_TYPE_##type, (uint64_t)n);                            \
        gemm_x16_##type(g, x, xs, nt, y, ys, n);                                                                      \
        gemm_x16_##type((const uint8_t *)g + pair, x, xs, nt, y + 2 * LF_X8, ys, n);                                 \
    }

/* One token through two pairs (gemm_x32): the tiles, or a kernel of the
 * type's own for a single token. */
#define ONE_X32_FROM_TILE(type)                                                                                       \
    static inline __attribute__((always_inline)) void type##_one_x32(const uint8_t *g, const void *x, float *y,      \
                                                                     int64_t nb) {                                    \
        x16_##type##_tile(g, x, 0, 1, y, 0, nb, 2);                                                                    \
    }
ONE_X32_FROM_TILE(q4_0)
ONE_X32_FROM_TILE(q8_0)
static inline __attribute__((always_inline)) void q6_K_one_x32(const uint8_t *g, const void *x, float *y, int64_t nsb) {
    x16_q6_K_one(g, x, y, nsb, 2);
}
static inline __attribute__((always_inline)) void q4_K_one_x32(const uint8_t *g, const void *x, float *y, int64_t nsb) {
    x16_q4_K_one(g, x, y, nsb, 2);
}

#define LF_TYPE_q4_0 LF_TYPE_Q4_0
#define LF_TYPE_q8_0 LF_TYPE_Q8_0
#define LF_TYPE_q4_K LF_TYPE_Q4_K
#define LF_TYPE_q6_K LF_TYPE_Q6_K
X16_GEMMS(q4_0, 32)
X16_GEMMS(q8_0, 32)
X16_GEMMS(q4_K, 256)
X16_GEMMS(q6_K, 256)

/* One token, a group at a time through the 512-bit x8 kernel (the same
 * bits), where that measured faster than the four interleaved groups of the
 * x16 tiles (alternating runs of 7B models, 2 threads): Q4_K on Zen 4
 * (lf_cpu_features.avx512_split; Q4_K_M 123, 126, 100 against 131, 134,
 * 131 ms/token); Q4_0 on Zen 5 (family 1Ah; Q4_0 faster in 5 of 6 pairs,
 * the median pair 0.92 of the time; Q4_K_M even, Q8_0 1.15, so those
 * keep the tiles). Batches keep the x16 tiles. */
#define BY_GROUP(type, x8)                                                                                             \
    static void gemm_x32_##type##_by_group(const void *g, const void *x, uint64_t xs, int nt, float *y, uint64_t ys,  \
                                           int64_t n) {                                                                \
        if (nt != 1) {                                                                                                 \
            gemm_x32_##type(g, x, xs, nt, y, ys, n);                                                                   \
            return;                                                                                                    \
        }                                                                                                              \
        const uint64_t group = LF_X8 * lf__type_row_bytes(LF_TYPE_##type, (uint64_t)n);                               \
        for (int q = 0; q < 4; q++) x8((const uint8_t *)g + q * group, x, xs, 1, y + q * LF_X8, ys, n);              \
    }
BY_GROUP(q4_0, gemm_x8_q4_0)
BY_GROUP(q4_K, gemm_x8_q4_K_512)

static lf_kernels table;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* The AVX2 table (the CPU has AVX2 when it has AVX-512) with this file's
 * kernels over it. */
static void init(void) {
    table = *lf__kernels_avx2();
#ifdef LF_VNNI
    table.name = "avx512-vnni";
#else
    table.name = "avx512";
#endif
    const struct {
        uint32_t type;
        lf_gemm_x8_fn x8, x16, x32;
    } kernels[] = {
        {LF_TYPE_Q4_0, gemm_x8_q4_0, gemm_x16_q4_0, gemm_x32_q4_0},
        {LF_TYPE_Q8_0, gemm_x8_q8_0, gemm_x16_q8_0, gemm_x32_q8_0},
        {LF_TYPE_Q4_K, gemm_x8_q4_K_512, gemm_x16_q4_K, gemm_x32_q4_K},
        {LF_TYPE_Q6_K, gemm_x8_q6_K_512, gemm_x16_q6_K, gemm_x32_q6_K},
    };
    for (size_t i = 0; i < sizeof kernels / sizeof *kernels; i++) {
        table.gemm_x8[kernels[i].type] = kernels[i].x8;
        table.gemm_x16[kernels[i].type] = kernels[i].x16;
        table.gemm_x32[kernels[i].type] = kernels[i].x32;
    }
    const lf_cpu_features *cpu = lf__cpu_features_get();
    if (cpu->avx512_split) table.gemm_x32[LF_TYPE_Q4_K] = gemm_x32_q4_K_by_group;
    if (cpu->amd_family == 0x1A) table.gemm_x32[LF_TYPE_Q4_0] = gemm_x32_q4_0_by_group;
}

static bool cpu_ok(void) {
    const lf_cpu_features *f = lf__cpu_features_get();
    bool ok = f->avx512f && f->avx512bw && f->avx512vl && lf__kernels_avx2();
#ifdef LF_VNNI
    ok = ok && f->avx512_vnni;
#endif
    return ok;
}

#ifdef LF_VNNI
const lf_kernels *lf__kernels_avx512_vnni(void)
#else
const lf_kernels *lf__kernels_avx512(void)
#endif
{
    if (!cpu_ok()) return NULL;
    pthread_once(&once, init);
    return &table;
}

#endif
