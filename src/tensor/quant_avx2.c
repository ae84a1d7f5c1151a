/* quant_avx2.c - AVX2/FMA/F16C kernels. Compiled with -mavx2 -mfma -mf16c
 * and only called after lf__kernels_avx2() has checked the CPU; compiled a
 * second time with -mavxvnni -DLF_VNNI as lf__kernels_avx2_vnni().
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
#include <string.h>

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
    const uint32_t x = lf__load_u32(p);
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

/* ---- dot products ------------------------------------------------------------
 * Each type has a step, which adds the products of one unit (a block, or 16
 * floats) to a dot_state, and a finish, which turns the state into the dot
 * product. dot_T runs the steps over one row; dot_rows_T runs them over up
 * to LF_DOT_ROWS rows at once, sharing each activation load, with one state
 * per row: each row's result is bit-identical to dot_T's. */

typedef struct dot_state {
    __m256 a, b; /* vector accumulators (b: the float types' second chain) */
    float off;   /* the scalar part: block offsets or mins */
} dot_state;

#define STEP(T) static inline __attribute__((always_inline)) void step_##T(const void *w, int64_t i, const void *x, dot_state *s)
#define FINISH(T) static inline float finish_##T(const dot_state *s, const void *w, const void *x, int64_t n)

STEP(f32) {
    const float *a = (const float *)w + 16 * i, *b = (const float *)x + 16 * i;
    s->a = _mm256_fmadd_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(b), s->a);
    s->b = _mm256_fmadd_ps(_mm256_loadu_ps(a + 8), _mm256_loadu_ps(b + 8), s->b);
}
FINISH(f32) {
    const float *a = w, *b = x;
    float r = hsum_ps(_mm256_add_ps(s->a, s->b));
    for (int64_t i = n / 16 * 16; i < n; i++) r = fmaf(a[i], b[i], r);
    return r;
}

STEP(f16) {
    const uint16_t *a = (const uint16_t *)w + 16 * i;
    const float *b = (const float *)x + 16 * i;
    const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)a));
    const __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(a + 8)));
    s->a = _mm256_fmadd_ps(w0, _mm256_loadu_ps(b), s->a);
    s->b = _mm256_fmadd_ps(w1, _mm256_loadu_ps(b + 8), s->b);
}
FINISH(f16) {
    const uint16_t *a = w;
    const float *b = x;
    float r = hsum_ps(_mm256_add_ps(s->a, s->b));
    for (int64_t i = n / 16 * 16; i < n; i++) r = fmaf(fp16(a[i]), b[i], r);
    return r;
}

static inline __m256 bf16x8(const uint16_t *p) {
    const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}
STEP(bf16) {
    const uint16_t *a = (const uint16_t *)w + 16 * i;
    const float *b = (const float *)x + 16 * i;
    s->a = _mm256_fmadd_ps(bf16x8(a), _mm256_loadu_ps(b), s->a);
    s->b = _mm256_fmadd_ps(bf16x8(a + 8), _mm256_loadu_ps(b + 8), s->b);
}
FINISH(bf16) {
    const uint16_t *a = w;
    const float *b = x;
    float r = hsum_ps(_mm256_add_ps(s->a, s->b));
    for (int64_t i = n / 16 * 16; i < n; i++) r = fmaf(lf__bf16_to_fp32(a[i]), b[i], r);
    return r;
}

/* The quantized types: x is lf_block_q8a blocks. */
STEP(q4_0) {
    const lf_block_q4_0 *b = (const lf_block_q4_0 *)w + i;
    const lf_block_q8a *y = (const lf_block_q8a *)x + i;
    const float d = fp16(b->d) * y->d;
    const __m256i p = dot_us(nibbles32(b->qs), load_q8a(y));
    s->a = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), s->a);
    s->off += d * (float)q8a_sum(y); /* the -8 of every weight, applied through the sums */
}
FINISH(q4_0) { (void)w, (void)x, (void)n; return hsum_ps(s->a) - 8.0f * s->off; }

STEP(q4_1) {
    const lf_block_q4_1 *b = (const lf_block_q4_1 *)w + i;
    const lf_block_q8a *y = (const lf_block_q8a *)x + i;
    const __m256i p = dot_us(nibbles32(b->qs), load_q8a(y));
    s->a = _mm256_fmadd_ps(_mm256_set1_ps(fp16(b->d) * y->d), _mm256_cvtepi32_ps(p), s->a);
    s->off += fp16(b->m) * y->d * (float)q8a_sum(y);
}
FINISH(q4_1) { (void)w, (void)x, (void)n; return hsum_ps(s->a) + s->off; }

static inline __m256i q5_values(const uint8_t *qs, const uint8_t *qh) {
    const __m256i hi = _mm256_and_si256(bits32_to_bytes(qh), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(nibbles32(qs), hi);
}

STEP(q5_0) {
    const lf_block_q5_0 *b = (const lf_block_q5_0 *)w + i;
    const lf_block_q8a *y = (const lf_block_q8a *)x + i;
    const float d = fp16(b->d) * y->d;
    const __m256i p = dot_us(q5_values(b->qs, b->qh), load_q8a(y));
    s->a = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), s->a);
    s->off += d * (float)q8a_sum(y);
}
FINISH(q5_0) { (void)w, (void)x, (void)n; return hsum_ps(s->a) - 16.0f * s->off; }

