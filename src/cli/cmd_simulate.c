/* cmd_simulate.c - `llmflash simulate`: what a recorded run would take on
 * another device.
 *
 * The model, per generated token, from a stream/naive/hybrid run's --stats:
 *   B  device bytes read (generation.io_bytes / tokens), in reads of mean
 *      size S (io_bytes / io_reads);
 *   C  compute: the token time not spent waiting for reads
 *      ((generation.ms - generation.io_wait_ms) / tokens);
 *   W  the time it waited for reads (generation.io_wait_ms / tokens);
 *   H  the read time it hid behind compute: the recording device's read
 *      time for B (its device file, --recorded-on, else --device) minus W.
 * On the device: reads take io' = B / bw(S) (its bandwidth at that read size,
 * at the run's queue depth, or the deepest the device file measured below it,
 * log-linear between measured sizes), compute C' = C x the
 * ratio of DRAM bandwidths (decode is bandwidth-bound; 1 when both files
 * are the same machine or --recorded-on is not given) x compute_scale (the
 * device file's, default 1), and hiding scales with compute:
 * H' = min(io', H x C' / C). The token takes C' + io' - H'. The bottleneck is
 * whichever of io' and C' is larger.
 *
 * What it leaves out: queueing between overlapping batches (the device file
 * measures one stream of reads at a fixed depth), the page cache (mmap runs
 * are refused), and any change in what is read: the same bytes in the same
 * read sizes, so a device with more DRAM is not credited with a larger cache. */
#include "cli.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct sim_record {
    double tokens, ms, io_wait_ms, io_bytes, mean_read;
    int queue_depth;          /* the loader's (32 for stats that do not say) */
    char mode[16];
} sim_record;

typedef struct sim_device {
    char name[128];
    double sizes[64], mib_s[64];
    int n;
    int qd;                   /* the queue depth the sizes were measured at */
    double dram_gb_s, compute_scale;
} sim_device;

