/* quant_ref.c - scalar reference kernels for every supported type.
 *
 * Element positions inside the K-quant super-blocks are computed by small
 * mapping functions shared by dequantize, quantize and dot, so the three can
 * only agree. */
#include "kernels.h"
#include "repack.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#define FP16(x) lf__fp16_to_fp32(x)

/* ---- element position maps ---------------------------------------------- */

/* Q4_K/Q5_K element e of a super-block: sub-block j = e/32 has its values in
 * qs[32*(j/2) + e%32], low nibble for even j, high for odd; Q5_K's fifth bit
 * is bit j of qh[e%32]. */
static inline int k4_byte(int e) { return 32 * (e / 64) + e % 32; }
static inline int k4_shift(int e) { return 4 * ((e / 32) & 1); }

/* Q6_K element e: 128-element halves h, 32-element groups g inside. */
static inline int k6_ql(int e) { return 64 * (e / 128) + 32 * ((e % 128 / 32) & 1) + e % 32; }
static inline int k6_ql_shift(int e) { return 4 * ((e % 128 / 32) >> 1); }
static inline int k6_qh(int e) { return 32 * (e / 128) + e % 32; }
static inline int k6_qh_shift(int e) { return 2 * (e % 128 / 32); }
static inline int k6_scale(int e) { return 8 * (e / 128) + 2 * (e % 128 / 32) + (e % 32) / 16; }

