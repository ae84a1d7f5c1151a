/* synth.c - GGUF files of every supported architecture with seeded random weights.
 *
 * Benchmarks at real scale need 7B-shaped models that cannot be downloaded
 * here. The writer streams tensor by tensor, a few rows at a time, so memory
 * stays in megabytes whatever the model size. */
#include "synth_sparse.h"
#include "../gguf/gguf.h"
#include "../tensor/kernels.h"
#include "../arch/arch.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Mixtures of experts with a routing skew: the embeddings' shared
 * component, per element (see route_dot). */
#define ROUTE_SHARED 0.25

/* Rows generated and quantized per write: bounds memory to a few MiB. */
#define SYNTH_ROWS_PER_CHUNK 64

typedef struct shape_preset {
    const char *name;
    uint32_t n_embd, n_layer, n_ff, n_head, n_head_kv, n_vocab, n_ctx;
    lf_activation act;
    double sparsity, hot, temporal; /* 0 sparsity: plain random weights */
    const char *arch;               /* NULL: llama */
    uint32_t head_dim;              /* 0: n_embd / n_head */
    float rope_freq_base;           /* 0: the architecture's default */
    bool rope_freqs, tied;
    uint32_t n_expert, n_expert_used; /* 0: a dense FFN */
    double routing_skew;
} shape_preset;

static const shape_preset k_presets[] = {
    {"tiny", 256, 4, 768, 4, 4, 512, 512, LF_ACT_SILU_GATED, 0, 0, 0, NULL, 0, 0, false, false, 0, 0, 0.0},
    {"small", 1024, 8, 2816, 16, 16, 32000, 2048, LF_ACT_SILU_GATED, 0, 0, 0, NULL, 0, 0, false, false, 0, 0, 0.0},
    {"1b", 2048, 16, 5632, 32, 4, 32000, 2048, LF_ACT_SILU_GATED, 0, 0, 0, NULL, 0, 0, false, false, 0, 0, 0.0},
    {"llama2-7b", 4096, 32, 11008, 32, 32, 32000, 4096, LF_ACT_SILU_GATED, 0, 0, 0, NULL, 0, 0, false, false, 0, 0, 0.0},
    {"mistral-7b", 4096, 32, 14336, 32, 8, 32000, 4096, LF_ACT_SILU_GATED, 0, 0, 0, NULL, 0, 0, false, false, 0, 0, 0.0},
    {"llama2-13b", 5120, 40, 13824, 40, 40, 32000, 4096, LF_ACT_SILU_GATED, 0, 0, 0, NULL, 0, 0, false, false, 0, 0, 0.0},
    /* ReluLLaMA / OPT-like activity, and SwiGLU at the sparsity the real
     * stories260K predictor holds within 1% perplexity */
    {"llama2-7b-relu", 4096, 32, 11008, 32, 32, 32000, 4096, LF_ACT_RELU_GATED, 0.95, 0.8, 2.0, NULL, 0, 0, false, false, 0, 0, 0.0},
    {"llama2-7b-silu", 4096, 32, 11008, 32, 32, 32000, 4096, LF_ACT_SILU_GATED, 0.3, 0, 0, NULL, 0, 0, false, false, 0, 0, 0.0},
    {"tiny-relu", 256, 4, 768, 4, 4, 512, 512, LF_ACT_RELU_GATED, 0.95, 0.8, 2.0, NULL, 0, 0, false, false, 0, 0, 0.0},
    {"tiny-silu", 256, 4, 768, 4, 4, 512, 512, LF_ACT_SILU_GATED, 0.3, 0, 0, NULL, 0, 0, false, false, 0, 0, 0.0},
    /* the shapes of the models people run today (vocabularies as published;
     * give --tokenizer-from a real one to match it) */
    {"llama3.1-8b", 4096, 32, 14336, 32, 8, 128256, 8192, LF_ACT_SILU_GATED, 0, 0, 0, "llama", 0, 500000.0f, true, false, 0, 0, 0.0},
    {"llama3.2-1b", 2048, 16, 8192, 32, 8, 128256, 8192, LF_ACT_SILU_GATED, 0, 0, 0, "llama", 64, 500000.0f, true, true, 0, 0, 0.0},
    {"qwen2.5-7b", 3584, 28, 18944, 28, 4, 152064, 32768, LF_ACT_SILU_GATED, 0, 0, 0, "qwen2", 0, 0, false, false, 0, 0, 0.0},
    {"qwen2.5-0.5b", 896, 24, 4864, 14, 2, 151936, 32768, LF_ACT_SILU_GATED, 0, 0, 0, "qwen2", 0, 0, false, true, 0, 0, 0.0},
    {"qwen3-8b", 4096, 36, 12288, 32, 8, 151936, 40960, LF_ACT_SILU_GATED, 0, 0, 0, "qwen3", 128, 0, false, false, 0, 0, 0.0},
    {"qwen3-0.6b", 1024, 28, 3072, 16, 8, 151936, 40960, LF_ACT_SILU_GATED, 0, 0, 0, "qwen3", 128, 0, false, true, 0, 0, 0.0},
    /* the same features at test size */
    {"tiny-llama3", 256, 2, 768, 4, 2, 512, 512, LF_ACT_SILU_GATED, 0, 0, 0, "llama", 0, 500000.0f, true, true, 0, 0, 0.0},
    {"tiny-qwen2", 256, 2, 768, 4, 2, 512, 512, LF_ACT_SILU_GATED, 0, 0, 0, "qwen2", 0, 0, false, false, 0, 0, 0.0},
    {"tiny-qwen3", 256, 2, 768, 4, 2, 512, 512, LF_ACT_SILU_GATED, 0, 0, 0, "qwen3", 96, 0, false, true, 0, 0, 0.0},
    /* mixtures of experts: Mixtral's layout and Qwen3-MoE's */
    {"mixtral-8x7b", 4096, 32, 14336, 32, 8, 32000, 32768, LF_ACT_SILU_GATED, 0, 0, 0, "llama", 0, 1000000.0f, false,
     false, 8, 2, 0.0},
    {"qwen3-30b-a3b", 2048, 48, 768, 32, 4, 151936, 40960, LF_ACT_SILU_GATED, 0, 0, 0, "qwen3moe", 128, 0, false, false,
     128, 8, 0.5},
    {"tiny-mixtral", 256, 2, 256, 4, 2, 512, 512, LF_ACT_SILU_GATED, 0, 0, 0, "llama", 0, 1000000.0f, false, false, 8, 2,
     0.0},
    {"tiny-qwen3moe", 256, 2, 128, 4, 2, 512, 512, LF_ACT_SILU_GATED, 0, 0, 0, "qwen3moe", 96, 0, false, false, 16, 4,
     1.0},
};

