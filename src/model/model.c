/* model.c - opening a GGUF as a llama-family model and describing it. */
#include "model.h"
#include "../tensor/cpu_features.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

lf_model_params lf_model_default_params(void) {
    return (lf_model_params){.log = NULL, .log_user = NULL, .n_threads = 0, .verify_checksums = true,
                             .mode = LF_MODE_AUTO, .dram_budget = 0, .io_backend = LF_IO_BACKEND_AUTO,
                             .activation = LF_ACT_FROM_FILE, .huge_pages = false};
}

const char *lf_mode_name(lf_mode mode) {
    switch (mode) {
    case LF_MODE_AUTO: return "auto";
    case LF_MODE_MMAP: return "mmap";
    case LF_MODE_STREAM: return "stream";
    case LF_MODE_NAIVE: return "naive";
    case LF_MODE_HYBRID: return "hybrid";
    case LF_MODE_RAM: return "ram";
    }
    return "?";
}

lf_tensor_class lf__tensor_class_of(const char *name) {
    if (strncmp(name, "token_embd", 10) == 0 || strncmp(name, "output.", 7) == 0) return LF_CLASS_EMBEDDING;
    if (strstr(name, ".attn_q.") || strstr(name, ".attn_k.") || strstr(name, ".attn_v.") ||
        strstr(name, ".attn_output.") || strstr(name, ".attn_qkv."))
        return LF_CLASS_ATTENTION;
    if (strstr(name, ".ffn_gate.") || strstr(name, ".ffn_up.") || strstr(name, ".ffn_down.") ||
        strstr(name, ".ffn_gate_exps.") || strstr(name, ".ffn_up_exps.") || strstr(name, ".ffn_down_exps."))
        return LF_CLASS_FFN;
    const size_t n = strlen(name);
    if (n > 11 && strcmp(name + n - 11, ".ffn_bundle") == 0) return LF_CLASS_FFN;
    return LF_CLASS_OTHER;
}

typedef struct repack_job {
    const lf_weight *w;
    bool failed;
} repack_job;

/* Each thread repacks a run of whole groups with a scratch of its own. */
static void repack_worker(void *ctx, int ith, int nth) {
    repack_job *j = ctx;
    const lf_weight *w = j->w;
    uint64_t g0, g1;
    lf__split_range(w->rows / LF_X8, ith, nth, 1, &g0, &g1);
    if (g0 == g1) return;
    void *scratch = malloc(LF_X8 * w->row_bytes);
    if (!scratch) {
        j->failed = true; /* a bool only ever set: the race is benign */
        return;
    }
    lf__repack_x8(w->type, (uint8_t *)w->data + g0 * LF_X8 * w->row_bytes, (g1 - g0) * LF_X8, w->cols, scratch);
    free(scratch);
}

static lf_status repack(lf_model *m, const char *name, lf_weight *w) {
    repack_job job = {w, false};
    lf__pool_run(m->load_pool, repack_worker, &job);
    if (job.failed) return lf__err_set(&m->err, LF_E_NOMEM, "repacking '%s'", name);
    w->layout = LF_LAYOUT_X8;
    m->info.repacked_bytes += w->rows * w->row_bytes;
    return LF_OK;
}

/* Every matrix the forward pass multiplies may be repacked. The embedding
 * table is read a row at a time, so it is left alone, unless it is also
 * the output projection (tied embeddings: Llama 3.2, small Qwens), whose
 * matvec over the whole vocabulary is the largest of a token. */
static bool may_repack(const lf_model *m, const char *name) {
    return strcmp(name, "token_embd.weight") != 0 || lf__gguf_tensor_index(m->gguf, "output.weight") < 0;
}

/* Looks up n_mat matrices of (rows, cols) stacked in one tensor, in GGUF
 * terms ne = [cols, rows] (n_mat 1) or [cols, rows, n_mat] (experts), and
 * binds them as one weight of n_mat * rows rows. A missing tensor is an
 * error unless optional. */
static lf_status bind_stacked(lf_model *m, const char *name, uint32_t n_mat, uint64_t rows, uint64_t cols,
                              bool optional, lf_weight *w) {
    memset(w, 0, sizeof *w);
    const int64_t idx = lf__gguf_tensor_index(m->gguf, name);
    const lf_gguf_tensor *t = idx >= 0 ? &m->gguf->tensors[idx] : NULL;
    if (!t) {
        if (optional) return LF_OK;
        return lf__err_set(&m->err, LF_E_MODEL, "tensor '%s' is missing", name);
    }
    if (!lf_type_supported((int)t->type))
        return lf__err_set(&m->err, LF_E_UNSUPPORTED, "tensor '%s' has type %s, which llmflash cannot compute with",
                           name, lf_type_name((int)t->type));
    if (t->n_dims > (n_mat > 1 ? 3u : 2u) || t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != n_mat)
        return lf__err_set(&m->err, LF_E_MODEL, "tensor '%s' has shape [%" PRIu64 ", %" PRIu64 ", %" PRIu64 "], expected "
                           "[%" PRIu64 ", %" PRIu64 ", %u]", name, t->ne[0], t->ne[1], t->ne[2], cols, rows, n_mat);
    if (lf__type_uses_q8a(t->type) && cols % LF_QK)
        return lf__err_set(&m->err, LF_E_UNSUPPORTED, "tensor '%s': rows of %" PRIu64 " are not a multiple of 32", name, cols);
    w->data = m->tensor_ptr[idx];
    w->type = t->type;
    w->rows = rows * n_mat;
    w->cols = cols;
    w->row_bytes = lf__type_row_bytes(t->type, cols);
    /* our own copy (not the file's mapping), multiplied only through
     * matvecs (the embedding table is read a row at a time) */
    if (m->prepacked && m->prepacked[idx]) { /* read straight into the x8 layout (ram mode) */
        w->layout = LF_LAYOUT_X8;
        m->info.repacked_bytes += w->rows * w->row_bytes;
        return LF_OK;
    }
    /* stacked matrices are multiplied one at a time: x8 groups must not
     * straddle two of them */
    if (m->mode != LF_MODE_MMAP && rows >= LF_X8 && (n_mat == 1 || rows % LF_X8 == 0) && m->kernels->gemm_x8[t->type] &&
        may_repack(m, name))
        return repack(m, name, w);
    return LF_OK;
}

static lf_status bind_weight(lf_model *m, const char *name, uint64_t rows, uint64_t cols, bool optional,
                             lf_weight *w) {
    return bind_stacked(m, name, 1, rows, cols, optional, w);
}

/* Norm and bias vectors are converted to float once. */
static lf_status bind_vector(lf_model *m, const char *name, uint64_t n, float **out) {
    lf_weight w;
    lf_status st = bind_weight(m, name, 1, n, false, &w);
    if (st) return st;
    *out = malloc(n * sizeof(float));
    if (!*out) return lf__err_set(&m->err, LF_E_NOMEM, "vector '%s'", name);
    lf__dequantize_row(w.type, w.data, *out, (int64_t)n);
    return LF_OK;
}

