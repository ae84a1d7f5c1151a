/* multi_session.c MODEL BUDGET SESSIONS TOKENS [shared-pool] - several
 * sessions on one model, each driven from its own thread, inside one DRAM
 * budget: each session takes an equal share of what the model leaves,
 * generates TOKENS greedy tokens from the same prompt, and every text must
 * equal that of one session run alone afterwards. With shared-pool, the
 * sessions compute on one lf_threadpool of two threads, whose jobs from
 * the different sessions' threads take turns. Prints
 * the peak RSS. Without Criterion, so it also runs under ThreadSanitizer
 * (run it with LLMFLASH_IO=pread there: TSan cannot see the ordering that
 * io_uring's shared rings give, and would report the kernel's writes into
 * our buffers as races). Exit 0 on success. */
#include "llmflash.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define MAX_SESSIONS 8

typedef struct worker {
    lf_session *s;
    uint32_t tokens;
    char text[16384];
    size_t len;
    lf_status st;
} worker;

static bool collect(void *user, const char *piece, size_t len) {
    worker *w = user;
    if (w->len + len >= sizeof w->text) return false;
    memcpy(w->text + w->len, piece, len);
    w->len += len;
    w->text[w->len] = '\0';
    return true;
}

static void *run(void *p) {
    worker *w = p;
    lf_sampler_params sp = lf_sampler_default_params();
    sp.temperature = 0.0f;
    lf_sampler *g;
    if ((w->st = lf_sampler_create(&sp, &g))) return NULL;
    lf_generate_params gp = lf_generate_default_params();
    gp.n_predict = w->tokens;
    gp.on_piece = collect;
    gp.user = w;
    w->st = lf_session_generate(w->s, g, "Once upon a time", &gp, NULL);
    lf_sampler_destroy(g);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5 && !(argc == 6 && strcmp(argv[5], "shared-pool") == 0)) {
        fprintf(stderr, "usage: multi_session MODEL BUDGET_BYTES SESSIONS TOKENS [shared-pool]\n");
        return 2;
    }
    lf_threadpool *pool = NULL;
    if (argc == 6 && lf_threadpool_create(2, &pool)) {
        fprintf(stderr, "multi_session: no thread pool\n");
        return 1;
    }
    const uint64_t budget = strtoull(argv[2], NULL, 10);
    const int n = atoi(argv[3]);
    const uint32_t tokens = (uint32_t)atoi(argv[4]);
    if (n < 1 || n > MAX_SESSIONS) return 2;
    lf_model_params mp = lf_model_default_params();
    mp.dram_budget = budget;
    mp.n_threads = 1;
    lf_model *m;
    char err[512];
    lf_status st = lf_model_open(argv[1], &mp, &m, err, sizeof err);
    if (st) {
        fprintf(stderr, "multi_session: open: %s (%s)\n", err, lf_strerror(st));
        return 1;
    }
    static worker w[MAX_SESSIONS];
    const uint64_t share = lf_model_budget_left(m) / (uint64_t)n;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        lf_session_params sp = lf_session_default_params();
        sp.n_ctx = 128;
        sp.budget_bytes = share;
        sp.threadpool = pool;
        w[i].tokens = tokens;
        if ((st = lf_session_create(m, &sp, &w[i].s, err, sizeof err))) {
            fprintf(stderr, "multi_session: session %d: %s (%s)\n", i, err, lf_strerror(st));
            for (int k = 0; k < i; k++) lf_session_destroy(w[k].s);
            lf_model_close(m);
            lf_threadpool_destroy(pool);
            return 1;
        }
    }
    /* one more session does not fit: the ledger says so instead of overrunning */
    lf_session_params extra = lf_session_default_params();
    extra.n_ctx = 128;
    lf_session *over;
    if (lf_session_create(m, &extra, &over, err, sizeof err) != LF_E_BUDGET) {
        fprintf(stderr, "multi_session: a session beyond the budget was not refused\n");
        rc = 1;
    }
    pthread_t th[MAX_SESSIONS];
    for (int i = 0; i < n; i++) pthread_create(&th[i], NULL, run, &w[i]);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < n; i++) lf_session_destroy(w[i].s);
    /* the reference: one session alone, on its own threads */
    static worker alone;
    lf_session_params sp = lf_session_default_params();
    sp.n_ctx = 128;
    sp.budget_bytes = share;
    alone.tokens = tokens;
    if ((st = lf_session_create(m, &sp, &alone.s, err, sizeof err))) {
        fprintf(stderr, "multi_session: the sequential session: %s (%s)\n", err, lf_strerror(st));
        rc = 1;
    } else {
        run(&alone);
        if (alone.st || alone.len == 0) {
            fprintf(stderr, "multi_session: the sequential run: %s\n", lf_strerror(alone.st));
            rc = 1;
        }
    }
    lf_session_destroy(alone.s);
    for (int i = 0; i < n; i++) {
        if (w[i].st) {
            fprintf(stderr, "multi_session: session %d: %s\n", i, lf_strerror(w[i].st));
            rc = 1;
        } else if (strcmp(w[i].text, alone.text) != 0 || w[i].len == 0) {
            fprintf(stderr, "multi_session: session %d's text differs from the sequential run's\n", i);
            rc = 1;
        }
    }
    lf_threadpool_destroy(pool);
    lf_model_close(m);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("multi_session: %d sessions%s, budget %llu, peak RSS %llu bytes, %s\n", n, pool ? " on one pool" : "", (unsigned long long)budget,
           (unsigned long long)ru.ru_maxrss * 1024, rc ? "FAILED" : "ok");
    return rc;
}