const char *lf_synth_shape_names(void) {
    return "tiny, small, 1b, llama2-7b, mistral-7b, llama2-13b, llama2-7b-relu, llama2-7b-silu, tiny-relu, tiny-silu, "
           "llama3.1-8b, llama3.2-1b, qwen2.5-7b, qwen2.5-0.5b, qwen3-8b, qwen3-0.6b, tiny-llama3, tiny-qwen2, tiny-qwen3, "
           "mixtral-8x7b, qwen3-30b-a3b, tiny-mixtral, tiny-qwen3moe";
}

lf_status lf_synth_shape_preset(const char *name, lf_synth_params *p) {
    if (!name || !p) return LF_E_INVALID_ARG;
    for (size_t i = 0; i < LF_ARRAY_LEN(k_presets); i++) {
        const shape_preset *s = &k_presets[i];
        if (strcmp(s->name, name) == 0) {
            p->n_embd = s->n_embd;
            p->n_layer = s->n_layer;
            p->n_ff = s->n_ff;
            p->n_head = s->n_head;
            p->n_head_kv = s->n_head_kv;
            p->n_vocab = s->n_vocab;
            p->n_ctx = s->n_ctx;
            p->activation = s->act;
            p->sparsity = s->sparsity;
            p->hot = s->hot;
            p->temporal = s->temporal;
            p->arch = s->arch;
            p->head_dim = s->head_dim;
            p->rope_freq_base = s->rope_freq_base;
            p->rope_freqs = s->rope_freqs;
            p->tied = s->tied;
            p->n_expert = s->n_expert;
            p->n_expert_used = s->n_expert_used;
            p->routing_skew = s->routing_skew;
            return LF_OK;
        }
    }
    return LF_E_INVALID_ARG;
}

lf_synth_params lf_synth_default_params(void) {
    lf_synth_params p = {0};
    lf_synth_shape_preset("tiny", &p);
    p.type = LF_TYPE_Q8_0;
    p.activation = LF_ACT_SILU_GATED;
    p.seed = 1;
    return p;
}

/* Where a row length is not a multiple of 256, llama.cpp stores K-quant
 * tensors in a 32-element type; do the same. */
static uint32_t type_for_cols(uint32_t type, uint64_t cols) {
    if (cols % 256 == 0) return type;
    switch (type) {
    case LF_TYPE_Q4_K: return LF_TYPE_Q5_0;
    case LF_TYPE_Q5_K: return LF_TYPE_Q5_1;
    case LF_TYPE_Q6_K: return LF_TYPE_Q8_0;
    default: return type;
    }
}

typedef struct tensor_plan {
    char name[64];
    uint32_t type;
    uint64_t rows, cols;
    float scale; /* standard deviation of the weights */
    float mean;  /* of vectors (norms near 1, biases 0); matrices have mean 0 */
    lf_sparse_role role; /* with sparsity: how the design shapes it */
    uint32_t n_mat;      /* matrices stacked in it (experts), rows counting all of them; 0: 1 */
    int32_t router_layer; /* a router's layer (its rows are skewed), else -1 */
} tensor_plan;

