/* cmd_bench.c - `llmflash bench`: generation speed of the dense engine
 * against the memory-bandwidth limit, measured in the same run. */
#include "cli.h"

#include <inttypes.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int cmd_bench(int argc, char **argv) {
    const char *model_path = NULL;
    int n_tokens = 16, warmup = 2, n_prompt = 0;
    bool no_membw = false;
    cli_model_opts mo = cli_model_opts_default();
    cli_opt opts[] = {
        {"--model", "-m", CLI_STR, &model_path, "GGUF model file (required)", false},
        {"--n-tokens", "-n", CLI_INT, &n_tokens, "tokens to time (default 16)", false},
        {"--warmup", NULL, CLI_INT, &warmup, "untimed tokens first, to fault the weights in (default 2)", false},
        {"--prompt", "-p", CLI_INT, &n_prompt, "also time a prompt of this many tokens, evaluated in batches (default 0: none)", false},
        {"--no-membw", NULL, CLI_FLAG, &no_membw, "skip the memory-bandwidth measurement", false},
        CLI_MODEL_OPTIONS(mo),
    };
    const size_t n_opts = sizeof opts / sizeof *opts;
    const char *pos[1];
    size_t n_pos;
    bool help;
    if (!cli_parse("bench", argc, argv, 2, opts, n_opts, pos, 0, &n_pos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        printf("usage: llmflash bench -m MODEL.gguf [-n N] [-t T] [--mode M] [--dram-budget B]\n\n"
               "Times single-token generation and compares it with the time needed to read\n"
               "every weight once at the measured DRAM bandwidth.\n\noptions:\n");
        cli_print_options(stdout, opts, n_opts);
        return CLI_EXIT_OK;
    }
    if (!model_path || n_tokens < 1 || warmup < 0 || n_prompt < 0) {
        fprintf(stderr, "llmflash bench: -m MODEL is required; -n must be positive, -p and --warmup not negative\n");
        return CLI_EXIT_USAGE;
    }
    mo.budget_seen = cli_opt_seen(opts, n_opts, &mo.budget);
    lf_model_params mp;
    lf_session_params sp;
    if (!cli_model_params("bench", &mo, &mp) || !cli_session_params("bench", &mo, model_path, &sp)) return CLI_EXIT_USAGE;
    const int threads = mo.threads;
    char err[512];
    lf_model *m = NULL;
    lf_session *s = NULL;
    lf_status st = lf_model_open(model_path, &mp, &m, err, sizeof err);
    if (st) {
        fprintf(stderr, "llmflash bench: cannot open %s: %s (%s)%s\n", model_path, err, lf_strerror(st), cli_hint(st));
        cli_trace_finish("bench", sp.trace, mo.trace_path, false);
        return CLI_EXIT_RUNTIME;
    }

    sp.n_ctx = (uint32_t)(n_tokens + warmup + n_prompt + 1);
    if ((st = lf_session_create(m, &sp, &s, err, sizeof err))) {
        fprintf(stderr, "llmflash bench: %s (%s)%s\n", err, lf_strerror(st), cli_hint(st));
        lf_model_close(m);
        cli_trace_finish("bench", sp.trace, mo.trace_path, false);
        return CLI_EXIT_RUNTIME;
    }
    lf_model_info in;
    lf_model_get_info(m, &in);
    /* bytes read per token: every weight except the embedding table, of
     * which one row is read */
    uint64_t per_token = 0;
    for (size_t i = 0; i < lf_model_tensor_count(m); i++) {
        lf_tensor_info t;
        lf_model_tensor_get(m, i, &t);
        if (strcmp(t.name, "token_embd.weight") == 0 && !in.tied_output) per_token += t.bytes / in.n_vocab;
        else per_token += t.bytes;
    }
    lf_sampler_params gp = {.temperature = 0.0f};
    lf_sampler *greedy;
    lf_sampler_create(&gp, &greedy);
    lf_token tok = lf_token_bos(m) >= 0 ? lf_token_bos(m) : 0;
    double t_timed = 0.0;
    for (int i = 0; i < warmup + n_tokens && !st; i++) {
        const double t0 = now_ms();
        st = lf_session_eval(s, &tok, 1);
        const double dt = now_ms() - t0;
        if (i >= warmup) t_timed += dt;
        if (!st) tok = lf_sampler_sample(greedy, lf_session_logits(s), in.n_vocab);
    }
    /* the prompt after the warm-up, so it is timed on weights in memory */
    double prompt_ms = 0.0;
    if (!st && n_prompt > 0) {
        lf_token *toks = malloc((size_t)n_prompt * sizeof *toks);
        if (!toks) st = LF_E_NOMEM;
        for (int i = 0; toks && i < n_prompt; i++) toks[i] = (lf_token)(3 + (i * 7919) % (int)(in.n_vocab - 3));
        const double t0 = now_ms();
        if (toks) st = lf_session_eval(s, toks, (size_t)n_prompt);
        prompt_ms = now_ms() - t0;
        free(toks);
    }
    lf_sampler_destroy(greedy);
    if (st) {
        fprintf(stderr, "llmflash bench: %s (%s)\n", lf_session_errmsg(s), lf_strerror(st));
        lf_session_destroy(s);
        lf_model_close(m);
        cli_trace_finish("bench", sp.trace, mo.trace_path, false);
        return CLI_EXIT_RUNTIME;
    }
    const double ms_tok = t_timed / n_tokens;
    const double eff_gbs = (double)per_token / (ms_tok / 1e3) / 1e9;
    char b[32];
    cli_format_bytes(per_token, b, sizeof b);
    printf("model:                 %s (%s, d_model %u, %u layers)\n", model_path, in.name[0] ? in.name : in.architecture,
           in.n_embd, in.n_layer);
    printf("weights read / token:  %s\n", b);
    lf_session_stats ss;
    lf_session_get_stats(s, &ss);
    printf("mode:                  %s%s\n", lf_mode_name(in.mode), mp.dram_budget ? " under a DRAM budget" : "");
    char rp[32];
    cli_format_bytes(in.repacked_bytes, rp, sizeof rp);
    printf("kernels:               %s (CPU: %s); %s of weights repacked\n", in.kernels, in.cpu_features, rp);
    printf("generation:            %.2f ms/token (%.2f tokens/s) over %d tokens, %d threads\n", ms_tok, 1e3 / ms_tok,
           n_tokens, threads ? threads : cli_cpu_count());
    if (ss.ffn_bytes_read) {
        char r[32];
        cli_format_bytes(ss.ffn_bytes_read / (ss.tokens ? ss.tokens : 1), r, sizeof r);
        printf("read from flash:       %s/token, I/O wait %.0f%% of the time\n", r,
               ss.compute_ms > 0 ? 100.0 * ss.io_wait_ms / ss.compute_ms : 0.0);
    }
    if (n_prompt > 0)
        printf("prompt:                %.2f ms/token (%.2f tokens/s) over %d tokens in batches of %d\n",
               prompt_ms / n_prompt, 1e3 * n_prompt / prompt_ms, n_prompt, sp.n_batch ? (int)sp.n_batch : LF_DEFAULT_BATCH);
    printf("effective bandwidth:   %.2f GB/s\n", eff_gbs);
    if (!no_membw) {
        const double bw = lf_memory_read_bandwidth(threads, 1ull << 30);
        const double limit_ms = bw > 0 ? (double)per_token / bw * 1e3 : 0.0;
        printf("DRAM read bandwidth:   %.2f GB/s (measured now, same threads)\n", bw / 1e9);
        printf("bandwidth limit:       %.2f ms/token; this run is at %.0f%% of it\n", limit_ms,
               ms_tok > 0 ? 100.0 * limit_ms / ms_tok : 0.0);
    }
    lf_session_destroy(s);
    lf_model_close(m);
    return cli_trace_finish("bench", sp.trace, mo.trace_path, true) ? CLI_EXIT_OK : CLI_EXIT_RUNTIME;
}
