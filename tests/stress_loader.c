/* stress_loader.c - concurrency stress of the loader without Criterion, so
 * it can run under ThreadSanitizer (Criterion's process arena cannot).
 * Several threads submit and wait on batches against shared loaders of each
 * back-end, including one closed with reads in flight. Exit 0 on success. */
#include "../loader/loader.h"
#include "test_support.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define FILE_BYTES (8u << 20)
#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "stress_loader: %s:%d: check failed: %s\n", __FILE__, \
                    __LINE__, #c);                                                \
            exit(1);                                                              \
        }                                                                         \
    } while (0)

static uint8_t *content;

typedef struct worker_arg {
    lf_loader *ld;
    uint64_t seed;
} worker_arg;

static void *worker(void *p) {
    worker_arg *a = p;
    lf_rng rng;
    lf__rng_seed(&rng, a->seed);
    enum { N = 64, MAXLEN = 40000 };
    uint8_t *dst = malloc((size_t)N * MAXLEN);
    lf_load_req r[N];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < N; i++) {
            r[i] = (lf_load_req){.stored = 1 + (uint32_t)(lf__rng_next(&rng) % MAXLEN), .dst = dst + (size_t)i * MAXLEN};
            r[i].raw = r[i].stored;
            r[i].offset = lf__rng_next(&rng) % (FILE_BYTES - r[i].stored);
            r[i].checksum = lf__checksum64(content + r[i].offset, r[i].stored);
            r[i].verify = i % 3 == 0;
        }
        lf_load_batch *b;
        lf_err err = {{0}};
        CHECK(lf__loader_submit(a->ld, r, N, &b, &err) == LF_OK);
        CHECK(lf__loader_wait(a->ld, b, &err) == LF_OK);
        for (int i = 0; i < N; i++) CHECK(memcmp(r[i].dst, content + r[i].offset, r[i].stored) == 0);
    }
    free(dst);
    return NULL;
}

int main(void) {
    char path[64];
    snprintf(path, sizeof path, "/var/tmp/lf_stress_loader_%d.bin", (int)getpid());
    content = malloc(FILE_BYTES);
    lf_rng rng;
    lf__rng_seed(&rng, 5);
    for (size_t i = 0; i < FILE_BYTES; i++) content[i] = (uint8_t)lf__rng_next(&rng);
    const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0 && write(fd, content, FILE_BYTES) == (ssize_t)FILE_BYTES);
    close(fd);
    const lf_io_backend_kind kinds[] = {LF_IO_URING, LF_IO_PREAD, LF_IO_FAULT};
    const bool uring = uring_usable();
    if (!uring) printf("stress_loader: io_uring is not available here (seccomp?): skipped, pread and fault tested\n");
    for (size_t k = uring ? 0 : 1; k < 3; k++) {
        lf_loader_params p = lf__loader_default_params();
        p.backend = kinds[k];
        p.queue_depth = 8;
        p.fault = LF_FAULT_SHORT; /* only used by the fault back-end */
        p.fault_nth = 10;
        p.fault_count = 50;
        lf_loader *ld;
        lf_err err = {{0}};
        CHECK(lf__loader_open(path, &p, &ld, &err) == LF_OK);
        pthread_t t[3];
        worker_arg a[3];
        for (int i = 0; i < 3; i++) {
            a[i] = (worker_arg){ld, 100 * k + (uint64_t)i};
            CHECK(pthread_create(&t[i], NULL, worker, &a[i]) == 0);
        }
        for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
        /* close with a batch in flight */
        uint8_t *dst = malloc(64u << 10);
        lf_load_req r[16];
        for (int i = 0; i < 16; i++)
            r[i] = (lf_load_req){.offset = (uint64_t)i * 300000, .stored = 4096, .raw = 4096, .dst = dst + i * 4096};
        lf_load_batch *b;
        CHECK(lf__loader_submit(ld, r, 16, &b, &err) == LF_OK);
        lf__loader_close(ld);
        free(dst);
        printf("stress_loader: %s ok\n", k == 0 ? "io_uring" : k == 1 ? "pread" : "fault");
    }
    unlink(path);
    free(content);
    printf("%d passed, 0 failed%s\n", uring ? 3 : 2, uring ? "" : ", 1 skipped");
    return 0;
}