/* Every tensor must be one the forward pass uses: a tensor it would skip
 * (attention biases, Q/K norms of another architecture written as llama)
 * means the outputs would be wrong, so it is refused by name. */
static lf_status check_tensor_names(lf_model *m) {
    static const char *const top[] = {"token_embd.weight", "output_norm.weight", "output.weight"};
    static const char *const per_layer[] = {"attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
                                            "attn_output.weight", "ffn_norm.weight", "ffn_bundle", "ffn_bundle_index"};
    static const char *const dense_ffn[] = {"ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"};
    static const char *const biases[] = {"attn_q.bias", "attn_k.bias", "attn_v.bias"};
    static const char *const qk_norms[] = {"attn_q_norm.weight", "attn_k_norm.weight"};
    static const char *const experts[] = {"ffn_gate_inp.weight", "ffn_gate_exps.weight", "ffn_up_exps.weight",
                                          "ffn_down_exps.weight"};
    const bool moe = m->info.n_expert > 1;
    const lf_arch *a = m->arch;
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        const char *name = m->tensor_names[i];
        bool known = a->rope_freqs && strcmp(name, "rope_freqs.weight") == 0;
        for (size_t k = 0; !known && k < LF_ARRAY_LEN(top); k++) known = strcmp(name, top[k]) == 0;
        unsigned layer;
        int used = 0;
        if (!known && sscanf(name, "blk.%u.%n", &layer, &used) == 1 && used > 0 && layer < m->info.n_layer) {
            const char *rest = name + used;
            for (size_t k = 0; !known && k < LF_ARRAY_LEN(per_layer); k++) known = strcmp(rest, per_layer[k]) == 0;
            /* a mixture of experts has no dense FFN tensors, and a dense FFN no experts */
            for (size_t k = 0; !known && !moe && k < LF_ARRAY_LEN(dense_ffn); k++) known = strcmp(rest, dense_ffn[k]) == 0;
            for (size_t k = 0; !known && moe && k < LF_ARRAY_LEN(experts); k++) known = strcmp(rest, experts[k]) == 0;
            for (size_t k = 0; !known && a->qkv_bias && k < LF_ARRAY_LEN(biases); k++) known = strcmp(rest, biases[k]) == 0;
            for (size_t k = 0; !known && a->qk_norm && k < LF_ARRAY_LEN(qk_norms); k++) known = strcmp(rest, qk_norms[k]) == 0;
        }
        if (!known)
            return lf__err_set(&m->err, LF_E_UNSUPPORTED,
                               "tensor '%s' is not one the %s architecture uses: running without it would give wrong "
                               "outputs", name, a->name);
    }
    return LF_OK;
}

/* Llama 3.1+: rope_freqs.weight divides each rotary frequency. */
static lf_status bind_rope_freqs(lf_model *m) {
    const uint32_t n = m->info.n_rot / 2;
    lf_weight w;
    lf_status st = bind_weight(m, "rope_freqs.weight", 1, n, true, &w);
    if (st || !w.data) return st;
    if (!(m->rope_freqs = malloc(n * sizeof(float)))) return lf__err_set(&m->err, LF_E_NOMEM, "rope_freqs");
    lf__dequantize_row(w.type, w.data, m->rope_freqs, (int64_t)n);
    for (uint32_t i = 0; i < n; i++)
        if (!(m->rope_freqs[i] > 0.0f && m->rope_freqs[i] < 1e30f))
            return lf__err_set(&m->err, LF_E_MODEL, "rope_freqs.weight[%u] = %g is not a positive finite factor", i,
                               m->rope_freqs[i]);
    return LF_OK;
}

/* Rope scaling: none, or linear (positions divided by a factor), from
 * ARCH.rope.scaling.* (or the older ARCH.rope.scale_linear). Llama 3.1's
 * scaling needs no key: it is the rope_freqs.weight tensor. Anything else
 * (YaRN, say), and sliding-window attention, is refused by the key's name. */
static lf_status read_rope_scaling(lf_model *m) {
    const lf_gguf *g = m->gguf;
    const lf_arch *a = m->arch;
    lf_err *err = &m->err;
    char k_type[64], k_factor[64], k_old[64], k_window[64];
    lf__arch_key(a, "rope.scaling.type", k_type, sizeof k_type);
    lf__arch_key(a, "rope.scaling.factor", k_factor, sizeof k_factor);
    lf__arch_key(a, "rope.scale_linear", k_old, sizeof k_old);
    lf__arch_key(a, "attention.sliding_window", k_window, sizeof k_window);
    lf_gguf_str type;
    float factor = 0.0f, old = 0.0f;
    lf_status st;
    if ((st = lf__gguf_get_str(g, k_type, &type, err)) || (st = lf__gguf_get_f32_or(g, k_factor, 0.0f, &factor, err)) ||
        (st = lf__gguf_get_f32_or(g, k_old, 0.0f, &old, err)))
        return st;
    if (factor == 0.0f) factor = old;
    m->rope_pos_scale = 1.0f;
    const bool none = type.ptr && lf__gguf_str_eq(type, "none");
    if (type.ptr && !none && !lf__gguf_str_eq(type, "linear"))
        return lf__err_set(err, LF_E_UNSUPPORTED,
                           "%s '%.*s' is not supported (none and linear are; Llama 3.1's scaling comes as the "
                           "rope_freqs.weight tensor)", k_type, (int)LF_MIN(type.len, (uint64_t)32), type.ptr);
    if (!none && factor != 0.0f && factor != 1.0f) {
        if (!(factor > 0.0f && factor <= 1024.0f)) return lf__err_set(err, LF_E_MODEL, "%s %g is out of range", k_factor, factor);
        m->rope_pos_scale = 1.0f / factor;
    }
    if (lf__gguf_find(g, k_window))
        return lf__err_set(err, LF_E_UNSUPPORTED, "%s: sliding-window attention is not supported", k_window);
    return LF_OK;
}

