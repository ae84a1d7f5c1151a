/* cmd_run.c - `llmflash run`: generate text. stdout carries exactly the
 * prompt and the generated text; everything else goes to stderr. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static bool write_piece(void *user, const char *piece, size_t len) {
    (void)user;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return true;
}

/* The flash-against-DRAM traffic summary, and the JSON stats file. */
static void print_summary(const lf_session *sess, const char *stats_path) {
    lf_session_stats st;
    if (lf_session_get_stats(sess, &st)) return;
    char a[32], b[32], c[32];
    const uint64_t all = st.ffn_bytes_read + st.ffn_bytes_served;
    if (all) {
        cli_format_bytes(st.tokens ? st.ffn_bytes_read / st.tokens : 0, a, sizeof a);
        cli_format_bytes(st.tokens ? st.ffn_bytes_served / st.tokens : 0, b, sizeof b);
        fprintf(stderr, "\nllmflash: FFN per token: %s read from flash, %s served from DRAM (cache hit rate %.1f%%)\n", a,
                b, 100.0 * (double)st.ffn_bytes_served / (double)all);
        fprintf(stderr, "llmflash: neurons loaded %.1f/token, window union %llu neurons, evictions %llu, "
                "I/O wait %.0f of %.0f ms (%.0f%%), %.0f%% of read time hidden behind compute\n",
                st.tokens ? (double)st.neurons_loaded / (double)st.tokens : 0.0, (unsigned long long)st.window_union,
                (unsigned long long)(st.evictions + st.expirations), st.io_wait_ms, st.compute_ms,
                st.compute_ms > 0 ? 100.0 * st.io_wait_ms / st.compute_ms : 0.0,
                st.io_span_ms > 0 ? 100.0 * (1.0 - st.io_wait_ms / st.io_span_ms) : 0.0);
    }
    if (st.budget_total) {
        uint64_t used = 0;
        for (int i = 0; i < LF_BUDGET_PARTS; i++) used += st.budget_bytes[i];
        cli_format_bytes(st.budget_total, a, sizeof a);
        cli_format_bytes(used, b, sizeof b);
        cli_format_bytes(st.peak_rss_bytes, c, sizeof c);
        fprintf(stderr, "llmflash: budget %s, planned %s (", a, b);
        for (int i = 0; i < LF_BUDGET_PARTS; i++) {
            char x[32];
            cli_format_bytes(st.budget_bytes[i], x, sizeof x);
            fprintf(stderr, "%s%s %s", i ? ", " : "", lf_budget_part_name(i), x);
        }
        fprintf(stderr, "), peak RSS %s\n", c);
    }
    if (stats_path) {
        const size_t n = lf_session_stats_json(sess, NULL, 0);
        char *json = malloc(n + 1);
        FILE *f = json ? fopen(stats_path, "w") : NULL;
        if (f) {
            lf_session_stats_json(sess, json, n + 1);
            fputs(json, f);
            fclose(f);
        } else {
            fprintf(stderr, "llmflash run: cannot write %s\n", stats_path);
        }
        free(json);
    }
}