/* 6-bit scale and min j (0..7) of a Q4_K/Q5_K block. */
static inline void k4_scale_min(const uint8_t *q, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void k4_pack_scales(uint8_t *q, const uint8_t *sc, const uint8_t *m) {
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        q[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        q[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
    }
}

/* Integer value (before scale/offset) of element e of each block type. */
/* 32-element blocks keep element e in the low (e < 16) or high nibble of qs[e % 16]. */
static inline int nib(const uint8_t *qs, int e) { return (qs[e % 16] >> (4 * (e / 16))) & 0xF; }
static inline int q5_val(const uint8_t *qs, const uint8_t *qh, int e) {
    return nib(qs, e) | (int)(((lf__load_u32(qh) >> e) & 1) << 4);
}
static inline int q4k_val(const lf_block_q4_K *b, int e) { return (b->qs[k4_byte(e)] >> k4_shift(e)) & 0xF; }
static inline int q5k_val(const lf_block_q5_K *b, int e) {
    return ((b->qs[k4_byte(e)] >> k4_shift(e)) & 0xF) | (((b->qh[e % 32] >> (e / 32)) & 1) << 4);
}
static inline int q6k_val(const lf_block_q6_K *b, int e) {
    return (((b->ql[k6_ql(e)] >> k6_ql_shift(e)) & 0xF) | (((b->qh[k6_qh(e)] >> k6_qh_shift(e)) & 3) << 4)) - 32;
}

/* ---- dequantize --------------------------------------------------------- */

void lf__dequantize_row(uint32_t type, const void *src, float *y, int64_t n) {
    switch (type) {
    case LF_TYPE_F32: memcpy(y, src, (size_t)n * 4); return;
    case LF_TYPE_F16: for (int64_t i = 0; i < n; i++) y[i] = FP16(((const uint16_t *)src)[i]); return;
    case LF_TYPE_BF16: for (int64_t i = 0; i < n; i++) y[i] = lf__bf16_to_fp32(((const uint16_t *)src)[i]); return;
    case LF_TYPE_Q4_0: {
        const lf_block_q4_0 *b = src;
        for (int64_t i = 0; i < n / 32; i++) {
            const float d = FP16(b[i].d);
            float *o = y + i * 32;
            for (int e = 0; e < 16; e++) { /* low nibbles, then high: vectorizes */
                o[e] = d * (float)((b[i].qs[e] & 0xF) - 8);
                o[e + 16] = d * (float)((b[i].qs[e] >> 4) - 8);
            }
        }
        return;
    }
    case LF_TYPE_Q4_1: {
        const lf_block_q4_1 *b = src;
        for (int64_t i = 0; i < n / 32; i++)
            for (int e = 0; e < 32; e++)
                y[i * 32 + e] = FP16(b[i].d) * (float)nib(b[i].qs, e) +
                                FP16(b[i].m);
        return;
    }
    case LF_TYPE_Q5_0: {
        const lf_block_q5_0 *b = src;
        for (int64_t i = 0; i < n / 32; i++)
            for (int e = 0; e < 32; e++) y[i * 32 + e] = FP16(b[i].d) * (float)(q5_val(b[i].qs, b[i].qh, e) - 16);
        return;
    }
    case LF_TYPE_Q5_1: {
        const lf_block_q5_1 *b = src;
        for (int64_t i = 0; i < n / 32; i++)
            for (int e = 0; e < 32; e++)
                y[i * 32 + e] = FP16(b[i].d) * (float)q5_val(b[i].qs, b[i].qh, e) + FP16(b[i].m);
        return;
    }
    case LF_TYPE_Q8_0: {
        const lf_block_q8_0 *b = src;
        for (int64_t i = 0; i < n / 32; i++) {
            const float d = FP16(b[i].d);
            for (int e = 0; e < 32; e++) y[i * 32 + e] = d * (float)b[i].qs[e];
        }
        return;
    }
    case LF_TYPE_Q4_K: {
        const lf_block_q4_K *b = src;
        for (int64_t i = 0; i < n / 256; i++) {
            const float d = FP16(b[i].d), dmin = FP16(b[i].dmin);
            for (int e = 0; e < 256; e++) {
                int sc, m;
                k4_scale_min(b[i].scales, e / 32, &sc, &m);
                y[i * 256 + e] = d * (float)sc * (float)q4k_val(&b[i], e) - dmin * (float)m;
            }
        }
        return;
    }
    case LF_TYPE_Q5_K: {
        const lf_block_q5_K *b = src;
        for (int64_t i = 0; i < n / 256; i++) {
            const float d = FP16(b[i].d), dmin = FP16(b[i].dmin);
            for (int e = 0; e < 256; e++) {
                int sc, m;
                k4_scale_min(b[i].scales, e / 32, &sc, &m);
                y[i * 256 + e] = d * (float)sc * (float)q5k_val(&b[i], e) - dmin * (float)m;
            }
        }
        return;
    }
    case LF_TYPE_Q6_K: {
        const lf_block_q6_K *b = src;
        for (int64_t i = 0; i < n / 256; i++) {
            const float d = FP16(b[i].d);
            for (int e = 0; e < 256; e++)
                y[i * 256 + e] = d * (float)b[i].scales[k6_scale(e)] * (float)q6k_val(&b[i], e);
        }
        return;
    }
    default:
        for (int64_t i = 0; i < n; i++) y[i] = NAN;
        return;
    }
}

void lf__axpy_row(const lf_kernels *k, uint32_t type, const void *row, float a, float *y, int64_t n, float *scratch) {
    if (k && type < LF_TYPE_ID_MAX && k->axpy[type]) {
        k->axpy[type](row, a, y, n);
        return;
    }
    const float *x = row;
    if (type != LF_TYPE_F32) {
        lf__dequantize_row(type, row, scratch, n);
        x = scratch;
    }
    for (int64_t i = 0; i < n; i++) y[i] = fmaf(a, x[i], y[i]); /* one rounding, as the SIMD paths' FMA */
}

void lf__dot_rows(const lf_kernels *k, uint32_t type, const void *const *rows, int nr, const void *x, float *out,
                  int64_t n) {
    if (k->dot_rows[type]) {
        k->dot_rows[type](rows, nr, x, out, n);
        return;
    }
    for (int r = 0; r < nr; r++) out[r] = k->dot[type](rows[r], x, n);
}

void lf__dot_row_range(const lf_kernels *k, uint32_t type, const void *W, uint64_t a, uint64_t b, const void *x,
                       float *out, int64_t n) {
    const uint64_t rb = lf__type_row_bytes(type, (uint64_t)n);
    for (uint64_t r = a; r < b; r += LF_DOT_ROWS) {
        const int nr = (int)(b - r < LF_DOT_ROWS ? b - r : LF_DOT_ROWS);
        const void *rows[LF_DOT_ROWS];
        for (int i = 0; i < nr; i++) rows[i] = (const uint8_t *)W + (r + i) * rb;
        lf__dot_rows(k, type, rows, nr, x, out + r, n);
    }
}

void lf__axpy_cols(const lf_kernels *k, uint32_t type, const void *const *cols, const float *a, int nc, float *y,
                   int64_t n, float *scratch) {
    if (k->axpy_cols[type]) {
        k->axpy_cols[type](cols, a, nc, y, n);
        return;
    }
    for (int j = 0; j < nc; j++) lf__axpy_row(k, type, cols[j], a[j], y, n, scratch);
}

/* ---- quantize ----------------------------------------------------------- */

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
/* Plain comparisons instead of fmaxf/fminf: without -ffast-math those are
 * libm calls, which made quantizing several times slower. */
static inline float maxf(float a, float b) { return a > b ? a : b; }
static inline float minf(float a, float b) { return a < b ? a : b; }
static inline int nearest(float x) { return (int)lrintf(x); }

/* Truncates x to an integer in [lo, hi]. The range is checked before the
 * cast: converting a float outside int's range, or NaN (weights of a
 * corrupt model), is undefined behaviour. NaN gives lo. */
static inline int trunc_clamped(float x, int lo, int hi) {
    if (!(x >= (float)lo)) return lo;
    if (x >= (float)hi) return hi;
    return (int)x;
}

/* Value with the largest magnitude, keeping its sign (the first of equals). */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++) amax = maxf(amax, fabsf(x[j]));
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) == amax) return x[j];
    return 0.0f;
}