/* The hyperparameters, under the architecture's key prefix. */
static lf_status read_shape(lf_model *m) {
    const lf_gguf *g = m->gguf;
    const lf_arch *a = m->arch;
    lf_model_info *in = &m->info;
    lf_err *err = &m->err;
    char k[8][64];
    lf_status st;
    lf_ffn_shape ffn;
    if ((st = lf__arch_ffn_shape(g, &ffn, err))) return st;
    in->n_embd = ffn.n_embd;
    in->n_layer = ffn.n_layer;
    in->n_ff = ffn.n_ff;
    in->n_expert = ffn.n_expert;
    in->n_expert_used = ffn.n_expert_used;
    if ((st = lf__gguf_get_u32(g, lf__arch_key(a, "attention.head_count", k[3], 64), &in->n_head, err)) ||
        (st = lf__gguf_get_u32_or(g, lf__arch_key(a, "attention.head_count_kv", k[4], 64), in->n_head, &in->n_head_kv, err)) ||
        (st = lf__gguf_get_u32_or(g, lf__arch_key(a, "context_length", k[5], 64), 2048, &in->n_ctx_train, err)) ||
        (st = lf__gguf_get_f32_or(g, lf__arch_key(a, "rope.freq_base", k[6], 64), a->rope_freq_base, &in->rope_freq_base, err)) ||
        (st = lf__gguf_get_f32_or(g, lf__arch_key(a, "attention.layer_norm_rms_epsilon", k[7], 64), a->rms_eps, &in->rms_eps, err)))
        return st;
    if (in->n_embd == 0 || in->n_layer == 0 || in->n_ff == 0 || in->n_head == 0 || in->n_head_kv == 0 ||
        in->n_head % in->n_head_kv || in->n_layer > 4096 || in->n_embd > (1u << 20) || in->n_ff > (1u << 22) ||
        in->n_head > 4096)
        return lf__err_set(err, LF_E_MODEL, "inconsistent hyperparameters: n_embd %u, n_layer %u, n_ff %u, heads %u/%u",
                           in->n_embd, in->n_layer, in->n_ff, in->n_head, in->n_head_kv);
    /* heads may be wider than n_embd / n_head (Qwen3: 128 for 1024 / 16) */
    uint32_t key_len, value_len;
    char kk[64], kv[64], kr[64];
    const uint32_t even_split = in->n_embd % in->n_head ? 0 : in->n_embd / in->n_head;
    if ((st = lf__gguf_get_u32_or(g, lf__arch_key(a, "attention.key_length", kk, sizeof kk), even_split, &key_len, err)) ||
        (st = lf__gguf_get_u32_or(g, lf__arch_key(a, "attention.value_length", kv, sizeof kv), key_len, &value_len, err)))
        return st;
    if (key_len == 0 || key_len > 4096)
        return lf__err_set(err, LF_E_MODEL, "%s %u: n_embd %u does not split into %u heads and no head size is given",
                           kk, key_len, in->n_embd, in->n_head);
    if (value_len != key_len)
        return lf__err_set(err, LF_E_UNSUPPORTED, "%s %u differs from %s %u: not supported", kv, value_len, kk, key_len);
    m->head_dim = key_len;
    in->head_dim = key_len;
    if ((st = lf__gguf_get_u32_or(g, lf__arch_key(a, "rope.dimension_count", kr, sizeof kr), m->head_dim, &in->n_rot, err)))
        return st;
    if (in->n_rot > m->head_dim || in->n_rot % 2)
        return lf__err_set(err, LF_E_MODEL, "%s %u does not fit head size %u", kr, in->n_rot, m->head_dim);
    if (!(in->rope_freq_base > 0.0f) || !(in->rms_eps >= 0.0f))
        return lf__err_set(err, LF_E_MODEL, "rope freq base %g or rms eps %g out of range", in->rope_freq_base, in->rms_eps);
    return LF_OK;
}

static lf_status read_hparams(lf_model *m, int activation) {
    const lf_gguf *g = m->gguf;
    lf_model_info *in = &m->info;
    lf_err *err = &m->err;
    lf_gguf_str arch, name, act;
    lf_status st = lf__gguf_get_str(g, "general.architecture", &arch, err);
    if (st) return st;
    if (arch.ptr) snprintf(in->architecture, sizeof in->architecture, "%.*s", (int)LF_MIN(arch.len, (uint64_t)31), arch.ptr);
    if ((st = lf__arch_of(g, &m->arch, err))) return st;
    if ((st = lf__gguf_get_str(g, "general.name", &name, err))) return st;
    if (name.ptr) snprintf(in->name, sizeof in->name, "%.*s", (int)LF_MIN(name.len, (uint64_t)127), name.ptr);
    if ((st = read_shape(m)) || (st = read_rope_scaling(m))) return st;
    in->activation = LF_ACT_SILU_GATED;
    if ((st = lf__gguf_get_str(g, "llmflash.ffn_activation", &act, err))) return st;
    if (act.ptr) {
        if (lf__gguf_str_eq(act, "silu")) in->activation = LF_ACT_SILU_GATED;
        else if (lf__gguf_str_eq(act, "relu")) in->activation = LF_ACT_RELU_GATED;
        else if (lf__gguf_str_eq(act, "relu_plain")) in->activation = LF_ACT_RELU;
        else
            return lf__err_set(err, LF_E_UNSUPPORTED, "llmflash.ffn_activation '%.*s' is not one of silu, relu, relu_plain",
                               (int)LF_MIN(act.len, (uint64_t)32), act.ptr);
    }
    if (activation != LF_ACT_FROM_FILE) {
        if (activation != LF_ACT_SILU_GATED && activation != LF_ACT_RELU_GATED && activation != LF_ACT_RELU)
            return lf__err_set(err, LF_E_INVALID_ARG, "activation %d is not an lf_activation", activation);
        in->activation = (lf_activation)activation;
    }
    return LF_OK;
}

/* LLMFLASH_TEST_FAULT=KIND:NTH[:COUNT] (tests only): bundle reads go through
 * the fault-injecting back-end, which makes read NTH (0-based) and the
 * COUNT-1 after it (default 1) fail. KIND is eio, short, eagain or
 * corrupt. It exists so that the streaming engine's error paths can be
 * tested end to end, through a model and its sessions. */
static lf_status test_fault_params(lf_loader_params *lp, lf_err *err) {
    const char *env = getenv("LLMFLASH_TEST_FAULT");
    if (!env || !*env) return LF_OK;
    char kind[16];
    unsigned long long nth = 0, count = 1;
    const int n = sscanf(env, "%15[a-z]:%llu:%llu", kind, &nth, &count);
    static const struct { const char *name; lf_fault_kind kind; } kinds[] = {
        {"eio", LF_FAULT_EIO}, {"short", LF_FAULT_SHORT}, {"eagain", LF_FAULT_EAGAIN}, {"corrupt", LF_FAULT_CORRUPT}};
    for (size_t i = 0; n >= 2 && i < LF_ARRAY_LEN(kinds); i++)
        if (strcmp(kind, kinds[i].name) == 0 && count >= 1 && count <= UINT32_MAX) {
            lp->backend = LF_IO_FAULT;
            lp->fault = kinds[i].kind;
            lp->fault_nth = nth;
            lp->fault_count = (uint32_t)count;
            return LF_OK;
        }
    return lf__err_set(err, LF_E_INVALID_ARG, "LLMFLASH_TEST_FAULT='%.64s' is not KIND:NTH[:COUNT] with KIND eio, short, "
                       "eagain or corrupt", env);
}

/* Flash reads in flight by default: 64 where a layer's FFN fills the 32 MiB
 * of I/O buffers, else 32. The sparse rows of a 7B model read ~40 KiB at a
 * time, which a virtual SSD serves faster at 64 (at a 50% cap: 634-655
 * against 664-791 ms/token, alternating), in the same 32 MiB; a small model's
 * buffers would double instead, for reads it finishes in a few batches. */