STEP(q5_1) {
    const lf_block_q5_1 *b = (const lf_block_q5_1 *)w + i;
    const lf_block_q8a *y = (const lf_block_q8a *)x + i;
    const __m256i p = dot_us(q5_values(b->qs, b->qh), load_q8a(y));
    s->a = _mm256_fmadd_ps(_mm256_set1_ps(fp16(b->d) * y->d), _mm256_cvtepi32_ps(p), s->a);
    s->off += fp16(b->m) * y->d * (float)q8a_sum(y);
}
FINISH(q5_1) { (void)w, (void)x, (void)n; return hsum_ps(s->a) + s->off; }

STEP(q8_0) {
    const lf_block_q8_0 *b = (const lf_block_q8_0 *)w + i;
    const lf_block_q8a *y = (const lf_block_q8a *)x + i;
    const __m256i qx = _mm256_loadu_si256((const __m256i *)(const void *)b->qs);
    const __m256i qy = load_q8a(y);
    /* signed x signed through maddubs: |x| and y carrying x's sign */
    const __m256i p = dot_us(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx));
    s->a = _mm256_fmadd_ps(_mm256_set1_ps(fp16(b->d) * y->d), _mm256_cvtepi32_ps(p), s->a);
}
FINISH(q8_0) { (void)w, (void)x, (void)n; return hsum_ps(s->a); }

/* Sub-block j's 6-bit scale and min of ggml's k4 packing (Q4_K, Q5_K). */
static inline void k4_scale_min(const uint8_t *q, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Shared by Q4_K and Q5_K: `qh` supplies the fifth bit (NULL for Q4_K). */
static inline __attribute__((always_inline)) float dot_k4(const uint8_t *scales, uint16_t dd, uint16_t ddmin,
                                                          const uint8_t *qs, const uint8_t *qh, const lf_block_q8a *y,
                                                          __m256 *acc) {
    const float d = fp16(dd), dmin = fp16(ddmin);
    const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    const __m256i hbits = qh ? _mm256_loadu_si256((const __m256i *)(const void *)qh) : _mm256_setzero_si256();
    float mins = 0.0f;
    for (int c = 0; c < 4; c++) {
        int sc0, m0, sc1, m1;
        k4_scale_min(scales, 2 * c, &sc0, &m0);
        k4_scale_min(scales, 2 * c + 1, &sc1, &m1);
        const __m256i bytes = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * c));
        __m256i lo = _mm256_and_si256(bytes, low4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4);
        if (qh) {
            const __m128i s0 = _mm_cvtsi32_si128(2 * c), s1 = _mm_cvtsi32_si128(2 * c + 1);
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hbits, s0), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hbits, s1), one), 4));
        }
        const lf_block_q8a *y0 = &y[2 * c], *y1 = &y[2 * c + 1];
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)sc0 * y0->d), _mm256_cvtepi32_ps(dot_us(lo, load_q8a(y0))), *acc);
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)sc1 * y1->d), _mm256_cvtepi32_ps(dot_us(hi, load_q8a(y1))), *acc);
        mins += (float)m0 * y0->d * (float)q8a_sum(y0) + (float)m1 * y1->d * (float)q8a_sum(y1);
    }
    return dmin * mins;
}

STEP(q4_K) {
    const lf_block_q4_K *b = (const lf_block_q4_K *)w + i;
    s->off += dot_k4(b->scales, b->d, b->dmin, b->qs, NULL, (const lf_block_q8a *)x + 8 * i, &s->a);
}
FINISH(q4_K) { (void)w, (void)x, (void)n; return hsum_ps(s->a) - s->off; }

STEP(q5_K) {
    const lf_block_q5_K *b = (const lf_block_q5_K *)w + i;
    s->off += dot_k4(b->scales, b->d, b->dmin, b->qs, b->qh, (const lf_block_q8a *)x + 8 * i, &s->a);
}
FINISH(q5_K) { (void)w, (void)x, (void)n; return hsum_ps(s->a) - s->off; }

STEP(q6_K) {
    const lf_block_q6_K *b = (const lf_block_q6_K *)w + i;
    const lf_block_q8a *y = (const lf_block_q8a *)x + 8 * i;
    const __m256i low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(3);
    const float d = fp16(b->d);
    for (int h = 0; h < 2; h++) {
        const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(const void *)(b->ql + 64 * h));
        const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(const void *)(b->ql + 64 * h + 32));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(b->qh + 32 * h));
        const __m256i lows[4] = {_mm256_and_si256(ql0, low4), _mm256_and_si256(ql1, low4),
                                 _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                                 _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4)};
        for (int g = 0; g < 4; g++) {
            const __m256i hi = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * g)), low2);
            const __m256i q = _mm256_or_si256(lows[g], _mm256_slli_epi16(hi, 4));
            const lf_block_q8a *yb = &y[4 * h + g];
            const int sc0 = b->scales[8 * h + 2 * g], sc1 = b->scales[8 * h + 2 * g + 1];
            const __m256i scales = _mm256_set_m128i(_mm_set1_epi16((short)sc1), _mm_set1_epi16((short)sc0));
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, load_q8a(yb)), scales);
            const float dy = d * yb->d;
            s->a = _mm256_fmadd_ps(_mm256_set1_ps(dy), _mm256_cvtepi32_ps(p), s->a);
            s->off += dy * (float)(sc0 * yb->sum[0] + sc1 * yb->sum[1]); /* the -32 of every value */
        }
    }
}
FINISH(q6_K) { (void)w, (void)x, (void)n; return hsum_ps(s->a) - 32.0f * s->off; }

