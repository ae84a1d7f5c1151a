/* quant_avx2.c - AVX2/FMA/F16C kernels. Compiled with -mavx2 -mfma -mf16c
 * and only called after lf_kernels_avx2() has checked the CPU; compiled a
 * second time with -mavxvnni -DLF_VNNI as lf_kernels_avx2_vnni().
 *
 * Single-token generation is bound by memory bandwidth, so each kernel's aim
 * is to spend few instructions per weight byte: integer multiply-adds on the
 * packed values (maddubs: unsigned weights x signed activations), one float
 * FMA per 32 elements, and block offsets/mins applied from the activation
 * block's precomputed sums instead of per element. */
#include "kernels.h"
#include "cpu_features.h"
#include "repack.h"

#include <math.h>

#if defined(__x86_64__) && defined(LF_HAVE_AVX2_BUILD)
#include <immintrin.h>

static inline float fp16(uint16_t h) { return _cvtsh_ss(h); }

static inline float hsum_ps(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* 32 nibbles of 16 bytes: element e < 16 from the low nibble of qs[e], e >= 16
 * from the high nibble of qs[e - 16]. */
static inline __m256i nibbles32(const uint8_t *qs) {
    const __m128i t = _mm_loadu_si128((const __m128i *)(const void *)qs);
    const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

/* Byte e = 0xFF where bit e of the 32-bit word at p is set. */
static inline __m256i bits32_to_bytes(const uint8_t *p) {
    const uint32_t x = lf_load_u32(p);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}

/* 8 int32 partial sums of unsigned(u) x signed(s) over 32 bytes. */
static inline __m256i dot_us(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

static inline __m256i load_q8a(const lf_block_q8a *y) { return _mm256_loadu_si256((const __m256i *)(const void *)y->qs); }
static inline int q8a_sum(const lf_block_q8a *y) { return y->sum[0] + y->sum[1]; }

static float dot_f32(const void *w, const void *x, int64_t n) {
    const float *a = w, *b = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    float s = hsum_ps(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s = fmaf(a[i], b[i], s);
    return s;
}

static float dot_f16(const void *w, const void *x, int64_t n) {
    const uint16_t *a = w;
    const float *b = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(a + i)));
        const __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(a + i + 8)));
        acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(b + i + 8), acc1);
    }
    float s = hsum_ps(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s = fmaf(fp16(a[i]), b[i], s);
    return s;
}

static float dot_bf16(const void *w, const void *x, int64_t n) {
    const uint16_t *a = w;
    const float *b = x;
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(a + i)));
        acc = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(u, 16)), _mm256_loadu_ps(b + i), acc);
    }
    float s = hsum_ps(acc);
    for (; i < n; i++) s += lf_bf16_to_fp32(a[i]) * b[i];
    return s;
}

static float dot_q4_0(const void *w, const void *x, int64_t n) {
    const lf_block_q4_0 *b = w;
    const lf_block_q8a *y = x;
    const int64_t nb = n / 32;
    __m256 acc = _mm256_setzero_ps();
    float offset = 0.0f; /* the -8 of every weight, applied through the sums */
    for (int64_t i = 0; i < nb; i++) {
        const float d = fp16(b[i].d) * y[i].d;
        const __m256i p = dot_us(nibbles32(b[i].qs), load_q8a(&y[i]));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), acc);
        offset += d * (float)q8a_sum(&y[i]);
    }
    return hsum_ps(acc) - 8.0f * offset;
}

static float dot_q4_1(const void *w, const void *x, int64_t n) {
    const lf_block_q4_1 *b = w;
    const lf_block_q8a *y = x;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        const __m256i p = dot_us(nibbles32(b[i].qs), load_q8a(&y[i]));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(b[i].d) * y[i].d), _mm256_cvtepi32_ps(p), acc);
        mins += fp16(b[i].m) * y[i].d * (float)q8a_sum(&y[i]);
    }
    return hsum_ps(acc) + mins;
}

static inline __m256i q5_values(const uint8_t *qs, const uint8_t *qh) {
    const __m256i hi = _mm256_and_si256(bits32_to_bytes(qh), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(nibbles32(qs), hi);
}

static float dot_q5_0(const void *w, const void *x, int64_t n) {
    const lf_block_q5_0 *b = w;
    const lf_block_q8a *y = x;
    __m256 acc = _mm256_setzero_ps();
    float offset = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        const float d = fp16(b[i].d) * y[i].d;
        const __m256i p = dot_us(q5_values(b[i].qs, b[i].qh), load_q8a(&y[i]));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), acc);
        offset += d * (float)q8a_sum(&y[i]);
    }
    return hsum_ps(acc) - 16.0f * offset;
}