#define LF_IO_BUFFER_BYTES ((uint64_t)32 << 20)
static uint32_t default_queue_depth(const lf_model *m) {
    return m->flash->layers[0].data_bytes >= LF_IO_BUFFER_BYTES ? 64 : 32;
}

/* The loader's I/O buffers follow the size of a layer's FFN: a tiny model
 * cannot afford 32 MiB of staging, a 7B model wants it. They do not depend
 * on the budget, so the bytes a session needs are well defined. */
static lf_status open_loader(lf_model *m) {
    lf_loader_params lp = lf__loader_default_params();
    lp.log = m->log;
    lp.unit_name = "neurons";
    lp.queue_depth = m->io_queue_depth ? m->io_queue_depth : default_queue_depth(m);
    lp.backend = m->io_backend == LF_IO_BACKEND_URING ? LF_IO_URING
                 : m->io_backend == LF_IO_BACKEND_PREAD ? LF_IO_PREAD : LF_IO_AUTO;
    uint64_t max_stored = 0;
    for (uint32_t l = 0; l < m->flash->n_layer; l++)
        for (uint64_t g = 0; g < m->flash->layers[l].n_groups; g++)
            max_stored = LF_MAX(max_stored, (uint64_t)m->flash->layers[l].index[g].stored);
    lp.max_unit = max_stored;
    if (m->unbundled_reads && m->flash->layout.compression == LF_COMPRESS_NONE) {
        lp.split_parts = m->flash->layout.n_rows;
        lp.split_bytes = m->flash->layout.row_bytes;
    }
    const uint64_t layer_ffn = m->flash->layers[0].data_bytes;
    const uint64_t io = LF_MIN(LF_MAX(layer_ffn, (uint64_t)256 << 10), LF_IO_BUFFER_BYTES);
    lp.max_read = LF_MAX((io / lp.queue_depth) / 4096 * 4096, (uint64_t)4096);
    lf_status st = test_fault_params(&lp, &m->err);
    if (st) return st;
    st = lf__loader_open(m->path, &lp, &m->loader, &m->err);
    if (!st)
        lf__log(&m->log, LF_LOG_INFO, "bundle reads: %s back-end%s, %" PRIu64 " KiB of I/O buffers",
                lf__loader_backend_name(m->loader), lf__loader_direct(m->loader) ? ", O_DIRECT" : "",
                lf__loader_buffer_bytes(m->loader) >> 10);
    return st;
}

/* Stream modes: resident tensors (everything but the bundle data) are read
 * into memory the budget owns, instead of being mapped. */
static bool is_bundle_data(const char *name) {
    const size_t n = strlen(name);
    return n > 11 && strcmp(name + n - 11, ".ffn_bundle") == 0;
}

/* The stream modes leave the embedding table in the file when it is not
 * also the output projection: a token needs one row of it (2.3 KB of a 74 MB
 * Q4_0 table for Llama 2 7B, of 295 MB for Llama 3 8B's vocabulary), read
 * when the token is embedded, and the budget goes to the neuron cache. */
static bool streams_embedding(const lf_model *m, const char *name) {
    return m->mode != LF_MODE_RAM && m->mode != LF_MODE_MMAP && strcmp(name, "token_embd.weight") == 0 &&
           lf__gguf_tensor_index(m->gguf, "output.weight") >= 0;
}

/* Tensors read into the budget's memory at open. */
static bool is_resident(const lf_model *m, const char *name) {
    return !is_bundle_data(name) && !streams_embedding(m, name);
}

/* Their bytes, each 64-byte aligned, as load_resident lays them out. */
static uint64_t resident_tensor_bytes(const lf_model *m) {
    uint64_t total = 0;
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++)
        if (is_resident(m, m->tensor_names[i])) total += lf__align_up(m->gguf->tensors[i].nbytes, 64);
    return total;
}

/* Whether tensor i will be a repacked matvec weight: bind_weight's test,
 * known before binding from the tensor's own description. */
static bool will_repack(const lf_model *m, uint64_t i) {
    const lf_gguf_tensor *t = &m->gguf->tensors[i];
    return m->mode == LF_MODE_RAM && t->n_dims == 2 && t->ne[1] >= LF_X8 && t->type < LF_TYPE_ID_MAX &&
           m->kernels->gemm_x8[t->type] && lf__type_row_bytes(t->type, t->ne[0]) && may_repack(m, m->tensor_names[i]);
}

/* Staging per thread when reading a tensor straight into the x8 layout. */
#define LF_REPACK_STAGING (1u << 20)

typedef struct read_repack_job {
    lf_model *m;
    const lf_gguf_tensor *t;
    uint8_t *dst;
    lf_status st; /* the first failure; written under the model's error by one thread at a time */
    pthread_mutex_t mu;
} read_repack_job;

/* Each thread reads a run of whole groups, a staging buffer at a time, and
 * interleaves them into place: one pass over the bytes instead of a read
 * and then a repack. */
static void read_repack_worker(void *ctx, int ith, int nth) {
    read_repack_job *j = ctx;
    const lf_gguf_tensor *t = j->t;
    const uint64_t row_bytes = lf__type_row_bytes(t->type, t->ne[0]), gbytes = LF_X8 * row_bytes;
    uint64_t g0, g1;
    lf__split_range(t->ne[1] / LF_X8, ith, nth, 1, &g0, &g1);
    if (g0 == g1) return;
    const uint64_t per = LF_MAX(1, LF_REPACK_STAGING / gbytes);
    uint8_t *staging = malloc(per * gbytes);
    lf_err err = {0};
    lf_status st = staging ? LF_OK : lf__err_set(&err, LF_E_NOMEM, "staging for repacking");
    for (uint64_t g = g0; g < g1 && !st; g += per) {
        const uint64_t n = LF_MIN(per, g1 - g);
        if (!(st = lf__pread_all(j->m->fd, staging, n * gbytes, t->file_offset + g * gbytes, &err)))
            lf__repack_x8_copy(t->type, j->dst + g * gbytes, staging, n * LF_X8, t->ne[0]);
    }
    free(staging);
    if (st) {
        pthread_mutex_lock(&j->mu);
        if (!j->st) {
            j->st = st;
            j->m->err = err;
        }
        pthread_mutex_unlock(&j->mu);
    }
}

static lf_status read_tensor(lf_model *m, uint64_t i, uint8_t *dst) {
    const lf_gguf_tensor *t = &m->gguf->tensors[i];
    if (!will_repack(m, i)) return lf__pread_all(m->fd, dst, t->nbytes, t->file_offset, &m->err);
    /* the threads read their runs a megabyte at a time: without readahead
     * of the whole tensor, a cold file is read 128 KiB per request */
    posix_fadvise(m->fd, (off_t)t->file_offset, (off_t)t->nbytes, POSIX_FADV_WILLNEED);
    read_repack_job job = {.m = m, .t = t, .dst = dst};
    pthread_mutex_init(&job.mu, NULL);
    lf__pool_run(m->load_pool, read_repack_worker, &job);
    pthread_mutex_destroy(&job.mu);
    if (job.st) return job.st;
    /* the rows after the last whole group, as they are */
    const uint64_t row_bytes = lf__type_row_bytes(t->type, t->ne[0]), whole = t->ne[1] / LF_X8 * LF_X8 * row_bytes;
    if (whole < t->nbytes) {
        lf_status st = lf__pread_all(m->fd, dst + whole, t->nbytes - whole, t->file_offset + whole, &m->err);
        if (st) return st;
    }
    m->prepacked[i] = true;
    return LF_OK;
}