static void quantize_q4_0(const float *x, lf_block_q4_0 *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        const float d = signed_absmax(x, 32) / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = lf__fp32_to_fp16(d);
        for (int e = 0; e < 16; e++) {
            const int lo = trunc_clamped(x[e] * id + 8.5f, 0, 15), hi = trunc_clamped(x[e + 16] * id + 8.5f, 0, 15);
            b[i].qs[e] = (uint8_t)(lo | hi << 4);
        }
    }
}

static void minmax(const float *x, int n, float *lo, float *hi) {
    *lo = FLT_MAX;
    *hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        *lo = minf(*lo, x[j]);
        *hi = maxf(*hi, x[j]);
    }
}

static void quantize_q4_1(const float *x, lf_block_q4_1 *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float lo, hi;
        minmax(x, 32, &lo, &hi);
        const float d = (hi - lo) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = lf__fp32_to_fp16(d);
        b[i].m = lf__fp32_to_fp16(lo);
        memset(b[i].qs, 0, 16);
        for (int e = 0; e < 32; e++)
            b[i].qs[e % 16] |= (uint8_t)(trunc_clamped((x[e] - lo) * id + 0.5f, 0, 15) << (4 * (e / 16)));
    }
}

static void put_q5(uint8_t *qs, uint8_t *qh, const int *q) {
    uint32_t h = 0;
    memset(qs, 0, 16);
    for (int e = 0; e < 32; e++) {
        qs[e % 16] |= (uint8_t)((q[e] & 0xF) << (4 * (e / 16)));
        h |= (uint32_t)((q[e] >> 4) & 1) << e;
    }
    memcpy(qh, &h, 4);
}