/* dot_T and dot_rows_T from a type's step and finish; `unit` is the number
 * of elements one step takes. */
#define DOT_KERNELS(T, unit)                                                                                          \
    static float dot_##T(const void *w, const void *x, int64_t n) {                                                   \
        dot_state s = {_mm256_setzero_ps(), _mm256_setzero_ps(), 0.0f};                                               \
        for (int64_t i = 0; i < n / (unit); i++) step_##T(w, i, x, &s);                                               \
        return finish_##T(&s, w, x, n);                                                                               \
    }                                                                                                                 \
    static inline __attribute__((always_inline)) void rows_##T(const void *const *rows, const int nr, const void *x, \
                                                               float *out, int64_t n) {                              \
        dot_state s[LF_DOT_ROWS];                                                                                     \
        for (int r = 0; r < nr; r++) s[r] = (dot_state){_mm256_setzero_ps(), _mm256_setzero_ps(), 0.0f};             \
        for (int64_t i = 0; i < n / (unit); i++) {                                                                    \
            _Pragma("GCC unroll 4") for (int r = 0; r < nr; r++) step_##T(rows[r], i, x, &s[r]);                      \
        }                                                                                                             \
        for (int r = 0; r < nr; r++) out[r] = finish_##T(&s[r], rows[r], x, n);                                       \
    }                                                                                                                 \
    static void dot_rows_##T(const void *const *rows, int nr, const void *x, float *out, int64_t n) {                 \
        switch (nr) {                                                                                                 \
        case 4: rows_##T(rows, 4, x, out, n); break;                                                                  \
        case 3: rows_##T(rows, 3, x, out, n); break;                                                                  \
        case 2: rows_##T(rows, 2, x, out, n); break;                                                                  \
        default: rows_##T(rows, 1, x, out, n); break;                                                                 \
        }                                                                                                             \
    }

DOT_KERNELS(f32, 16)
DOT_KERNELS(f16, 16)
DOT_KERNELS(bf16, 16)
DOT_KERNELS(q4_0, 32)
DOT_KERNELS(q4_1, 32)
DOT_KERNELS(q5_0, 32)
DOT_KERNELS(q5_1, 32)
DOT_KERNELS(q8_0, 32)
DOT_KERNELS(q4_K, 256)
DOT_KERNELS(q5_K, 256)
DOT_KERNELS(q6_K, 256)

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

/* ---- axpy: y += a * row --------------------------------------------------
 * As for the dots, each type has a step: it adds a times one 32-element unit
 * of a row to the 32 floats of y held in four registers. axpy_T runs it over
 * one row; axpy_cols_T over up to LF_AXPY_COLS rows, loading and storing y
 * once for all of them (the down columns of a bundle chunk). The per-element
 * operations are those of one axpy_T after another, so the results are too. */

#define AXPY_STEP(T) static inline __attribute__((always_inline)) void axpy_step_##T(const void *row, float a, int64_t u, __m256 v[4])

