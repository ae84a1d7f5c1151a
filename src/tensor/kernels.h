/* kernels.h - dequantize, quantize and dot-product kernels.
 *
 * A weight row of type T is multiplied with an activation vector held either
 * as float (F32/F16/BF16 weights) or as lf_block_q8a blocks (quantized
 * weights, see lf__type_uses_q8a). The scalar table is the reference; SIMD
 * tables must match it up to float summation order, and are chosen once at
 * start-up from what the CPU supports. */
#ifndef LF_KERNELS_H
#define LF_KERNELS_H

#include "quant_types.h"

#define LF_TYPE_ID_MAX 40

/* y += a * row for a row of n elements (the down column of a neuron). */
typedef void (*lf_axpy_fn)(const void *row, float a, float *y, int64_t n);

/* Dot product of one weight row (n elements of the table's type) with an
 * activation (float* or lf_block_q8a*, n elements). */
typedef float (*lf_vec_dot_fn)(const void *w, const void *x, int64_t n);

/* The 8 rows of one x8 group (repack.h) times nt activations x_stride bytes
 * apart: y[t * y_stride + r] = row r . x_t, for r < 8 and t < nt. This one
 * kernel serves single tokens (nt = 1) and prompt batches: each weight
 * block is loaded and unpacked once for all nt activations. */
/* The dot products of nr <= LF_DOT_ROWS rows (any addresses) with one
 * activation, out[r] = rows[r] . x: the rows share each activation load and
 * accumulate independently, and each result has the bits dot[] gives. */
#define LF_DOT_ROWS 4
typedef void (*lf_dot_rows_fn)(const void *const *rows, int nr, const void *x, float *out, int64_t n);

/* y += sum over j < nc <= LF_AXPY_COLS of a[j] * cols[j], y loaded and
 * stored once for all columns; the same bits as nc axpy[] calls in order. */
#define LF_AXPY_COLS 8
typedef void (*lf_axpy_cols_fn)(const void *const *cols, const float *a, int nc, float *y, int64_t n);

typedef void (*lf_gemm_x8_fn)(const void *group, const void *x, uint64_t x_stride, int nt, float *y,
                              uint64_t y_stride, int64_t n);

/* gemm_x8 over two consecutive x8 groups at once (16 rows: the second
 * group 8 rows after the first), writing y[t * y_stride + r] for r < 16:
 * the same bits as gemm_x8 on each group. A 512-bit register then holds
 * one 4-byte chunk of 16 rows, so an activation word is a plain broadcast
 * and each scale multiply serves 16 rows. */
typedef lf_gemm_x8_fn lf_gemm_x16_fn;
/* The same for four consecutive groups (32 rows), r < 32. */
typedef lf_gemm_x8_fn lf_gemm_x32_fn;

/* gemm_x8 for 8 rows at any addresses, in ggml's row layout: the same bits
 * as gemm_x8 on those rows repacked (each block transposed in registers).
 * y[t * y_stride + r] = rows[r] . x_t. */
typedef void (*lf_gemm_rows8_fn)(const void *const *rows, const void *x, uint64_t x_stride, int nt, float *y,
                                 uint64_t y_stride, int64_t n);

typedef struct lf_kernels {
    const char *name;                  /* "scalar", "avx2", "avx2-vnni", "avx512", "avx512-vnni" */
    lf_vec_dot_fn dot[LF_TYPE_ID_MAX]; /* NULL for unsupported types */
    lf_gemm_x8_fn gemm_x8[LF_TYPE_ID_MAX]; /* x8-layout weights; NULL: the type is not repacked */
    lf_gemm_x16_fn gemm_x16[LF_TYPE_ID_MAX]; /* two x8 groups at once; NULL: use gemm_x8 per group */
    lf_gemm_x32_fn gemm_x32[LF_TYPE_ID_MAX]; /* four x8 groups at once; NULL: use gemm_x16 */
    lf_axpy_fn axpy[LF_TYPE_ID_MAX];   /* NULL: use lf__axpy_row's dequantize-and-add */
    lf_dot_rows_fn dot_rows[LF_TYPE_ID_MAX];   /* NULL: lf__dot_rows calls dot[] per row */
    lf_axpy_cols_fn axpy_cols[LF_TYPE_ID_MAX]; /* NULL: lf__axpy_cols calls lf__axpy_row per column */
    lf_gemm_rows8_fn gemm_rows8[LF_TYPE_ID_MAX]; /* NULL: not for this type (use dot_rows) */
    /* axpy_cols with 8-bit coefficients: in each 32-element block, the
     * columns' coefficients a[j] times their block scales are rounded to
     * 8 bits against the largest of them (lf__i8_coefs; the precision the
     * dense kernels' q8a activations have), the block is summed in
     * integers, and each element takes one float multiply-add. Every path
     * gives the scalar reference's bits. NULL: not for this type. */
    lf_axpy_cols_fn axpy_cols_i8[LF_TYPE_ID_MAX];
    /* float -> q8a activation blocks; n multiple of 32 */
    void (*quantize_q8a)(const float *x, lf_block_q8a *y, int64_t n);
} lf_kernels;