static void quantize_q5_0(const float *x, lf_block_q5_0 *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        const float d = signed_absmax(x, 32) / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int q[32];
        for (int e = 0; e < 32; e++) q[e] = trunc_clamped(x[e] * id + 16.5f, 0, 31);
        b[i].d = lf__fp32_to_fp16(d);
        put_q5(b[i].qs, b[i].qh, q);
    }
}

static void quantize_q5_1(const float *x, lf_block_q5_1 *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float lo, hi;
        minmax(x, 32, &lo, &hi);
        const float d = (hi - lo) / 31.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int q[32];
        for (int e = 0; e < 32; e++) q[e] = trunc_clamped((x[e] - lo) * id + 0.5f, 0, 31);
        b[i].d = lf__fp32_to_fp16(d);
        b[i].m = lf__fp32_to_fp16(lo);
        put_q5(b[i].qs, b[i].qh, q);
    }
}

static void quantize_q8_0(const float *x, lf_block_q8_0 *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        const float d = fabsf(signed_absmax(x, 32)) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = lf__fp32_to_fp16(d);
        for (int e = 0; e < 32; e++) b[i].qs[e] = (int8_t)clampi(nearest(x[e] * id), -127, 127);
    }
}

/* Q4_K/Q5_K: x ≈ d*sc_j*q - dmin*m_j per 32-element sub-block j, with q in
 * [0, nmax]. Each sub-block's range [min(0, lo), hi] sets its scale and min;
 * the 6-bit sc/m are relative to the super-block's d/dmin. Values are then
 * quantized against the rounded scales so the error stays within a step. */
static void quantize_k4(const float *x, int nmax, uint16_t *dd, uint16_t *ddmin, uint8_t *scales, int *q) {
    float scale[8], minv[8], max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; j++) {
        float lo, hi;
        minmax(x + 32 * j, 32, &lo, &hi);
        lo = minf(lo, 0.0f);
        hi = maxf(hi, lo);
        scale[j] = (hi - lo) / (float)nmax;
        minv[j] = -lo;
        max_scale = maxf(max_scale, scale[j]);
        max_min = maxf(max_min, minv[j]);
    }
    const float d = max_scale / 63.0f, dmin = max_min / 63.0f;
    *dd = lf__fp32_to_fp16(d);
    *ddmin = lf__fp32_to_fp16(dmin);
    const float dq = FP16(*dd), dminq = FP16(*ddmin);
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; j++) {
        /* round the scale up so the top of the range stays representable */
        sc[j] = (uint8_t)(dq > 0.0f ? trunc_clamped(ceilf(scale[j] / dq - 1e-4f), 0, 63) : 0);
        m[j] = (uint8_t)clampi(dminq > 0.0f ? nearest(minv[j] / dminq) : 0, 0, 63);
        const float s = dq * (float)sc[j], mm = dminq * (float)m[j], is = s > 0.0f ? 1.0f / s : 0.0f;
        for (int e = 0; e < 32; e++) q[32 * j + e] = clampi(nearest((x[32 * j + e] + mm) * is), 0, nmax);
    }
    k4_pack_scales(scales, sc, m);
}

static void quantize_q4_K(const float *x, lf_block_q4_K *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 256) {
        int q[256];
        quantize_k4(x, 15, &b[i].d, &b[i].dmin, b[i].scales, q);
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int e = 0; e < 256; e++) b[i].qs[k4_byte(e)] |= (uint8_t)(q[e] << k4_shift(e));
    }
}

static void quantize_q5_K(const float *x, lf_block_q5_K *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 256) {
        int q[256];
        quantize_k4(x, 31, &b[i].d, &b[i].dmin, b[i].scales, q);
        memset(b[i].qs, 0, sizeof b[i].qs);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int e = 0; e < 256; e++) {
            b[i].qs[k4_byte(e)] |= (uint8_t)((q[e] & 0xF) << k4_shift(e));
            b[i].qh[e % 32] |= (uint8_t)(((q[e] >> 4) & 1) << (e / 32));
        }
    }
}