/* 32 int8 lanes -> 4 x 8 floats */
static inline void i8x32_to_ps(__m256i q, __m256 f[4]) {
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    f[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
    f[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
    f[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
    f[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
}

/* v += s * q */
static inline void fma_units(__m256 v[4], float s, const __m256 q[4]) {
    const __m256 vs = _mm256_set1_ps(s);
    for (int k = 0; k < 4; k++) v[k] = _mm256_fmadd_ps(vs, q[k], v[k]);
}

AXPY_STEP(f32) {
    const float *x = (const float *)row + 32 * u;
    const __m256 va = _mm256_set1_ps(a);
    for (int k = 0; k < 4; k++) v[k] = _mm256_fmadd_ps(va, _mm256_loadu_ps(x + 8 * k), v[k]);
}
AXPY_STEP(f16) {
    const uint16_t *x = (const uint16_t *)row + 32 * u;
    const __m256 va = _mm256_set1_ps(a);
    for (int k = 0; k < 4; k++)
        v[k] = _mm256_fmadd_ps(va, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(x + 8 * k))), v[k]);
}
AXPY_STEP(bf16) {
    const uint16_t *x = (const uint16_t *)row + 32 * u;
    const __m256 va = _mm256_set1_ps(a);
    for (int k = 0; k < 4; k++) v[k] = _mm256_fmadd_ps(va, bf16x8(x + 8 * k), v[k]);
}
AXPY_STEP(q8_0) {
    const lf_block_q8_0 *b = (const lf_block_q8_0 *)row + u;
    __m256 q[4];
    i8x32_to_ps(_mm256_loadu_si256((const __m256i *)(const void *)b->qs), q);
    fma_units(v, a * fp16(b->d), q);
}
AXPY_STEP(q4_0) {
    const lf_block_q4_0 *b = (const lf_block_q4_0 *)row + u;
    __m256 q[4];
    i8x32_to_ps(_mm256_sub_epi8(nibbles32(b->qs), _mm256_set1_epi8(8)), q);
    fma_units(v, a * fp16(b->d), q);
}
AXPY_STEP(q4_1) {
    const lf_block_q4_1 *b = (const lf_block_q4_1 *)row + u;
    __m256 q[4];
    i8x32_to_ps(nibbles32(b->qs), q);
    fma_units(v, a * fp16(b->d), q);
    const __m256 m = _mm256_set1_ps(a * fp16(b->m));
    for (int k = 0; k < 4; k++) v[k] = _mm256_add_ps(v[k], m);
}
AXPY_STEP(q5_0) {
    const lf_block_q5_0 *b = (const lf_block_q5_0 *)row + u;
    __m256 q[4];
    i8x32_to_ps(_mm256_sub_epi8(q5_values(b->qs, b->qh), _mm256_set1_epi8(16)), q);
    fma_units(v, a * fp16(b->d), q);
}
AXPY_STEP(q5_1) {
    const lf_block_q5_1 *b = (const lf_block_q5_1 *)row + u;
    __m256 q[4];
    i8x32_to_ps(q5_values(b->qs, b->qh), q);
    fma_units(v, a * fp16(b->d), q);
    const __m256 m = _mm256_set1_ps(a * fp16(b->m));
    for (int k = 0; k < 4; k++) v[k] = _mm256_add_ps(v[k], m);
}
/* Q4_K and Q5_K: unit u is sub-block u % 8 of super-block u / 8; its values
 * are the low (even) or high (odd) nibbles of 32 bytes, plus 16 times a bit
 * of qh for Q5_K; element = d * scale * q - dmin * min. */
static inline void axpy_k4(const uint8_t *scales, uint16_t dd, uint16_t ddmin, const uint8_t *qs, const uint8_t *qh,
                           int s, float a, __m256 v[4]) {
    int sc, m;
    k4_scale_min(scales, s, &sc, &m);
    const __m256i bytes = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * (s / 2)));
    __m256i q = _mm256_and_si256(s & 1 ? _mm256_srli_epi16(bytes, 4) : bytes, _mm256_set1_epi8(0x0F));
    if (qh) {
        const __m256i h = _mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(const void *)qh), _mm_cvtsi32_si128(s));
        q = _mm256_or_si256(q, _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(1)), 4));
    }
    __m256 f[4];
    i8x32_to_ps(q, f);
    const __m256 ds = _mm256_set1_ps(a * fp16(dd) * (float)sc), dm = _mm256_set1_ps(a * fp16(ddmin) * (float)m);
    for (int k = 0; k < 4; k++) v[k] = _mm256_add_ps(v[k], _mm256_fmsub_ps(ds, f[k], dm));
}
AXPY_STEP(q4_K) {
    const lf_block_q4_K *b = (const lf_block_q4_K *)row + u / 8;
    axpy_k4(b->scales, b->d, b->dmin, b->qs, NULL, (int)(u % 8), a, v);
}
AXPY_STEP(q5_K) {
    const lf_block_q5_K *b = (const lf_block_q5_K *)row + u / 8;
    axpy_k4(b->scales, b->d, b->dmin, b->qs, b->qh, (int)(u % 8), a, v);
}
/* Q6_K: unit u is group g = u % 4 of half h of super-block u / 8: low bits
 * from nibble g / 2 of ql (64h + 32 (g & 1)), high bits 2g of qh (32h); the
 * first and second 16 elements have their own scales. */
AXPY_STEP(q6_K) {
    const lf_block_q6_K *b = (const lf_block_q6_K *)row + u / 8;
    const int h = (int)(u % 8) / 4, g = (int)(u % 4);
    const __m256i ql = _mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(b->ql + 64 * h + 32 * (g & 1))),
                                        _mm_cvtsi32_si128(4 * (g >> 1)));
    const __m256i qh = _mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(b->qh + 32 * h)), _mm_cvtsi32_si128(2 * g));
    const __m256i q = _mm256_or_si256(_mm256_and_si256(ql, _mm256_set1_epi8(0x0F)),
                                      _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(3)), 4));
    __m256 f[4];
    i8x32_to_ps(_mm256_sub_epi8(q, _mm256_set1_epi8(32)), f);
    const float ad = a * fp16(b->d);
    const __m256 s0 = _mm256_set1_ps(ad * (float)b->scales[8 * h + 2 * g]), s1 = _mm256_set1_ps(ad * (float)b->scales[8 * h + 2 * g + 1]);
    v[0] = _mm256_fmadd_ps(s0, f[0], v[0]);
    v[1] = _mm256_fmadd_ps(s0, f[1], v[1]);
    v[2] = _mm256_fmadd_ps(s1, f[2], v[2]);
    v[3] = _mm256_fmadd_ps(s1, f[3], v[3]);
}

/* axpy_T and axpy_cols_T from a type's step; n is a multiple of 32 (the
 * float types' tails are done one element at a time, as y += a * x with one
 * rounding). */
#define AXPY_KERNELS(T, load)                                                                                        \
    static void axpy_cols_##T(const void *const *cols, const float *a, int nc, float *y, int64_t n) {                \
        for (int64_t u = 0; u < n / 32; u++) {                                                                       \
            float *yu = y + 32 * u;                                                                                  \
            __m256 v[4];                                                                                             \
            for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(yu + 8 * k);                                          \
            for (int j = 0; j < nc; j++) axpy_step_##T(cols[j], a[j], u, v);                                         \
            for (int k = 0; k < 4; k++) _mm256_storeu_ps(yu + 8 * k, v[k]);                                          \
        }                                                                                                            \
        for (int j = 0; j < nc; j++)                                                                                 \
            for (int64_t i = n / 32 * 32; i < n; i++) y[i] = fmaf(a[j], load(cols[j], i), y[i]);                     \
    }                                                                                                                \
    static void axpy_##T(const void *row, float a, float *y, int64_t n) { axpy_cols_##T(&row, &a, 1, y, n); }

