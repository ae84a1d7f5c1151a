/* cmd_run.c - `llmflash run`: generate text. stdout carries exactly the
 * prompt and the generated text; everything else goes to stderr. */
#include "cli.h"

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

int cmd_run(int argc, char **argv) {
    const char *model_path = NULL, *prompt = "";
    int n_predict = 128, threads = 0, top_k = 40, ctx = 0;
    float temp = 0.8f, top_p = 0.95f;
    uint64_t seed = 0;
    bool verbose = false, no_verify = false;
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

    int log_level = verbose ? LF_LOG_INFO : LF_LOG_WARN;
    lf_model_params mp = lf_model_default_params();
    mp.log = cli_log;
    mp.log_user = &log_level;
    mp.n_threads = threads;
    mp.verify_checksums = !no_verify;
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