static lf_status load_resident(lf_model *m) {
    const lf_gguf *g = m->gguf;
    const uint64_t total = resident_tensor_bytes(m);
    m->resident = lf__alloc_weights(total ? total : 64, m->huge_pages);
    if (!m->resident) return lf__err_set(&m->err, LF_E_NOMEM, "resident weights (%" PRIu64 " bytes)", total);
    m->prepacked = calloc(g->n_tensors + 1, sizeof *m->prepacked);
    if (!m->prepacked) return lf__err_set(&m->err, LF_E_NOMEM, "tensor table");
    m->resident_bytes = total;
    uint64_t at = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        if (streams_embedding(m, m->tensor_names[i])) m->embd_file_offset = g->tensors[i].file_offset;
        if (!is_resident(m, m->tensor_names[i])) continue;
        const lf_status st = read_tensor(m, i, m->resident + at);
        if (st) return st;
        m->tensor_ptr[i] = m->resident + at;
        at += lf__align_up(g->tensors[i].nbytes, 64);
    }
    /* the copies are ours now: drop the page cache the reads filled, so the
     * budget is not shadowed by a second copy in the kernel */
    if (m->mode != LF_MODE_RAM) posix_fadvise(m->fd, 0, 0, POSIX_FADV_DONTNEED);
    return LF_OK;
}

/* Flash files: every tensor the model keeps resident (embeddings,
 * attention, norms) against its stored checksum, once, at open. xxh64 runs
 * at memory speed, a fraction of the time the bytes took to read. */
static lf_status verify_resident(lf_model *m) {
    if (!lf__flash_detect(m->gguf) || !m->verify_checksums) return LF_OK;
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        if (is_bundle_data(m->tensor_names[i])) continue;
        const lf_status st = m->tensor_ptr[i] ? lf__flash_verify_tensor(m->gguf, i, m->tensor_ptr[i], &m->err)
                                              : lf__flash_verify_tensor_in_file(m->fd, m->gguf, i, &m->err);
        if (st) return st;
    }
    return LF_OK;
}

lf_status lf__model_check_mapped_layer(lf_model *m, uint32_t l, lf_err *err) {
    if (!m->verify_checksums || !m->group_checked || __atomic_load_n(&m->layer_checked[l], __ATOMIC_ACQUIRE)) return LF_OK;
    const lf_flash_layer *F = &m->flash->layers[l];
    const uint8_t *base = (const uint8_t *)m->map + F->data_offset;
    for (uint64_t g = 0; g < F->n_groups; g++) {
        if (__atomic_load_n(&m->group_checked[l][g], __ATOMIC_ACQUIRE)) continue;
        /* two sessions may check the same group at once: both compute the
         * same answer, and the flag only goes from 0 to 1 */
        if (lf__checksum64(base + F->index[g].offset, F->index[g].stored) != F->index[g].checksum) {
            uint64_t first, count;
            lf__flash_group_neurons(m->flash, g, &first, &count);
            return lf__err_set(err, LF_E_CORRUPT, "bundle group of layer %u, neurons %" PRIu64 "-%" PRIu64
                               " at offset 0x%" PRIx64 " fails its checksum: the file is corrupt", l, first,
                               first + count - 1, F->data_offset + F->index[g].offset);
        }
        __atomic_store_n(&m->group_checked[l][g], 1, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&m->layer_checked[l], 1, __ATOMIC_RELEASE);
    return LF_OK;
}

/* A plain GGUF in auto mode: in memory when it takes at most 70% of what
 * is available (room left for the KV cache and the rest of the system),
 * else mapped, so a file larger than memory still runs. */
static lf_mode auto_dense_mode(lf_model *m) {
    const uint64_t avail = lf__memory_available();
    const bool fits = m->map_size <= avail / 10 * 7;
    lf__log(&m->log, LF_LOG_INFO, "auto mode: %s (%.1f MiB file, %.1f MiB available)", fits ? "ram" : "mmap",
            (double)m->map_size / 1048576.0, (double)avail / 1048576.0);
    return fits ? LF_MODE_RAM : LF_MODE_MMAP;
}

static lf_status map_file(lf_model *m) {
    m->map = mmap(NULL, m->map_size, PROT_READ, MAP_SHARED, m->fd, 0);
    if (m->map == MAP_FAILED) {
        m->map = NULL;
        return lf__err_set(&m->err, LF_E_IO, "mmap %s: %s", m->path, strerror(errno));
    }
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++)
        m->tensor_ptr[i] = (const uint8_t *)m->map + m->gguf->tensors[i].file_offset;
    if (m->flash && m->verify_checksums) {
        m->group_checked = calloc(m->flash->n_layer, sizeof *m->group_checked);
        m->layer_checked = calloc(m->flash->n_layer, 1);
        if (!m->group_checked || !m->layer_checked) return lf__err_set(&m->err, LF_E_NOMEM, "checked-group bitmap");
        for (uint32_t l = 0; l < m->flash->n_layer; l++)
            if (!(m->group_checked[l] = calloc(m->flash->layers[l].n_groups ? m->flash->layers[l].n_groups : 1, 1)))
                return lf__err_set(&m->err, LF_E_NOMEM, "checked-group bitmap");
    }
    return LF_OK;
}

/* Bytes held by the model itself in stream modes: resident weights, norms
 * and biases as float, the bundle index, the parsed header and the vocabulary. */
uint64_t lf__model_overhead_bytes(const lf_model *m) {
    uint64_t b = m->gguf->header_len + m->gguf->n_tensors * (sizeof(lf_gguf_tensor) + 64) +
                 m->gguf->n_kv * (sizeof(lf_gguf_kv) + 48);
    b += (uint64_t)m->info.n_vocab * 48; /* tokenizer: piece copies, scores, types, hash */
    b += (2ull * m->info.n_layer + 1) * m->info.n_embd * sizeof(float);
    const uint64_t q_dim = (uint64_t)m->info.n_head * m->head_dim, kv_dim = (uint64_t)m->info.n_head_kv * m->head_dim;
    if (m->arch->qkv_bias) b += m->info.n_layer * (q_dim + 2 * kv_dim) * sizeof(float);
    if (m->arch->qk_norm) b += m->info.n_layer * 2ull * m->head_dim * sizeof(float);
    if (m->flash)
        for (uint32_t l = 0; l < m->flash->n_layer; l++) b += m->flash->layers[l].n_groups * sizeof(lf_bundle_entry);
    return b;
}