static inline float elem_f32(const void *r, int64_t i) { return ((const float *)r)[i]; }
static inline float elem_f16(const void *r, int64_t i) { return fp16(((const uint16_t *)r)[i]); }
static inline float elem_bf16(const void *r, int64_t i) { return lf__bf16_to_fp32(((const uint16_t *)r)[i]); }
static inline float elem_none(const void *r, int64_t i) { (void)r, (void)i; return 0.0f; } /* blocks: no tail */

AXPY_KERNELS(f32, elem_f32)
AXPY_KERNELS(f16, elem_f16)
AXPY_KERNELS(bf16, elem_bf16)
AXPY_KERNELS(q4_0, elem_none)
AXPY_KERNELS(q4_1, elem_none)
AXPY_KERNELS(q5_0, elem_none)
AXPY_KERNELS(q5_1, elem_none)
AXPY_KERNELS(q8_0, elem_none)
AXPY_KERNELS(q4_K, elem_none)
AXPY_KERNELS(q5_K, elem_none)
AXPY_KERNELS(q6_K, elem_none)

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

static inline __m256i bcast4(const int8_t *p) { return _mm256_set1_epi32((int)lf__load_u32(p)); }

/* Block i of 8 Q4_0 rows (chunk registers w, scales dw) times nt tokens,
 * added to acc: the step the x8 tile and the gathered rows share. */
static inline __attribute__((always_inline)) void q4_0_x8_step(const __m256i w[8], __m256 dw, const void *x, uint64_t xs,
                                                                const int nt, int64_t i, __m256 acc[X8_TILE]) {
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

/* The low and high nibbles of 4 chunk registers. */
static inline __attribute__((always_inline)) void q4_0_nibble_chunks(const __m256i v[4], __m256i w[8]) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int c = 0; c < 4; c++) {
        w[c] = _mm256_and_si256(v[c], m4);
        w[c + 4] = _mm256_and_si256(_mm256_srli_epi16(v[c], 4), m4);
    }
}

static inline __attribute__((always_inline)) void x8_q4_0_tile(const uint8_t *g, const void *x, uint64_t xs, const int nt,
                                                                float *y, uint64_t ys, int64_t nb) {
    __m256 acc[X8_TILE];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, g += LF_X8 * sizeof(lf_block_q4_0)) {
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)g));
        __m256i v[4], w[8]; /* w[c]: elements 4c..4c+3 of the 8 rows */
        for (int c = 0; c < 4; c++) v[c] = _mm256_loadu_si256((const __m256i *)(const void *)(g + 16 + 32 * c));
        q4_0_nibble_chunks(v, w);
        q4_0_x8_step(w, dw, x, xs, nt, i, acc);
    }
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(y + (uint64_t)t * ys, acc[t]);
}

static inline __attribute__((always_inline)) void q8_0_x8_step(__m256i w[8], __m256 dw, const void *x, uint64_t xs,
                                                                const int nt, int64_t i, __m256 acc[X8_TILE]) {
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

static inline __attribute__((always_inline)) void x8_q8_0_tile(const uint8_t *g, const void *x, uint64_t xs, const int nt,
                                                                float *y, uint64_t ys, int64_t nb) {
    __m256 acc[X8_TILE];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, g += LF_X8 * sizeof(lf_block_q8_0)) {
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)g));
        __m256i w[8];
        for (int c = 0; c < 8; c++) w[c] = _mm256_loadu_si256((const __m256i *)(const void *)(g + 16 + 32 * c));
        q8_0_x8_step(w, dw, x, xs, nt, i, acc);
    }
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(y + (uint64_t)t * ys, acc[t]);
}

/* Q4_1, Q5_0 and Q5_1 groups: Q4_0's chunks after the scales (d at 0, m at
 * 16 for the _1 types), and for Q5 the rows' 4 high-bit bytes as one chunk
 * register, lane r holding row r's 32 bits (repack.c). */

/* The 8 rows' values of chunk register c (elements 4c..4c+3 for c < 4, else
 * 16 + 4(c-4)..) with bit 4 from the rows' high-bit words in qh: byte k of
 * lane r gets bit e = element k of qh_r. */
static inline __attribute__((always_inline)) __m256i q5_high(__m256i qh, int c) {
    const int e0 = c < 4 ? 4 * c : 16 + 4 * (c - 4);
    const char b = (char)(e0 / 8), o = (char)(e0 % 8);
    /* each lane's byte e0 / 8 into its 4 bytes */
    const __m256i sel = _mm256_setr_epi8(b, b, b, b, 4 + b, 4 + b, 4 + b, 4 + b, 8 + b, 8 + b, 8 + b, 8 + b, 12 + b, 12 + b,
                                         12 + b, 12 + b, b, b, b, b, 4 + b, 4 + b, 4 + b, 4 + b, 8 + b, 8 + b, 8 + b, 8 + b,
                                         12 + b, 12 + b, 12 + b, 12 + b);
    const __m256i bit = _mm256_set1_epi32((int)(0x01u << o | 0x02u << (o + 8) | 0x04u << (o + 16) | 0x08u << (o + 24)));
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(qh, sel), bit), bit);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

