/* cmd_calibrate.c - `llmflash calibrate`: fits a sparsity predictor to a
 * flash model on a text, and writes it where run finds it. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void on_layer(void *user, const lf_calibrate_layer *q) {
    (void)user;
    fprintf(stderr, "layer %3u/%u: recall %.4f, precision %.3f, predicted density %.3f, true density %.3f", q->layer + 1,
            q->n_layer, q->recall, q->precision, q->predicted_density, q->true_density);
    if (q->ahead_density > 0)
        fprintf(stderr, "; lookahead recall %.4f, precision %.3f", q->ahead_recall, q->ahead_precision);
    fprintf(stderr, "; %s weights (%.1f s)\n", q->weights == LF_TYPE_Q8_0 ? "Q8_0" : "F16", q->seconds);
}

int cmd_calibrate(int argc, char **argv) {
    const char *model_path = NULL, *text_path = NULL, *out = NULL, *reorder = NULL;
    int tokens = 4096, epochs = 20, ahead_rank = 0;
    const char *rank_arg = "128", *weights_arg = "f16";
    float recall = 0.99f, sparsity = 0.5f, ahead_recall = 0.0f;
    bool force = false, lookahead = false, quiet = false;
    cli_opt opts[] = {
        {"--model", "-m", CLI_STR, &model_path, "flash model (required)", false},
        {"--file", "-f", CLI_STR, &text_path, "calibration text, - for stdin (required)", false},
        {"--output", "-o", CLI_STR, &out, "predictor file (default MODEL.predictor, where run looks)", false},
        {"--tokens", NULL, CLI_INT, &tokens, "calibration tokens; a fifth is held out (default 4096)", false},
        {"--rank", NULL, CLI_STR, &rank_arg,
         "predictor rank per layer, or A:B from A at the first layer to B at the last (default 128, at most d_model)",
         false},
        {"--recall", NULL, CLI_FLOAT, &recall, "target recall on held-out tokens (default 0.99)", false},
        {"--sparsity", NULL, CLI_FLOAT, &sparsity, "SwiGLU: FFN sparsity of the ground truth (default 0.5)", false},
        {"--epochs", NULL, CLI_INT, &epochs, "fitting passes (default 20)", false},
        {"--weights", NULL, CLI_STR, &weights_arg,
         "the predictor's weights: f16, q8_0 (53% of the bytes; d_model and ranks in multiples of 32) or auto (per "
         "layer, Q8_0 unless the units it adds per token outnumber the records its saved bytes would cache) (default f16)", false},
        {"--lookahead", NULL, CLI_FLAG, &lookahead,
         "also fit lookahead predictors (layer l's units from layer l-1's input): reads start a layer early", false},
        {"--lookahead-rank", NULL, CLI_INT, &ahead_rank, "rank of the lookahead predictors (default: --rank)", false},
        {"--lookahead-recall", NULL, CLI_FLOAT, &ahead_recall,
         "target recall of the lookahead; the in-layer predictor reads what it misses (default 0.9)", false},
        {"--reorder", NULL, CLI_STR, &reorder,
         "also write a copy of the model with co-activated neurons side by side (fewer, larger reads), and the "
         "predictor for it", false},
        {"--force", NULL, CLI_FLAG, &force, "overwrite existing output files (regular files only)", false},
        {"--quiet", "-q", CLI_FLAG, &quiet, "no progress while the model runs over the text", false},
    };
    const size_t n_opts = sizeof opts / sizeof *opts;
    const char *pos[1];
    size_t n_pos;
    bool help;
    if (!cli_parse("calibrate", argc, argv, 2, opts, n_opts, pos, 0, &n_pos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        printf("usage: llmflash calibrate -m MODEL.flash.gguf -f TEXT [-o OUT] [--tokens N] [--sparsity S] [--rank R]\n"
               "                          [--recall Q] [--lookahead] [--reorder PLACED.flash.gguf]\n\n"
               "Fits one low-rank sparsity predictor per layer on the model's FFN inputs over TEXT\n"
               "(initialised from the SVD of the gate, fitted by weighted cross-entropy, its threshold\n"
               "set on held-out tokens for the target recall) and writes it beside the model, where\n"
               "run --predictor auto finds it.\n\noptions:\n");
        cli_print_options(stdout, opts, n_opts);
        return CLI_EXIT_OK;
    }
    unsigned rank = 0, rank_last = 0;
    char tail = 0;
    const int n_rank = sscanf(rank_arg, "%u:%u%c", &rank, &rank_last, &tail);
    const bool rank_ok = (n_rank == 1 || n_rank == 2) && rank >= 1 && rank <= 65536 && rank_last <= 65536 &&
                         (n_rank == 1 || rank_last >= 1) && strspn(rank_arg, "0123456789:") == strlen(rank_arg);
    const bool weights_ok = !strcmp(weights_arg, "f16") || !strcmp(weights_arg, "q8_0") || !strcmp(weights_arg, "auto");
    if (!model_path || !text_path || tokens < 64 || !weights_ok || !rank_ok || epochs < 1 || !(recall > 0.0f && recall <= 1.0f) ||
        !(sparsity > 0.0f && sparsity < 1.0f) || ahead_rank < 0 || ((ahead_rank || ahead_recall != 0.0f) && !lookahead) ||
        !(ahead_recall >= 0.0f && ahead_recall <= 1.0f)) {
        fprintf(stderr, "llmflash calibrate: -m MODEL and -f TEXT are required; --tokens at least 64, --rank R or A:B "
                "and --epochs positive, --weights f16, q8_0 or auto, --recall in (0, 1], --sparsity in (0, 1), --lookahead-rank and --lookahead-recall (in (0, 1]) "
                "with --lookahead\n");
        return CLI_EXIT_USAGE;
    }
    size_t len;
    char why[128];
    char *text = cli_read_text(text_path, &len, why, sizeof why);
    if (!text) {
        fprintf(stderr, "llmflash calibrate: cannot read %s: %s\n", text_path, why);
        return CLI_EXIT_RUNTIME;
    }
    lf_calibrate_params p = lf_calibrate_default_params();
    p.tokens = (uint32_t)tokens;
    p.rank = rank;
    p.rank_last = n_rank == 2 ? rank_last : 0;
    p.recall = recall;
    p.sparsity = sparsity;
    p.epochs = (uint32_t)epochs;
    p.weights = !strcmp(weights_arg, "q8_0") ? LF_PREDICTOR_Q8_0 : !strcmp(weights_arg, "auto") ? LF_PREDICTOR_AUTO
                                                                                                 : LF_PREDICTOR_F16;
    p.force = force;
    p.lookahead = lookahead;
    p.lookahead_rank = (uint32_t)ahead_rank;
    p.lookahead_recall = ahead_recall;
    p.reorder_path = reorder;
    p.on_layer = on_layer;
    cli_progress ps;
    cli_progress_init(&ps, "calibrate: running the model over the text", quiet);
    ps.unit = "tokens";
    p.progress = cli_progress_update;
    p.user = &ps;
    lf_calibrate_stats st;
    char err[512];
    const lf_status rc = lf_calibrate(model_path, text, len, out, &p, &st, err, sizeof err);
    free(text);
    if (rc) {
        fprintf(stderr, "llmflash calibrate: %s (%s)%s\n", err, lf_strerror(rc), cli_hint(rc));
        return rc == LF_E_INVALID_ARG ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
    }
    if (st.routing) {
        fprintf(stderr, "routing statistics of %llu tokens written to %s%s: each layer's busiest eighth of experts takes "
                "%.1f%% of its routings (pin them with --hot-experts); %.1f s\n", (unsigned long long)st.tokens,
                out ? out : model_path, out ? "" : ".routing", 100.0 * st.routing_hot_share, st.seconds);
        return CLI_EXIT_OK;
    }
    char b[32];
    cli_format_bytes(st.predictor_bytes, b, sizeof b);
    fprintf(stderr, "held out %llu tokens: recall %.4f, precision %.3f, predicted density %.3f against %.3f; "
            "predictor %s (%u of %u layers in Q8_0); %.1f s\n", (unsigned long long)st.held_out, st.recall, st.precision,
            st.predicted_density, st.true_density, b, st.q8_0_layers, st.n_layer, st.seconds);
    if (reorder) fprintf(stderr, "placed copy: %s (its predictor beside it)\n", reorder);
    if (lookahead)
        fprintf(stderr, "lookahead (layers 2 on): recall %.4f, precision %.3f\n", st.ahead_recall, st.ahead_precision);
    return CLI_EXIT_OK;
}
