/* cli_args.c - option parsing and formatting helpers for the CLI. */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool parse_value(const char *cmd, cli_opt *o, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case CLI_FLAG: *(bool *)o->dst = true; return true;
    case CLI_STR: *(const char **)o->dst = v; return true;
    case CLI_INT: {
        const long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < -2147483647L || x > 2147483647L) break;
        *(int *)o->dst = (int)x;
        return true;
    }
    case CLI_U64: {
        if (v[0] == '-') break;
        const unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end) break;
        *(uint64_t *)o->dst = (uint64_t)x;
        return true;
    }
    case CLI_FLOAT: {
        const float x = strtof(v, &end);
        if (errno || end == v || *end || !isfinite(x)) break;
        *(float *)o->dst = x;
        return true;
    }
    case CLI_SIZE:
        if (cli_parse_size(v, (uint64_t *)o->dst)) return true;
        break;
    }
    fprintf(stderr, "llmflash %s: invalid value '%s' for %s\n", cmd, v, o->long_name);
    return false;
}

bool cli_parse(const char *cmd, int argc, char **argv, int first, cli_opt *opts, size_t n_opts, const char **pos,
               size_t max_pos, size_t *n_pos, bool *help) {
    *n_pos = 0;
    *help = false;
    bool only_pos = false;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (!only_pos && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            *help = true;
            return true;
        }
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (*n_pos >= max_pos) {
                fprintf(stderr, "llmflash %s: unexpected argument '%s'\n", cmd, a);
                return false;
            }
            pos[(*n_pos)++] = a;
            continue;
        }
        /* --name=value or --name value */
        const char *eq = strchr(a, '=');
        const size_t name_len = eq && a[1] == '-' ? (size_t)(eq - a) : strlen(a);
        cli_opt *o = NULL;
        for (size_t k = 0; k < n_opts; k++) {
            if ((strlen(opts[k].long_name) == name_len && strncmp(opts[k].long_name, a, name_len) == 0) ||
                (opts[k].short_name && strcmp(opts[k].short_name, a) == 0)) {
                o = &opts[k];
                break;
            }
        }
        if (!o) {
            fprintf(stderr, "llmflash %s: unknown option '%s' (see llmflash %s --help)\n", cmd, a, cmd);
            return false;
        }
        o->seen = true;
        if (o->kind == CLI_FLAG) {
            if (eq && a[1] == '-') {
                fprintf(stderr, "llmflash %s: %s takes no value\n", cmd, o->long_name);
                return false;
            }
            *(bool *)o->dst = true;
            continue;
        }
        const char *v;
        if (eq && a[1] == '-') {
            v = eq + 1;
        } else {
            if (i + 1 >= argc) {
                fprintf(stderr, "llmflash %s: %s needs a value\n", cmd, o->long_name);
                return false;
            }
            v = argv[++i];
        }
        if (!parse_value(cmd, o, v)) return false;
    }
    return true;
}

bool cli_opt_seen(const cli_opt *opts, size_t n_opts, const void *dst) {
    for (size_t k = 0; k < n_opts; k++)
        if (opts[k].dst == dst) return opts[k].seen;
    return false;
}

void cli_print_options(FILE *f, const cli_opt *opts, size_t n_opts) {
    for (size_t k = 0; k < n_opts; k++) {
        char names[64];
        snprintf(names, sizeof names, "%s%s%s", opts[k].short_name ? opts[k].short_name : "",
                 opts[k].short_name ? ", " : "    ", opts[k].long_name);
        fprintf(f, "  %-24s %s\n", names, opts[k].help);
    }
}

bool cli_parse_size(const char *s, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    const double v = strtod(s, &end);
    if (errno || end == s || !(v >= 0.0)) return false;
    double mul = 1.0;
    if (*end) {
        const char c = (char)(*end | 0x20);
        if (c == 'k') mul = 1024.0;
        else if (c == 'm') mul = 1024.0 * 1024.0;
        else if (c == 'g') mul = 1024.0 * 1024.0 * 1024.0;
        else if (c == 't') mul = 1024.0 * 1024.0 * 1024.0 * 1024.0;
        else if (c == 'b' && end[1] == '\0') mul = 1.0;
        else return false;
        end++;
        if (*end && strcasecmp(end, "b") != 0 && strcasecmp(end, "ib") != 0) return false;
    }
    const double bytes = v * mul;
    if (bytes > 1.8e19) return false;
    *out = (uint64_t)bytes;
    return true;
}

void cli_format_bytes(uint64_t b, char *buf, size_t cap) {
    if (b >= (1ull << 30)) snprintf(buf, cap, "%.2f GiB", (double)b / (double)(1ull << 30));
    else if (b >= (1ull << 20)) snprintf(buf, cap, "%.2f MiB", (double)b / (double)(1ull << 20));
    else if (b >= (1ull << 10)) snprintf(buf, cap, "%.2f KiB", (double)b / 1024.0);
    else snprintf(buf, cap, "%" PRIu64 " B", b);
}

void cli_log(void *user, lf_log_level level, const char *msg) {
    const int max_level = user ? *(const int *)user : LF_LOG_WARN;
    static const char *names[] = {"error", "warning", "info", "debug"};
    if ((int)level <= max_level) fprintf(stderr, "llmflash: %s: %s\n", names[level], msg);
}

static volatile sig_atomic_t g_stop_requested;

static void on_stop_signal(int sig) {
    (void)sig;
    g_stop_requested = 1;
}

void cli_progress_init(cli_progress *p, const char *label, bool quiet) {
    *p = (cli_progress){.label = label, .unit = "bytes", .tty = isatty(STDERR_FILENO) != 0, .quiet = quiet, .last_pct = -1};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

bool cli_progress_update(void *user, uint64_t done, uint64_t total) {
    cli_progress *p = user;
    const int pct = total ? (int)(100.0 * (double)done / (double)total) : 100;
    if (p->quiet) {
        /* nothing to show; the callback still lets a signal stop the write */
    } else if (p->tty) {
        char bar[41];
        for (int i = 0; i < 40; i++) bar[i] = i < pct * 40 / 100 ? '#' : '.';
        bar[40] = '\0';
        fprintf(stderr, "\r[%s] %3d%%", bar, pct);
        if (done >= total) fputc('\n', stderr);
    } else if (pct / 10 != p->last_pct / 10 || done >= total) {
        fprintf(stderr, "%s: %d%% (%llu of %llu %s)\n", p->label, pct, (unsigned long long)done,
                (unsigned long long)total, p->unit ? p->unit : "bytes");
    }
    p->last_pct = pct;
    return !g_stop_requested;
}

const char *cli_hint(lf_status st) {
    switch (st) {
    case LF_E_EXISTS: return "; give --force to overwrite";
    case LF_E_BUDGET: return "; --dram-budget sets the budget";
    default: return "";
    }
}
