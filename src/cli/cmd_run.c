/* cmd_run.c - `llmflash run`: generate text. stdout carries exactly the
 * prompt and the generated text; everything else goes to stderr. */
#include "cli.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool write_piece(void *user, const char *piece, size_t len) {
    (void)user;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return true;
}

static void print_phase(const char *name, const lf_phase_stats *p) {
    char a[32];
    cli_format_bytes(p->tokens ? p->ffn_bytes_read / p->tokens : 0, a, sizeof a);
    fprintf(stderr, "llmflash: %s: %" PRIu64 " tokens, %.2f ms/token, %s/token read from flash, I/O wait %.0f ms\n", name,
            p->tokens, p->tokens ? p->ms / (double)p->tokens : 0.0, a, p->io_wait_ms);
}

/* The flash-against-DRAM traffic summary. */
static void print_summary(const lf_session *sess) {
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
        print_phase("prompt", &st.prompt);
        print_phase("generation", &st.generation);
    } else if (st.device_read_bytes || st.major_faults) {
        cli_format_bytes(st.device_read_bytes, a, sizeof a);
        fprintf(stderr, "\nllmflash: read from the device: %s in %" PRIu64 " major page faults (page cache)\n", a,
                st.major_faults);
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
}

int cmd_run(int argc, char **argv) {
    const char *model_path = NULL, *prompt_arg = NULL, *prompt_file = NULL;
    int n_predict = 128;
    cli_sampling_opts so = cli_sampling_opts_default();
    bool ignore_eos = false;
    const char *stats_path = NULL, *split = "even";
    int window = 5;
    cli_model_opts mo = cli_model_opts_default();
    cli_opt opts[] = {
        {"--model", "-m", CLI_STR, &model_path, "GGUF model file (required)", false},
        {"--prompt", "-p", CLI_STR, &prompt_arg, "prompt text, or - to read it from stdin (default: start from BOS)",
         false},
        {"--file", "-f", CLI_STR, &prompt_file, "read the prompt from FILE", false},
        {"--n-predict", "-n", CLI_INT, &n_predict, "tokens to generate; -1: until EOS or the context is full (default 128)",
         false},
        {"--ignore-eos", NULL, CLI_FLAG, &ignore_eos, "never stop at end-of-sequence", false},
        CLI_SAMPLING_OPTIONS(so),
        {"--window", NULL, CLI_INT, &window, "keep neurons used by the last K tokens (default 5)", false},
        {"--cache-split", NULL, CLI_STR, &split, "even, or measured: slots by each layer's use (default even)", false},
        {"--stats", NULL, CLI_STR, &stats_path, "write run statistics as JSON to FILE (- for stdout)", false},
        CLI_MODEL_OPTIONS(mo),
    };
    const size_t n_opts = sizeof opts / sizeof *opts;
    const char *pos[1];
    size_t n_pos;
    bool help;
    if (!cli_parse("run", argc, argv, 2, opts, n_opts, pos, 0, &n_pos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        printf("usage: llmflash run -m MODEL.gguf [-p PROMPT | -f FILE] [-n N] [options]\n\n"
               "Generates text. stdout holds the prompt followed by the generated text;\n"
               "timings go to stderr.\n\noptions:\n");
        cli_print_options(stdout, opts, n_opts);
        return CLI_EXIT_OK;
    }
    if (!model_path) {
        fprintf(stderr, "llmflash run: -m MODEL is required (see llmflash run --help)\n");
        return CLI_EXIT_USAGE;
    }
    if (prompt_arg && prompt_file) {
        fprintf(stderr, "llmflash run: give the prompt with -p or -f, not both\n");
        return CLI_EXIT_USAGE;
    }
    if (n_predict < -1) {
        fprintf(stderr, "llmflash run: -n must be -1 or more\n");
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
    mo.budget_seen = cli_opt_seen(opts, n_opts, &mo.budget);
    lf_model_params mp;
    lf_session_params sp;
    lf_sampler_params smp;
    if (!cli_model_params("run", &mo, &mp) || !cli_session_params("run", &mo, model_path, &sp) ||
        !cli_sampler_params("run", opts, n_opts, &so, mo.verbose, &smp))
        return CLI_EXIT_USAGE;

    char *prompt_buf = NULL;
    const char *prompt = prompt_arg ? prompt_arg : "";
    if (prompt_file || (prompt_arg && strcmp(prompt_arg, "-") == 0)) {
        size_t len;
        char why[128];
        const char *src = prompt_file ? prompt_file : "-";
        if (!(prompt_buf = cli_read_text(src, &len, why, sizeof why))) {
            fprintf(stderr, "llmflash run: cannot read the prompt from %s: %s\n", prompt_file ? prompt_file : "stdin",
                    why);
            return CLI_EXIT_RUNTIME;
        }
        if (strlen(prompt_buf) != len) {
            fprintf(stderr, "llmflash run: the prompt in %s contains a NUL byte\n", prompt_file ? prompt_file : "stdin");
            free(prompt_buf);
            return CLI_EXIT_RUNTIME;
        }
        prompt = prompt_buf;
    }

    char err[512];
    lf_model *model = NULL;
    lf_session *sess = NULL;
    lf_sampler *sampler = NULL;
    int rc = CLI_EXIT_RUNTIME;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lf_status st = lf_model_open(model_path, &mp, &model, err, sizeof err);
    if (st) {
        fprintf(stderr, "llmflash run: cannot open %s: %s (%s)%s\n", model_path, err, lf_strerror(st), cli_hint(st));
        free(prompt_buf);
        cli_trace_finish("run", sp.trace, mo.trace_path, false);
        return CLI_EXIT_RUNTIME;
    }
    sp.window = (uint32_t)window;
    sp.split = strcmp(split, "measured") == 0 ? LF_SPLIT_MEASURED : LF_SPLIT_EVEN;
    if ((st = lf_session_create(model, &sp, &sess, err, sizeof err))) {
        fprintf(stderr, "llmflash run: %s (%s)%s\n", err, lf_strerror(st), cli_hint(st));
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double load_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    if ((st = lf_sampler_create(&smp, &sampler))) {
        fprintf(stderr, "llmflash run: bad sampling parameters (%s)\n", lf_strerror(st));
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    lf_generate_params gp = lf_generate_default_params();
    gp.n_predict = n_predict < 0 ? LF_PREDICT_UNTIL_DONE : (uint32_t)n_predict;
    gp.ignore_eos = ignore_eos;
    gp.on_piece = write_piece;
    fputs(prompt, stdout);
    fflush(stdout);
    lf_generate_stats gs;
    st = lf_session_generate(sess, sampler, prompt, &gp, &gs);
    /* a terminal gets a newline, so the stderr summary starts on its own line */
    if (isatty(STDOUT_FILENO)) fputc('\n', stdout);
    fflush(stdout);
    if (st) {
        fprintf(stderr, "llmflash run: generation failed: %s (%s)\n", lf_session_errmsg(sess), lf_strerror(st));
        goto out;
    }
    if (gs.stopped_at_ctx)
        fprintf(stderr, "llmflash: warning: the context of %u tokens is full: stopped after %u generated tokens "
                "(raise --ctx for more)\n", lf_session_position(sess), gs.n_generated);
    print_summary(sess);
    /* ms/token counts only tokens that went through the model: the last
     * sampled token is not evaluated, so -n 1 evaluates none */
    fprintf(stderr, "\nllmflash: load %.1f ms | prompt %u tokens, %.2f ms/token | generated %u tokens", load_ms,
            gs.n_prompt, gs.n_prompt ? gs.prompt_ms / gs.n_prompt : 0.0, gs.n_generated);
    if (gs.n_evaluated)
        fprintf(stderr, ", %.2f ms/token, %.2f tokens/s", gs.generate_ms / gs.n_evaluated,
                gs.n_evaluated * 1000.0 / gs.generate_ms);
    else
        fprintf(stderr, " (none evaluated after the prompt, so no generation speed)");
    fprintf(stderr, "%s\n", gs.stopped_at_eos ? " (stopped at EOS)" : "");
    rc = CLI_EXIT_OK;
    if (stats_path && !cli_write_stats("run", sess, stats_path)) rc = CLI_EXIT_RUNTIME;
out:
    free(prompt_buf);
    lf_sampler_destroy(sampler);
    lf_session_destroy(sess);
    lf_model_close(model);
    if (!cli_trace_finish("run", sp.trace, mo.trace_path, rc == CLI_EXIT_OK) && rc == CLI_EXIT_OK) rc = CLI_EXIT_RUNTIME;
    return rc;
}
