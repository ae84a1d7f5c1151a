/* kernel_bench.c - how fast each matrix-vector kernel streams its weights,
 * from cache and from DRAM: whether a type is compute-bound (its in-cache
 * rate near the DRAM rate) or memory-bound (far above it).
 *
 *   kernel_bench [--types q4_0,q4_K,q6_K,q8_0] [--threads N] [--cols C]
 *                [--cache-rows R] [--dram-rows R] [--seconds S]
 *
 * For each type with an x8 layout and each kernel path this CPU runs, one
 * token's product (the widest kernel, as matmul calls it for generation)
 * is checked against the scalar reference on the same rows, and then
 * timed: R rows repeated while they stay in L2 (--cache-rows, default
 * 256), and a matrix far larger than the last-level cache (--dram-rows,
 * default 65536: 150 MB of Q4_K at 4096 columns), the threads splitting
 * the rows into contiguous halves. Prints GB/s of weights per path, type
 * and place; exits 1 when a path's result is off, 2 on bad arguments. */
#include "../src/tensor/kernels.h"
#include "../src/tensor/repack.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct job {
    const lf_kernels *k;
    uint32_t type;
    const uint8_t *w;
    uint64_t row_bytes, r0, r1, cols;
    const lf_block_q8a *x;
    float *y;
    uint64_t reps;
} job;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* rows [r0, r1) times x, reps times, through the widest kernel the path has */
static void *run(void *arg) {
    const job *j = arg;
    const lf_gemm_x8_fn gemms[3] = {j->k->gemm_x32[j->type], j->k->gemm_x16[j->type], j->k->gemm_x8[j->type]};
    for (uint64_t rep = 0; rep < j->reps; rep++) {
        uint64_t r = j->r0;
        for (int g = 0; g < 3; g++) {
            const uint64_t span = (uint64_t)(4 >> g) * LF_X8;
            if (gemms[g])
                for (; r + span <= j->r1; r += span)
                    gemms[g](j->w + r * j->row_bytes, j->x, 0, 1, j->y + r, 0, (int64_t)j->cols);
        }
    }
    return NULL;
}

static void run_threads(job base, uint64_t rows, int threads) {
    pthread_t th[64];
    job jobs[64];
    const uint64_t per = (rows / threads + 31) / 32 * 32;
    for (int i = 0; i < threads; i++) {
        jobs[i] = base;
        jobs[i].r0 = LF_MIN(per * i, rows);
        jobs[i].r1 = LF_MIN(per * (i + 1), rows);
        if (pthread_create(&th[i], NULL, run, &jobs[i]) != 0) {
            fprintf(stderr, "kernel_bench: cannot start a thread\n");
            exit(1);
        }
    }
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
}

/* GB/s of weights over rows, the best of 3 timings of about `seconds` each */
static double rate(job base, uint64_t rows, int threads, double seconds) {
    base.reps = 1;
    double t0 = now();
    run_threads(base, rows, threads);
    const double once = LF_MAX(now() - t0, 1e-7);
    base.reps = (uint64_t)LF_MAX(1.0, seconds / once);
    double best = 1e30;
    for (int trial = 0; trial < 3; trial++) {
        t0 = now();
        run_threads(base, rows, threads);
        best = LF_MIN(best, (now() - t0) / (double)base.reps);
    }
    return (double)(rows * base.row_bytes) / best / 1e9;
}

/* Random weights of a type, in the x8 layout. */
static uint8_t *random_matrix(uint32_t type, uint64_t rows, uint64_t cols, uint64_t row_bytes, unsigned *seed) {
    uint8_t *w = aligned_alloc(64, (rows * row_bytes + 63) / 64 * 64);
    float *f = malloc(cols * sizeof *f);
    void *scratch = malloc(LF_X8 * row_bytes);
    if (!w || !f || !scratch) {
        fprintf(stderr, "kernel_bench: out of memory for %lu rows\n", (unsigned long)rows);
        exit(1);
    }
    for (uint64_t r = 0; r < rows; r++) {
        for (uint64_t i = 0; i < cols; i++) f[i] = (float)rand_r(seed) / (float)RAND_MAX - 0.5f;
        if (lf__quantize_row(type, f, w + r * row_bytes, (int64_t)cols) != LF_OK) {
            fprintf(stderr, "kernel_bench: cannot quantize to type %u\n", type);
            exit(1);
        }
    }
    lf__repack_x8(type, w, rows, cols, scratch);
    free(f);
    free(scratch);
    return w;
}

static int parse_type(const char *s, uint32_t *t) {
    static const struct { const char *name; uint32_t type; } names[] = {
        {"q4_0", LF_TYPE_Q4_0}, {"q4_1", LF_TYPE_Q4_1}, {"q5_0", LF_TYPE_Q5_0}, {"q5_1", LF_TYPE_Q5_1},
        {"q8_0", LF_TYPE_Q8_0}, {"q4_K", LF_TYPE_Q4_K}, {"q5_K", LF_TYPE_Q5_K}, {"q6_K", LF_TYPE_Q6_K}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(s, names[i].name)) return *t = names[i].type, 1;
    return 0;
}

