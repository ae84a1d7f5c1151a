/* arch.c - the architecture table. */
#include "arch.h"

#include <stdio.h>

static const lf_arch k_archs[] = {
    /* Llama 1/2/3.x, Mistral, and whatever else writes itself as llama */
    {.name = "llama", .rope = LF_ROPE_NORM, .rope_freqs = true, .rms_eps = 1e-5f, .rope_freq_base = 10000.0f},
    /* Qwen2 and Qwen2.5 */
    {.name = "qwen2", .rope = LF_ROPE_NEOX, .qkv_bias = true, .rms_eps = 1e-6f, .rope_freq_base = 1000000.0f},
    /* Qwen3 (dense) */
    {.name = "qwen3", .rope = LF_ROPE_NEOX, .qk_norm = true, .rms_eps = 1e-6f, .rope_freq_base = 1000000.0f},
};

const lf_arch *lf__arch_find(lf_gguf_str name) {
    for (size_t i = 0; name.ptr && i < LF_ARRAY_LEN(k_archs); i++)
        if (lf__gguf_str_eq(name, k_archs[i].name)) return &k_archs[i];
    return NULL;
}

const char *lf__arch_names(void) { return "llama, qwen2, qwen3"; }

lf_status lf__arch_of(const lf_gguf *g, const lf_arch **out, lf_err *err) {
    lf_gguf_str arch;
    lf_status st = lf__gguf_get_str(g, "general.architecture", &arch, err);
    if (st) return st;
    if (!arch.ptr) return lf__err_set(err, LF_E_MODEL, "metadata key 'general.architecture' is missing");
    if (!(*out = lf__arch_find(arch)))
        return lf__err_set(err, LF_E_UNSUPPORTED, "general.architecture '%.*s' is not supported (llmflash runs %s)",
                           (int)LF_MIN(arch.len, (uint64_t)32), arch.ptr, lf__arch_names());
    return LF_OK;
}

const char *lf__arch_key(const lf_arch *a, const char *suffix, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.%s", a->name, suffix);
    return buf;
}

lf_status lf__arch_ffn_shape(const lf_gguf *g, uint32_t *n_embd, uint32_t *n_ff, uint32_t *n_layer, lf_err *err) {
    const lf_arch *a;
    char k[64];
    lf_status st;
    if ((st = lf__arch_of(g, &a, err)) ||
        (st = lf__gguf_get_u32(g, lf__arch_key(a, "embedding_length", k, sizeof k), n_embd, err)) ||
        (st = lf__gguf_get_u32(g, lf__arch_key(a, "feed_forward_length", k, sizeof k), n_ff, err)) ||
        (st = lf__gguf_get_u32(g, lf__arch_key(a, "block_count", k, sizeof k), n_layer, err)))
        return st;
    return LF_OK;
}
