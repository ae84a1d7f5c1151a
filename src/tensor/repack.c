/* repack.c - the x8 interleaved layout (see repack.h). */
#include "repack.h"

#include <string.h>

/* Payload bytes after the fp16 scale of one 32-element block. */
static uint32_t payload_bytes(uint32_t type) {
    switch (type) {
    case LF_TYPE_Q4_0: return LF_QK / 2;
    case LF_TYPE_Q8_0: return LF_QK;
    default: return 0;
    }
}

bool lf_repack_supported(uint32_t type) { return payload_bytes(type) != 0; }

/* One group block from the 8 rows' block i; rows are row_bytes apart. */
static void interleave_block(uint32_t p, const uint8_t *rows, uint64_t row_bytes, uint64_t i, uint8_t *out) {
    const uint64_t bs = 2 + p;
    for (int r = 0; r < LF_X8; r++) {
        const uint8_t *b = rows + r * row_bytes + i * bs;
        memcpy(out + 2 * r, b, 2);
        for (uint32_t c = 0; c < p / 4; c++) memcpy(out + 16 + 4 * (LF_X8 * c + r), b + 2 + 4 * c, 4);
    }
}

static void deinterleave_block(uint32_t p, const uint8_t *in, uint8_t *rows, uint64_t row_bytes, uint64_t i) {
    const uint64_t bs = 2 + p;
    for (int r = 0; r < LF_X8; r++) {
        uint8_t *b = rows + r * row_bytes + i * bs;
        memcpy(b, in + 2 * r, 2);
        for (uint32_t c = 0; c < p / 4; c++) memcpy(b + 2 + 4 * c, in + 16 + 4 * (LF_X8 * c + r), 4);
    }
}

void lf_repack_x8(uint32_t type, void *data, uint64_t rows, uint64_t cols, void *scratch) {
    const uint32_t p = payload_bytes(type);
    const uint64_t row_bytes = lf_type_row_bytes(type, cols), nb = cols / LF_QK, gb = LF_X8 * (2 + p);
    for (uint64_t g = 0; g + LF_X8 <= rows; g += LF_X8) {
        uint8_t *group = (uint8_t *)data + g * row_bytes;
        memcpy(scratch, group, LF_X8 * row_bytes);
        for (uint64_t i = 0; i < nb; i++) interleave_block(p, scratch, row_bytes, i, group + i * gb);
    }
}

void lf_unpack_x8(uint32_t type, void *data, uint64_t rows, uint64_t cols, void *scratch) {
    const uint32_t p = payload_bytes(type);
    const uint64_t row_bytes = lf_type_row_bytes(type, cols), nb = cols / LF_QK, gb = LF_X8 * (2 + p);
    for (uint64_t g = 0; g + LF_X8 <= rows; g += LF_X8) {
        uint8_t *group = (uint8_t *)data + g * row_bytes;
        memcpy(scratch, group, LF_X8 * row_bytes);
        for (uint64_t i = 0; i < nb; i++) deinterleave_block(p, (const uint8_t *)scratch + i * gb, group, row_bytes, i);
    }
}

void lf_x8_block_rows(uint32_t type, const void *group, uint64_t i, void *rows) {
    const uint32_t p = payload_bytes(type);
    deinterleave_block(p, (const uint8_t *)group + i * LF_X8 * (2 + p), rows, 2 + p, 0);
}
