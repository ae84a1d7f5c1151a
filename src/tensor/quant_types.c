/* quant_types.c - the ggml type table. */
#include "quant_types.h"

#include <ctype.h>
#include <strings.h>

static const struct {
    uint32_t id;
    lf_type_traits t;
} k_types[] = {
    {0, {"F32", 1, 4, true}},
    {1, {"F16", 1, 2, true}},
    {2, {"Q4_0", 32, 18, true}},
    {3, {"Q4_1", 32, 20, true}},
    {6, {"Q5_0", 32, 22, true}},
    {7, {"Q5_1", 32, 24, true}},
    {8, {"Q8_0", 32, 34, true}},
    {9, {"Q8_1", 32, 36, false}},
    {10, {"Q2_K", 256, 84, false}},
    {11, {"Q3_K", 256, 110, false}},
    {12, {"Q4_K", 256, 144, true}},
    {13, {"Q5_K", 256, 176, true}},
    {14, {"Q6_K", 256, 210, true}},
    {15, {"Q8_K", 256, 292, false}},
    {16, {"IQ2_XXS", 256, 66, false}},
    {17, {"IQ2_XS", 256, 74, false}},
    {18, {"IQ3_XXS", 256, 98, false}},
    {19, {"IQ1_S", 256, 50, false}},
    {20, {"IQ4_NL", 32, 18, false}},
    {21, {"IQ3_S", 256, 110, false}},
    {22, {"IQ2_S", 256, 82, false}},
    {23, {"IQ4_XS", 256, 136, false}},
    {24, {"I8", 1, 1, false}},
    {25, {"I16", 1, 2, false}},
    {26, {"I32", 1, 4, false}},
    {27, {"I64", 1, 8, false}},
    {28, {"F64", 1, 8, false}},
    {29, {"IQ1_M", 256, 56, false}},
    {30, {"BF16", 1, 2, true}},
    {34, {"TQ1_0", 256, 54, false}},
    {35, {"TQ2_0", 256, 66, false}},
};

const lf_type_traits *lf__type_traits_get(uint32_t type) {
    for (size_t i = 0; i < LF_ARRAY_LEN(k_types); i++)
        if (k_types[i].id == type) return &k_types[i].t;
    return NULL;
}

uint64_t lf__type_row_bytes(uint32_t type, uint64_t n) {
    const lf_type_traits *t = lf__type_traits_get(type);
    if (!t || n % t->block) return 0;
    return n / t->block * t->block_size;
}

bool lf__type_uses_q8a(uint32_t type) {
    return type != LF_TYPE_F32 && type != LF_TYPE_F16 && type != LF_TYPE_BF16;
}

const char *lf_type_name(int type) {
    const lf_type_traits *t = type >= 0 ? lf__type_traits_get((uint32_t)type) : NULL;
    return t ? t->name : "?";
}

bool lf_type_supported(int type) {
    const lf_type_traits *t = type >= 0 ? lf__type_traits_get((uint32_t)type) : NULL;
    return t && t->supported;
}

lf_status lf_type_from_name(const char *name, lf_type *out) {
    if (!name || !out) return LF_E_INVALID_ARG;
    for (size_t i = 0; i < LF_ARRAY_LEN(k_types); i++) {
        if (k_types[i].t.supported && strcasecmp(k_types[i].t.name, name) == 0) {
            *out = (lf_type)k_types[i].id;
            return LF_OK;
        }
    }
    return LF_E_INVALID_ARG;
}
