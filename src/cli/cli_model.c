/* cli_model.c - what run, bench and perplexity share: the options that
 * open a model and a session, reading a text argument, and writing stats. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

cli_model_opts cli_model_opts_default(void) {
    return (cli_model_opts){.mode = "auto", .io = "auto", .activation = "auto", .cache_type = "f16", .predictor = "auto",
                            .predictor_file = NULL, .budget = 0,
                            .threads = 0, .ctx = 0, .no_verify = false, .verbose = false, .log_level = LF_LOG_WARN};
}

/* Index of name in a NULL-terminated list, or -1. */
static int pick(const char *name, const char *const *names) {
    for (int i = 0; names[i]; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

bool cli_model_params(const char *cmd, cli_model_opts *o, lf_model_params *mp) {
    static const char *const modes[] = {"auto", "mmap", "stream", "naive", "hybrid", "ram", NULL};
    static const lf_mode mode_vals[] = {LF_MODE_AUTO, LF_MODE_MMAP, LF_MODE_STREAM, LF_MODE_NAIVE, LF_MODE_HYBRID, LF_MODE_RAM};
    static const char *const ios[] = {"auto", "uring", "pread", NULL};
    static const lf_io_backend io_vals[] = {LF_IO_BACKEND_AUTO, LF_IO_BACKEND_URING, LF_IO_BACKEND_PREAD};
    static const char *const acts[] = {"auto", "silu", "relu", "relu_plain", NULL};
    static const int act_vals[] = {LF_ACT_FROM_FILE, LF_ACT_SILU_GATED, LF_ACT_RELU_GATED, LF_ACT_RELU};
    const int mode = pick(o->mode, modes), io = pick(o->io, ios), act = pick(o->activation, acts);
    if (mode < 0) {
        fprintf(stderr, "llmflash %s: --mode must be auto, mmap, ram, stream, naive or hybrid\n", cmd);
        return false;
    }
    if (io < 0) {
        fprintf(stderr, "llmflash %s: --io must be auto, uring or pread\n", cmd);
        return false;
    }
    if (act < 0) {
        fprintf(stderr, "llmflash %s: --activation must be auto, silu, relu or relu_plain\n", cmd);
        return false;
    }
    if (strcmp(o->cache_type, "f16") != 0 && strcmp(o->cache_type, "f32") != 0 && strcmp(o->cache_type, "q8_0") != 0) {
        fprintf(stderr, "llmflash %s: --cache-type must be f16, f32 or q8_0\n", cmd);
        return false;
    }
    const int max_threads = 4 * cli_cpu_count();
    if (o->threads < 0 || o->threads > max_threads) {
        fprintf(stderr, "llmflash %s: -t %d is out of range: this machine has %d cores, so use 1 to %d threads "
                "(more than the cores only slows the run)\n", cmd, o->threads, cli_cpu_count(), max_threads);
        return false;
    }
    if (o->ctx < 0) {
        fprintf(stderr, "llmflash %s: --ctx must not be negative\n", cmd);
        return false;
    }
    if (o->budget_seen && o->budget == 0) {
        fprintf(stderr, "llmflash %s: --dram-budget rounds to 0 bytes, which would mean no limit; give a size such "
                "as 512M or 4G\n", cmd);
        return false;
    }
    if (o->queue_depth < 0 || o->queue_depth > 1024) {
        fprintf(stderr, "llmflash %s: --queue-depth must be 1 to 1024 (0: the default)\n", cmd);
        return false;
    }
    o->log_level = o->verbose ? LF_LOG_INFO : LF_LOG_WARN;
    *mp = lf_model_default_params();
    mp->log = cli_log;
    mp->log_user = &o->log_level;
    mp->n_threads = o->threads;
    mp->verify_checksums = !o->no_verify;
    mp->unbundled_reads = o->unbundled;
    mp->huge_pages = o->huge_pages;
    mp->io_queue_depth = (uint32_t)o->queue_depth;
    mp->mode = mode_vals[mode];
    mp->dram_budget = o->budget;
    mp->io_backend = io_vals[io];
    mp->activation = act_vals[act];
    return true;
}

bool cli_session_params(const char *cmd, const cli_model_opts *o, const char *model_path, lf_session_params *sp) {
    *sp = lf_session_default_params();
    if (o->batch < 0 || o->batch > LF_MAX_BATCH) {
        fprintf(stderr, "llmflash %s: --batch must be 1 to %d\n", cmd, LF_MAX_BATCH);
        return false;
    }
    sp->n_ctx = (uint32_t)o->ctx;
    sp->n_batch = (uint32_t)o->batch;
    sp->kv_type = strcmp(o->cache_type, "f32") == 0 ? LF_KV_F32 : strcmp(o->cache_type, "q8_0") == 0 ? LF_KV_Q8_0 : LF_KV_F16;
    sp->predictor_path = o->predictor_file;
    sp->measure_recall = o->measure_recall;
    sp->lookahead = o->lookahead;
    if (o->hot_experts < 0) {
        fprintf(stderr, "llmflash %s: --hot-experts must not be negative\n", cmd);
        return false;
    }
    sp->hot_experts = (uint32_t)o->hot_experts;
    if (strcmp(o->predictor, "all") == 0 || strcmp(o->predictor, "off") == 0) {
        sp->mask = LF_MASK_ALL;
    } else if (strcmp(o->predictor, "oracle") == 0) {
        sp->mask = LF_MASK_ORACLE;
    } else if (strcmp(o->predictor, "predictor") == 0) {
        sp->mask = LF_MASK_PREDICTOR;
    } else if (strcmp(o->predictor, "auto") == 0) {
        /* the calibrated predictor when one sits beside the model (or was named) */
        char dflt[4096];
        snprintf(dflt, sizeof dflt, "%s.predictor", model_path);
        sp->mask = access(o->predictor_file ? o->predictor_file : dflt, R_OK) == 0 ? LF_MASK_PREDICTOR : LF_MASK_ALL;
        if (o->verbose && sp->mask == LF_MASK_PREDICTOR)
            fprintf(stderr, "llmflash: using the predictor %s\n", o->predictor_file ? o->predictor_file : dflt);
    } else {
        fprintf(stderr, "llmflash %s: --predictor must be auto, off, all, oracle or predictor\n", cmd);
        return false;
    }
    if (o->trace_path && lf_trace_create(&sp->trace) != LF_OK) {
        fprintf(stderr, "llmflash %s: out of memory for the trace\n", cmd);
        return false;
    }
    return true;
}

bool cli_trace_finish(const char *cmd, lf_trace *trace, const char *path, bool run_ok) {
    if (!trace) return true;
    char err[512];
    const lf_status st = run_ok ? lf_trace_write(trace, path, err, sizeof err) : LF_OK;
    if (st) fprintf(stderr, "llmflash %s: cannot write the trace: %s (%s)%s\n", cmd, err, lf_strerror(st), cli_hint(st));
    else if (run_ok) fprintf(stderr, "llmflash: trace of %llu events written to %s\n",
                             (unsigned long long)lf_trace_event_count(trace), path);
    lf_trace_destroy(trace);
    return st == LF_OK;
}

int cli_cpu_count(void) {
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

char *cli_read_text(const char *path, size_t *len, char *why, size_t why_cap) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        snprintf(why, why_cap, "%s", strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(why, why_cap, "it is a directory");
        if (f != stdin) fclose(f);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        if (n == cap) {
            char *nb = realloc(buf, (cap *= 2) + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        const size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0) break;
        n += r;
    }
    const bool failed = ferror(f) != 0;
    const int e = errno;
    if (f != stdin) fclose(f);
    if (!buf || failed) {
        snprintf(why, why_cap, "%s", buf ? strerror(e) : "out of memory");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

bool cli_write_file(const char *cmd, const char *what, const char *path, const char *data, size_t n) {
    /* written beside the target and renamed: a failed write leaves no
     * half-written file, and an old one stays whole */
    const size_t plen = strlen(path) + 16;
    char *tmp = malloc(plen);
    FILE *f = NULL;
    if (tmp) {
        snprintf(tmp, plen, "%s.tmp%ld", path, (long)getpid());
        f = fopen(tmp, "w");
    }
    bool ok = f && fwrite(data, 1, n, f) == n;
    if (f && fclose(f) != 0) ok = false;
    if (ok && rename(tmp, path) != 0) ok = false;
    if (!ok && tmp) unlink(tmp);
    if (!ok) fprintf(stderr, "llmflash %s: cannot write %s to %s: %s\n", cmd, what, path, strerror(errno));
    free(tmp);
    return ok;
}

bool cli_write_stats(const char *cmd, const lf_session *sess, const char *path) {
    const size_t n = lf_session_stats_json(sess, NULL, 0);
    char *json = malloc(n + 1);
    if (!json) {
        fprintf(stderr, "llmflash %s: out of memory for the stats\n", cmd);
        return false;
    }
    lf_session_stats_json(sess, json, n + 1);
    bool ok;
    if (strcmp(path, "-") == 0) {
        /* after the generated text, on a line of its own */
        ok = fputc('\n', stdout) != EOF && fwrite(json, 1, n, stdout) == n && fflush(stdout) == 0;
    } else {
        ok = cli_write_file(cmd, "the stats", path, json, n);
        free(json);
        return ok;
    }
    if (!ok) fprintf(stderr, "llmflash %s: cannot write the stats to stdout\n", cmd);
    free(json);
    return ok;
}

void cli_print_mask_quality(FILE *out, const lf_session *sess, uint32_t n_layer, uint32_t n_units) {
    fprintf(out, "layer  oracle density  false negatives  hot-20%% share  5-token union  new per token\n");
    for (uint32_t l = 0; l < n_layer; l++) {
        lf_layer_stats ls;
        if (lf_session_layer_stats(sess, l, &ls) || !ls.oracle_tokens || !ls.oracle_token_units) continue;
        const double per_token = (double)ls.oracle_token_units / (double)ls.oracle_tokens;
        fprintf(out, "%5u  %14.4f  %15.4f  %13.3f  %12.2fx  %13.4f\n", l, per_token / n_units,
                ls.oracle_units ? (double)ls.false_negatives / (double)ls.oracle_units : 0.0, ls.oracle_hot_share,
                (double)ls.oracle_window_units / (double)ls.oracle_token_units,
                (double)ls.oracle_new_units / (double)ls.oracle_tokens / n_units);
    }
}

cli_sampling_opts cli_sampling_opts_default(void) {
    return (cli_sampling_opts){.top_k = 40, .repeat_last_n = 64, .temp = 0.8f, .top_p = 0.95f, .repeat_penalty = 1.0f};
}

bool cli_sampler_params(const char *cmd, const cli_opt *opts, size_t n_opts, const cli_sampling_opts *o, bool verbose,
                        lf_sampler_params *out) {
    if (o->temp < 0.0f || !(o->top_p > 0.0f && o->top_p <= 1.0f) || o->min_p < 0.0f || o->min_p > 1.0f ||
        o->repeat_penalty <= 0.0f || o->repeat_last_n < 0 || o->top_k < 0) {
        fprintf(stderr, "llmflash %s: --temp must not be negative, --top-p in (0, 1], --min-p in [0, 1], "
                "--repeat-penalty positive, --top-k and --repeat-last-n not negative\n", cmd);
        return false;
    }
    *out = lf_sampler_default_params();
    out->temperature = o->temp;
    out->top_k = o->top_k;
    out->top_p = o->top_p;
    out->min_p = o->min_p;
    out->repeat_penalty = o->repeat_penalty;
    out->repeat_last_n = o->repeat_last_n;
    const bool seed_given = cli_opt_seen(opts, n_opts, &o->seed);
    out->seed = seed_given ? o->seed : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    if (verbose) fprintf(stderr, "llmflash: seed %" PRIu64 "%s\n", out->seed, seed_given ? "" : " (from the clock)");
    return true;
}