static float dot_q5_1(const void *w, const void *x, int64_t n) {
    const lf_block_q5_1 *b = w;
    const lf_block_q8a *y = x;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        const __m256i p = dot_us(q5_values(b[i].qs, b[i].qh), load_q8a(&y[i]));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(b[i].d) * y[i].d), _mm256_cvtepi32_ps(p), acc);
        mins += fp16(b[i].m) * y[i].d * (float)q8a_sum(&y[i]);
    }
    return hsum_ps(acc) + mins;
}

static float dot_q8_0(const void *w, const void *x, int64_t n) {
    const lf_block_q8_0 *b = w;
    const lf_block_q8a *y = x;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++) {
        const __m256i qx = _mm256_loadu_si256((const __m256i *)(const void *)b[i].qs);
        const __m256i qy = load_q8a(&y[i]);
        /* signed x signed through maddubs: |x| and y carrying x's sign */
        const __m256i p = dot_us(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(b[i].d) * y[i].d), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum_ps(acc);
}

static inline void k4_scales(const uint8_t *q, int *sc, int *m) {
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        m[j] = q[j + 4] & 63;
        sc[j + 4] = (q[j + 8] & 0xF) | ((q[j] >> 6) << 4);
        m[j + 4] = (q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4);
    }
}

/* Shared by Q4_K and Q5_K: `high` supplies the fifth bit (NULL for Q4_K). */
static inline float dot_k4(const uint8_t *scales, uint16_t dd, uint16_t ddmin, const uint8_t *qs,
                           const uint8_t *qh, const lf_block_q8a *y, __m256 *acc) {
    int sc[8], m[8];
    k4_scales(scales, sc, m);
    const float d = fp16(dd), dmin = fp16(ddmin);
    const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    const __m256i hbits = qh ? _mm256_loadu_si256((const __m256i *)(const void *)qh) : _mm256_setzero_si256();
    float mins = 0.0f;
    for (int c = 0; c < 4; c++) {
        const __m256i bytes = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * c));
        __m256i lo = _mm256_and_si256(bytes, low4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4);
        if (qh) {
            const __m128i s0 = _mm_cvtsi32_si128(2 * c), s1 = _mm_cvtsi32_si128(2 * c + 1);
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hbits, s0), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hbits, s1), one), 4));
        }
        const lf_block_q8a *y0 = &y[2 * c], *y1 = &y[2 * c + 1];
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)sc[2 * c] * y0->d),
                               _mm256_cvtepi32_ps(dot_us(lo, load_q8a(y0))), *acc);
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)sc[2 * c + 1] * y1->d),
                               _mm256_cvtepi32_ps(dot_us(hi, load_q8a(y1))), *acc);
        mins += (float)m[2 * c] * y0->d * (float)q8a_sum(y0) + (float)m[2 * c + 1] * y1->d * (float)q8a_sum(y1);
    }
    return dmin * mins;
}

static float dot_q4_K(const void *w, const void *x, int64_t n) {
    const lf_block_q4_K *b = w;
    const lf_block_q8a *y = x;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t i = 0; i < n / 256; i++) mins += dot_k4(b[i].scales, b[i].d, b[i].dmin, b[i].qs, NULL, y + 8 * i, &acc);
    return hsum_ps(acc) - mins;
}

static float dot_q5_K(const void *w, const void *x, int64_t n) {
    const lf_block_q5_K *b = w;
    const lf_block_q8a *y = x;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t i = 0; i < n / 256; i++)
        mins += dot_k4(b[i].scales, b[i].d, b[i].dmin, b[i].qs, b[i].qh, y + 8 * i, &acc);
    return hsum_ps(acc) - mins;
}

static float dot_q6_K(const void *w, const void *x, int64_t n) {
    const lf_block_q6_K *b = w;
    const lf_block_q8a *y = x;
    const __m256i low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    float offset = 0.0f; /* the -32 of every value */
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = fp16(b[i].d);
        for (int h = 0; h < 2; h++) {
            const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(const void *)(b[i].ql + 64 * h));
            const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(const void *)(b[i].ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(b[i].qh + 32 * h));
            const __m256i lows[4] = {
                _mm256_and_si256(ql0, low4), _mm256_and_si256(ql1, low4),
                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4)};
            for (int g = 0; g < 4; g++) {
                const __m256i hi = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * g)), low2);
                const __m256i q = _mm256_or_si256(lows[g], _mm256_slli_epi16(hi, 4));
                const lf_block_q8a *yb = &y[8 * i + 4 * h + g];
                const int sc0 = b[i].scales[8 * h + 2 * g], sc1 = b[i].scales[8 * h + 2 * g + 1];
                const __m256i scales = _mm256_set_m128i(_mm_set1_epi16((short)sc1), _mm_set1_epi16((short)sc0));
                const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, load_q8a(yb)), scales);
                const float dy = d * yb->d;
                acc = _mm256_fmadd_ps(_mm256_set1_ps(dy), _mm256_cvtepi32_ps(p), acc);
                offset += dy * (float)(sc0 * yb->sum[0] + sc1 * yb->sum[1]);
            }
        }
    }
    return hsum_ps(acc) - 32.0f * offset;
}

