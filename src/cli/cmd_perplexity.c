/* cmd_perplexity.c - `llmflash perplexity`: how well a model predicts a text.
 * The text is tokenized without BOS and cut into consecutive chunks; each
 * chunk is evaluated after a BOS and every one of its positions is scored. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cmd_perplexity(int argc, char **argv) {
    const char *model_path = NULL, *text_path = NULL, *stats_path = NULL;
    int chunk = 255, max_chunks = 0;
    bool quiet = false;
    cli_model_opts mo = cli_model_opts_default();
    cli_opt opts[] = {
        {"--model", "-m", CLI_STR, &model_path, "GGUF or flash model (required)", false},
        {"--file", "-f", CLI_STR, &text_path, "UTF-8 text to score, - for stdin (required)", false},
        {"--chunk", NULL, CLI_INT, &chunk, "tokens per chunk, each after a BOS (default 255)", false},
        {"--max-chunks", NULL, CLI_INT, &max_chunks, "score at most this many chunks (default all)", false},
        {"--quiet", "-q", CLI_FLAG, &quiet, "no progress on stderr", false},
        {"--stats", NULL, CLI_STR, &stats_path, "write statistics as JSON to FILE (- for stdout)", false},
        CLI_MODEL_OPTIONS(mo),
    };
    const size_t n_opts = sizeof opts / sizeof *opts;
    const char *pos[1];
    size_t n_pos;
    bool help;
    if (!cli_parse("perplexity", argc, argv, 2, opts, n_opts, pos, 0, &n_pos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        printf("usage: llmflash perplexity -m MODEL -f TEXT [--chunk N] [--mode M] [--dram-budget B]\n\noptions:\n");
        cli_print_options(stdout, opts, n_opts);
        return CLI_EXIT_OK;
    }
    if (!model_path || !text_path || chunk < 2 || max_chunks < 0) {
        fprintf(stderr, "llmflash perplexity: -m MODEL and -f TEXT are required; --chunk must be at least 2\n");
        return CLI_EXIT_USAGE;
    }
    mo.budget_seen = cli_opt_seen(opts, n_opts, &mo.budget);
    lf_model_params mp;
    lf_session_params sp;
    if (!cli_model_params("perplexity", &mo, &mp) || !cli_session_params("perplexity", &mo, model_path, &sp)) return CLI_EXIT_USAGE;
    size_t len;
    char why[128];
    char *text = cli_read_text(text_path, &len, why, sizeof why);
    if (!text) {
        fprintf(stderr, "llmflash perplexity: cannot read %s: %s\n", text_path, why);
        cli_trace_finish("perplexity", sp.trace, mo.trace_path, false);
        return CLI_EXIT_RUNTIME;
    }
    char err[512];
    lf_model *m = NULL;
    lf_session *s = NULL;
    lf_token *toks = NULL;
    int rc = CLI_EXIT_RUNTIME;
    lf_status st = lf_model_open(model_path, &mp, &m, err, sizeof err);
    if (st) {
        fprintf(stderr, "llmflash perplexity: cannot open %s: %s (%s)%s\n", model_path, err, lf_strerror(st), cli_hint(st));
        goto out;
    }

    sp.n_ctx = (uint32_t)chunk + 1;
    if ((st = lf_session_create(m, &sp, &s, err, sizeof err))) {
        fprintf(stderr, "llmflash perplexity: %s (%s)%s\n", err, lf_strerror(st), cli_hint(st));
        goto out;
    }
    size_t n_tok = 0;
    lf_tokenize(m, text, len, false, NULL, 0, &n_tok);
    toks = malloc((n_tok ? n_tok : 1) * sizeof *toks);
    if (!toks || lf_tokenize(m, text, len, false, toks, n_tok, &n_tok) != LF_OK) {
        fprintf(stderr, "llmflash perplexity: tokenizing %s failed\n", text_path);
        goto out;
    }
    if (n_tok == 0) { /* an empty text has no perplexity: never print -nan with exit 0 */
        fprintf(stderr, "llmflash perplexity: %s holds no text to score\n", text_path);
        goto out;
    }
    const size_t total_chunks = (n_tok + (size_t)chunk - 1) / (size_t)chunk;
    const size_t todo = max_chunks && (size_t)max_chunks < total_chunks ? (size_t)max_chunks : total_chunks;
    const uint32_t n_vocab = lf_vocab_size(m);
    const bool tty = isatty(STDERR_FILENO) != 0;
    const lf_token bos = lf_token_bos(m);
    double nll = 0.0;
    size_t scored = 0, chunks = 0;
    for (size_t c0 = 0; c0 < n_tok && (!max_chunks || chunks < (size_t)max_chunks); c0 += (size_t)chunk, chunks++) {
        const size_t c1 = c0 + (size_t)chunk < n_tok ? c0 + (size_t)chunk : n_tok;
        lf_session_reset(s);
        lf_token prev = bos;
        for (size_t i = c0; i < c1; i++) {
            if ((st = lf_session_eval(s, &prev, 1))) {
                fprintf(stderr, "\nllmflash perplexity: %s (%s)\n", lf_session_errmsg(s), lf_strerror(st));
                goto out;
            }
            const float *lg = lf_session_logits(s);
            float max = lg[0];
            for (uint32_t v = 1; v < n_vocab; v++) max = lg[v] > max ? lg[v] : max;
            double sum = 0.0;
            for (uint32_t v = 0; v < n_vocab; v++) sum += exp((double)lg[v] - max);
            nll += -((double)lg[toks[i]] - max - log(sum));
            scored++;
            prev = toks[i];
        }
        /* progress: updated in place on a terminal, a line per 10% otherwise */
        if (!quiet && tty)
            fprintf(stderr, "\rperplexity: chunk %zu of %zu, %.4f so far", chunks + 1, todo, exp(nll / (double)scored));
        else if (!quiet && (chunks + 1) * 10 / todo != chunks * 10 / todo)
            fprintf(stderr, "perplexity: chunk %zu of %zu, %.4f so far\n", chunks + 1, todo, exp(nll / (double)scored));
    }
    if (!quiet && tty) fputc('\n', stderr);
    printf("perplexity %.4f over %zu tokens in %zu chunks of up to %d (%s on %s)\n", exp(nll / (double)scored), scored,
           chunks, chunk, model_path, text_path);
    /* the share of FFN neurons the mask let through: what was computed */
    lf_session_stats ss;
    lf_model_info info;
    lf_session_get_stats(s, &ss);
    lf_model_get_info(m, &info);
    if (ss.neurons_used)
        printf("FFN density %.4f (%s mask), %llu tokens evaluated\n",
               (double)ss.neurons_used / ((double)ss.tokens * info.n_layer * info.n_ff),
               sp.mask == LF_MASK_PREDICTOR ? "predictor" : sp.mask == LF_MASK_ORACLE ? "oracle" : "all",
               (unsigned long long)ss.tokens);
    if (mo.measure_recall && info.is_flash)
        cli_print_mask_quality(stdout, s, info.n_layer, (info.n_ff + info.bundle_group - 1) / info.bundle_group);
    rc = CLI_EXIT_OK;
    if (stats_path && !cli_write_stats("perplexity", s, stats_path)) rc = CLI_EXIT_RUNTIME;
out:
    free(toks);
    free(text);
    lf_session_destroy(s);
    lf_model_close(m);
    if (!cli_trace_finish("perplexity", sp.trace, mo.trace_path, rc == CLI_EXIT_OK) && rc == CLI_EXIT_OK)
        rc = CLI_EXIT_RUNTIME;
    return rc;
}
