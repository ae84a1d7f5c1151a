/* cli.h - shared pieces of the llmflash command: option parsing and output.
 * The CLI uses only the public header. */
#ifndef LF_CLI_H
#define LF_CLI_H

#include "llmflash.h"

#include <stdbool.h>
#include <stdio.h>

/* Exit codes: usage errors are 2, runtime errors 1. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_RUNTIME 1
#define CLI_EXIT_USAGE 2

typedef enum cli_opt_kind { CLI_FLAG, CLI_STR, CLI_INT, CLI_U64, CLI_FLOAT, CLI_SIZE } cli_opt_kind;

typedef struct cli_opt {
    const char *long_name;  /* "--model" */
    const char *short_name; /* "-m" or NULL */
    cli_opt_kind kind;
    void *dst;              /* bool*, const char**, int*, uint64_t*, float* */
    const char *help;
    bool seen;
} cli_opt;

/* Parses argv[first..argc) into opts; positional arguments are collected in
 * pos (at most max_pos). Prints the problem and returns false on a usage
 * error. `--help`/`-h` sets *help. */
bool cli_parse(const char *cmd, int argc, char **argv, int first, cli_opt *opts, size_t n_opts,
               const char **pos, size_t max_pos, size_t *n_pos, bool *help);
void cli_print_options(FILE *f, const cli_opt *opts, size_t n_opts);
/* Whether the option whose value lives at dst was given. */
bool cli_opt_seen(const cli_opt *opts, size_t n_opts, const void *dst);
/* Parses sizes like 512M, 4G, 1.5GiB. */
bool cli_parse_size(const char *s, uint64_t *out);
void cli_format_bytes(uint64_t bytes, char *buf, size_t cap);
/* What a command-line user can do about a library error, as a suffix for
 * its message ("; give --force to overwrite"), or "": the library's
 * messages name its parameters, never the flags that set them. */
const char *cli_hint(lf_status st);

/* Progress of a long write (synth, convert): a bar on a terminal, a line
 * every 10% otherwise, nothing when quiet. Init also installs SIGINT,
 * SIGTERM and SIGHUP handlers; after one, update returns false, which the
 * library's progress callbacks turn into LF_E_INTERRUPTED (and no output). */
typedef struct cli_progress {
    const char *label;
    const char *unit;   /* of the counts, in the non-terminal lines: "bytes" unless set */
    bool tty, quiet;
    int last_pct;
} cli_progress;

void cli_progress_init(cli_progress *p, const char *label, bool quiet);
bool cli_progress_update(void *user, uint64_t done, uint64_t total);

/* Options that open a model and its sessions, shared by run, bench and
 * perplexity. CLI_MODEL_OPTIONS(o) expands to their cli_opt entries. */
typedef struct cli_model_opts {
    const char *mode, *io, *activation, *cache_type, *predictor, *predictor_file, *trace_path;
    uint64_t budget;
    bool budget_seen;   /* set by the caller from the option's `seen` */
    int threads, ctx, batch;
    bool no_verify, verbose, measure_recall, unbundled, lookahead, huge_pages;
    int hot_experts, queue_depth;
    int log_level;      /* for cli_log, set by cli_model_params */
} cli_model_opts;

#define CLI_MODEL_OPTIONS(o)                                                                                          \
    {"--threads", "-t", CLI_INT, &(o).threads, "compute threads (default: all cores)", false},                        \
    {"--ctx", "-c", CLI_INT, &(o).ctx, "context length (default: the model's, at most 4096)", false},                 \
    {"--batch", "-b", CLI_INT, &(o).batch, "prompt tokens per pass over the weights (default 64, at most 4096)", false}, \
    {"--mode", NULL, CLI_STR, &(o).mode, "auto, mmap, ram, stream, naive or hybrid (default auto: stream for flash files; ram for a GGUF that fits in memory, else mmap)", \
     false},                                                                                                          \
    {"--dram-budget", NULL, CLI_SIZE, &(o).budget, "hard memory limit, e.g. 2G (flash files: stream/naive/hybrid)",  \
     false},                                                                                                          \
    {"--io", NULL, CLI_STR, &(o).io, "flash read back-end: auto, uring or pread", false},                            \
    {"--activation", NULL, CLI_STR, &(o).activation, "FFN activation: auto (from the file), silu, relu, relu_plain",  \
     false},                                                                                                          \
    {"--cache-type", NULL, CLI_STR, &(o).cache_type, "KV cache element type: f16 (default), f32 or q8_0", false},          \
    {"--predictor", NULL, CLI_STR, &(o).predictor,                                                                   \
     "FFN mask: auto (the calibrated predictor if there is one, else all), off/all, oracle, predictor", false},       \
    {"--predictor-file", NULL, CLI_STR, &(o).predictor_file, "the predictor to use (default: MODEL.predictor)", false}, \
    {"--measure-recall", NULL, CLI_FLAG, &(o).measure_recall,                                                        \
     "run the oracle alongside and count the mask's false negatives per layer (--stats)", false},                    \
    {"--no-verify", NULL, CLI_FLAG, &(o).no_verify, "flash files: skip checksums (header, tensors, bundles)", false}, \
    {"--lookahead", NULL, CLI_FLAG, &(o).lookahead,                                                                  \
     "read a layer early: the predictor's lookahead (calibrate --lookahead; without it, each layer's own predictor " \
     "on the layer before's input), or a mixture of experts' next router; the fitted one needs cache room", false},    \
    {"--hot-experts", NULL, CLI_INT, &(o).hot_experts,                                                               \
     "mixtures of experts: pin this many of each layer's busiest experts (from calibrate's MODEL.routing)", false},   \
    {"--unbundled-reads", NULL, CLI_FLAG, &(o).unbundled,                                                            \
     "ablation: read each neuron's three rows separately, as an unbundled layout must", false},                       \
    {"--huge-pages", NULL, CLI_FLAG, &(o).huge_pages,                                                                \
     "resident weights in 2 MiB pages: products 7-8% faster, open slower (much slower in some VMs)", false},        \
    {"--queue-depth", NULL, CLI_INT, &(o).queue_depth,                                                             \
     "flash reads in flight (default 64, 32 for models with layers under 32 MiB; 1 to 1024)", false},                  \
    {"--trace", NULL, CLI_STR, &(o).trace_path,                                                                     \
     "write a Chrome trace (Perfetto, chrome://tracing) of every token and layer to FILE.json", false},            \
    {"--verbose", "-v", CLI_FLAG, &(o).verbose, "log loading details to stderr", false}

