/* cmd_inspect.c - `llmflash inspect`: what a GGUF model holds. */
#include "cli.h"

#include <inttypes.h>
#include <string.h>

static const char *class_name(lf_tensor_class c) {
    switch (c) {
    case LF_CLASS_EMBEDDING: return "embeddings";
    case LF_CLASS_ATTENTION: return "attention";
    case LF_CLASS_FFN: return "ffn";
    default: return "other";
    }
}

static const char *activation_name(lf_activation a) {
    switch (a) {
    case LF_ACT_SILU_GATED: return "silu (gated, SwiGLU)";
    case LF_ACT_RELU_GATED: return "relu (gated)";
    default: return "relu (plain)";
    }
}

static void print_tensor_table(size_t n, lf_status (*get)(const void *, size_t, lf_tensor_info *), const void *h) {
    printf("\n%-32s %-6s %-22s %12s  %s\n", "tensor", "type", "shape", "bytes", "class");
    for (size_t i = 0; i < n; i++) {
        lf_tensor_info t;
        get(h, i, &t);
        char shape[64];
        int k = snprintf(shape, sizeof shape, "[%" PRIu64, t.ne[0]);
        for (uint32_t d = 1; d < t.n_dims && k < (int)sizeof shape; d++)
            k += snprintf(shape + k, sizeof shape - (size_t)k, ", %" PRIu64, t.ne[d]);
        if (k < (int)sizeof shape) snprintf(shape + k, sizeof shape - (size_t)k, "]");
        char type[16];
        snprintf(type, sizeof type, "%s", lf_type_name(t.type));
        if (strcmp(type, "?") == 0) snprintf(type, sizeof type, "ggml#%d", t.type);
        printf("%-32s %-6s %-22s %12" PRIu64 "  %s\n", t.name, type, shape, t.bytes, class_name(t.klass));
    }
}

static lf_status model_tensor(const void *m, size_t i, lf_tensor_info *t) { return lf_model_tensor_get(m, i, t); }
static lf_status file_tensor(const void *f, size_t i, lf_tensor_info *t) { return lf_gguf_file_tensor_get(f, i, t); }

/* A GGUF llmflash cannot run (another architecture, a vocab-only file):
 * what it holds, and why it cannot run. Exit 0: describing it worked. */
static int describe_file(const char *path, const char *why, lf_status why_st, bool no_tensors) {
    char err[512];
    lf_gguf_file *f;
    lf_status st = lf_gguf_file_open(path, &f, err, sizeof err);
    if (st) {
        fprintf(stderr, "llmflash inspect: cannot open %s (%s)%s\n", err, lf_strerror(st), cli_hint(st));
        return CLI_EXIT_RUNTIME;
    }
    char b[32], val[512];
    cli_format_bytes(lf_gguf_file_size(f), b, sizeof b);
    printf("file:           %s (%s, GGUF v%u)\n", path, b, lf_gguf_file_version(f));
    bool has_arch = false;
    for (size_t i = 0; i < lf_gguf_file_meta_count(f); i++) {
        const char *key = lf_gguf_file_meta_get(f, i, val, sizeof val);
        if (strcmp(key, "general.architecture") == 0) {
            printf("architecture:   %s\n", val);
            has_arch = true;
        }
    }
    if (!has_arch) printf("architecture:   - (no general.architecture)\n");
    printf("runs here:      no: %s (%s)\n", why, lf_strerror(why_st));
    lf_vocab *v;
    if (lf_vocab_open(path, &v, err, sizeof err) == LF_OK) {
        printf("tokenizer:      %u tokens, BOS %d, EOS %d, EOT %d, BOS added to prompts: %s\n", lf_vocab_n_tokens(v),
               lf_vocab_bos(v), lf_vocab_eos(v), lf_vocab_eot(v), lf_vocab_adds_bos(v) ? "yes" : "no");
        lf_vocab_close(v);
    } else {
        printf("tokenizer:      none usable (%s)\n", err);
    }
    printf("tensors:        %zu\n", lf_gguf_file_tensor_count(f));
    printf("\nmetadata:\n");
    for (size_t i = 0; i < lf_gguf_file_meta_count(f); i++) {
        const char *key = lf_gguf_file_meta_get(f, i, val, sizeof val);
        printf("  %-40s %s\n", key, val);
    }
    if (!no_tensors && lf_gguf_file_tensor_count(f)) print_tensor_table(lf_gguf_file_tensor_count(f), file_tensor, f);
    lf_gguf_file_close(f);
    return CLI_EXIT_OK;
}