static lf_status bind_tensors(lf_model *m) {
    lf_model_info *in = &m->info;
    const uint64_t d = in->n_embd, q_dim = (uint64_t)in->n_head * m->head_dim,
                   kv_dim = (uint64_t)in->n_head_kv * m->head_dim, ff = in->n_ff, nv = in->n_vocab;
    lf_status st;
    if ((st = bind_weight(m, "token_embd.weight", nv, d, false, &m->tok_embd))) return st;
    if ((st = bind_vector(m, "output_norm.weight", d, &m->output_norm))) return st;
    if ((st = bind_weight(m, "output.weight", nv, d, true, &m->output))) return st;
    if ((st = check_tensor_names(m)) || (st = bind_rope_freqs(m))) return st;
    in->tied_output = m->output.data == NULL;
    if (m->flash) {
        const lf_bundle_layout *B = &m->flash->layout;
        in->is_flash = true;
        in->bundle_type = (int)B->type;
        in->bundle_rows = B->n_rows;
        in->bundle_record_bytes = B->record_bytes;
        in->bundle_stride = B->stride;
        in->bundle_group = B->group;
        in->bundle_compression = B->compression;
        for (uint32_t l = 0; l < m->flash->n_layer; l++) in->streamed_bytes += m->flash->layers[l].data_bytes;
    }
    if (in->tied_output) m->output = m->tok_embd;
    m->layers = calloc(in->n_layer, sizeof *m->layers);
    if (!m->layers) return LF_E_NOMEM;
    for (uint32_t l = 0; l < in->n_layer; l++) {
        lf_layer *L = &m->layers[l];
        char name[96];
#define NAME(s) (snprintf(name, sizeof name, "blk.%u." s ".weight", l), name)
        if ((st = bind_vector(m, NAME("attn_norm"), d, &L->attn_norm)) ||
            (st = bind_weight(m, NAME("attn_q"), q_dim, d, false, &L->wq)) ||
            (st = bind_weight(m, NAME("attn_k"), kv_dim, d, false, &L->wk)) ||
            (st = bind_weight(m, NAME("attn_v"), kv_dim, d, false, &L->wv)) ||
            (st = bind_weight(m, NAME("attn_output"), d, q_dim, false, &L->wo)) ||
            (st = bind_vector(m, NAME("ffn_norm"), d, &L->ffn_norm)))
            return st;
#undef NAME
#define NAME(s) (snprintf(name, sizeof name, "blk.%u." s, l), name)
        if (m->arch->qkv_bias &&
            ((st = bind_vector(m, NAME("attn_q.bias"), q_dim, &L->bq)) ||
             (st = bind_vector(m, NAME("attn_k.bias"), kv_dim, &L->bk)) ||
             (st = bind_vector(m, NAME("attn_v.bias"), kv_dim, &L->bv))))
            return st;
        if (m->arch->qk_norm && ((st = bind_vector(m, NAME("attn_q_norm.weight"), m->head_dim, &L->q_norm)) ||
                                 (st = bind_vector(m, NAME("attn_k_norm.weight"), m->head_dim, &L->k_norm))))
            return st;
#undef NAME
#define NAME(s) (snprintf(name, sizeof name, "blk.%u." s ".weight", l), name)
        if (in->n_expert > 1 && (st = bind_weight(m, NAME("ffn_gate_inp"), in->n_expert, d, false, &L->router))) return st;
        if (m->flash) {
            if (m->mode == LF_MODE_MMAP) /* records read in place from the mapping */
                L->bundle = (uint8_t *)m->map + m->flash->layers[l].data_offset;
            continue;
        }
        if (in->n_expert > 1) {
            const uint32_t ne = in->n_expert;
            if ((st = bind_stacked(m, NAME("ffn_gate_exps"), ne, ff, d, in->activation == LF_ACT_RELU, &L->gate)) ||
                (st = bind_stacked(m, NAME("ffn_up_exps"), ne, ff, d, false, &L->up)) ||
                (st = bind_stacked(m, NAME("ffn_down_exps"), ne, d, ff, false, &L->down)))
                return st;
            continue;
        }
        if ((st = bind_weight(m, NAME("ffn_gate"), ff, d, in->activation == LF_ACT_RELU, &L->gate)) ||
            (st = bind_weight(m, NAME("ffn_up"), ff, d, false, &L->up)) ||
            (st = bind_weight(m, NAME("ffn_down"), d, ff, false, &L->down)))
            return st;
#undef NAME
    }
    return LF_OK;
}

static void describe_tensors(lf_model *m) {
    lf_model_info *in = &m->info;
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        const lf_gguf_tensor *t = &m->gguf->tensors[i];
        uint64_t n = 1;
        for (uint32_t k = 0; k < t->n_dims; k++) n *= t->ne[k];
        /* a flash file's bundles hold the FFN's parameters in another
         * shape (and padding): they are counted from the layout instead */
        if (!strstr(m->tensor_names[i], ".ffn_bundle")) in->n_params += n;
        in->class_bytes[lf__tensor_class_of(m->tensor_names[i])] += t->nbytes;
    }
}

char *lf__gguf_str_dup(lf_gguf_str s) {
    char *c = malloc(s.len + 1);
    if (c) {
        memcpy(c, s.ptr, s.len);
        c[s.len] = '\0';
    }
    return c;
}