static void plan_add(tensor_plan *t, size_t *k, const char *name, uint32_t type, uint64_t rows, uint64_t cols,
                     float scale, lf_sparse_role role) {
    snprintf(t[*k].name, sizeof t[*k].name, "%s", name);
    t[*k].type = type_for_cols(type, cols);
    t[*k].rows = rows;
    t[*k].cols = cols;
    t[*k].scale = scale;
    t[*k].role = role;
    t[*k].router_layer = -1;
    (*k)++;
}

/* llama.cpp's rule for the layers whose attn_v and ffn_down get more bits
 * in its _M mixes: the first and last eighth, and every third between. */
static bool q4_k_m_more_bits(uint32_t l, uint32_t n) {
    return l < n / 8 || l >= 7 * n / 8 || (l - n / 8) % 3 == 2;
}

static const char *layer_name(char *buf, size_t cap, uint32_t l, const char *what) {
    snprintf(buf, cap, "blk.%u.%s.weight", l, what);
    return buf;
}

/* Vectors (norms, biases) are F32, mean + sd * N(0, 1). */
static void plan_vec(tensor_plan *t, size_t *k, const char *name, uint64_t n, float mean, float sd) {
    plan_add(t, k, name, LF_TYPE_F32, 1, n, sd, LF_SPARSE_RANDOM);
    t[*k - 1].type = LF_TYPE_F32;
    t[*k - 1].mean = mean;
}

static uint32_t head_dim_of(const lf_synth_params *p) { return p->head_dim ? p->head_dim : p->n_embd / p->n_head; }

/* Tensors in llama.cpp's order. Weights have unit-variance rows after the
 * matrix product (sd 1/sqrt(fan-in)); norms are all ones, except Q/K norms,
 * which vary around 1 as trained ones do, and biases are N(0, 0.5). */
static lf_status plan_tensors(const lf_synth_params *p, const lf_arch *a, tensor_plan **out, size_t *n_out) {
    const uint64_t d = p->n_embd, hd = head_dim_of(p), q = (uint64_t)p->n_head * hd, kv = (uint64_t)p->n_head_kv * hd,
                   ff = p->n_ff;
    const bool gated = p->activation != LF_ACT_RELU;
    const size_t n = 4 + (size_t)p->n_layer * 15;
    tensor_plan *t = calloc(n, sizeof *t);
    if (!t) return LF_E_NOMEM;
    size_t k = 0;
    char nm[64];
    const float sd = 1.0f / sqrtf((float)d), sq = 1.0f / sqrtf((float)q), sf = 1.0f / sqrtf((float)ff);
    /* with sparsity, the roles the design gives each tensor (synth_sparse.h) */
    const bool sp = p->sparsity > 0.0;
    const lf_sparse_role R = LF_SPARSE_RANDOM;
    const lf_type ty = p->q4_k_m ? LF_TYPE_Q4_K : p->type;
    plan_add(t, &k, "token_embd.weight", ty, p->n_vocab, d, 1.0f, sp ? LF_SPARSE_EMBED : R);
    /* a routing skew needs a direction every token shares (routing_bias) */
    if (p->n_expert > 1 && p->routing_skew > 0.0) t[k - 1].mean = (float)ROUTE_SHARED;
    if (p->rope_freqs) plan_vec(t, &k, "rope_freqs.weight", hd / 2, 0.0f, 0.0f); /* values: llama31_rope_freqs */
    for (uint32_t l = 0; l < p->n_layer; l++) {
        const bool first = sp && l == 0;
        const lf_type more = p->q4_k_m && q4_k_m_more_bits(l, p->n_layer) ? LF_TYPE_Q6_K : ty;
        plan_vec(t, &k, layer_name(nm, sizeof nm, l, "attn_norm"), d, 1.0f, 0.0f);
        plan_add(t, &k, layer_name(nm, sizeof nm, l, "attn_q"), ty, q, d, sd, first ? LF_SPARSE_Q0 : R);
        plan_add(t, &k, layer_name(nm, sizeof nm, l, "attn_k"), ty, kv, d, sd, first ? LF_SPARSE_K0 : R);
        plan_add(t, &k, layer_name(nm, sizeof nm, l, "attn_v"), more, kv, d, sd, first ? LF_SPARSE_V0 : R);
        if (a->qkv_bias) {
            snprintf(nm, sizeof nm, "blk.%u.attn_q.bias", l), plan_vec(t, &k, nm, q, 0.0f, 0.5f);
            snprintf(nm, sizeof nm, "blk.%u.attn_k.bias", l), plan_vec(t, &k, nm, kv, 0.0f, 0.5f);
            snprintf(nm, sizeof nm, "blk.%u.attn_v.bias", l), plan_vec(t, &k, nm, kv, 0.0f, 0.5f);
        }
        if (a->qk_norm) {
            plan_vec(t, &k, layer_name(nm, sizeof nm, l, "attn_q_norm"), hd, 1.0f, 0.2f);
            plan_vec(t, &k, layer_name(nm, sizeof nm, l, "attn_k_norm"), hd, 1.0f, 0.2f);
        }
        plan_add(t, &k, layer_name(nm, sizeof nm, l, "attn_output"), ty, d, q, sq,
                 first ? LF_SPARSE_O0 : sp ? LF_SPARSE_QUIET : R);
        plan_vec(t, &k, layer_name(nm, sizeof nm, l, "ffn_norm"), d, 1.0f, 0.0f);
        if (p->n_expert > 1) { /* the router (F32, as llama.cpp keeps it), then the experts stacked */
            const uint32_t ne = p->n_expert;
            plan_add(t, &k, layer_name(nm, sizeof nm, l, "ffn_gate_inp"), LF_TYPE_F32, ne, d, sd, R);
            t[k - 1].router_layer = (int32_t)l;
            if (gated) plan_add(t, &k, layer_name(nm, sizeof nm, l, "ffn_gate_exps"), ty, ne * ff, d, sd, R);
            plan_add(t, &k, layer_name(nm, sizeof nm, l, "ffn_up_exps"), ty, ne * ff, d, sd, R);
            plan_add(t, &k, layer_name(nm, sizeof nm, l, "ffn_down_exps"), more, ne * d, ff, sf, R);
            for (size_t i = k - (gated ? 3 : 2); i < k; i++) t[i].n_mat = ne;
            continue;
        }
        if (gated) plan_add(t, &k, layer_name(nm, sizeof nm, l, "ffn_gate"), ty, ff, d, sd, sp ? LF_SPARSE_GATE : R);
        plan_add(t, &k, layer_name(nm, sizeof nm, l, "ffn_up"), ty, ff, d, sd,
                 !sp ? R : gated ? LF_SPARSE_UP : LF_SPARSE_GATE);
        plan_add(t, &k, layer_name(nm, sizeof nm, l, "ffn_down"), more, d, ff, sf, sp ? LF_SPARSE_QUIET : R);
    }
    plan_vec(t, &k, "output_norm.weight", d, 1.0f, 0.0f);
    if (!p->tied) plan_add(t, &k, "output.weight", p->q4_k_m ? LF_TYPE_Q6_K : ty, p->n_vocab, d, sd, R);
    *out = t;
    *n_out = k;
    return LF_OK;
}