/* The x8 legacy-quant tile: `qs_at` is where the chunks start, `qh_at` the
 * high bits (0: none), `m_at` the fp16 mins (0: none), `offset` what every
 * value carries (8 for Q4_0-like, 16 for Q5_0; 0 with mins). */
static inline __attribute__((always_inline)) void x8_legacy_tile(const uint8_t *g, const void *x, uint64_t xs, const int nt,
                                                                  float *y, uint64_t ys, int64_t nb, uint32_t block,
                                                                  int qs_at, int qh_at, int m_at, int offset) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[X8_TILE];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, g += LF_X8 * block) {
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)g));
        const __m256 dm = m_at ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(g + m_at))) : dw;
        __m256i w[8];
        for (int c = 0; c < 4; c++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(g + qs_at + 32 * c));
            w[c] = _mm256_and_si256(v, m4);
            w[c + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        }
        if (qh_at) {
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(g + qh_at));
            _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++) w[c] = _mm256_or_si256(w[c], q5_high(qh, c));
        }
        for (int t = 0; t < nt; t++) {
            const lf_block_q8a *yb = tok_blocks(x, xs, t) + i;
            /* two halves of 4 chunks: 5-bit values summed in int16 stay below
             * 4 x 2 x 31 x 127 < 32768 */
            __m256i s = _mm256_setzero_si256(), s2 = _mm256_setzero_si256();
            for (int c = 0; c < 4; c++) s = dot4_u8s8(s, w[c], bcast4(yb->qs + 4 * c));
            for (int c = 4; c < 8; c++) s2 = dot4_u8s8(s2, w[c], bcast4(yb->qs + 4 * c));
            s = _mm256_add_epi32(s, s2);
            const int sum = yb->sum[0] + yb->sum[1];
            if (offset) s = _mm256_sub_epi32(s, _mm256_set1_epi32(offset * sum));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(yb->d)), acc[t]);
            if (m_at) acc[t] = _mm256_fmadd_ps(dm, _mm256_set1_ps(yb->d * (float)sum), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(y + (uint64_t)t * ys, acc[t]);
}

static inline __attribute__((always_inline)) void x8_q4_1_tile(const uint8_t *g, const void *x, uint64_t xs, const int nt,
                                                                float *y, uint64_t ys, int64_t nb) {
    x8_legacy_tile(g, x, xs, nt, y, ys, nb, sizeof(lf_block_q4_1), 32, 0, 16, 0);
}
static inline __attribute__((always_inline)) void x8_q5_0_tile(const uint8_t *g, const void *x, uint64_t xs, const int nt,
                                                                float *y, uint64_t ys, int64_t nb) {
    x8_legacy_tile(g, x, xs, nt, y, ys, nb, sizeof(lf_block_q5_0), 48, 16, 0, 16);
}
static inline __attribute__((always_inline)) void x8_q5_1_tile(const uint8_t *g, const void *x, uint64_t xs, const int nt,
                                                                float *y, uint64_t ys, int64_t nb) {
    x8_legacy_tile(g, x, xs, nt, y, ys, nb, sizeof(lf_block_q5_1), 64, 32, 16, 0);
}

X8_GEMM(gemm_x8_q4_0, x8_q4_0_tile, 32)
X8_GEMM(gemm_x8_q4_1, x8_q4_1_tile, 32)
X8_GEMM(gemm_x8_q5_0, x8_q5_0_tile, 32)
X8_GEMM(gemm_x8_q5_1, x8_q5_1_tile, 32)
X8_GEMM(gemm_x8_q8_0, x8_q8_0_tile, 32)

/* ---- 8 rows at any addresses, as if repacked --------------------------------
 * The bundle kernel's gate and up rows live in separate cache slots. These
 * kernels transpose block i of the 8 rows into the x8 layout's chunk
 * registers in registers (4-byte words of the 8 rows side by side) and run
 * the x8 step on them: the same bits as gemm_x8 on the 8 rows repacked. */

/* The 8 rows' fp16 scales of block i (rows of `bytes`-byte blocks, the
 * scale first). */
static inline __m256 gather_scales(const uint8_t *const r[8], int64_t off) {
    uint16_t h[8];
    for (int k = 0; k < 8; k++) memcpy(&h[k], r[k] + off, 2);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)h));
}

/* Word k of 16 bytes of each of the 8 rows at r[j] + off, for k < 4:
 * out[k] lane j = word k of row j. */
static inline void transpose_8x4(const uint8_t *const r[8], int64_t off, __m256i out[4]) {
    __m256i a[4];
    for (int j = 0; j < 4; j++)
        a[j] = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(const void *)(r[j + 4] + off)),
                                _mm_loadu_si128((const __m128i *)(const void *)(r[j] + off)));
    const __m256i t0 = _mm256_unpacklo_epi32(a[0], a[1]), t1 = _mm256_unpackhi_epi32(a[0], a[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(a[2], a[3]), t3 = _mm256_unpackhi_epi32(a[2], a[3]);
    out[0] = _mm256_unpacklo_epi64(t0, t2);
    out[1] = _mm256_unpackhi_epi64(t0, t2);
    out[2] = _mm256_unpacklo_epi64(t1, t3);
    out[3] = _mm256_unpackhi_epi64(t1, t3);
}

static inline __attribute__((always_inline)) void rows8_q4_0_tile(const uint8_t *const r[8], const void *x, uint64_t xs,
                                                                   const int nt, float *y, uint64_t ys, int64_t nb) {
    __m256 acc[X8_TILE];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const int64_t off = i * (int64_t)sizeof(lf_block_q4_0);
        __m256i v[4], w[8];
        transpose_8x4(r, off + 2, v);
        q4_0_nibble_chunks(v, w);
        q4_0_x8_step(w, gather_scales(r, off), x, xs, nt, i, acc);
    }
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(y + (uint64_t)t * ys, acc[t]);
}