static void quantize_q8a(const float *x, lf_block_q8a *y, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        __m256 v[4];
        __m256 amax = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[k]));
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float max = _mm_cvtss_f32(m);
        const float d = max / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = d;
        const __m256 mul = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[k], mul), _MM_ROUND_NEAREST | _MM_FROUND_NO_EXC));
        /* pack 32 int32 -> 32 int8 in order */
        const __m256i p01 = _mm256_packs_epi32(q[0], q[1]), p23 = _mm256_packs_epi32(q[2], q[3]);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(void *)y[i].qs, p);
        /* half sums */
        const __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), p);
        const __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
        __m128i lo = _mm256_castsi256_si128(s32), hi = _mm256_extracti128_si256(s32, 1);
        lo = _mm_hadd_epi32(lo, lo);
        lo = _mm_hadd_epi32(lo, lo);
        hi = _mm_hadd_epi32(hi, hi);
        hi = _mm_hadd_epi32(hi, hi);
        y[i].sum[0] = (int16_t)_mm_cvtsi128_si32(lo);
        y[i].sum[1] = (int16_t)_mm_cvtsi128_si32(hi);
    }
}

/* ---- axpy: y += a * row ------------------------------------------------- */

static void axpy_f32(const void *row, float a, float *y, int64_t n) {
    const float *x = row;
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static void axpy_f16(const void *row, float a, float *y, int64_t n) {
    const uint16_t *x = row;
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 w = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, w, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) y[i] += a * fp16(x[i]);
}

static void axpy_bf16(const void *row, float a, float *y, int64_t n) {
    const uint16_t *x = row;
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_castsi256_ps(_mm256_slli_epi32(u, 16)), _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) y[i] += a * lf_bf16_to_fp32(x[i]);
}

/* 8 int8 lanes -> 8 floats */
static inline __m256 i8x8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

static void axpy_q8_0(const void *row, float a, float *y, int64_t n) {
    const lf_block_q8_0 *b = row;
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        const __m256 s = _mm256_set1_ps(a * fp16(b[i].d));
        const __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)b[i].qs);
        const __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(b[i].qs + 16));
        _mm256_storeu_ps(y, _mm256_fmadd_ps(s, i8x8_to_ps(lo), _mm256_loadu_ps(y)));
        _mm256_storeu_ps(y + 8, _mm256_fmadd_ps(s, i8x8_to_ps(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(y + 8)));
        _mm256_storeu_ps(y + 16, _mm256_fmadd_ps(s, i8x8_to_ps(hi), _mm256_loadu_ps(y + 16)));
        _mm256_storeu_ps(y + 24, _mm256_fmadd_ps(s, i8x8_to_ps(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(y + 24)));
    }
}

static void axpy_q4_0(const void *row, float a, float *y, int64_t n) {
    const lf_block_q4_0 *b = row;
    const __m128i low4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        const __m256 s = _mm256_set1_ps(a * fp16(b[i].d));
        const __m128i q = _mm_loadu_si128((const __m128i *)(const void *)b[i].qs);
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(q, low4), eight);                    /* elements 0..15 */
        const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), low4), eight); /* 16..31 */
        _mm256_storeu_ps(y, _mm256_fmadd_ps(s, i8x8_to_ps(lo), _mm256_loadu_ps(y)));
        _mm256_storeu_ps(y + 8, _mm256_fmadd_ps(s, i8x8_to_ps(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(y + 8)));
        _mm256_storeu_ps(y + 16, _mm256_fmadd_ps(s, i8x8_to_ps(hi), _mm256_loadu_ps(y + 16)));
        _mm256_storeu_ps(y + 24, _mm256_fmadd_ps(s, i8x8_to_ps(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(y + 24)));
    }
}


/* ---- x8 groups (repack.h): 8 rows per register, one row per 32-bit lane -- */

#include "x8_gemm.h"