/* Routing skew. Trained routers favour some experts for most tokens; a
 * random one favours none. With a skew, every embedding gets a shared
 * component (ROUTE_SHARED per element: small, or every token would look
 * alike to attention and route alike), which the residual stream carries
 * into every layer's FFN input x, where it makes sum(x) about route_dot
 * (the RMS norm of ROUTE_SHARED + N(0, 1)). Each router row's own sum is
 * taken out (it would bias it on that direction at random). Adding b_e / that to each element of expert
 * e's router row then adds about b_e to its logit: b_e = -skew * ln(rank_e
 * + 1) makes routing probabilities fall off as (rank + 1)^-skew, Zipf-like,
 * at layer 0 (less deep down, where attention and FFN outputs dilute the
 * shared component). */
static double route_dot(uint64_t n_embd) { return (double)n_embd * ROUTE_SHARED / sqrt(1.0 + ROUTE_SHARED * ROUTE_SHARED); }

/* Llama 3.1's rope scaling (factor 8, low and high frequency factors 1 and
 * 4, over an original context of 8192), as its converters write it: the
 * divisor of each rotary frequency. */
static void llama31_rope_freqs(float base, uint32_t n_rot, float *out) {
    const double factor = 8.0, low = 1.0, high = 4.0, orig = 8192.0;
    const double low_wavelen = orig / low, high_wavelen = orig / high;
    for (uint32_t i = 0; i < n_rot / 2; i++) {
        const double freq = 1.0 / pow(base, 2.0 * i / n_rot), wavelen = 2.0 * M_PI / freq;
        if (wavelen < high_wavelen) out[i] = 1.0f;
        else if (wavelen > low_wavelen) out[i] = (float)factor;
        else {
            const double smooth = (orig / wavelen - low) / (high - low);
            out[i] = (float)(1.0 / ((1.0 - smooth) / factor + smooth));
        }
    }
}

/* The architecture row (check_params has refused unknown names). */
static const lf_arch *synth_arch(const lf_synth_params *p) {
    return lf__arch_find((lf_gguf_str){p->arch ? p->arch : "llama", strlen(p->arch ? p->arch : "llama")});
}

static float synth_rope_base(const lf_synth_params *p) {
    return p->rope_freq_base > 0.0f ? p->rope_freq_base : synth_arch(p)->rope_freq_base;
}