int cmd_run(int argc, char **argv) {
    const char *model_path = NULL, *prompt = "";
    int n_predict = 128, threads = 0, top_k = 40, ctx = 0;
    float temp = 0.8f, top_p = 0.95f;
    uint64_t seed = 0;
    bool verbose = false, no_verify = false;
    const char *mode = "auto", *predictor = "all", *stats_path = NULL, *io = "auto", *split = "even";
    uint64_t budget = 0;
    int window = 5;
    cli_opt opts[] = {
        {"--model", "-m", CLI_STR, &model_path, "GGUF model file (required)", false},
        {"--prompt", "-p", CLI_STR, &prompt, "prompt text; \"\" starts from BOS (default \"\")", false},
        {"--n-predict", "-n", CLI_INT, &n_predict, "tokens to generate (default 128)", false},
        {"--threads", "-t", CLI_INT, &threads, "compute threads (default: all cores)", false},
        {"--ctx", "-c", CLI_INT, &ctx, "context length (default: the model's, at most 4096)", false},
        {"--temp", NULL, CLI_FLOAT, &temp, "temperature; 0 is greedy (default 0.8)", false},
        {"--top-k", NULL, CLI_INT, &top_k, "top-k sampling, 0 disables (default 40)", false},
        {"--top-p", NULL, CLI_FLOAT, &top_p, "top-p sampling, 1 disables (default 0.95)", false},
        {"--seed", NULL, CLI_U64, &seed, "random seed (default: from the clock)", false},
        {"--mode", NULL, CLI_STR, &mode, "auto, mmap, stream, naive or hybrid (default auto: stream for flash files)", false},
        {"--dram-budget", NULL, CLI_SIZE, &budget, "hard memory limit, e.g. 2G (stream/naive/hybrid)", false},
        {"--window", NULL, CLI_INT, &window, "keep neurons used by the last K tokens (default 5)", false},
        {"--predictor", NULL, CLI_STR, &predictor, "mask source: all or oracle (default all)", false},
        {"--cache-split", NULL, CLI_STR, &split, "even, or measured: slots by each layer's use (default even)", false},
        {"--stats", NULL, CLI_STR, &stats_path, "write run statistics as JSON to FILE", false},
        {"--io", NULL, CLI_STR, &io, "flash read back-end: auto, uring or pread", false},
        {"--no-verify", NULL, CLI_FLAG, &no_verify, "flash files: skip bundle checksums", false},
        {"--verbose", "-v", CLI_FLAG, &verbose, "log loading details to stderr", false},
    };
    const char *pos[1];
    size_t n_pos;
    bool help;
    if (!cli_parse("run", argc, argv, 2, opts, sizeof opts / sizeof *opts, pos, 0, &n_pos, &help))
        return CLI_EXIT_USAGE;
    if (help) {
        printf("usage: llmflash run -m MODEL.gguf [-p PROMPT] [-n N] [options]\n\n"
               "Generates text. stdout holds the prompt followed by the generated text;\n"
               "timings go to stderr.\n\noptions:\n");
        cli_print_options(stdout, opts, sizeof opts / sizeof *opts);
        return CLI_EXIT_OK;
    }
    if (!model_path) {
        fprintf(stderr, "llmflash run: -m MODEL is required (see llmflash run --help)\n");
        return CLI_EXIT_USAGE;
    }
    if (n_predict < 0 || threads < 0 || ctx < 0 || temp < 0.0f || top_p <= 0.0f) {
        fprintf(stderr, "llmflash run: -n, -t, -c and --temp must not be negative, --top-p must be positive\n");
        return CLI_EXIT_USAGE;
    }
    if (!opts[8].seen) seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    lf_mode run_mode;
    if (strcmp(mode, "auto") == 0) run_mode = LF_MODE_AUTO;
    else if (strcmp(mode, "mmap") == 0) run_mode = LF_MODE_MMAP;
    else if (strcmp(mode, "stream") == 0) run_mode = LF_MODE_STREAM;
    else if (strcmp(mode, "naive") == 0) run_mode = LF_MODE_NAIVE;
    else if (strcmp(mode, "hybrid") == 0) run_mode = LF_MODE_HYBRID;
    else {
        fprintf(stderr, "llmflash run: --mode must be auto, mmap, stream, naive or hybrid\n");
        return CLI_EXIT_USAGE;
    }
    lf_mask_source mask;
    if (strcmp(predictor, "all") == 0) mask = LF_MASK_ALL;
    else if (strcmp(predictor, "oracle") == 0) mask = LF_MASK_ORACLE;
    else {
        fprintf(stderr, "llmflash run: --predictor must be all or oracle\n");
        return CLI_EXIT_USAGE;
    }
    lf_io_backend io_backend;
    if (strcmp(io, "auto") == 0) io_backend = LF_IO_BACKEND_AUTO;
    else if (strcmp(io, "uring") == 0) io_backend = LF_IO_BACKEND_URING;
    else if (strcmp(io, "pread") == 0) io_backend = LF_IO_BACKEND_PREAD;
    else {
        fprintf(stderr, "llmflash run: --io must be auto, uring or pread\n");
        return CLI_EXIT_USAGE;
    }
    if (strcmp(split, "even") != 0 && strcmp(split, "measured") != 0) {
        fprintf(stderr, "llmflash run: --cache-split must be even or measured\n");
        return CLI_EXIT_USAGE;
    }
    if (window < 1) {
        fprintf(stderr, "llmflash run: --window must be at least 1\n");
        return CLI_EXIT_USAGE;
    }

    int log_level = verbose ? LF_LOG_INFO : LF_LOG_WARN;
    lf_model_params mp = lf_model_default_params();
    mp.log = cli_log;
    mp.log_user = &log_level;
    mp.n_threads = threads;
    mp.verify_checksums = !no_verify;
    mp.mode = run_mode;
    mp.dram_budget = budget;
    mp.io_backend = io_backend;
    char err[512];
    lf_model *model = NULL;
    lf_session *sess = NULL;
    lf_sampler *sampler = NULL;
    int rc = CLI_EXIT_RUNTIME;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lf_status st = lf_model_open(model_path, &mp, &model, err, sizeof err);
    if (st) {
        fprintf(stderr, "llmflash run: cannot open %s: %s (%s)\n", model_path, err, lf_strerror(st));
        return CLI_EXIT_RUNTIME;
    }
    lf_session_params sp = lf_session_default_params();
    sp.n_ctx = (uint32_t)ctx;
    sp.window = (uint32_t)window;
    sp.mask = mask;
    sp.split = strcmp(split, "measured") == 0 ? LF_SPLIT_MEASURED : LF_SPLIT_EVEN;
    if ((st = lf_session_create(model, &sp, &sess, err, sizeof err))) {
        fprintf(stderr, "llmflash run: %s (%s)\n", err, lf_strerror(st));
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double load_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    lf_sampler_params smp = {.temperature = temp, .top_k = top_k, .top_p = top_p, .seed = seed};
    if ((st = lf_sampler_create(&smp, &sampler))) {
        fprintf(stderr, "llmflash run: bad sampling parameters (%s)\n", lf_strerror(st));
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    fputs(prompt, stdout);
    fflush(stdout);
    lf_generate_stats gs;
    st = lf_session_generate(sess, sampler, prompt, (uint32_t)n_predict, write_piece, NULL, &gs);
    if (isatty(STDOUT_FILENO)) fputc('\n', stdout);
    fflush(stdout);
    if (st) {
        fprintf(stderr, "llmflash run: generation failed: %s (%s)\n", lf_session_errmsg(sess), lf_strerror(st));
        goto out;
    }
    print_summary(sess, stats_path);
    fprintf(stderr, "\nllmflash: load %.1f ms | prompt %u tokens, %.2f ms/token | generated %u tokens, %.2f ms/token, %.2f tokens/s%s\n",
            load_ms, gs.n_prompt, gs.n_prompt ? gs.prompt_ms / gs.n_prompt : 0.0, gs.n_generated,
            gs.n_generated ? gs.generate_ms / gs.n_generated : 0.0,
            gs.generate_ms > 0 ? gs.n_generated * 1000.0 / gs.generate_ms : 0.0, gs.stopped_at_eos ? " (stopped at EOS)" : "");
    rc = CLI_EXIT_OK;
out:
    lf_sampler_destroy(sampler);
    lf_session_destroy(sess);
    lf_model_close(model);
    return rc;
}