static inline __attribute__((always_inline)) void rows8_q8_0_tile(const uint8_t *const r[8], const void *x, uint64_t xs,
                                                                   const int nt, float *y, uint64_t ys, int64_t nb) {
    __m256 acc[X8_TILE];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const int64_t off = i * (int64_t)sizeof(lf_block_q8_0);
        __m256i lo[4], hi[4], w[8];
        transpose_8x4(r, off + 2, lo);
        transpose_8x4(r, off + 18, hi);
        for (int c = 0; c < 4; c++) w[c] = lo[c], w[c + 4] = hi[c];
        q8_0_x8_step(w, gather_scales(r, off), x, xs, nt, i, acc);
    }
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(y + (uint64_t)t * ys, acc[t]);
}

#define ROWS8_GEMM(name, tile)                                                                                       \
    static void name(const void *const *rows, const void *x, uint64_t xs, int nt, float *y, uint64_t ys, int64_t n) { \
        const uint8_t *const *r = (const uint8_t *const *)rows;                                                      \
        int t = 0;                                                                                                   \
        for (; t + X8_TILE <= nt; t += X8_TILE) tile(r, tok_blocks(x, xs, t), xs, X8_TILE, y + t * ys, ys, n / 32);   \
        switch (nt - t) {                                                                                            \
        case 3: tile(r, tok_blocks(x, xs, t), xs, 3, y + t * ys, ys, n / 32); break;                                 \
        case 2: tile(r, tok_blocks(x, xs, t), xs, 2, y + t * ys, ys, n / 32); break;                                 \
        case 1: tile(r, tok_blocks(x, xs, t), xs, 1, y + t * ys, ys, n / 32); break;                                 \
        default: break;                                                                                              \
        }                                                                                                            \
    }
ROWS8_GEMM(gemm_rows8_q4_0, rows8_q4_0_tile)
ROWS8_GEMM(gemm_rows8_q8_0, rows8_q8_0_tile)

/* Q4_0 down columns with 8-bit coefficients (kernels.h; the reference is
 * quant_ref.c's). Per 32-element block: the 8 coefficients rounded as
 * lf__i8_coefs rounds them, then column pairs with their bytes interleaved,
 * (q_j[e], q_j+1[e]), through maddubs against the pair's coefficients, the
 * four pairs added as int16 (4 x 2 x 15 x 127, less 8 x 8 x 127 for the
 * offset, stays within 32767), and one multiply-add per element. */
