/* matmul.h - a weight times a batch of activations, split over a pool.
 *
 * The one entry point for every dense product of the forward pass: a single
 * token is a batch of one. Weights in the x8 layout go through the kernels'
 * gemm_x8 (8 rows per pass, each weight block unpacked once for every token
 * of the batch); rows in ggml's layout through the row dot products. */
#ifndef LF_MATMUL_H
#define LF_MATMUL_H

#include "model.h"

/* y[t * y_stride + r] = row r of w . x_t for t < nt. x_t is
 * (const uint8_t *)x + t * x_stride: floats for float weight types, q8a
 * blocks for the quantized ones (lf__type_uses_q8a). */
void lf__matmul(lf_pool *pool, const lf_kernels *k, const lf_weight *w, const void *x, uint64_t x_stride, int nt,
                float *y, uint64_t y_stride);

#endif
