/* repack.c - the x8 interleaved layout (see repack.h). */
#include "repack.h"

#include <string.h>

/* Where each part of one row's block goes in a group block. Chunked parts
 * (the packed values) are interleaved in 4-byte chunks, chunk c of row r at
 * `at + 4 * (8c + r)`; byte parts (scales) byte by byte, byte k of row r at
 * `at + 8k + r`. Offsets `from` are in the row's ggml block. */
typedef struct part {
    uint16_t from, len, at;
    bool chunked;
} part;

typedef struct x8_layout {
    uint32_t block_bytes; /* of one row's block */
    int n_parts;
    part parts[6];
} x8_layout;

static const x8_layout *layout_of(uint32_t type) {
    /* d first (fp16 scales, kept whole per row: bytes 2r, 2r+1), then the rest */
    static const x8_layout q4_0 = {18, 2, {{0, 2, 0, false}, {2, 16, 16, true}}};
    static const x8_layout q8_0 = {34, 2, {{0, 2, 0, false}, {2, 32, 16, true}}};
    static const x8_layout q4_1 = {20, 3, {{0, 2, 0, false}, {2, 2, 16, false}, {4, 16, 32, true}}};
    /* Q5_0/Q5_1: the 4 bytes of high bits are one chunk per row */
    static const x8_layout q5_0 = {22, 3, {{0, 2, 0, false}, {2, 4, 16, true}, {6, 16, 48, true}}};
    static const x8_layout q5_1 = {24, 4, {{0, 2, 0, false}, {2, 2, 16, false}, {4, 4, 32, true}, {8, 16, 64, true}}};
    /* Q4_K: d, dmin (16 + 16), the 12 scale bytes byte-major (96), qs chunked */
    static const x8_layout q4_K = {144, 4, {{0, 2, 0, false}, {2, 2, 16, false}, {4, 12, 32, false}, {16, 128, 128, true}}};
    /* Q5_K: as Q4_K, with qh chunked before qs */
    static const x8_layout q5_K = {176, 5, {{0, 2, 0, false}, {2, 2, 16, false}, {4, 12, 32, false}, {16, 32, 128, true}, {48, 128, 384, true}}};
    /* Q6_K (ql 128, qh 64, scales 16, d): d, scales byte-major, then per half
     * of the block its qh and ql chunked, in the order the kernels read them
     * (x8_kquants.h: Q6X8_QH, Q6X8_QL) */
    static const x8_layout q6_K = {210, 6, {{208, 2, 0, false}, {192, 16, 16, false}, {128, 32, 144, true},
                                            {0, 64, 400, true}, {160, 32, 912, true}, {64, 64, 1168, true}}};
    switch (type) {
    case LF_TYPE_Q4_0: return &q4_0;
    case LF_TYPE_Q4_1: return &q4_1;
    case LF_TYPE_Q5_0: return &q5_0;
    case LF_TYPE_Q5_1: return &q5_1;
    case LF_TYPE_Q8_0: return &q8_0;
    case LF_TYPE_Q5_K: return &q5_K;
    case LF_TYPE_Q4_K: return &q4_K;
    case LF_TYPE_Q6_K: return &q6_K;
    default: return NULL;
    }
}

bool lf__repack_supported(uint32_t type) { return layout_of(type) != NULL; }

static inline void move_part(const part *p, int r, uint8_t *block, uint8_t *group, bool to_group) {
    uint8_t *b = block + p->from;
    if (p->chunked) { /* 4-byte chunks, 8 rows apart */
        uint8_t *g = group + p->at + 4 * r;
        for (uint32_t j = 0; j < p->len; j += 4, g += 4 * LF_X8, b += 4) {
            if (to_group) memcpy(g, b, 4);
            else memcpy(b, g, 4);
        }
    } else if (p->len == 2) { /* an fp16 scale */
        uint8_t *g = group + p->at + 2 * r;
        if (to_group) memcpy(g, b, 2);
        else memcpy(b, g, 2);
    } else { /* bytes, 8 rows apart */
        uint8_t *g = group + p->at + r;
        for (uint32_t j = 0; j < p->len; j++, g += LF_X8) {
            if (to_group) *g = b[j];
            else b[j] = *g;
        }
    }
}