const lf_kernels *lf__kernels_scalar(void);
/* Each NULL when not compiled in or when the CPU (or the OS, for the
 * AVX-512 registers' state) lacks what it needs:
 * avx2: AVX2, FMA, F16C; avx2-vnni: those and AVX-VNNI;
 * avx512: AVX-512 F/BW/VL besides avx2's; avx512-vnni: those and AVX512-VNNI. */
const lf_kernels *lf__kernels_avx2(void);
const lf_kernels *lf__kernels_avx2_vnni(void);
const lf_kernels *lf__kernels_avx512(void);
const lf_kernels *lf__kernels_avx512_vnni(void);
/* Every path this CPU can run, the reference first, the fastest last;
 * returns how many (at most LF_KERNEL_PATHS). */
#define LF_KERNEL_PATHS 5
int lf__kernels_available(const lf_kernels *out[LF_KERNEL_PATHS]);
/* The fastest table this CPU can run. LLMFLASH_KERNELS=scalar|avx2|avx512
 * forces a family (its fastest variant); a family the CPU cannot run, or an
 * unknown name, is refused: NULL, with the reason in why. */
const lf_kernels *lf__kernels_select(char *why, size_t cap);

/* The coefficients c[0..nc) of one block, rounded: q[j] * scale ~ c[j]
 * with q in -127..127 and scale = max |c| / 127; *qsum = the sum of q.
 * Returns the scale: 0 when every c is 0 (nothing to add), NaN when one is
 * not finite (the block's sums become NaN, as float products would). */
static inline float lf__i8_coefs(const float *c, int nc, int8_t *q, int *qsum) {
    float amax = 0.0f;
    int bad = 0;
    for (int j = 0; j < nc; j++) {
        const float m = __builtin_fabsf(c[j]);
        bad |= !(m <= 3.40282347e38f);
        amax = m > amax ? m : amax;
    }
    *qsum = 0;
    for (int j = 0; j < nc; j++) q[j] = 0;
    if (bad) return __builtin_nanf("");
    if (amax == 0.0f) return 0.0f;
    const float inv = 127.0f / amax;
    for (int j = 0; j < nc; j++) {
        q[j] = (int8_t)__builtin_lrintf(c[j] * inv);
        *qsum += q[j];
    }
    return amax / 127.0f;
}

/* Reference dequantization of n elements (n multiple of the block). */
void lf__dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);
/* y += a * row, for a row of n elements of `type`, with the kernels' fast
 * path when there is one; scratch holds n floats. */
void lf__axpy_row(const lf_kernels *k, uint32_t type, const void *row, float a, float *y, int64_t n, float *scratch);
/* rows . x for nr <= LF_DOT_ROWS rows, through dot_rows[] or dot[]. */
void lf__dot_rows(const lf_kernels *k, uint32_t type, const void *const *rows, int nr, const void *x, float *out,
                  int64_t n);
/* out[r] = row r of W . x for r in [a, b), W's rows of n elements in
 * ggml's layout one after another: lf__dot_rows LF_DOT_ROWS rows at a time. */
void lf__dot_row_range(const lf_kernels *k, uint32_t type, const void *W, uint64_t a, uint64_t b, const void *x,
                       float *out, int64_t n);
/* y += sum of a[j] * cols[j] for nc <= LF_AXPY_COLS columns, through
 * axpy_cols[] or lf__axpy_row; scratch holds n floats. */
void lf__axpy_cols(const lf_kernels *k, uint32_t type, const void *const *cols, const float *a, int nc, float *y,
                   int64_t n, float *scratch);
/* Quantizes n floats to any supported type; LF_E_UNSUPPORTED otherwise. */
lf_status lf__quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

#endif