/* Q6_K: x ≈ d*sc_g*q per 16 elements, q in [-32, 31], sc_g an int8. */
static void quantize_q6_K(const float *x, lf_block_q6_K *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float scale[16], gmax[16] = {0}, max_scale = 0.0f;
        for (int e = 0; e < 256; e++) gmax[k6_scale(e)] = maxf(gmax[k6_scale(e)], fabsf(x[e]));
        for (int g = 0; g < 16; g++) {
            scale[g] = gmax[g] / 31.0f;
            max_scale = maxf(max_scale, scale[g]);
        }
        const float d = max_scale / 127.0f;
        b[i].d = lf__fp32_to_fp16(d);
        const float dq = FP16(b[i].d);
        for (int g = 0; g < 16; g++)
            b[i].scales[g] = (int8_t)(dq > 0.0f ? trunc_clamped(ceilf(scale[g] / dq - 1e-4f), 0, 127) : 0);
        memset(b[i].ql, 0, sizeof b[i].ql);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int e = 0; e < 256; e++) {
            const float s = dq * (float)b[i].scales[k6_scale(e)];
            const int q = clampi(s > 0.0f ? nearest(x[e] / s) : 0, -32, 31) + 32;
            b[i].ql[k6_ql(e)] |= (uint8_t)((q & 0xF) << k6_ql_shift(e));
            b[i].qh[k6_qh(e)] |= (uint8_t)((q >> 4) << k6_qh_shift(e));
        }
    }
}

lf_status lf__quantize_row(uint32_t type, const float *x, void *dst, int64_t n) {
    const lf_type_traits *t = lf__type_traits_get(type);
    if (!t || !t->supported || n % t->block) return LF_E_UNSUPPORTED;
    const int64_t nb = n / t->block;
    switch (type) {
    case LF_TYPE_F32: memcpy(dst, x, (size_t)n * 4); break;
    case LF_TYPE_F16: for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = lf__fp32_to_fp16(x[i]); break;
    case LF_TYPE_BF16: for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = lf__fp32_to_bf16(x[i]); break;
    case LF_TYPE_Q4_0: quantize_q4_0(x, dst, nb); break;
    case LF_TYPE_Q4_1: quantize_q4_1(x, dst, nb); break;
    case LF_TYPE_Q5_0: quantize_q5_0(x, dst, nb); break;
    case LF_TYPE_Q5_1: quantize_q5_1(x, dst, nb); break;
    case LF_TYPE_Q8_0: quantize_q8_0(x, dst, nb); break;
    case LF_TYPE_Q4_K: quantize_q4_K(x, dst, nb); break;
    case LF_TYPE_Q5_K: quantize_q5_K(x, dst, nb); break;
    case LF_TYPE_Q6_K: quantize_q6_K(x, dst, nb); break;
    default: return LF_E_UNSUPPORTED;
    }
    return LF_OK;
}

/* ---- activations -------------------------------------------------------- */