static int usage(const char *why) {
    fprintf(stderr, "kernel_bench: %s\nusage: kernel_bench [--types q4_0,q4_K,q6_K,q8_0] [--threads N] [--cols C] "
                    "[--cache-rows R] [--dram-rows R] [--seconds S]\n", why);
    return 2;
}

int main(int argc, char **argv) {
    char types_arg[256] = "q4_0,q4_K,q6_K,q8_0";
    long threads = 2, cols = 4096, cache_rows = 256, dram_rows = 65536;
    double seconds = 0.2;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) return usage("every option takes a value");
        const char *v = argv[++i];
        char *end;
        if (!strcmp(argv[i - 1], "--types")) {
            if (strlen(v) >= sizeof types_arg) return usage("--types is too long");
            strcpy(types_arg, v);
            continue;
        }
        const double n = strtod(v, &end);
        if (*end || !(n > 0)) return usage("option values must be positive numbers");
        if (!strcmp(argv[i - 1], "--threads")) threads = (long)n;
        else if (!strcmp(argv[i - 1], "--cols")) cols = (long)n;
        else if (!strcmp(argv[i - 1], "--cache-rows")) cache_rows = (long)n;
        else if (!strcmp(argv[i - 1], "--dram-rows")) dram_rows = (long)n;
        else if (!strcmp(argv[i - 1], "--seconds")) seconds = n;
        else return usage("unknown option");
    }
    if (threads < 1 || threads > 64 || cols % 256 || cache_rows % 32 || dram_rows % 32)
        return usage("--threads in 1..64, --cols a multiple of 256, rows multiples of 32");
    const lf_kernels *paths[LF_KERNEL_PATHS];
    const int n_paths = lf__kernels_available(paths);
    printf("kernel_bench: %ld columns, %ld threads, one token; paths:", cols, threads);
    for (int p = 0; p < n_paths; p++) printf(" %s", paths[p]->name);
    printf("\n");
    int bad = 0;
    unsigned seed = 1;
    for (char *save = NULL, *name = strtok_r(types_arg, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        uint32_t type;
        if (!parse_type(name, &type)) return usage("unknown type (q4_0 q4_1 q5_0 q5_1 q8_0 q4_K q5_K q6_K)");
        if (!lf__repack_supported(type)) continue;
        const uint64_t row_bytes = lf__type_row_bytes(type, (uint64_t)cols);
        const uint64_t rows_max = (uint64_t)LF_MAX(cache_rows, dram_rows);
        uint8_t *w = random_matrix(type, rows_max, (uint64_t)cols, row_bytes, &seed);
        float *f = malloc(cols * sizeof *f), *y = malloc(rows_max * sizeof *y), *want = malloc(rows_max * sizeof *want);
        lf_block_q8a *x = malloc((uint64_t)cols / LF_QK * sizeof *x);
        for (long i = 0; i < cols; i++) f[i] = (float)rand_r(&seed) / (float)RAND_MAX - 0.5f;
        paths[0]->quantize_q8a(f, x, cols);
        job base = {.type = type, .w = w, .row_bytes = row_bytes, .cols = (uint64_t)cols, .x = x};
        /* the reference on the cache-sized rows */
        run_threads((job){.k = paths[0], .type = type, .w = w, .row_bytes = row_bytes, .r0 = 0,
                          .r1 = (uint64_t)cache_rows, .cols = (uint64_t)cols, .x = x, .y = want, .reps = 1},
                    (uint64_t)cache_rows, 1);
        float scale = 0.0f;
        for (long r = 0; r < cache_rows; r++) scale = fmaxf(scale, fabsf(want[r]));
        for (int p = 0; p < n_paths; p++) {
            base.k = paths[p];
            base.y = y;
            if (!base.k->gemm_x8[type]) continue;
            base.reps = 1;
            memset(y, 0, rows_max * sizeof *y);
            run_threads(base, (uint64_t)cache_rows, 1);
            float err = 0.0f;
            for (long r = 0; r < cache_rows; r++) err = fmaxf(err, fabsf(y[r] - want[r]));
            if (!(err <= 1e-4f * scale)) {
                printf("%-12s %-5s WRONG: off by %g (largest output %g)\n", base.k->name, name, err, scale);
                bad = 1;
                continue;
            }
            const double in_cache = rate(base, (uint64_t)cache_rows, (int)threads, seconds);
            const double dram = rate(base, (uint64_t)dram_rows, (int)threads, seconds);
            printf("%-12s %-5s %6.1f GB/s in cache (%ld rows), %6.1f GB/s from DRAM (%ld rows, %.0f MB)\n",
                   base.k->name, name, in_cache, cache_rows, dram, dram_rows, (double)dram_rows * row_bytes / 1e6);
        }
        free(w);
        free(f);
        free(y);
        free(want);
        free(x);
    }
    return bad;
}