static lf_status check_params(const lf_synth_params *p, lf_err *err) {
    if (!p->n_embd || !p->n_layer || !p->n_ff || !p->n_head || !p->n_head_kv || !p->n_vocab)
        return lf__err_set(err, LF_E_INVALID_ARG, "every dimension must be positive");
    if (!synth_arch(p))
        return lf__err_set(err, LF_E_INVALID_ARG, "architecture '%s' is not one synth writes (%s)", p->arch, lf__arch_names());
    if (synth_arch(p)->moe_only && p->n_expert <= 1)
        return lf__err_set(err, LF_E_INVALID_ARG, "%s routes between experts: give n_expert above 1", p->arch);
    if (p->n_expert > 1 && (p->n_expert > 1024 || p->n_expert_used == 0 || p->n_expert_used > p->n_expert))
        return lf__err_set(err, LF_E_INVALID_ARG, "%u experts, %u routed per token: 1 to the expert count (at most 1024)",
                           p->n_expert, p->n_expert_used);
    if (p->n_expert > 1 && p->sparsity != 0.0)
        return lf__err_set(err, LF_E_INVALID_ARG, "sparsity shapes dense FFNs, not mixtures of experts");
    if (!(p->routing_skew >= 0.0 && p->routing_skew <= 16.0))
        return lf__err_set(err, LF_E_INVALID_ARG, "routing skew %g: 0 to 16", p->routing_skew);
    if (p->head_dim % 2 || p->head_dim > 1024 || p->n_head % p->n_head_kv ||
        (!p->head_dim && (p->n_embd % p->n_head || (p->n_embd / p->n_head) % 2)))
        return lf__err_set(err, LF_E_INVALID_ARG,
                           "n_embd %u must split into n_head %u heads of even size (or give an even head_dim), and "
                           "heads into n_head_kv %u groups", p->n_embd, p->n_head, p->n_head_kv);
    if (!(p->rope_freq_base >= 0.0f && p->rope_freq_base < 1e12f))
        return lf__err_set(err, LF_E_INVALID_ARG, "rope base %g is out of range", p->rope_freq_base);
    if (p->rope_freqs && !synth_arch(p)->rope_freqs)
        return lf__err_set(err, LF_E_INVALID_ARG, "Llama 3.1 rope scaling (rope_freqs) is llama's, not %s's", p->arch);
    if (p->sparsity != 0.0 && (synth_arch(p)->rope != LF_ROPE_NORM || (p->head_dim && p->head_dim != p->n_embd / p->n_head)))
        return lf__err_set(err, LF_E_INVALID_ARG,
                           "sparsity shapes llama-architecture models with heads of n_embd / n_head (not %s)",
                           p->arch ? p->arch : "this head size");
    if (!lf_type_supported((int)p->type))
        return lf__err_set(err, LF_E_INVALID_ARG, "type %d is not supported", (int)p->type);
    if (lf__type_uses_q8a(p->type) && (p->n_embd % 32 || p->n_ff % 32))
        return lf__err_set(err, LF_E_INVALID_ARG, "%s needs n_embd and n_ff to be multiples of 32", lf_type_name((int)p->type));
    if (p->n_embd > (1u << 16) || p->n_ff > (1u << 18) || p->n_layer > 1024 || p->n_vocab > (1u << 20))
        return lf__err_set(err, LF_E_INVALID_ARG, "shape too large");
    if ((p->hot != 0.0 || p->temporal != 0.0) && p->sparsity == 0.0)
        return lf__err_set(err, LF_E_INVALID_ARG, "hot and temporal shape a sparse model: give sparsity too");
    if (p->sparsity != 0.0 && p->n_embd / p->n_head < 8)
        return lf__err_set(err, LF_E_INVALID_ARG, "sparsity needs heads of at least 8 dimensions");
    if (!p->tokenizer_from && p->n_vocab < 259)
        return lf__err_set(err, LF_E_INVALID_ARG, "n_vocab %u is below the 259 tokens of the built-in byte tokenizer",
                           p->n_vocab);
    return LF_OK;
}

/* Built-in tokenizer: <unk>, <s>, </s>, 256 byte tokens, then pronounceable
 * filler words so random output still decodes to readable text. */
