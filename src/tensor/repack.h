/* repack.h - the interleaved weight layout matrix-vector kernels run at the
 * memory-bandwidth limit on.
 *
 * ggml stores a weight row after row. A dot product over one row needs a
 * horizontal sum at the end, and a block's scale waits on the previous
 * block. The x8 layout interleaves groups of 8 rows block by block, so a
 * SIMD register holds the same 4 bytes of 8 rows: one broadcast activation
 * load serves all 8, each 32-bit lane accumulates one row, and the 8 scales
 * of a block convert in one instruction.
 *
 * A group of 8 rows, for each block index i, holds the 8 fp16 scales of the
 * rows' block i (16 bytes), then the rows' payloads in 4-byte chunks: chunk
 * c of row r at 16 + 4 * (8c + r). Q4_0 (16 payload bytes: 144 per group
 * block) and Q8_0 (32: 272) repack so; Q4_1 and Q5_1 put their fp16 mins
 * after the scales, and Q5_0/Q5_1 their 4 high-bit bytes as one chunk per row
 * before the nibbles. The K-quants Q4_K, Q5_K and Q6_K keep their
 * super-block scales per row (8 fp16 each), their 6- and 8-bit sub-block
 * scales byte-major (byte k of the 8 rows side by side, so one 8-byte load
 * gives a sub-block's scales of all 8 rows), and their packed values (and
 * Q5_K's fifth bits) in
 * 4-byte chunks as above (repack.c has the offsets). A group takes exactly the bytes of its
 * 8 rows, so repacking is in place and costs no memory; rows beyond the
 * last whole group stay as they are. */
#ifndef LF_REPACK_H
#define LF_REPACK_H

#include "quant_types.h"

#define LF_X8 8 /* rows per interleaved group */

typedef enum lf_layout {
    LF_LAYOUT_ROWS = 0, /* ggml's: one row after another */
    LF_LAYOUT_X8 = 1,   /* groups of 8 rows interleaved (above), then the remaining rows */
} lf_layout;

/* Whether a type has an x8 layout. */
bool lf__repack_supported(uint32_t type);
/* Rewrites `rows` rows of `cols` elements (row-major, contiguous) in the x8
 * layout, in place; scratch holds LF_X8 rows. The inverse is lf__unpack_x8. */
void lf__repack_x8(uint32_t type, void *data, uint64_t rows, uint64_t cols, void *scratch);
void lf__unpack_x8(uint32_t type, void *data, uint64_t rows, uint64_t cols, void *scratch);
/* lf__repack_x8 from a separate source: dst gets `rows` rows of src (a
 * multiple of LF_X8) in the x8 layout. */
void lf__repack_x8_copy(uint32_t type, void *dst, const void *src, uint64_t rows, uint64_t cols);
/* Copies block `i` of each of the 8 rows of an x8 group into rows[8] in
 * ggml's row layout (one block per row): the reference kernels' view. */
void lf__x8_block_rows(uint32_t type, const void *group, uint64_t i, void *rows);
/* Row r (< LF_X8) of an x8 group of rows of `cols` elements, in ggml's row
 * layout, into row (row_bytes): how a tied embedding table, repacked for
 * the output projection, is still read a token at a time. */
void lf__x8_row(uint32_t type, const void *group, uint32_t r, uint64_t cols, void *row);

#endif
