/* x8_gemm.h - what every ISA file's x8 kernels share (repack.h): the token
 * tile and the gemm_x8 entry that runs a tile function over a batch. A tile
 * function multiplies one group with nt <= X8_TILE tokens, each weight block
 * unpacked once for all of them. */
#ifndef LF_X8_GEMM_H
#define LF_X8_GEMM_H

#define X8_TILE 4

/* Token t's activation blocks. */
static inline const lf_block_q8a *tok_blocks(const void *x, uint64_t stride, int t) {
    return (const lf_block_q8a *)(const void *)((const uint8_t *)x + (uint64_t)t * stride);
}

/* A gemm_x8 entry: tiles of X8_TILE tokens, then the rest; `elems` is the
 * type's block (32, or 256 for the K-quants). */
#define X8_GEMM(name, tile, elems)                                                                                  \
    static __attribute__((unused)) void name(const void *g, const void *x, uint64_t xs, int nt, float *y,           \
                                             uint64_t ys, int64_t n) {                                              \
        int t = 0;                                                                                                  \
        for (; t + X8_TILE <= nt; t += X8_TILE) tile(g, tok_blocks(x, xs, t), xs, X8_TILE, y + t * ys, ys, n / elems); \
        switch (nt - t) {                                                                                           \
        case 3: tile(g, tok_blocks(x, xs, t), xs, 3, y + t * ys, ys, n / elems); break;                             \
        case 2: tile(g, tok_blocks(x, xs, t), xs, 2, y + t * ys, ys, n / elems); break;                             \
        case 1: tile(g, tok_blocks(x, xs, t), xs, 1, y + t * ys, ys, n / elems); break;                             \
        default: break;                                                                                             \
        }                                                                                                           \
    }

#endif