/* acc + the 4-byte dot products of u (unsigned) and s (signed) per lane. */
static inline __m256i dot4_u8s8(__m256i acc, __m256i u, __m256i s) {
#ifdef LF_VNNI
    return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

static inline __m256i bcast4(const int8_t *p) { return _mm256_set1_epi32((int)lf_load_u32(p)); }

static inline __attribute__((always_inline)) void x8_q4_0_tile(const uint8_t *g, const void *x, uint64_t xs, const int nt,
                                                                float *y, uint64_t ys, int64_t nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[X8_TILE];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, g += LF_X8 * sizeof(lf_block_q4_0)) {
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)g));
        __m256i w[8]; /* w[c]: elements 4c..4c+3 of the 8 rows */
        for (int c = 0; c < 4; c++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(g + 16 + 32 * c));
            w[c] = _mm256_and_si256(v, m4);
            w[c + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        }
        for (int t = 0; t < nt; t++) {
            const lf_block_q8a *yb = tok_blocks(x, xs, t) + i;
#ifdef LF_VNNI
            __m256i s = _mm256_setzero_si256();
            for (int c = 0; c < 8; c++) s = dot4_u8s8(s, w[c], bcast4(yb->qs + 4 * c));
#else
            /* int16 sums are safe: 8 x 2 x 15 x 127 < 32768 */
            __m256i s16 = _mm256_maddubs_epi16(w[0], bcast4(yb->qs));
            for (int c = 1; c < 8; c++) s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(w[c], bcast4(yb->qs + 4 * c)));
            __m256i s = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
#endif
            s = _mm256_sub_epi32(s, _mm256_set1_epi32(8 * (yb->sum[0] + yb->sum[1])));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(yb->d)), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(y + (uint64_t)t * ys, acc[t]);
}

static inline __attribute__((always_inline)) void x8_q8_0_tile(const uint8_t *g, const void *x, uint64_t xs, const int nt,
                                                                float *y, uint64_t ys, int64_t nb) {
    __m256 acc[X8_TILE];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, g += LF_X8 * sizeof(lf_block_q8_0)) {
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)g));
        __m256i w[8];
        for (int c = 0; c < 8; c++) w[c] = _mm256_loadu_si256((const __m256i *)(const void *)(g + 16 + 32 * c));
#ifdef LF_VNNI
        /* unsigned w + 128, corrected through the activation sums */
        for (int c = 0; c < 8; c++) w[c] = _mm256_xor_si256(w[c], _mm256_set1_epi8((char)0x80));
#endif
        for (int t = 0; t < nt; t++) {
            const lf_block_q8a *yb = tok_blocks(x, xs, t) + i;
            __m256i s = _mm256_setzero_si256();
#ifdef LF_VNNI
            for (int c = 0; c < 8; c++) s = dot4_u8s8(s, w[c], bcast4(yb->qs + 4 * c));
            s = _mm256_sub_epi32(s, _mm256_set1_epi32(128 * (yb->sum[0] + yb->sum[1])));
#else
            for (int c = 0; c < 8; c++)
                s = dot4_u8s8(s, _mm256_sign_epi8(w[c], w[c]), _mm256_sign_epi8(bcast4(yb->qs + 4 * c), w[c]));
#endif
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(yb->d)), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(y + (uint64_t)t * ys, acc[t]);
}

X8_GEMM(gemm_x8_q4_0, x8_q4_0_tile, 32)
X8_GEMM(gemm_x8_q8_0, x8_q8_0_tile, 32)

#include "x8_kquants.h"

static const lf_kernels k_avx2 = {
#ifdef LF_VNNI
    .name = "avx2-vnni",
#else
    .name = "avx2",
#endif
    .dot = {
        [LF_TYPE_F32] = dot_f32, [LF_TYPE_F16] = dot_f16, [LF_TYPE_BF16] = dot_bf16,
        [LF_TYPE_Q4_0] = dot_q4_0, [LF_TYPE_Q4_1] = dot_q4_1, [LF_TYPE_Q5_0] = dot_q5_0,
        [LF_TYPE_Q5_1] = dot_q5_1, [LF_TYPE_Q8_0] = dot_q8_0, [LF_TYPE_Q4_K] = dot_q4_K,
        [LF_TYPE_Q5_K] = dot_q5_K, [LF_TYPE_Q6_K] = dot_q6_K,
    },
    .axpy = {
        [LF_TYPE_F32] = axpy_f32, [LF_TYPE_F16] = axpy_f16, [LF_TYPE_BF16] = axpy_bf16,
        [LF_TYPE_Q8_0] = axpy_q8_0, [LF_TYPE_Q4_0] = axpy_q4_0,
    },
    .gemm_x8 = {[LF_TYPE_Q4_0] = gemm_x8_q4_0, [LF_TYPE_Q8_0] = gemm_x8_q8_0, [LF_TYPE_Q4_K] = gemm_x8_q4_K,
                [LF_TYPE_Q6_K] = gemm_x8_q6_K},
    .quantize_q8a = quantize_q8a,
};

#ifdef LF_VNNI
const lf_kernels *lf_kernels_avx2_vnni(void) {
    const lf_cpu_features *f = lf_cpu_features_get();
    return f->avx2 && f->fma && f->f16c && f->avx_vnni ? &k_avx2 : NULL;
}
#else
const lf_kernels *lf_kernels_avx2(void) {
    const lf_cpu_features *f = lf_cpu_features_get();
    return f->avx2 && f->fma && f->f16c ? &k_avx2 : NULL;
}
#endif

#endif