static void quantize_q8a_ref(const float *x, lf_block_q8a *y, int64_t n) {
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float amax = 0.0f;
        for (int e = 0; e < 32; e++) amax = maxf(amax, fabsf(x[e]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = d;
        int s0 = 0, s1 = 0;
        for (int e = 0; e < 32; e++) {
            const int q = nearest(x[e] * id);
            y[i].qs[e] = (int8_t)q;
            if (e < 16) s0 += q;
            else s1 += q;
        }
        y[i].sum[0] = (int16_t)s0;
        y[i].sum[1] = (int16_t)s1;
    }
}

/* ---- dot products -------------------------------------------------------- */

/* The float dots sum in the SIMD paths' order: 16 lanes of fused
 * multiply-adds, folded pairwise, then the tail in sequence. Every path then
 * gives the same bits for float weights, and the golden texts of float
 * models hold with any path forced. */
static float fold16(const float *acc) {
    float s8[8], s4[4];
    for (int i = 0; i < 8; i++) s8[i] = acc[i] + acc[i + 8];
    for (int i = 0; i < 4; i++) s4[i] = s8[i] + s8[i + 4];
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

#define LANE_DOT(name, load)                                                                       \
    static float name(const void *w, const void *x, int64_t n) {                                   \
        const float *b = x;                                                                        \
        float acc[16] = {0};                                                                       \
        int64_t i = 0;                                                                             \
        for (; i + 16 <= n; i += 16)                                                               \
            for (int l = 0; l < 16; l++) acc[l] = fmaf(load(w, i + l), b[i + l], acc[l]);          \
        float s = fold16(acc);                                                                     \
        for (; i < n; i++) s = fmaf(load(w, i), b[i], s);                                          \
        return s;                                                                                  \
    }
static inline float load_f32(const void *w, int64_t i) { return ((const float *)w)[i]; }
static inline float load_f16(const void *w, int64_t i) { return FP16(((const uint16_t *)w)[i]); }
LANE_DOT(dot_f32, load_f32)
static inline float load_bf16(const void *w, int64_t i) { return lf__bf16_to_fp32(((const uint16_t *)w)[i]); }
LANE_DOT(dot_f16, load_f16)
LANE_DOT(dot_bf16, load_bf16)


static float dot_q4_0(const void *w, const void *x, int64_t n) {
    const lf_block_q4_0 *b = w;
    const lf_block_q8a *y = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        int isum = 0;
        for (int e = 0; e < 32; e++) isum += nib(b[i].qs, e) * y[i].qs[e];
        isum -= 8 * (y[i].sum[0] + y[i].sum[1]);
        s += FP16(b[i].d) * y[i].d * (float)isum;
    }
    return s;
}

static float dot_q4_1(const void *w, const void *x, int64_t n) {
    const lf_block_q4_1 *b = w;
    const lf_block_q8a *y = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        int isum = 0;
        for (int e = 0; e < 32; e++) isum += nib(b[i].qs, e) * y[i].qs[e];
        s += y[i].d * (FP16(b[i].d) * (float)isum + FP16(b[i].m) * (float)(y[i].sum[0] + y[i].sum[1]));
    }
    return s;
}

static float dot_q5_0(const void *w, const void *x, int64_t n) {
    const lf_block_q5_0 *b = w;
    const lf_block_q8a *y = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        int isum = 0;
        for (int e = 0; e < 32; e++) isum += q5_val(b[i].qs, b[i].qh, e) * y[i].qs[e];
        isum -= 16 * (y[i].sum[0] + y[i].sum[1]);
        s += FP16(b[i].d) * y[i].d * (float)isum;
    }
    return s;
}

static float dot_q5_1(const void *w, const void *x, int64_t n) {
    const lf_block_q5_1 *b = w;
    const lf_block_q8a *y = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        int isum = 0;
        for (int e = 0; e < 32; e++) isum += q5_val(b[i].qs, b[i].qh, e) * y[i].qs[e];
        s += y[i].d * (FP16(b[i].d) * (float)isum + FP16(b[i].m) * (float)(y[i].sum[0] + y[i].sum[1]));
    }
    return s;
}

static float dot_q8_0(const void *w, const void *x, int64_t n) {
    const lf_block_q8_0 *b = w;
    const lf_block_q8a *y = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        int isum = 0;
        for (int e = 0; e < 32; e++) isum += b[i].qs[e] * y[i].qs[e];
        s += FP16(b[i].d) * y[i].d * (float)isum;
    }
    return s;
}

static float dot_q4_K(const void *w, const void *x, int64_t n) {
    const lf_block_q4_K *b = w;
    const lf_block_q8a *y = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = FP16(b[i].d), dmin = FP16(b[i].dmin);
        for (int j = 0; j < 8; j++) {
            const lf_block_q8a *yb = &y[i * 8 + j];
            int sc, m, isum = 0;
            k4_scale_min(b[i].scales, j, &sc, &m);
            for (int e = 0; e < 32; e++) isum += q4k_val(&b[i], 32 * j + e) * yb->qs[e];
            s += yb->d * (d * (float)sc * (float)isum - dmin * (float)m * (float)(yb->sum[0] + yb->sum[1]));
        }
    }
    return s;
}