lf_status lf_model_open(const char *path, const lf_model_params *params, lf_model **out, char *errbuf, size_t errcap) {
    if (errbuf && errcap) errbuf[0] = '\0';
    if (!path || !out) return LF_E_INVALID_ARG;
    *out = NULL;
    const lf_model_params p = params ? *params : lf_model_default_params();
    lf_model *m = calloc(1, sizeof *m);
    if (!m) return LF_E_NOMEM;
    m->fd = -1;
    pthread_mutex_init(&m->budget_mu, NULL);
    m->log = (lf_logger){p.log, p.log_user};
    m->n_threads = p.n_threads > 0 ? p.n_threads : lf__cpu_count();
    lf_status st;
    char why[160] = "";
    if (!(m->kernels = lf__kernels_select(why, sizeof why))) {
        st = lf__err_set(&m->err, LF_E_INVALID_ARG, "%s", why);
        goto fail;
    }
    m->path = strdup(path);
    if (!m->path) {
        st = LF_E_NOMEM;
        goto fail;
    }
    if ((st = lf__open_input(path, 0, &m->fd, &m->map_size, &m->err))) goto fail;
    m->info.file_bytes = m->map_size;
    if ((st = lf__gguf_read_fd(m->fd, m->map_size, &m->gguf, &m->err))) goto fail;
    m->info.gguf_version = m->gguf->version;
    m->verify_checksums = p.verify_checksums;
    m->unbundled_reads = p.unbundled_reads;
    m->huge_pages = p.huge_pages;
    m->dram_budget = p.dram_budget;
    m->io_backend = p.io_backend;
    m->io_queue_depth = p.io_queue_depth; /* 0: open_loader's default */
    /* a flash file's header is checked before any of its metadata is used */
    if (lf__flash_detect(m->gguf) && m->verify_checksums && (st = lf__flash_verify_header(m->fd, m->gguf, &m->err)))
        goto fail;
    if (p.n_threads < 0 || p.n_threads > LF_THREADS_PER_CORE_MAX * lf__cpu_count()) {
        st = lf__err_set(&m->err, LF_E_INVALID_ARG, "%d compute threads on %d cores: at most %d", p.n_threads,
                         lf__cpu_count(), LF_THREADS_PER_CORE_MAX * lf__cpu_count());
        goto fail;
    }
    if (p.io_queue_depth > 1024) {
        st = lf__err_set(&m->err, LF_E_INVALID_ARG, "%u flash reads in flight: at most 1024", p.io_queue_depth);
        goto fail;
    }
    m->tensor_names = calloc(m->gguf->n_tensors + 1, sizeof *m->tensor_names);
    m->meta_keys = calloc(m->gguf->n_kv + 1, sizeof *m->meta_keys);
    if (!m->tensor_names || !m->meta_keys) {
        st = LF_E_NOMEM;
        goto fail;
    }
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++)
        if (!(m->tensor_names[i] = lf__gguf_str_dup(m->gguf->tensors[i].name))) {
            st = LF_E_NOMEM;
            goto fail;
        }
    for (uint64_t i = 0; i < m->gguf->n_kv; i++)
        if (!(m->meta_keys[i] = lf__gguf_str_dup(m->gguf->kv[i].key))) {
            st = LF_E_NOMEM;
            goto fail;
        }
    describe_tensors(m);
    if ((st = read_hparams(m, p.activation))) goto fail;
    if ((st = lf__tokenizer_load(m->gguf, &m->tok, &m->err))) goto fail;
    if (lf__flash_detect(m->gguf) && (st = lf__flash_open(m->gguf, m->fd, &m->flash, &m->err))) goto fail;
    if (m->flash) { /* the model's parameters, not the bundles' bytes */
        const lf_bundle_layout *B = &m->flash->layout;
        m->info.n_params += (uint64_t)m->info.n_layer * m->flash->n_ff * m->info.n_embd * B->n_rows;
    }
    m->info.n_vocab = lf__tokenizer_vocab_size(m->tok);
    m->mode = p.mode == LF_MODE_AUTO ? (m->flash ? LF_MODE_STREAM : auto_dense_mode(m)) : p.mode;
    if (m->mode == LF_MODE_RAM && m->flash) {
        st = lf__err_set(&m->err, LF_E_INVALID_ARG, "ram mode reads a plain GGUF into memory; %s is a flash file, "
                         "whose FFN streams: use stream mode (or mmap)", path);
        goto fail;
    }
    if (m->mode != LF_MODE_MMAP && m->mode != LF_MODE_RAM && !m->flash) {
        st = lf__err_set(&m->err, LF_E_INVALID_ARG, "%s mode reads FFN bundles from a flash file; convert %s to one "
                         "first", lf_mode_name(m->mode), path);
        goto fail;
    }
    if (m->unbundled_reads && (m->mode == LF_MODE_MMAP || m->flash->layout.compression != LF_COMPRESS_NONE)) {
        st = lf__err_set(&m->err, LF_E_INVALID_ARG, "unbundled reads (an ablation) need an uncompressed flash file in "
                         "stream, naive or hybrid mode");
        goto fail;
    }
    if (m->dram_budget && (m->mode == LF_MODE_MMAP || m->mode == LF_MODE_RAM)) { /* never ignored in silence */
        st = m->flash ? lf__err_set(&m->err, LF_E_INVALID_ARG, "a DRAM budget cannot be enforced in mmap mode, where the "
                                    "page cache decides; use stream, naive or hybrid mode, or cap mmap with a cgroup")
                      : lf__err_set(&m->err, LF_E_INVALID_ARG, "a DRAM budget needs a flash file, whose FFN can be "
                                    "streamed; %s is a plain GGUF: convert it to a flash file first", path);
        goto fail;
    }
    if (m->mode == LF_MODE_MMAP && m->flash && m->flash->layout.compression != LF_COMPRESS_NONE) {
        st = lf__err_set(&m->err, LF_E_UNSUPPORTED, "mmap mode reads bundles in place and needs an uncompressed flash file");
        goto fail;
    }
    if (m->flash && (m->flash->n_ff != m->info.n_ff * m->info.n_expert || m->flash->n_embd != m->info.n_embd ||
                     (m->flash->layout.n_rows == 2) != (m->info.activation == LF_ACT_RELU))) {
        st = lf__err_set(&m->err, LF_E_MODEL, "bundle layout does not match the model's FFN");
        goto fail;
    }
    m->tensor_ptr = calloc(m->gguf->n_tensors + 1, sizeof *m->tensor_ptr);
    if (!m->tensor_ptr) {
        st = LF_E_NOMEM;
        goto fail;
    }
    /* repacking runs on every core: a 7B model rearranges 4 GB */
    if (m->mode != LF_MODE_MMAP && lf__pool_create(m->n_threads, &m->load_pool)) {
        st = LF_E_NOMEM;
        goto fail;
    }
    if (m->mode == LF_MODE_MMAP) {
        if ((st = map_file(m))) goto fail;
    } else if (m->mode == LF_MODE_RAM) {
        if ((st = load_resident(m))) goto fail;
    } else {
        /* the resident part must fit before anything is read */
        const uint64_t need = lf__model_overhead_bytes(m) + resident_tensor_bytes(m);
        if (m->dram_budget && need > m->dram_budget) {
            st = lf__err_set(&m->err, LF_E_BUDGET, "the resident part of %s (embeddings, attention, norms, bundle index) "
                             "needs %" PRIu64 " bytes (%.1f MiB) but the budget is %" PRIu64 " bytes (%.1f MiB); raise "
                             "the budget or use a smaller quant type", path, need, (double)need / 1048576.0,
                             m->dram_budget, (double)m->dram_budget / 1048576.0);
            goto fail;
        }
        if ((st = load_resident(m)) || (st = open_loader(m))) goto fail;
        m->budget_fixed = need + lf__loader_buffer_bytes(m->loader);
        if (m->dram_budget && m->budget_fixed > m->dram_budget) {
            st = lf__err_set(&m->err, LF_E_BUDGET, "the resident part of %s and the loader's buffers need %" PRIu64
                             " bytes (%.1f MiB) but the budget is %" PRIu64 " bytes (%.1f MiB)", path, m->budget_fixed,
                             (double)m->budget_fixed / 1048576.0, m->dram_budget, (double)m->dram_budget / 1048576.0);
            goto fail;
        }
        m->budget_used = m->budget_fixed;
    }
    if ((st = verify_resident(m))) goto fail;
    st = bind_tensors(m);
    lf__pool_destroy(m->load_pool);
    m->load_pool = NULL;
    if (st) goto fail;
    {
        uint64_t total = 0;
        for (int c = 0; c < LF_CLASS_COUNT; c++) total += m->info.class_bytes[c];
        m->info.resident_bytes = total - m->info.streamed_bytes;
    }
    m->info.mode = m->mode;
    snprintf(m->info.kernels, sizeof m->info.kernels, "%s", m->kernels->name);
    snprintf(m->info.cpu_features, sizeof m->info.cpu_features, "%s", lf__cpu_features_string());
    lf__log(&m->log, LF_LOG_INFO, "loaded %s: %u layers, d_model %u, ffn %u, vocab %u, kernels %s", path,
            m->info.n_layer, m->info.n_embd, m->info.n_ff, m->info.n_vocab, m->kernels->name);
    *out = m;
    return LF_OK;