static lf_status add_builtin_tokenizer(lf_gguf_writer *w, uint32_t n_vocab) {
    static const char *cons[] = {"b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "ch", "sh"};
    static const char *vow[] = {"a", "e", "i", "o", "u", "ai", "ou", "ea"};
    lf_gguf_str *strs = calloc(n_vocab, sizeof *strs);
    char *store = malloc((size_t)n_vocab * 32);
    float *scores = malloc(n_vocab * sizeof *scores);
    int32_t *types = malloc(n_vocab * sizeof *types);
    lf_status st = LF_E_NOMEM;
    if (!strs || !store || !scores || !types) goto out;
    for (uint32_t i = 0; i < n_vocab; i++) {
        char *s = store + (size_t)i * 32;
        if (i == 0) snprintf(s, 32, "<unk>"), types[i] = 2;
        else if (i == 1) snprintf(s, 32, "<s>"), types[i] = 3;
        else if (i == 2) snprintf(s, 32, "</s>"), types[i] = 3;
        else if (i < 259) snprintf(s, 32, "<0x%02X>", i - 3), types[i] = 6;
        else {
            /* bijective base-128 syllables: every index gets a distinct word */
            uint32_t v = i - 259;
            size_t k = (size_t)snprintf(s, 32, "\xE2\x96\x81");
            do {
                const uint32_t syl = v % 128;
                k += (size_t)snprintf(s + k, 32 - k, "%s%s", cons[syl % 16], vow[syl / 16]);
                v /= 128;
            } while (v > 0 && k < 24);
            types[i] = 1;
        }
        strs[i] = (lf_gguf_str){s, strlen(s)};
        scores[i] = -(float)i;
    }
    st = lf__gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    if (!st) st = lf__gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, n_vocab);
    if (!st) st = lf__gguf_writer_set_arr(w, "tokenizer.ggml.scores", LF_GGUF_F32, scores, n_vocab);
    if (!st) st = lf__gguf_writer_set_arr(w, "tokenizer.ggml.token_type", LF_GGUF_I32, types, n_vocab);
    if (!st) st = lf__gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (!st) st = lf__gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
out:
    free(strs);
    free(store);
    free(scores);
    free(types);
    return st;
}

/* Copies tokenizer.* keys from another GGUF; returns its vocabulary size. */
static lf_status copy_tokenizer(lf_gguf_writer *w, const char *path, uint32_t *n_vocab, lf_err *err) {
    lf_gguf *src;
    lf_status st = lf__gguf_read_file(path, &src, err);
    if (st) return st;
    const lf_gguf_kv *tokens = lf__gguf_find(src, "tokenizer.ggml.tokens");
    if (!tokens || tokens->type != LF_GGUF_ARRAY || tokens->arr_type != LF_GGUF_STRING || tokens->arr_n == 0 ||
        tokens->arr_n > (1u << 20)) {
        lf__gguf_free(src);
        return lf__err_set(err, LF_E_MODEL, "%s has no usable tokenizer.ggml.tokens", path);
    }
    *n_vocab = (uint32_t)tokens->arr_n;
    for (uint64_t i = 0; i < src->n_kv && !st; i++)
        if (src->kv[i].key.len > 10 && memcmp(src->kv[i].key.ptr, "tokenizer.", 10) == 0)
            st = lf__gguf_writer_copy_kv(w, &src->kv[i]);
    lf__gguf_free(src);
    return st;
}

static lf_status build_writer(const lf_synth_params *p, uint32_t *n_vocab, tensor_plan **plan, size_t *n_plan,
                              lf_gguf_writer **out, lf_err *err) {
    lf_gguf_writer *w;
    lf_status st = lf__gguf_writer_create(LF_GGUF_DEFAULT_ALIGNMENT, &w);
    if (st) return st;
    char name[96];
    snprintf(name, sizeof name, "llmflash-synth d%u l%u ff%u %s", p->n_embd, p->n_layer, p->n_ff,
             lf_type_name((int)p->type));
    const lf_arch *a = synth_arch(p);
    const uint32_t hd = head_dim_of(p);
    char k[64];
#define KEY(suffix) lf__arch_key(a, suffix, k, sizeof k)
    st = lf__gguf_writer_set_str(w, "general.architecture", a->name);
    if (!st) st = lf__gguf_writer_set_str(w, "general.name", name);
    if (!st) st = lf__gguf_writer_set_u32(w, KEY("context_length"), p->n_ctx ? p->n_ctx : 2048);
    if (!st) st = lf__gguf_writer_set_u32(w, KEY("embedding_length"), p->n_embd);
    if (!st) st = lf__gguf_writer_set_u32(w, KEY("block_count"), p->n_layer);
    if (!st) st = lf__gguf_writer_set_u32(w, KEY("feed_forward_length"), p->n_ff);
    if (!st) st = lf__gguf_writer_set_u32(w, KEY("attention.head_count"), p->n_head);
    if (!st) st = lf__gguf_writer_set_u32(w, KEY("attention.head_count_kv"), p->n_head_kv);
    if (!st && p->head_dim) st = lf__gguf_writer_set_u32(w, KEY("attention.key_length"), hd);
    if (!st && p->head_dim) st = lf__gguf_writer_set_u32(w, KEY("attention.value_length"), hd);
    if (!st) st = lf__gguf_writer_set_u32(w, KEY("rope.dimension_count"), hd);
    if (!st) st = lf__gguf_writer_set_f32(w, KEY("rope.freq_base"), synth_rope_base(p));
    if (!st) st = lf__gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), a->rms_eps);
    if (!st && p->n_expert > 1) st = lf__gguf_writer_set_u32(w, KEY("expert_count"), p->n_expert);
    if (!st && p->n_expert > 1) st = lf__gguf_writer_set_u32(w, KEY("expert_used_count"), p->n_expert_used);
    if (!st && p->n_expert > 1 && a->moe_only) st = lf__gguf_writer_set_u32(w, KEY("expert_feed_forward_length"), p->n_ff);
    if (!st && p->n_expert > 1) st = lf__gguf_writer_set_f32(w, "llmflash.synth.routing_skew", (float)p->routing_skew);
