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
/* Parses sizes like 512M, 4G, 1.5GiB. */
bool cli_parse_size(const char *s, uint64_t *out);
void cli_format_bytes(uint64_t bytes, char *buf, size_t cap);

/* Progress of a long write (synth, convert): a bar on a terminal, a line
 * every 10% otherwise, nothing when quiet. Init also installs SIGINT,
 * SIGTERM and SIGHUP handlers; after one, update returns false, which the
 * library's progress callbacks turn into LF_E_INTERRUPTED (and no output). */
typedef struct cli_progress {
    const char *label;
    bool tty, quiet;
    int last_pct;
} cli_progress;

void cli_progress_init(cli_progress *p, const char *label, bool quiet);
bool cli_progress_update(void *user, uint64_t done, uint64_t total);

/* stderr logger for the library */
void cli_log(void *user, lf_log_level level, const char *msg);

int cmd_run(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_iobench(int argc, char **argv);

#endif
