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
    /* Qwen3-MoE: Qwen3's attention, routed experts in every layer */
    {.name = "qwen3moe", .rope = LF_ROPE_NEOX, .qk_norm = true, .moe_only = true, .rms_eps = 1e-6f,
     .rope_freq_base = 1000000.0f},
};

const lf_arch *lf__arch_find(lf_gguf_str name) {
    for (size_t i = 0; name.ptr && i < LF_ARRAY_LEN(k_archs); i++)
        if (lf__gguf_str_eq(name, k_archs[i].name)) return &k_archs[i];
    return NULL;
}

const char *lf__arch_names(void) { return "llama, qwen2, qwen3, qwen3moe"; }

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

/* The mixture-of-experts keys whose variants route differently from the
 * softmax-top-k-renormalise this runs: refused by name rather than run wrong. */
static lf_status refuse_moe_variants(const lf_gguf *g, const lf_arch *a, lf_err *err) {
    char k[64];
    uint32_t u;
    float f;
    bool b;
    lf_status st;
    if ((st = lf__gguf_get_u32_or(g, lf__arch_key(a, "expert_shared_count", k, sizeof k), 0, &u, err))) return st;
    if (u) return lf__err_set(err, LF_E_UNSUPPORTED, "%s = %u: shared experts are not supported", k, u);
    if ((st = lf__gguf_get_u32_or(g, lf__arch_key(a, "expert_gating_func", k, sizeof k), 1, &u, err))) return st;
    if (u != 1) return lf__err_set(err, LF_E_UNSUPPORTED, "%s = %u: only softmax gating (1) is supported", k, u);
    if ((st = lf__gguf_get_f32_or(g, lf__arch_key(a, "expert_weights_scale", k, sizeof k), 1.0f, &f, err))) return st;
    if (f != 1.0f) return lf__err_set(err, LF_E_UNSUPPORTED, "%s = %g: scaled expert weights are not supported", k, f);
    if ((st = lf__gguf_get_bool_or(g, lf__arch_key(a, "expert_weights_norm", k, sizeof k), true, &b, err))) return st;
    if (!b) return lf__err_set(err, LF_E_UNSUPPORTED, "%s = false: only renormalised expert weights are supported", k);
    if ((st = lf__gguf_get_u32_or(g, lf__arch_key(a, "expert_group_count", k, sizeof k), 1, &u, err))) return st;
    if (u > 1) return lf__err_set(err, LF_E_UNSUPPORTED, "%s = %u: grouped expert routing is not supported", k, u);
    if ((st = lf__gguf_get_u32_or(g, lf__arch_key(a, "leading_dense_block_count", k, sizeof k), 0, &u, err))) return st;
    if (u) return lf__err_set(err, LF_E_UNSUPPORTED, "%s = %u: dense layers before the expert layers are not supported", k, u);
    return LF_OK;
}

lf_status lf__arch_ffn_shape(const lf_gguf *g, lf_ffn_shape *out, lf_err *err) {
    const lf_arch *a;
    char k[64], kx[64], ku[64];
    lf_status st;
    memset(out, 0, sizeof *out);
    if ((st = lf__arch_of(g, &a, err)) ||
        (st = lf__gguf_get_u32(g, lf__arch_key(a, "embedding_length", k, sizeof k), &out->n_embd, err)) ||
        (st = lf__gguf_get_u32(g, lf__arch_key(a, "block_count", k, sizeof k), &out->n_layer, err)) ||
        (st = lf__gguf_get_u32_or(g, lf__arch_key(a, "expert_count", kx, sizeof kx), 0, &out->n_expert, err)))
        return st;
    if (out->n_expert <= 1) {
        if (a->moe_only)
            return lf__err_set(err, LF_E_MODEL, "%s is %u: a %s model routes between experts", kx, out->n_expert, a->name);
        out->n_expert = out->n_expert_used = 1;
        return lf__gguf_get_u32(g, lf__arch_key(a, "feed_forward_length", k, sizeof k), &out->n_ff, err);
    }
    if ((st = refuse_moe_variants(g, a, err))) return st;
    if ((st = lf__gguf_get_u32(g, lf__arch_key(a, "expert_used_count", ku, sizeof ku), &out->n_expert_used, err)))
        return st;
    if (lf__gguf_find(g, lf__arch_key(a, "expert_feed_forward_length", k, sizeof k)))
        st = lf__gguf_get_u32(g, k, &out->n_ff, err);
    else
        st = lf__gguf_get_u32(g, lf__arch_key(a, "feed_forward_length", k, sizeof k), &out->n_ff, err);
    if (st) return st;
    if (out->n_expert > 1024 || out->n_expert_used == 0 || out->n_expert_used > out->n_expert)
        return lf__err_set(err, LF_E_MODEL, "%s %u with %s %u: 1 to %s experts routed of at most 1024", ku,
                           out->n_expert_used, kx, out->n_expert, kx);
    if (out->n_ff == 0 || (uint64_t)out->n_ff * out->n_expert > (1u << 22))
        return lf__err_set(err, LF_E_MODEL, "%s %u experts of %u neurons: out of range", kx, out->n_expert, out->n_ff);
    return LF_OK;
}
