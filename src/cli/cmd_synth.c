/* cmd_synth.c - `llmflash synth`: write a GGUF of random weights, of any supported architecture. */
#include "cli.h"

#include <string.h>
#include <unistd.h>

int cmd_synth(int argc, char **argv) {
    lf_synth_params p = lf_synth_default_params();
    const char *out = NULL, *shape = NULL, *type = NULL, *act = NULL, *tok = NULL, *arch = NULL;
    int dim = 0, layers = 0, ffn = 0, heads = 0, kv_heads = 0, vocab = 0, ctx = 0, head_dim = -1, experts = -1,
        experts_used = -1;
    float skew = -1;
    float rope_base = -1;
    bool rope_freqs = false, tied = false;
    uint64_t seed = 1;
    float sparsity = -1, hot = -1, temporal = -1;
    bool force = false, quiet = false;
    cli_opt opts[] = {
        {"--output", "-o", CLI_STR, &out, "output GGUF file (required; or give it as the argument)", false},
        {"--shape", NULL, CLI_STR, &shape, "preset shape (default tiny)", false},
        {"--arch", NULL, CLI_STR, &arch, "architecture: llama, qwen2 (Q/K/V biases), qwen3 (Q/K norms) or qwen3moe "
         "(Qwen3 with experts) (default: the shape's)", false},
        {"--experts", NULL, CLI_INT, &experts, "a mixture of experts: experts per layer (0: a dense FFN; default: the "
         "shape's)", false},
        {"--experts-used", NULL, CLI_INT, &experts_used, "experts routed per token (default: the shape's)", false},
        {"--routing-skew", NULL, CLI_FLOAT, &skew, "how much a few experts win: 0 (even) to 16 (default: the shape's)",
         false},
        {"--dim", NULL, CLI_INT, &dim, "d_model", false},
        {"--layers", NULL, CLI_INT, &layers, "number of blocks", false},
        {"--ffn", NULL, CLI_INT, &ffn, "FFN neurons per layer (per expert, with experts)", false},
        {"--heads", NULL, CLI_INT, &heads, "attention heads", false},
        {"--kv-heads", NULL, CLI_INT, &kv_heads, "KV heads (grouped-query attention when fewer than --heads)", false},
        {"--vocab", NULL, CLI_INT, &vocab, "vocabulary size (built-in tokenizer needs >= 259)", false},
        {"--ctx", NULL, CLI_INT, &ctx, "context length recorded in the file", false},
        {"--head-dim", NULL, CLI_INT, &head_dim, "dimensions per head (default: the shape's, else dim / heads)", false},
        {"--rope-base", NULL, CLI_FLOAT, &rope_base, "rope frequency base (default: the architecture's)", false},
        {"--rope-freqs", NULL, CLI_FLAG, &rope_freqs, "llama: Llama 3.1's rope scaling, as a rope_freqs.weight tensor", false},
        {"--tied", NULL, CLI_FLAG, &tied, "no output.weight: the output projection is token_embd's", false},
        {"--type", NULL, CLI_STR, &type, "type of the weight matrices: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K, or Q4_K_M (llama.cpp's mix of Q4_K and Q6_K) (default Q8_0)", false},
        {"--activation", NULL, CLI_STR, &act, "silu, relu (gated) or relu_plain (default silu)", false},
        {"--act", NULL, CLI_STR, &act, "the same as --activation", false},
        {"--sparsity", NULL, CLI_FLOAT, &sparsity,
         "realistic activations: mean share of FFN neurons inactive per token, e.g. 0.95 (default: random weights)", false},
        {"--hot", NULL, CLI_FLOAT, &hot, "share of activations on the busiest 20% of neurons (default 0.2 + 0.6 * sparsity)",
         false},
        {"--temporal", NULL, CLI_FLOAT, &temporal,
         "union over 5 consecutive tokens / one token's set (default: recent tokens make 90% of the stream)", false},
        {"--seed", NULL, CLI_U64, &seed, "random seed (default 1)", false},
        {"--tokenizer-from", NULL, CLI_STR, &tok, "copy the tokenizer of this GGUF (sets the vocabulary)", false},
        {"--force", "-f", CLI_FLAG, &force, "overwrite an existing output file", false},
        {"--quiet", "-q", CLI_FLAG, &quiet, "no progress output", false},
    };
    const size_t n_opts = sizeof opts / sizeof *opts;
    const char *pos[1];
    size_t n_pos;
    bool help;
    if (!cli_parse("synth", argc, argv, 2, opts, n_opts, pos, 1, &n_pos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        printf("usage: llmflash synth [--shape NAME | --dim D --layers L --ffn F --heads H ...] [--type T] -o OUT.gguf\n\n"
               "Writes a GGUF with seeded random weights, tensor by tensor, of any architecture llmflash runs.\n"
               "Shapes: %s\n\noptions:\n", lf_synth_shape_names());
        cli_print_options(stdout, opts, n_opts);
        return CLI_EXIT_OK;
    }
    if (!out && n_pos == 1) out = pos[0];
    if (!out) {
        fprintf(stderr, "llmflash synth: an output file is required (-o OUT.gguf)\n");
        return CLI_EXIT_USAGE;
    }
    if (shape && lf_synth_shape_preset(shape, &p) != LF_OK) {
        fprintf(stderr, "llmflash synth: unknown shape '%s' (known: %s)\n", shape, lf_synth_shape_names());
        return CLI_EXIT_USAGE;
    }
    const int *dims[] = {&dim, &layers, &ffn, &heads, &kv_heads, &vocab, &ctx};
    uint32_t *fields[] = {&p.n_embd, &p.n_layer, &p.n_ff, &p.n_head, &p.n_head_kv, &p.n_vocab, &p.n_ctx};
    for (size_t i = 0; i < 7; i++) {
        if (*dims[i] < 0) {
            fprintf(stderr, "llmflash synth: dimensions must be positive\n");
            return CLI_EXIT_USAGE;
        }
        if (*dims[i] > 0) *fields[i] = (uint32_t)*dims[i];
    }
    if (heads > 0 && kv_heads == 0) p.n_head_kv = p.n_head;
    if (experts < -1 || experts_used < -1 || (skew != -1 && !(skew >= 0))) {
        fprintf(stderr, "llmflash synth: --experts, --experts-used and --routing-skew take values of 0 or more\n");
        return CLI_EXIT_USAGE;
    }
    if (experts >= 0) p.n_expert = (uint32_t)experts;
    if (experts_used >= 0) p.n_expert_used = (uint32_t)experts_used;
    if (skew >= 0) p.routing_skew = skew;
    if (arch) p.arch = arch;
    if (head_dim == 0 || head_dim < -1 || (rope_base != -1 && !(rope_base > 0))) {
        fprintf(stderr, "llmflash synth: --head-dim and --rope-base must be positive\n");
        return CLI_EXIT_USAGE;
    }
    if (head_dim > 0) p.head_dim = (uint32_t)head_dim;
    if (rope_base > 0) p.rope_freq_base = rope_base;
    p.rope_freqs |= rope_freqs;
    p.tied |= tied;
    if (type && (strcmp(type, "Q4_K_M") == 0 || strcmp(type, "q4_k_m") == 0)) {
        p.q4_k_m = true;
        p.type = LF_TYPE_Q4_K;
    } else if (type && lf_type_from_name(type, &p.type) != LF_OK) {
        fprintf(stderr, "llmflash synth: unknown or unsupported type '%s'\n", type);
        return CLI_EXIT_USAGE;
    }
    if (act) {
        if (strcmp(act, "silu") == 0) p.activation = LF_ACT_SILU_GATED;
        else if (strcmp(act, "relu") == 0) p.activation = LF_ACT_RELU_GATED;
        else if (strcmp(act, "relu_plain") == 0) p.activation = LF_ACT_RELU;
        else {
            fprintf(stderr, "llmflash synth: --activation must be silu, relu or relu_plain\n");
            return CLI_EXIT_USAGE;
        }
    }
    const float *knob_in[] = {&sparsity, &hot, &temporal};
    double *knob_out[] = {&p.sparsity, &p.hot, &p.temporal};
    for (size_t i = 0; i < 3; i++)
        if (*knob_in[i] >= 0) *knob_out[i] = *knob_in[i];
        else if (*knob_in[i] != -1) {
            fprintf(stderr, "llmflash synth: --sparsity, --hot and --temporal take values of 0 or more\n");
            return CLI_EXIT_USAGE;
        }
    p.seed = seed;
    p.tokenizer_from = tok;
    p.force = force;
    char err[512];
    lf_synth_activity act_pred;
    if (p.sparsity > 0.0) {
        const lf_status pst = lf_synth_predict_activity(&p, &act_pred, err, sizeof err);
        if (pst) {
            fprintf(stderr, "llmflash synth: %s (%s)\n", err, lf_strerror(pst));
            return pst == LF_E_INVALID_ARG ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
        }
    }
    cli_progress ps;
    cli_progress_init(&ps, "synth", quiet);
    p.progress = cli_progress_update;
    p.progress_user = &ps;
    const lf_status st = lf_synth_write(out, &p, err, sizeof err);
    if (st) {
        fprintf(stderr, "llmflash synth: %s (%s)%s\n", err, lf_strerror(st), cli_hint(st));
        return st == LF_E_INVALID_ARG ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
    }
    if (!quiet) {
        char b[32];
        cli_format_bytes(lf_synth_file_bytes(&p), b, sizeof b);
        fprintf(stderr, "wrote %s (%s): %s, d_model %u, %u layers, FFN %u, %u/%u heads, vocab %u, %s\n", out, b,
                p.arch ? p.arch : "llama", p.n_embd, p.n_layer, p.n_ff, p.n_head, p.n_head_kv, p.n_vocab,
                p.q4_k_m ? "Q4_K_M mix" : lf_type_name((int)p.type));
        if (p.sparsity > 0.0)
            fprintf(stderr,
                    "activity by design (random tokens, long runs): density %.4f, busiest 20%% carry %.3f, "
                    "5-token union %.2fx one token's set, %.4f new per token, recent tokens %.0f%% of the stream\n",
                    act_pred.density, act_pred.hot_share, act_pred.union5, act_pred.new_share,
                    100.0 * act_pred.context_share);
    }
    return CLI_EXIT_OK;
}