#undef KEY
    if (!st) st = lf__gguf_writer_set_u64(w, "llmflash.synth.seed", p->seed);
    if (!st && p->sparsity > 0.0) st = lf__gguf_writer_set_f32(w, "llmflash.synth.sparsity", (float)p->sparsity);
    if (!st && p->sparsity > 0.0) st = lf__gguf_writer_set_f32(w, "llmflash.synth.hot", (float)p->hot);
    if (!st && p->sparsity > 0.0) st = lf__gguf_writer_set_f32(w, "llmflash.synth.temporal", (float)p->temporal);
    if (!st && p->activation != LF_ACT_SILU_GATED)
        st = lf__gguf_writer_set_str(w, "llmflash.ffn_activation", p->activation == LF_ACT_RELU ? "relu_plain" : "relu");
    *n_vocab = p->n_vocab;
    if (!st) st = p->tokenizer_from ? copy_tokenizer(w, p->tokenizer_from, n_vocab, err)
                                    : add_builtin_tokenizer(w, p->n_vocab);
    if (st) goto fail;
    lf_synth_params q = *p;
    q.n_vocab = *n_vocab;
    if ((st = plan_tensors(&q, a, plan, n_plan))) goto fail;
    for (size_t i = 0; i < *n_plan && !st; i++) {
        const tensor_plan *t = &(*plan)[i];
        const uint32_t n_mat = t->n_mat ? t->n_mat : 1;
        const uint64_t ne[3] = {t->cols, t->rows / n_mat, n_mat};
        st = lf__gguf_writer_add_tensor(w, t->name, t->type, n_mat > 1 ? 3 : t->rows == 1 ? 1 : 2, ne, NULL);
    }
    if (st) {
        free(*plan);
        *plan = NULL;
        goto fail;
    }
    *out = w;
    return LF_OK;
fail:
    lf__gguf_writer_destroy(w);
    if (!err->msg[0]) lf__err_set(err, st, "building the GGUF header failed");
    return st;
}

static lf_status solve_design(const lf_synth_params *p, lf_sparse_design *sd, lf_err *err) {
    *sd = (lf_sparse_design){.n_embd = p->n_embd,
                             .n_head = p->n_head,
                             .n_head_kv = p->n_head_kv,
                             .n_ff = p->n_ff,
                             .rope_base = 10000.0f,
                             .sparsity = p->sparsity,
                             .hot = p->hot,
                             .temporal = p->temporal};
    return lf__sparse_design_solve(sd, err);
}

lf_status lf_synth_predict_activity(const lf_synth_params *p, lf_synth_activity *out, char *errbuf, size_t errcap) {
    lf_err err = {{0}};
    lf_status st = !p || !out ? LF_E_INVALID_ARG : check_params(p, &err);
    if (!st && p->sparsity == 0.0) st = lf__err_set(&err, LF_E_INVALID_ARG, "plain random weights: no sparsity asked for");
    lf_sparse_design sd = {0};
    if (!st) st = solve_design(p, &sd, &err);
    if (!st)
        *out = (lf_synth_activity){sd.pred_density, sd.pred_hot, sd.pred_union5, sd.pred_new, sd.ctx_share};
    lf__sparse_design_free(&sd);
    if (st) lf__err_copy_out(&err, errbuf, errcap);
    return st;
}

uint64_t lf_synth_file_bytes(const lf_synth_params *p) {
    lf_err err = {{0}};
    if (!p || check_params(p, &err)) return 0;
    uint32_t n_vocab;
    tensor_plan *plan;
    size_t n_plan;
    lf_gguf_writer *w;
    if (build_writer(p, &n_vocab, &plan, &n_plan, &w, &err)) return 0;
    const uint64_t size = lf__gguf_writer_file_size(w);
    lf__gguf_writer_destroy(w);
    free(plan);
    return size;
}