fail:
    if (st == LF_E_NOMEM && !m->err.msg[0]) lf__err_set(&m->err, st, "out of memory opening %s", path);
    lf__err_copy_out(&m->err, errbuf, errcap);
    lf_model_close(m);
    return st;
}

void lf_model_close(lf_model *m) {
    if (!m) return;
    if (m->layers) {
        for (uint32_t l = 0; l < m->info.n_layer; l++) {
            lf_layer *L = &m->layers[l];
            free(L->attn_norm);
            free(L->ffn_norm);
            free(L->bq);
            free(L->bk);
            free(L->bv);
            free(L->q_norm);
            free(L->k_norm);
        }
    }
    free(m->layers);
    free(m->output_norm);
    free(m->rope_freqs);
    if (m->tensor_names)
        for (size_t i = 0; m->tensor_names[i]; i++) free(m->tensor_names[i]);
    if (m->meta_keys)
        for (size_t i = 0; m->meta_keys[i]; i++) free(m->meta_keys[i]);
    free(m->tensor_names);
    free(m->prepacked);
    lf__pool_destroy(m->load_pool);
    free(m->meta_keys);
    lf__tokenizer_free(m->tok);
    lf__loader_close(m->loader);
    lf__flash_free(m->flash);
    lf__free_aligned(m->resident);
    free(m->tensor_ptr);
    if (m->map) munmap(m->map, m->map_size);
    if (m->fd >= 0) close(m->fd);
    lf__gguf_free(m->gguf);
    if (m->group_checked)
        for (uint32_t l = 0; l < m->info.n_layer; l++) free(m->group_checked[l]);
    free(m->group_checked);
    free(m->layer_checked);
    pthread_mutex_destroy(&m->budget_mu);
    free(m->path);
    free(m);
}

const char *lf_model_errmsg(const lf_model *m) { return m ? m->err.msg : ""; }

lf_status lf_model_get_info(const lf_model *m, lf_model_info *info) {
    if (!m || !info) return LF_E_INVALID_ARG;
    *info = m->info;
    return LF_OK;
}

size_t lf_model_tensor_count(const lf_model *m) { return m ? (size_t)m->gguf->n_tensors : 0; }

lf_status lf_model_tensor_get(const lf_model *m, size_t i, lf_tensor_info *out) {
    if (!m || !out || i >= m->gguf->n_tensors) return LF_E_INVALID_ARG;
    lf__tensor_info_fill(&m->gguf->tensors[i], m->tensor_names[i], out);
    return LF_OK;
}

void lf__tensor_info_fill(const lf_gguf_tensor *t, const char *name, lf_tensor_info *out) {
    out->name = name;
    out->type = (int)t->type;
    out->n_dims = t->n_dims;
    memcpy(out->ne, t->ne, sizeof out->ne);
    out->bytes = t->nbytes;
    out->file_offset = t->file_offset;
    out->klass = lf__tensor_class_of(name);
}

size_t lf_model_meta_count(const lf_model *m) { return m ? (size_t)m->gguf->n_kv : 0; }

const char *lf_model_meta_get(const lf_model *m, size_t i, char *value, size_t cap) {
    if (!m || i >= m->gguf->n_kv) return NULL;
    if (value && cap) lf__gguf_kv_format(&m->gguf->kv[i], value, cap);
    return m->meta_keys[i];
}

lf_token lf_token_bos(const lf_model *m) { return m ? lf__tokenizer_bos(m->tok) : -1; }
lf_token lf_token_eos(const lf_model *m) { return m ? lf__tokenizer_eos(m->tok) : -1; }
uint32_t lf_vocab_size(const lf_model *m) { return m ? m->info.n_vocab : 0; }
const lf_vocab *lf_model_vocab(const lf_model *m) { return m ? m->tok : NULL; }

lf_status lf_tokenize(const lf_model *m, const char *text, size_t len, bool add_bos, lf_token *tokens, size_t cap,
                      size_t *n_tokens) {
    if (!m || (!text && len) || !n_tokens || (!tokens && cap)) return LF_E_INVALID_ARG;
    return lf__tokenizer_encode(m->tok, text ? text : "", len, add_bos, tokens, cap, n_tokens);
}

int lf_token_to_piece(const lf_model *m, lf_token token, char *buf, size_t cap) {
    if (!m || (!buf && cap)) return LF_E_INVALID_ARG;
    return lf__tokenizer_piece(m->tok, token, buf, cap);
}

/* The model's budget ledger: sessions and FFN hooks take their part at
 * creation and give it back when destroyed. */
lf_status lf__model_ledger_take(lf_model *m, const char *who, uint64_t own, uint64_t want, uint64_t *taken, lf_err *err) {
    pthread_mutex_lock(&m->budget_mu);
    const uint64_t left = m->dram_budget - m->budget_used;
    const uint64_t take = want ? want : left;
    lf_status st = LF_OK;
    if (own > left || take > left || take < own) {
        const uint64_t sessions = m->budget_used - m->budget_fixed;
        st = lf__err_set(err, LF_E_BUDGET,
                         "%s needs %" PRIu64 " bytes (%.1f MiB) before any neuron is cached%s%s, but %" PRIu64
                         " bytes (%.1f MiB) of the budget of %.1f MiB are left: the model holds %.1f MiB and other "
                         "sessions %.1f MiB. Raise the budget, lower the context, or destroy a session",
                         who, own, (double)own / 1048576.0, want ? " and asks for " : "",
                         want ? (take < own ? "less than that" : "more than is left") : "", left,
                         (double)left / 1048576.0, (double)m->dram_budget / 1048576.0,
                         (double)m->budget_fixed / 1048576.0, (double)sessions / 1048576.0);
    } else {
        m->budget_used += take;
        *taken = take;
    }
    pthread_mutex_unlock(&m->budget_mu);
    return st;
}

void lf__model_ledger_give_back(lf_model *m, uint64_t bytes) {
    if (!bytes) return;
    pthread_mutex_lock(&m->budget_mu);
    m->budget_used -= bytes;
    pthread_mutex_unlock(&m->budget_mu);
}
