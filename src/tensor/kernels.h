/* kernels.h - dequantize, quantize and dot-product kernels.
 *
 * A weight row of type T is multiplied with an activation vector held either
 * as float (F32/F16/BF16 weights) or as lf_block_q8a blocks (quantized
 * weights, see lf_type_uses_q8a). The scalar table is the reference; SIMD
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

typedef struct lf_kernels {
    const char *name;                  /* "scalar", "avx2" */
    lf_vec_dot_fn dot[LF_TYPE_ID_MAX]; /* NULL for unsupported types */
    lf_axpy_fn axpy[LF_TYPE_ID_MAX];   /* NULL: use lf_axpy_row's dequantize-and-add */
    /* float -> q8a activation blocks; n multiple of 32 */
    void (*quantize_q8a)(const float *x, lf_block_q8a *y, int64_t n);
} lf_kernels;

const lf_kernels *lf_kernels_scalar(void);
/* NULL when not compiled in or the CPU lacks AVX2/FMA/F16C. */
const lf_kernels *lf_kernels_avx2(void);
/* The fastest table this CPU can run; LLMFLASH_KERNELS=scalar forces the
 * reference (for debugging and for tests). */
const lf_kernels *lf_kernels_best(void);

/* Reference dequantization of n elements (n multiple of the block). */
void lf_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);
/* y += a * row, for a row of n elements of `type`, with the kernels' fast
 * path when there is one; scratch holds n floats. */
void lf_axpy_row(const lf_kernels *k, uint32_t type, const void *row, float a, float *y, int64_t n, float *scratch);
/* Quantizes n floats to any supported type; LF_E_UNSUPPORTED otherwise. */
lf_status lf_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

#endif