int cmd_inspect(int argc, char **argv) {
    bool no_tensors = false, meta = false;
    cli_opt opts[] = {
        {"--no-tensors", NULL, CLI_FLAG, &no_tensors, "omit the tensor table", false},
        {"--metadata", NULL, CLI_FLAG, &meta, "list every metadata key", false},
    };
    const char *pos[1];
    size_t n_pos;
    bool help;
    if (!cli_parse("inspect", argc, argv, 2, opts, 2, pos, 1, &n_pos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        printf("usage: llmflash inspect MODEL.gguf [--no-tensors] [--metadata]\n\noptions:\n");
        cli_print_options(stdout, opts, 2);
        return CLI_EXIT_OK;
    }
    if (n_pos != 1) {
        fprintf(stderr, "llmflash inspect: expected one MODEL.gguf (see llmflash inspect --help)\n");
        return CLI_EXIT_USAGE;
    }
    char err[512];
    lf_model *m;
    /* mapped, so a big file is not read to be described; a compressed
     * flash file cannot be mapped and opens in its own mode */
    lf_model_params mp = lf_model_default_params();
    mp.mode = LF_MODE_MMAP;
    lf_status st = lf_model_open(pos[0], &mp, &m, err, sizeof err);
    if (st == LF_E_UNSUPPORTED) st = lf_model_open(pos[0], NULL, &m, err, sizeof err);
    if (st == LF_E_UNSUPPORTED || st == LF_E_MODEL) return describe_file(pos[0], err, st, no_tensors);
    if (st) {
        fprintf(stderr, "llmflash inspect: cannot open %s: %s (%s)%s\n", pos[0], err, lf_strerror(st), cli_hint(st));
        return CLI_EXIT_RUNTIME;
    }
    lf_model_info in;
    lf_model_get_info(m, &in);
    char b[32];
    cli_format_bytes(in.file_bytes, b, sizeof b);
    printf("file:           %s (%s, GGUF v%u)\n", pos[0], b, in.gguf_version);
    printf("name:           %s\n", in.name[0] ? in.name : "-");
    printf("architecture:   %s\n", in.architecture);
    printf("parameters:     %" PRIu64 " (%.2f M)\n", in.n_params, (double)in.n_params / 1e6);
    printf("vocabulary:     %u (BOS %d, EOS %d)\n", in.n_vocab, lf_token_bos(m), lf_token_eos(m));
    printf("context:        %u\n", in.n_ctx_train);
    printf("d_model:        %u\n", in.n_embd);
    printf("layers:         %u\n", in.n_layer);
    printf("heads:          %u (KV heads %u%s)\n", in.n_head, in.n_head_kv, in.n_head_kv < in.n_head ? ", grouped-query" : "");
    printf("head size:      %u (rotary dims %u, freq base %g)\n", in.head_dim, in.n_rot, in.rope_freq_base);
    if (in.n_expert > 1)
        printf("experts:        %u per layer, %u routed per token, %u neurons each, activation %s\n", in.n_expert,
               in.n_expert_used, in.n_ff, activation_name(in.activation));
    else
        printf("ffn neurons:    %u per layer, activation %s\n", in.n_ff, activation_name(in.activation));
    printf("rms eps:        %g\n", in.rms_eps);
    printf("kernels:        %s (CPU: %s)\n", in.kernels, in.cpu_features);
    printf("output:         %s\n", in.tied_output ? "tied to token_embd" : "separate output.weight");
    if (in.is_flash) {
        char rb[32], sb[32], res[32], str[32];
        cli_format_bytes(in.bundle_record_bytes, rb, sizeof rb);
        cli_format_bytes(in.bundle_stride, sb, sizeof sb);
        cli_format_bytes(in.resident_bytes, res, sizeof res);
        cli_format_bytes(in.streamed_bytes, str, sizeof str);
        printf("\nflash layout:   neuron bundles of %s (%s rows of %s), one per FFN neuron\n",
               in.bundle_rows == 3 ? "gate, up, down" : "up, down", lf_type_name(in.bundle_type),
               in.bundle_rows == 3 ? "3" : "2");
        if (in.n_expert > 1) {
            char eb[32];
            cli_format_bytes(in.bundle_record_bytes * in.n_ff, eb, sizeof eb);
            printf("experts:        each expert's %u bundles contiguous, %s, one read each; expert stride %llu (%s)\n",
                   in.n_ff, eb, (unsigned long long)in.bundle_stride, sb);
            printf("bytes/neuron:   %llu (%s)\n", (unsigned long long)in.bundle_record_bytes, rb);
        } else {
            printf("bytes/neuron:   %llu (%s), stride %llu (%s)\n", (unsigned long long)in.bundle_record_bytes, rb,
                   (unsigned long long)in.bundle_stride, sb);
        }
        printf("compression:    %s, %u neuron%s per group, xxh64 per group\n",
               in.bundle_compression == LF_COMPRESS_NONE ? "none" : in.bundle_compression == LF_COMPRESS_LZ4 ? "lz4" : "zstd",
               in.bundle_group, in.bundle_group == 1 ? "" : "s");
        printf("resident:       %s (embeddings, attention, norms, bundle index)\n", res);
        printf("streamed:       %s (FFN bundles on flash)\n", str);
    }
    if (meta) {
        printf("\nmetadata:\n");
        char val[512];
        for (size_t i = 0; i < lf_model_meta_count(m); i++) {
            const char *key = lf_model_meta_get(m, i, val, sizeof val);
            printf("  %-40s %s\n", key, val);
        }
    }
    if (!no_tensors) print_tensor_table(lf_model_tensor_count(m), model_tensor, m);
    printf("\nbytes by class:\n");
    uint64_t total = 0;
    for (int c = 0; c < LF_CLASS_COUNT; c++) total += in.class_bytes[c];
    for (int c = 0; c < LF_CLASS_COUNT; c++) {
        cli_format_bytes(in.class_bytes[c], b, sizeof b);
        printf("  %-12s %14" PRIu64 "  %10s  %5.1f%%\n", class_name((lf_tensor_class)c), in.class_bytes[c], b,
               total ? 100.0 * (double)in.class_bytes[c] / (double)total : 0.0);
    }
    cli_format_bytes(total, b, sizeof b);
    printf("  %-12s %14" PRIu64 "  %10s\n", "total", total, b);
    lf_model_close(m);
    return CLI_EXIT_OK;
}
