/* cmd_iobench.c - `llmflash iobench`: a device's random-read bandwidth and
 * latency for bundle-shaped reads, and a table over sizes and depths. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int run_one(const char *path, const lf_iobench_params *p, lf_iobench_result *r) {
    char err[512];
    const lf_status st = lf_iobench(path, p, r, err, sizeof err);
    if (st) {
        fprintf(stderr, "llmflash iobench: %s (%s)%s\n", err, lf_strerror(st), cli_hint(st));
        return st == LF_E_INVALID_ARG ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
    }
    return CLI_EXIT_OK;
}

int cmd_iobench(int argc, char **argv) {
    lf_iobench_params p = lf_iobench_default_params();
    uint64_t size = p.read_size;
    int qd = (int)p.queue_depth;
    float seconds = 3.0f;
    const char *backend = "auto";
    bool coalesce = false, table = false;
    const char *device_json = NULL, *device_name = NULL;
    cli_opt opts[] = {
        {"--size", "-s", CLI_SIZE, &size, "bytes per read, multiple of 4K (default 16K)", false},
        {"--qd", "-q", CLI_INT, &qd, "reads in flight (default 32)", false},
        {"--seconds", NULL, CLI_FLOAT, &seconds, "duration of each measurement (default 3; 1 in --table)", false},
        {"--backend", NULL, CLI_STR, &backend, "auto, uring or pread (default auto)", false},
        {"--coalesce", NULL, CLI_FLAG, &coalesce, "merge neighbouring reads (default off)", false},
        {"--table", NULL, CLI_FLAG, &table, "sizes 4K-1M x queue depths 1, 4, 16, 32, 64, 128", false},
        {"--device-json", NULL, CLI_STR, &device_json,
         "with the table, write a device file for `simulate` and the bench suite: bandwidth and latency by read size "
         "and depth, and the DRAM read bandwidth", false},
        {"--name", NULL, CLI_STR, &device_name, "the device's name in --device-json (default: the file's)", false},
    };
    const size_t n_opts = sizeof opts / sizeof *opts;
    const char *pos[1];
    size_t n_pos;
    bool help;
    if (!cli_parse("iobench", argc, argv, 2, opts, n_opts, pos, 1, &n_pos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        printf("usage: llmflash iobench FILE [--size 16K] [--qd 32] [--seconds S] [--backend B] [--table]\n"
               "       llmflash iobench FILE --device-json DEVICE.json [--name NAME] [--seconds S]\n\n"
               "Random O_DIRECT reads of FILE, shaped like neuron-bundle loads. Use a file larger\n"
               "than RAM or drop the page cache first, or the cache answers instead of the device.\n\noptions:\n");
        cli_print_options(stdout, opts, n_opts);
        return CLI_EXIT_OK;
    }
    if (n_pos != 1 || qd < 1 || qd > 4096 || seconds <= 0.0f) {
        fprintf(stderr, "llmflash iobench: expected one FILE, --qd 1-4096 and a positive --seconds\n");
        return CLI_EXIT_USAGE;
    }
    if (strcmp(backend, "auto") == 0) p.backend = LF_IO_BACKEND_AUTO;
    else if (strcmp(backend, "uring") == 0) p.backend = LF_IO_BACKEND_URING;
    else if (strcmp(backend, "pread") == 0) p.backend = LF_IO_BACKEND_PREAD;
    else {
        fprintf(stderr, "llmflash iobench: --backend must be auto, uring or pread\n");
        return CLI_EXIT_USAGE;
    }
    p.coalesce = coalesce;
    lf_iobench_result r;
    if (device_json) table = true;
    if (!table) {
        p.read_size = size;
        p.queue_depth = (uint32_t)qd;
        p.seconds = seconds;
        const int rc = run_one(pos[0], &p, &r);
        if (rc) return rc;
        printf("%s: %llu-byte random reads, queue depth %d, %s%s%s\n", pos[0], (unsigned long long)size, qd, r.backend,
               r.direct ? ", O_DIRECT" : ", buffered (page cache may inflate this)", coalesce ? ", coalescing" : "");
        printf("bandwidth:  %.1f MiB/s\n", r.mib_per_s);
        printf("IOPS:       %.0f\n", r.iops);
        printf("latency:    p50 %.0f us, p90 %.0f us, p99 %.0f us\n", r.lat_p50_us, r.lat_p90_us, r.lat_p99_us);
        printf("in flight:  %.1f on average\n", r.mean_queue_depth);
        return CLI_EXIT_OK;
    }
    static const uint64_t sizes[] = {4u << 10, 8u << 10, 16u << 10, 32u << 10, 64u << 10, 128u << 10, 256u << 10, 1u << 20};
    static const int depths[] = {1, 4, 16, 32, 64, 128};
    const size_t n_depths = sizeof depths / sizeof *depths;
    p.seconds = opts[2].seen ? seconds : 1.0;
    char *json = NULL;
    size_t json_len = 0;
    FILE *js = device_json ? open_memstream(&json, &json_len) : NULL;
    if (device_json && !js) {
        fprintf(stderr, "llmflash iobench: out of memory\n");
        return CLI_EXIT_RUNTIME;
    }
    if (js) fprintf(js, "{\"kind\": \"llmflash-device\", \"version\": 1, \"name\": \"%s\", \"source\": \"llmflash iobench --table\", "
                    "\"reads\": [", device_name ? device_name : pos[0]);
    printf("MiB/s of random reads of %s (p50 latency in us):\n", pos[0]);
    printf("%7s ", "size");
    for (size_t d = 0; d < n_depths; d++) printf("  %9s QD %-3d", "", depths[d]);
    printf("\n");
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        printf("%6lluK ", (unsigned long long)(sizes[i] >> 10));
        for (size_t d = 0; d < n_depths; d++) {
            p.read_size = sizes[i];
            p.queue_depth = (uint32_t)depths[d];
            const int rc = run_one(pos[0], &p, &r);
            if (rc) {
                if (js) fclose(js);
                free(json);
                return rc;
            }
            printf("  %8.1f (%5.0f)", r.mib_per_s, r.lat_p50_us);
            if (js)
                fprintf(js, "%s\n  {\"size\": %llu, \"qd\": %d, \"mib_s\": %.2f, \"iops\": %.1f, \"p50_us\": %.1f, "
                        "\"p90_us\": %.1f}", i || d ? "," : "", (unsigned long long)sizes[i], depths[d], r.mib_per_s, r.iops,
                        r.lat_p50_us, r.lat_p90_us);
            fflush(stdout);
        }
        printf("\n");
    }
    printf("back-end: %s%s\n", r.backend, r.direct ? ", O_DIRECT" : ", buffered");
    if (!js) return CLI_EXIT_OK;
    const double dram = lf_memory_read_bandwidth(0, 1ull << 30);
    printf("DRAM read bandwidth: %.2f GB/s\n", dram / 1e9);
    fprintf(js, "\n], \"backend\": \"%s\", \"direct\": %s, \"dram_read_gb_s\": %.3f}\n", r.backend,
            r.direct ? "true" : "false", dram / 1e9);
    fclose(js);
    const bool ok = cli_write_file("iobench", "the device file", device_json, json, json_len);
    free(json);
    return ok ? CLI_EXIT_OK : CLI_EXIT_RUNTIME;
}