static void interleave_block(const x8_layout *L, const uint8_t *rows, uint64_t row_bytes, uint64_t i, uint8_t *out) {
    for (int r = 0; r < LF_X8; r++) {
        uint8_t *b = (uint8_t *)rows + r * row_bytes + i * L->block_bytes;
        for (int k = 0; k < L->n_parts; k++) move_part(&L->parts[k], r, b, out, true);
    }
}

static void deinterleave_block(const x8_layout *L, const uint8_t *in, uint8_t *rows, uint64_t row_bytes, uint64_t i) {
    for (int r = 0; r < LF_X8; r++) {
        uint8_t *b = rows + r * row_bytes + i * L->block_bytes;
        for (int k = 0; k < L->n_parts; k++) move_part(&L->parts[k], r, b, (uint8_t *)in, false);
    }
}

void lf__repack_x8(uint32_t type, void *data, uint64_t rows, uint64_t cols, void *scratch) {
    const x8_layout *L = layout_of(type);
    const uint64_t row_bytes = lf__type_row_bytes(type, cols), nb = row_bytes / L->block_bytes, gb = LF_X8 * L->block_bytes;
    for (uint64_t g = 0; g + LF_X8 <= rows; g += LF_X8) {
        uint8_t *group = (uint8_t *)data + g * row_bytes;
        memcpy(scratch, group, LF_X8 * row_bytes);
        for (uint64_t i = 0; i < nb; i++) interleave_block(L, scratch, row_bytes, i, group + i * gb);
    }
}

void lf__repack_x8_copy(uint32_t type, void *dst, const void *src, uint64_t rows, uint64_t cols) {
    const x8_layout *L = layout_of(type);
    const uint64_t row_bytes = lf__type_row_bytes(type, cols), nb = row_bytes / L->block_bytes, gb = LF_X8 * L->block_bytes;
    for (uint64_t g = 0; g + LF_X8 <= rows; g += LF_X8) {
        const uint8_t *from = (const uint8_t *)src + g * row_bytes;
        uint8_t *group = (uint8_t *)dst + g * row_bytes;
        for (uint64_t i = 0; i < nb; i++) interleave_block(L, from, row_bytes, i, group + i * gb);
    }
}

void lf__unpack_x8(uint32_t type, void *data, uint64_t rows, uint64_t cols, void *scratch) {
    const x8_layout *L = layout_of(type);
    const uint64_t row_bytes = lf__type_row_bytes(type, cols), nb = row_bytes / L->block_bytes, gb = LF_X8 * L->block_bytes;
    for (uint64_t g = 0; g + LF_X8 <= rows; g += LF_X8) {
        uint8_t *group = (uint8_t *)data + g * row_bytes;
        memcpy(scratch, group, LF_X8 * row_bytes);
        for (uint64_t i = 0; i < nb; i++) deinterleave_block(L, (const uint8_t *)scratch + i * gb, group, row_bytes, i);
    }
}

void lf__x8_block_rows(uint32_t type, const void *group, uint64_t i, void *rows) {
    const x8_layout *L = layout_of(type);
    deinterleave_block(L, (const uint8_t *)group + i * LF_X8 * L->block_bytes, rows, L->block_bytes, 0);
}

void lf__x8_row(uint32_t type, const void *group, uint32_t r, uint64_t cols, void *row) {
    const x8_layout *L = layout_of(type);
    const uint64_t nb = lf__type_row_bytes(type, cols) / L->block_bytes;
    uint8_t blocks[LF_X8 * 256];
    for (uint64_t i = 0; i < nb; i++) {
        lf__x8_block_rows(type, group, i, blocks);
        memcpy((uint8_t *)row + i * L->block_bytes, blocks + r * L->block_bytes, L->block_bytes);
    }
}
