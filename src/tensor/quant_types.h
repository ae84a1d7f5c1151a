/* quant_types.h - ggml block layouts and per-type traits.
 *
 * Layouts follow ggml exactly, since GGUF files store these blocks verbatim.
 * Weights of the quantized types are multiplied against activations quantized
 * to lf_block_q8a, our own activation format (never stored in files). */
#ifndef LF_QUANT_TYPES_H
#define LF_QUANT_TYPES_H

#include "../common/lf_common.h"

#include <stdbool.h>

#define LF_QK 32    /* elements per block of the 32-element types */
#define LF_QK_K 256 /* elements per super-block of the K-quants */

typedef struct { uint16_t d; uint8_t qs[LF_QK / 2]; } lf_block_q4_0;              /* 18 B */
typedef struct { uint16_t d, m; uint8_t qs[LF_QK / 2]; } lf_block_q4_1;           /* 20 B */
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[LF_QK / 2]; } lf_block_q5_0; /* 22 B */
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[LF_QK / 2]; } lf_block_q5_1; /* 24 B */
typedef struct { uint16_t d; int8_t qs[LF_QK]; } lf_block_q8_0;                   /* 34 B */
typedef struct {
    uint16_t d, dmin;     /* super-block scales for the 6-bit scales and mins */
    uint8_t scales[12];   /* 8 scales and 8 mins, 6 bits each */
    uint8_t qs[LF_QK_K / 2];
} lf_block_q4_K;          /* 144 B */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[LF_QK_K / 8]; /* 5th bit */
    uint8_t qs[LF_QK_K / 2];
} lf_block_q5_K;          /* 176 B */
typedef struct {
    uint8_t ql[LF_QK_K / 2]; /* low 4 bits */
    uint8_t qh[LF_QK_K / 4]; /* high 2 bits */
    int8_t scales[LF_QK_K / 16];
    uint16_t d;
} lf_block_q6_K;          /* 210 B */

/* Activation block: 32 int8 values with a float scale and the sums of each
 * half. The sums let kernels apply offsets and mins (Q4_0's -8, Q4_K's mins,
 * Q6_K's -32 per 16 values) without touching the values again. */
typedef struct {
    float d;
    int16_t sum[2]; /* sum of qs[0..15] and qs[16..31] */
    int8_t qs[LF_QK];
} lf_block_q8a;           /* 40 B */

_Static_assert(sizeof(lf_block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(lf_block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(lf_block_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(lf_block_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(lf_block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(lf_block_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(lf_block_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(lf_block_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(lf_block_q8a) == 40, "q8a layout");

typedef struct lf_type_traits {
    const char *name;
    uint32_t block;      /* elements per block */
    uint32_t block_size; /* bytes per block */
    bool supported;      /* we can compute with it */
} lf_type_traits;

/* Traits for a ggml type id, or NULL if the id is unknown. Known but
 * unsupported types (Q2_K, IQ*...) have traits so files holding them parse. */
const lf_type_traits *lf__type_traits_get(uint32_t type);
/* Bytes of a row of n elements; 0 if n is not a multiple of the block. */
uint64_t lf__type_row_bytes(uint32_t type, uint64_t n);
/* Whether the kernels take q8a activations (quantized types) or float. */
bool lf__type_uses_q8a(uint32_t type);

#endif