static double num(json_t *o, const char *path_a, const char *path_b) {
    json_t *v = json_object_get(o, path_a);
    if (path_b) v = json_object_get(v, path_b);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static bool read_record(const char *path, sim_record *r) {
    json_error_t e;
    json_t *d = json_load_file(path, 0, &e);
    if (!d) {
        fprintf(stderr, "llmflash simulate: %s: %s (line %d)\n", path, e.text, e.line);
        return false;
    }
    bool ok = false;
    const char *mode = json_string_value(json_object_get(json_object_get(d, "params"), "mode"));
    const double version = num(d, "schema_version", NULL);
    r->tokens = num(d, "generation", "tokens");
    r->ms = num(d, "generation", "ms");
    r->io_wait_ms = num(d, "generation", "io_wait_ms");
    r->io_bytes = num(d, "generation", "io_bytes");
    const double reads = num(d, "io_reads", NULL), bytes = num(d, "io_bytes", NULL), all = num(d, "tokens", NULL);
    if (version != LF_STATS_SCHEMA_VERSION) {
        fprintf(stderr, "llmflash simulate: %s is not llmflash stats of schema version %d\n", path, LF_STATS_SCHEMA_VERSION);
    } else if (!mode || strcmp(mode, "mmap") == 0 || strcmp(mode, "ram") == 0) {
        fprintf(stderr, "llmflash simulate: %s is a %s run: the page cache (or no I/O) is not something the model "
                "can scale; record a stream, naive or hybrid run of a flash file\n", path, mode ? mode : "?");
    } else if (!(r->tokens >= 1) || !(r->ms > 0) || isnan(r->io_wait_ms) || isnan(r->io_bytes) || !(all >= 1)) {
        fprintf(stderr, "llmflash simulate: %s has no generated tokens to model (run with -n 2 or more)\n", path);
    } else {
        snprintf(r->mode, sizeof r->mode, "%s", mode);
        const double qd = num(json_object_get(d, "loader"), "queue_depth", NULL);
        r->queue_depth = qd >= 1 ? (int)qd : 32;
        r->mean_read = reads > 0 ? bytes / reads : 0.0;
        ok = true;
    }
    json_decref(d);
    return ok;
}

/* The device's reads at the deepest measured queue depth up to qd (the
 * shallowest it has when it measured none that shallow). */
static bool read_device(const char *path, int qd, sim_device *dev) {
    json_error_t e;
    json_t *d = json_load_file(path, 0, &e);
    if (!d) {
        fprintf(stderr, "llmflash simulate: %s: %s (line %d)\n", path, e.text, e.line);
        return false;
    }
    memset(dev, 0, sizeof *dev);
    const char *name = json_string_value(json_object_get(d, "name"));
    snprintf(dev->name, sizeof dev->name, "%s", name ? name : path);
    dev->dram_gb_s = num(d, "dram_read_gb_s", NULL);
    dev->compute_scale = num(d, "compute_scale", NULL);
    if (isnan(dev->compute_scale)) dev->compute_scale = 1.0;
    json_t *reads = json_object_get(d, "reads");
    size_t i;
    json_t *r;
    int best = 0, least = 0;
    json_array_foreach(reads, i, r) {
        const double q = num(r, "qd", NULL);
        if (!(q >= 1)) continue;
        if (q <= qd && q > best) best = (int)q;
        if (!least || q < least) least = (int)q;
    }
    dev->qd = best ? best : least;
    json_array_foreach(reads, i, r) {
        if (num(r, "qd", NULL) != dev->qd || dev->n == 64) continue;
        const double size = num(r, "size", NULL), bw = num(r, "mib_s", NULL);
        if (!(size > 0) || !(bw > 0)) continue;
        int k = dev->n++; /* sorted by size */
        while (k > 0 && dev->sizes[k - 1] > size) {
            dev->sizes[k] = dev->sizes[k - 1];
            dev->mib_s[k] = dev->mib_s[k - 1];
            k--;
        }
        dev->sizes[k] = size;
        dev->mib_s[k] = bw;
    }
    json_decref(d);
    if (!dev->n || !(dev->compute_scale > 0)) {
        fprintf(stderr, "llmflash simulate: %s has no reads (write it with llmflash iobench --device-json) or a "
                "compute_scale that is not positive\n", path);
        return false;
    }
    return true;
}

/* MiB/s for reads of `size` bytes: log-linear between the measured sizes. */
static double bandwidth_at(const sim_device *d, double size) {
    if (size <= d->sizes[0]) return d->mib_s[0];
    for (int k = 1; k < d->n; k++)
        if (size <= d->sizes[k]) {
            const double t = (log(size) - log(d->sizes[k - 1])) / (log(d->sizes[k]) - log(d->sizes[k - 1]));
            return d->mib_s[k - 1] + t * (d->mib_s[k] - d->mib_s[k - 1]);
        }
    return d->mib_s[d->n - 1];
}

int cmd_simulate(int argc, char **argv) {
    const char *stats = NULL, *device = NULL, *recorded_on = NULL, *json_out = NULL;
    cli_opt opts[] = {
        {"--stats", NULL, CLI_STR, &stats, "a recorded run: run --stats of a flash file in stream, naive or hybrid mode",
         false},
        {"--device", NULL, CLI_STR, &device, "the device to predict for (iobench --device-json, or written by hand)",
         false},
        {"--recorded-on", NULL, CLI_STR, &recorded_on,
         "the device file of the machine that recorded the run: compute scales by the ratio of DRAM bandwidths", false},
        {"--json", NULL, CLI_STR, &json_out, "also write the prediction as JSON to FILE", false},
    };
    const size_t n_opts = sizeof opts / sizeof *opts;
    const char *pos[1];
    size_t n_pos;
    bool help;
    if (!cli_parse("simulate", argc, argv, 2, opts, n_opts, pos, 0, &n_pos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        printf("usage: llmflash simulate --stats RUN.json --device DEVICE.json [--recorded-on HERE.json] [--json OUT]\n\n"
               "Predicts the ms/token of a recorded run on another device, and names the bottleneck.\n"
               "The model and what it leaves out are in src/cli/cmd_simulate.c and the README.\n\noptions:\n");
        cli_print_options(stdout, opts, n_opts);
        return CLI_EXIT_OK;
    }
    if (!stats || !device) {
        fprintf(stderr, "llmflash simulate: --stats RUN.json and --device DEVICE.json are required\n");
        return CLI_EXIT_USAGE;
    }
    sim_record r;
    sim_device d, here = {.dram_gb_s = NAN};
    if (!read_record(stats, &r) || !read_device(device, r.queue_depth, &d) ||
        (recorded_on && !read_device(recorded_on, r.queue_depth, &here)))
        return CLI_EXIT_RUNTIME;
    const double t = r.tokens;
    const double bytes = r.io_bytes / t, compute = (r.ms - r.io_wait_ms) / t, wait = r.io_wait_ms / t;
    const double size = r.mean_read > 0 ? r.mean_read : 4096.0;
    const double bw = bandwidth_at(&d, size);
    const double io = bytes / (bw * 1048576.0) * 1e3;
    /* the recorded overlap, against the recording device's model: the part
     * of its read time the run did not wait for */
    const sim_device *rec = recorded_on ? &here : &d;
    const double io_rec = bytes / (bandwidth_at(rec, size) * 1048576.0) * 1e3;
    const double hidden = fmax(0.0, io_rec - wait);
    double scale = d.compute_scale;
    if (recorded_on && d.dram_gb_s > 0 && here.dram_gb_s > 0) scale *= here.dram_gb_s / d.dram_gb_s;
    const double compute2 = compute * scale;
    const double hidden2 = fmin(io, compute > 0 ? hidden * compute2 / compute : 0.0);
    const double predicted = compute2 + io - hidden2;
    const bool io_bound = io > compute2;
    printf("recorded:  %.1f ms/token (%s mode, %.0f tokens): compute %.1f ms, waiting %.1f ms; %.2f MiB/token "
           "in reads of %.0f KiB\n", r.ms / t, r.mode, t, compute, r.io_wait_ms / t, bytes / 1048576.0, size / 1024.0);
    printf("device:    %s: %.0f MiB/s at that read size (queue depth %d; the run's: %d); compute x %.2f\n", d.name, bw,
           d.qd, r.queue_depth, scale);
    printf("predicted: %.1f ms/token: reads %.1f ms, compute %.1f ms, %.1f ms of the reads hidden behind compute\n",
           predicted, io, compute2, hidden2);
    printf("bottleneck: %s (%s %.0f%% of the larger of the two)\n", io_bound ? "flash reads" : "compute",
           io_bound ? "compute is" : "reads are", 100.0 * fmin(io, compute2) / fmax(io, compute2));
    if (json_out) {
        json_t *o = json_pack("{s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:s}", "device", d.name, "recorded_ms_per_token",
                              r.ms / t, "predicted_ms_per_token", predicted, "io_ms", io, "compute_ms", compute2,
                              "hidden_ms", hidden2, "bandwidth_mib_s", bw, "mean_read_bytes", size, "bottleneck",
                              io_bound ? "io" : "compute");
        char *text = o ? json_dumps(o, JSON_INDENT(1)) : NULL;
        const bool ok = text && cli_write_file("simulate", "the prediction", json_out, text, strlen(text));
        if (!text) fprintf(stderr, "llmflash simulate: out of memory\n");
        free(text);
        json_decref(o);
        if (!ok) return CLI_EXIT_RUNTIME;
    }
    return CLI_EXIT_OK;
}