static void axpy_cols_i8_q4_0(const void *const *cols, const float *a, int nc, float *y, int64_t n) {
    const uint8_t *r[LF_AXPY_COLS];
    float av[LF_AXPY_COLS];
    for (int j = 0; j < LF_AXPY_COLS; j++) {
        r[j] = cols[j < nc ? j : 0]; /* padding: coefficient 0 */
        av[j] = j < nc ? a[j] : 0.0f;
    }
    const __m256 va = _mm256_loadu_ps(av), abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m128i m4 = _mm_set1_epi8(0x0F);
    /* pair p's two coefficient bytes, repeated */
    const __m256i pair_sel[4] = {_mm256_set1_epi16(0x0100), _mm256_set1_epi16(0x0302), _mm256_set1_epi16(0x0504),
                                 _mm256_set1_epi16(0x0706)};
    for (int64_t u = 0; u < n / LF_QK; u++) {
        const int64_t off = u * (int64_t)sizeof(lf_block_q4_0);
        const __m256 c = _mm256_mul_ps(gather_scales(r, off), va);
        const __m256 m = _mm256_and_ps(c, abs_mask);
        float s;
        __m256i qi = _mm256_setzero_si256();
        if (_mm256_movemask_ps(_mm256_cmp_ps(m, _mm256_set1_ps(3.40282347e38f), _CMP_NLE_UQ))) {
            s = __builtin_nanf(""); /* not finite: NaN sums, as the reference */
        } else {
            __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            h = _mm_max_ps(h, _mm_movehl_ps(h, h));
            h = _mm_max_ss(h, _mm_movehdup_ps(h));
            const float amax = _mm_cvtss_f32(h);
            if (amax == 0.0f) continue;
            qi = _mm256_cvtps_epi32(_mm256_mul_ps(c, _mm256_set1_ps(127.0f / amax)));
            s = amax / 127.0f;
        }
        const __m128i q16 = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
        const __m256i qb = _mm256_broadcastq_epi64(_mm_packs_epi16(q16, q16));
        __m128i t = _mm_madd_epi16(q16, _mm_set1_epi16(1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
        const __m256i offset = _mm256_set1_epi16((short)(8 * _mm_cvtsi128_si32(t)));
        __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256(); /* elements 0..15, 16..31 */
        for (int p = 0; p < 4; p++) {
            const __m256i coef = _mm256_shuffle_epi8(qb, pair_sel[p]);
            const __m128i v0 = _mm_loadu_si128((const __m128i *)(const void *)(r[2 * p] + off + 2));
            const __m128i v1 = _mm_loadu_si128((const __m128i *)(const void *)(r[2 * p + 1] + off + 2));
            const __m128i l0 = _mm_and_si128(v0, m4), l1 = _mm_and_si128(v1, m4);
            const __m128i h0 = _mm_and_si128(_mm_srli_epi16(v0, 4), m4), h1 = _mm_and_si128(_mm_srli_epi16(v1, 4), m4);
            const __m256i el = _mm256_set_m128i(_mm_unpackhi_epi8(l0, l1), _mm_unpacklo_epi8(l0, l1));
            const __m256i eh = _mm256_set_m128i(_mm_unpackhi_epi8(h0, h1), _mm_unpacklo_epi8(h0, h1));
            lo = _mm256_add_epi16(lo, _mm256_maddubs_epi16(el, coef));
            hi = _mm256_add_epi16(hi, _mm256_maddubs_epi16(eh, coef));
        }
        lo = _mm256_sub_epi16(lo, offset);
        hi = _mm256_sub_epi16(hi, offset);
        const __m256 vs = _mm256_set1_ps(s);
        const __m256i e[4] = {_mm256_cvtepi16_epi32(_mm256_castsi256_si128(lo)), _mm256_cvtepi16_epi32(_mm256_extracti128_si256(lo, 1)),
                              _mm256_cvtepi16_epi32(_mm256_castsi256_si128(hi)), _mm256_cvtepi16_epi32(_mm256_extracti128_si256(hi, 1))};
        float *yu = y + LF_QK * u;
        for (int k = 0; k < 4; k++)
            _mm256_storeu_ps(yu + 8 * k, _mm256_fmadd_ps(vs, _mm256_cvtepi32_ps(e[k]), _mm256_loadu_ps(yu + 8 * k)));
    }
}

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
        [LF_TYPE_Q4_0] = axpy_q4_0, [LF_TYPE_Q4_1] = axpy_q4_1, [LF_TYPE_Q5_0] = axpy_q5_0,
        [LF_TYPE_Q5_1] = axpy_q5_1, [LF_TYPE_Q8_0] = axpy_q8_0, [LF_TYPE_Q4_K] = axpy_q4_K,
        [LF_TYPE_Q5_K] = axpy_q5_K, [LF_TYPE_Q6_K] = axpy_q6_K,
    },
    .dot_rows = {
        [LF_TYPE_F32] = dot_rows_f32, [LF_TYPE_F16] = dot_rows_f16, [LF_TYPE_BF16] = dot_rows_bf16,
        [LF_TYPE_Q4_0] = dot_rows_q4_0, [LF_TYPE_Q4_1] = dot_rows_q4_1, [LF_TYPE_Q5_0] = dot_rows_q5_0,
        [LF_TYPE_Q5_1] = dot_rows_q5_1, [LF_TYPE_Q8_0] = dot_rows_q8_0, [LF_TYPE_Q4_K] = dot_rows_q4_K,
        [LF_TYPE_Q5_K] = dot_rows_q5_K, [LF_TYPE_Q6_K] = dot_rows_q6_K,
    },
    .axpy_cols = {
        [LF_TYPE_F32] = axpy_cols_f32, [LF_TYPE_F16] = axpy_cols_f16, [LF_TYPE_BF16] = axpy_cols_bf16,
        [LF_TYPE_Q4_0] = axpy_cols_q4_0, [LF_TYPE_Q4_1] = axpy_cols_q4_1, [LF_TYPE_Q5_0] = axpy_cols_q5_0,
        [LF_TYPE_Q5_1] = axpy_cols_q5_1, [LF_TYPE_Q8_0] = axpy_cols_q8_0, [LF_TYPE_Q4_K] = axpy_cols_q4_K,
        [LF_TYPE_Q5_K] = axpy_cols_q5_K, [LF_TYPE_Q6_K] = axpy_cols_q6_K,
    },
    .gemm_x8 = {[LF_TYPE_Q4_0] = gemm_x8_q4_0, [LF_TYPE_Q4_1] = gemm_x8_q4_1, [LF_TYPE_Q5_0] = gemm_x8_q5_0,
                [LF_TYPE_Q5_1] = gemm_x8_q5_1, [LF_TYPE_Q8_0] = gemm_x8_q8_0, [LF_TYPE_Q4_K] = gemm_x8_q4_K,
                [LF_TYPE_Q5_K] = gemm_x8_q5_K, [LF_TYPE_Q6_K] = gemm_x8_q6_K},
    .gemm_rows8 = {[LF_TYPE_Q4_0] = gemm_rows8_q4_0, [LF_TYPE_Q8_0] = gemm_rows8_q8_0},
    .axpy_cols_i8 = {[LF_TYPE_Q4_0] = axpy_cols_i8_q4_0},
    .quantize_q8a = quantize_q8a,
};

#ifdef LF_VNNI
const lf_kernels *lf__kernels_avx2_vnni(void) {
    const lf_cpu_features *f = lf__cpu_features_get();
    return f->avx2 && f->fma && f->f16c && f->avx_vnni ? &k_avx2 : NULL;
}
#else
const lf_kernels *lf__kernels_avx2(void) {
    const lf_cpu_features *f = lf__cpu_features_get();
    return f->avx2 && f->fma && f->f16c ? &k_avx2 : NULL;
}
#endif

#endif