static float dot_q5_K(const void *w, const void *x, int64_t n) {
    const lf_block_q5_K *b = w;
    const lf_block_q8a *y = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = FP16(b[i].d), dmin = FP16(b[i].dmin);
        for (int j = 0; j < 8; j++) {
            const lf_block_q8a *yb = &y[i * 8 + j];
            int sc, m, isum = 0;
            k4_scale_min(b[i].scales, j, &sc, &m);
            for (int e = 0; e < 32; e++) isum += q5k_val(&b[i], 32 * j + e) * yb->qs[e];
            s += yb->d * (d * (float)sc * (float)isum - dmin * (float)m * (float)(yb->sum[0] + yb->sum[1]));
        }
    }
    return s;
}

static float dot_q6_K(const void *w, const void *x, int64_t n) {
    const lf_block_q6_K *b = w;
    const lf_block_q8a *y = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = FP16(b[i].d);
        for (int j = 0; j < 8; j++) {
            const lf_block_q8a *yb = &y[i * 8 + j];
            int isum = 0;
            for (int e = 0; e < 32; e++) {
                const int el = 32 * j + e;
                isum += b[i].scales[k6_scale(el)] * q6k_val(&b[i], el) * yb->qs[e];
            }
            s += d * yb->d * (float)isum;
        }
    }
    return s;
}

/* x8 groups through the row kernels: each block of the 8 rows is copied
 * back to ggml's layout and dotted on its own, so this checks the layout
 * independently of any SIMD path. */
static void gemm_x8_rows(uint32_t type, lf_vec_dot_fn dot, const void *group, const void *x, uint64_t x_stride, int nt,
                         float *y, uint64_t y_stride, int64_t n) {
    const uint32_t bs = lf__type_traits_get(type)->block_size, be = lf__type_traits_get(type)->block;
    uint8_t rows[LF_X8 * sizeof(lf_block_q6_K)];
    for (int t = 0; t < nt; t++) {
        const lf_block_q8a *xt = (const lf_block_q8a *)(const void *)((const uint8_t *)x + (uint64_t)t * x_stride);
        float *yt = y + (uint64_t)t * y_stride;
        for (int r = 0; r < LF_X8; r++) yt[r] = 0.0f;
        for (int64_t i = 0; i < n / be; i++) {
            lf__x8_block_rows(type, group, (uint64_t)i, rows);
            for (int r = 0; r < LF_X8; r++) yt[r] += dot(rows + r * bs, xt + i * (be / LF_QK), be);
        }
    }
}

static void gemm_x8_q4_0(const void *g, const void *x, uint64_t xs, int nt, float *y, uint64_t ys, int64_t n) {
    gemm_x8_rows(LF_TYPE_Q4_0, dot_q4_0, g, x, xs, nt, y, ys, n);
}

static void gemm_x8_q8_0(const void *g, const void *x, uint64_t xs, int nt, float *y, uint64_t ys, int64_t n) {
    gemm_x8_rows(LF_TYPE_Q8_0, dot_q8_0, g, x, xs, nt, y, ys, n);
}

static void gemm_x8_q4_K(const void *g, const void *x, uint64_t xs, int nt, float *y, uint64_t ys, int64_t n) {
    gemm_x8_rows(LF_TYPE_Q4_K, dot_q4_K, g, x, xs, nt, y, ys, n);
}

static void gemm_x8_q6_K(const void *g, const void *x, uint64_t xs, int nt, float *y, uint64_t ys, int64_t n) {
    gemm_x8_rows(LF_TYPE_Q6_K, dot_q6_K, g, x, xs, nt, y, ys, n);
}