cli_model_opts cli_model_opts_default(void);
/* Validates the options and fills model params; prints the problem and
 * returns false on a usage error. */
bool cli_model_params(const char *cmd, cli_model_opts *o, lf_model_params *mp);
/* Session params from the options (context, KV cache type, mask source,
 * a trace for --trace), for the model at model_path; false (with the
 * problem printed) for a bad --predictor. */
bool cli_session_params(const char *cmd, const cli_model_opts *o, const char *model_path, lf_session_params *sp);
/* Sampling options, shared by run and chat. CLI_SAMPLING_OPTIONS(o) expands
 * to their cli_opt entries. */
typedef struct cli_sampling_opts {
    int top_k, repeat_last_n;
    float temp, top_p, min_p, repeat_penalty;
    uint64_t seed;
} cli_sampling_opts;

#define CLI_SAMPLING_OPTIONS(o)                                                                                        \
    {"--temp", NULL, CLI_FLOAT, &(o).temp, "temperature; 0 is greedy (default 0.8)", false},                          \
    {"--top-k", NULL, CLI_INT, &(o).top_k, "top-k sampling, 0 disables (default 40)", false},                         \
    {"--top-p", NULL, CLI_FLOAT, &(o).top_p, "top-p sampling, 1 disables (default 0.95)", false},                     \
    {"--min-p", NULL, CLI_FLOAT, &(o).min_p, "min-p sampling, 0 disables (default 0)", false},                        \
    {"--repeat-penalty", NULL, CLI_FLOAT, &(o).repeat_penalty, "penalise recent tokens, 1 disables (default 1)", false}, \
    {"--repeat-last-n", NULL, CLI_INT, &(o).repeat_last_n, "tokens the repeat penalty looks back on (default 64)", false}, \
    {"--seed", NULL, CLI_U64, &(o).seed, "random seed (default: from the clock; -v prints it)", false}

cli_sampling_opts cli_sampling_opts_default(void);
/* Validates the options and fills sampler params; the seed comes from the
 * clock unless --seed was given (printed with verbose). Prints the problem
 * and returns false on a usage error. */
bool cli_sampler_params(const char *cmd, const cli_opt *opts, size_t n_opts, const cli_sampling_opts *o, bool verbose,
                        lf_sampler_params *out);
/* Writes the trace cli_session_params created for --trace (when the run
 * succeeded) and frees it; NULL is fine. False, with the problem printed,
 * when it cannot be written. */
bool cli_trace_finish(const char *cmd, lf_trace *trace, const char *path, bool run_ok);
int cli_cpu_count(void);
/* A whole file ("-": stdin), NUL-terminated; NULL with the reason in why
 * (a directory is refused). The caller frees it. */
char *cli_read_text(const char *path, size_t *len, char *why, size_t why_cap);
/* Writes n bytes to path, replacing it whole or not at all; prints why
 * ("cannot write WHAT to PATH") and returns false on failure. */
bool cli_write_file(const char *cmd, const char *what, const char *path, const char *data, size_t n);
/* Writes the session's JSON stats to path ("-": stdout), replacing it
 * whole or not at all; prints why and returns false on failure. */
bool cli_write_stats(const char *cmd, const lf_session *sess, const char *path);

/* With measure_recall: per layer, the oracle's density (units per token over
 * n_units), the share of its units the mask skipped, the share of
 * activations its busiest fifth of units carries, the union over 5 tokens
 * against one token's set, and the share of units new since the token
 * before. */
void cli_print_mask_quality(FILE *out, const lf_session *sess, uint32_t n_layer, uint32_t n_units);

/* stderr logger for the library */
void cli_log(void *user, lf_log_level level, const char *msg);

int cmd_run(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_iobench(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_simulate(int argc, char **argv);

#endif