lf_status lf_synth_write(const char *path, const lf_synth_params *p, char *errbuf, size_t errcap) {
    lf_err err = {{0}};
    lf_status st;
    if (!path || !p) return LF_E_INVALID_ARG;
    if ((st = check_params(p, &err))) goto done;
    uint32_t n_vocab;
    tensor_plan *plan = NULL;
    size_t n_plan = 0;
    lf_gguf_writer *w = NULL;
    float *rows = NULL;
    uint8_t *qbuf = NULL;
    lf_outfile out = {.fd = -1};
    lf_sparse_design design = {0};
    lf_sparse_tensor *gen = NULL;
    if (p->sparsity > 0.0 && (st = solve_design(p, &design, &err))) goto cleanup;
    if ((st = build_writer(p, &n_vocab, &plan, &n_plan, &w, &err))) goto cleanup;
    uint64_t max_cols = 0, max_row_bytes = 0;
    for (size_t i = 0; i < n_plan; i++) {
        max_cols = LF_MAX(max_cols, plan[i].cols);
        max_row_bytes = LF_MAX(max_row_bytes, lf__type_row_bytes(plan[i].type, plan[i].cols));
    }
    rows = malloc(max_cols * SYNTH_ROWS_PER_CHUNK * sizeof(float));
    qbuf = malloc(max_row_bytes * SYNTH_ROWS_PER_CHUNK);
    if (!rows || !qbuf) {
        st = lf__err_set(&err, LF_E_NOMEM, "row buffers");
        goto cleanup;
    }
    if ((st = lf__outfile_open(&out, path, p->force, &err))) goto cleanup;
    if ((st = lf__gguf_writer_write_header(w, out.fd, &err))) goto cleanup;
    const uint64_t total = lf__gguf_writer_file_size(w);
    uint64_t done_bytes = total;
    for (size_t i = 0; i < n_plan; i++) done_bytes -= lf__align_up(lf__type_row_bytes(plan[i].type, plan[i].cols) * plan[i].rows, 32);
    lf_rng rng;
    for (size_t i = 0; i < n_plan; i++) {
        const tensor_plan *t = &plan[i];
        const uint64_t row_bytes = lf__type_row_bytes(t->type, t->cols);
        /* each tensor has its own stream, so one tensor's values do not
         * depend on the shapes of the tensors before it */
        lf__rng_seed(&rng, p->seed * 1000003u + i);
        if (p->sparsity > 0.0 && t->scale != 0.0f &&
            (st = lf__sparse_tensor_begin(&design, t->role, t->rows, t->cols, t->scale, &rng, &gen))) {
            lf__err_set(&err, st, "shaping tensor '%s'", t->name);
            goto cleanup;
        }
        for (uint64_t r = 0; r < t->rows; r += SYNTH_ROWS_PER_CHUNK) {
            const uint64_t nr = LF_MIN((uint64_t)SYNTH_ROWS_PER_CHUNK, t->rows - r);
            if (gen) lf__sparse_tensor_rows(gen, r, nr, &rng, rows);
            else
                for (uint64_t k = 0; k < nr * t->cols; k++)
                    rows[k] = t->scale == 0.0f ? t->mean : t->mean + t->scale * lf__rng_normal(&rng);
            if (strcmp(t->name, "rope_freqs.weight") == 0) llama31_rope_freqs(synth_rope_base(p), 2 * (uint32_t)t->cols, rows);
            if (t->router_layer >= 0 && p->routing_skew > 0.0)
                for (uint64_t k = 0; k < nr; k++) {
                    /* a permutation of the experts per layer: 7919 is prime */
                    const uint64_t rank = ((r + k) * 7919u + (uint64_t)t->router_layer * 104729u) % t->rows;
                    /* the row's own sum would bias it on the shared direction at
                     * random: it is taken out, and the chosen bias put in */
                    float *row = rows + k * t->cols;
                    double sum = 0.0;
                    for (uint64_t c = 0; c < t->cols; c++) sum += row[c];
                    const float bias = (float)(-p->routing_skew * log((double)rank + 1.0) / route_dot(t->cols) -
                                               sum / (double)t->cols);
                    for (uint64_t c = 0; c < t->cols; c++) row[c] += bias;
                }
            for (uint64_t k = 0; k < nr; k++)
                lf__quantize_row(t->type, rows + k * t->cols, qbuf + k * row_bytes, (int64_t)t->cols);
            if ((st = lf__gguf_writer_write_data(w, out.fd, qbuf, nr * row_bytes, &err))) {
                lf__err_set(&err, st, "writing tensor '%s' to %s: %s", t->name, path, err.msg);
                goto cleanup;
            }
        }
        lf__sparse_tensor_end(gen);
        gen = NULL;
        done_bytes += lf__align_up(row_bytes * t->rows, 32);
        if (p->progress && !p->progress(p->progress_user, done_bytes, total)) {
            st = lf__err_set(&err, LF_E_INTERRUPTED, "interrupted after tensor '%s'; %s was not written", t->name, path);
            goto cleanup;
        }
    }
    if ((st = lf__gguf_writer_finish(w, &err))) goto cleanup;
    st = lf__outfile_commit(&out, &err);
cleanup:
    lf__sparse_tensor_end(gen);
    lf__sparse_design_free(&design);
    if (out.fd >= 0) lf__outfile_abort(&out);
    free(rows);
    free(qbuf);
    free(plan);
    lf__gguf_writer_destroy(w);
done:
    if (st) lf__err_copy_out(&err, errbuf, errcap);
    return st;
}