static void gemm_x8_q4_1(const void *g, const void *x, uint64_t xs, int nt, float *y, uint64_t ys, int64_t n) {
    gemm_x8_rows(LF_TYPE_Q4_1, dot_q4_1, g, x, xs, nt, y, ys, n);
}

static void gemm_x8_q5_0(const void *g, const void *x, uint64_t xs, int nt, float *y, uint64_t ys, int64_t n) {
    gemm_x8_rows(LF_TYPE_Q5_0, dot_q5_0, g, x, xs, nt, y, ys, n);
}

static void gemm_x8_q5_1(const void *g, const void *x, uint64_t xs, int nt, float *y, uint64_t ys, int64_t n) {
    gemm_x8_rows(LF_TYPE_Q5_1, dot_q5_1, g, x, xs, nt, y, ys, n);
}

static void gemm_x8_q5_K(const void *g, const void *x, uint64_t xs, int nt, float *y, uint64_t ys, int64_t n) {
    gemm_x8_rows(LF_TYPE_Q5_K, dot_q5_K, g, x, xs, nt, y, ys, n);
}

/* Q4_0 down columns with 8-bit coefficients (kernels.h): the reference. */
static void axpy_cols_i8_q4_0(const void *const *cols, const float *a, int nc, float *y, int64_t n) {
    for (int64_t u = 0; u < n / LF_QK; u++) {
        float c[LF_AXPY_COLS];
        for (int j = 0; j < nc; j++) c[j] = a[j] * lf__fp16_to_fp32(((const lf_block_q4_0 *)cols[j])[u].d);
        int8_t q[LF_AXPY_COLS];
        int qsum;
        const float s = lf__i8_coefs(c, nc, q, &qsum);
        if (s == 0.0f) continue;
        for (int e = 0; e < LF_QK; e++) {
            int acc = -8 * qsum;
            for (int j = 0; j < nc; j++) {
                const uint8_t b = ((const lf_block_q4_0 *)cols[j])[u].qs[e % 16];
                acc += q[j] * (e < 16 ? b & 0x0F : b >> 4);
            }
            y[LF_QK * u + e] = fmaf(s, (float)acc, y[LF_QK * u + e]);
        }
    }
}

static const lf_kernels k_scalar = {
    .name = "scalar",
    .dot = {
        [LF_TYPE_F32] = dot_f32, [LF_TYPE_F16] = dot_f16, [LF_TYPE_BF16] = dot_bf16,
        [LF_TYPE_Q4_0] = dot_q4_0, [LF_TYPE_Q4_1] = dot_q4_1, [LF_TYPE_Q5_0] = dot_q5_0,
        [LF_TYPE_Q5_1] = dot_q5_1, [LF_TYPE_Q8_0] = dot_q8_0, [LF_TYPE_Q4_K] = dot_q4_K,
        [LF_TYPE_Q5_K] = dot_q5_K, [LF_TYPE_Q6_K] = dot_q6_K,
    },
    .gemm_x8 = {[LF_TYPE_Q4_0] = gemm_x8_q4_0, [LF_TYPE_Q4_1] = gemm_x8_q4_1, [LF_TYPE_Q5_0] = gemm_x8_q5_0,
                [LF_TYPE_Q5_1] = gemm_x8_q5_1, [LF_TYPE_Q8_0] = gemm_x8_q8_0, [LF_TYPE_Q4_K] = gemm_x8_q4_K,
                [LF_TYPE_Q5_K] = gemm_x8_q5_K, [LF_TYPE_Q6_K] = gemm_x8_q6_K},
    .axpy_cols_i8 = {[LF_TYPE_Q4_0] = axpy_cols_i8_q4_0},
    .quantize_q8a = quantize_q8a_ref,
};

const lf_kernels *lf__kernels_scalar(void) { return &k_scalar; }
