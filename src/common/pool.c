/* pool.c - a small pthread pool running one data-parallel job at a time,
 * or an engine's own pool behind the same calls (lf_threadpool_wrap). */
#include "lf_common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define lf_cpu_relax() _mm_pause()
#else
#define lf_cpu_relax() ((void)0)
#endif

/* Spin iterations before a worker sleeps: about 50 us of pause instructions. */
#define LF_POOL_SPIN 20000

struct lf_threadpool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    pthread_cond_t done_cond;
    atomic_uint_fast64_t generation; /* incremented per job */
    atomic_int pending;              /* workers still running the job */
    atomic_int sleeping;             /* workers waiting on `wake` */
    atomic_bool stop;
    lf_pool_fn fn;
    void *ctx;
    /* Jobs from several sessions' threads take turns: one at a time. */
    pthread_mutex_t job_lock;
    /* an engine's pool (wrapped): its table and state; no threads of ours */
    lf_threadpool_ops ops;
    void *ops_user;
    bool wrapped;
};

typedef struct worker_arg {
    lf_pool *pool;
    int index;
} worker_arg;

static void *worker_main(void *p) {
    worker_arg arg = *(worker_arg *)p;
    free(p);
    lf_pool *pool = arg.pool;
    uint64_t seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&pool->generation, memory_order_acquire) == seen &&
               !atomic_load(&pool->stop) && spins < LF_POOL_SPIN) {
            lf_cpu_relax();
            spins++;
        }
        if (atomic_load_explicit(&pool->generation, memory_order_acquire) == seen &&
            !atomic_load(&pool->stop)) {
            pthread_mutex_lock(&pool->mutex);
            atomic_fetch_add(&pool->sleeping, 1);
            while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->wake, &pool->mutex);
            atomic_fetch_sub(&pool->sleeping, 1);
            pthread_mutex_unlock(&pool->mutex);
        }
        if (atomic_load(&pool->stop)) return NULL;
        seen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        pool->fn(pool->ctx, arg.index, pool->n_threads);
        if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&pool->mutex);
            pthread_cond_signal(&pool->done_cond);
            pthread_mutex_unlock(&pool->mutex);
        }
    }
}

lf_status lf__pool_create(int n_threads, lf_pool **out) {
    *out = NULL;
    if (n_threads < 1) n_threads = 1;
    lf_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return LF_E_NOMEM;
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done_cond, NULL);
    pthread_mutex_init(&pool->job_lock, NULL);
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->sleeping, 0);
    atomic_init(&pool->stop, false);
    if (n_threads > 1) {
        pool->threads = calloc((size_t)n_threads - 1, sizeof *pool->threads);
        if (!pool->threads) goto err;
        for (int i = 1; i < n_threads; i++) {
            worker_arg *arg = malloc(sizeof *arg);
            if (!arg) goto err_threads;
            arg->pool = pool;
            arg->index = i;
            if (pthread_create(&pool->threads[i - 1], NULL, worker_main, arg) != 0) {
                free(arg);
                goto err_threads;
            }
            continue;
        err_threads:
            pool->n_threads = i; /* threads [1, i) exist */
            lf__pool_destroy(pool);
            return LF_E_NOMEM;
        }
    }
    *out = pool;
    return LF_OK;
err:
    free(pool);
    return LF_E_NOMEM;
}

void lf__pool_destroy(lf_pool *pool) {
    if (!pool) return;
    if (pool->wrapped) { /* the engine's threads are its own */
        free(pool);
        return;
    }
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->stop, true);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->threads[i - 1], NULL);
    pthread_mutex_destroy(&pool->mutex);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->done_cond);
    pthread_mutex_destroy(&pool->job_lock);
    free(pool->threads);
    free(pool);
}

int lf__pool_size(const lf_pool *pool) { return pool ? pool->n_threads : 1; }

void lf__pool_run(lf_pool *pool, lf_pool_fn fn, void *ctx) {
    if (!pool || pool->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    if (pool->wrapped) {
        pool->ops.run(pool->ops_user, fn, ctx);
        return;
    }
    pthread_mutex_lock(&pool->job_lock);
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store(&pool->pending, pool->n_threads - 1);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    if (atomic_load(&pool->sleeping) > 0) {
        pthread_mutex_lock(&pool->mutex);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mutex);
    }
    fn(ctx, 0, pool->n_threads);
    int spins = 0;
    while (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0 && spins < LF_POOL_SPIN) {
        lf_cpu_relax();
        spins++;
    }
    if (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0) {
        pthread_mutex_lock(&pool->mutex);
        while (atomic_load(&pool->pending) > 0) pthread_cond_wait(&pool->done_cond, &pool->mutex);
        pthread_mutex_unlock(&pool->mutex);
    }
    pthread_mutex_unlock(&pool->job_lock);
}

/* ---- the public face: lf_threadpool is an lf_pool ------------------------ */

lf_status lf_threadpool_create(int n_threads, lf_threadpool **out) {
    if (!out) return LF_E_INVALID_ARG;
    *out = NULL;
    if (n_threads < 0 || n_threads > LF_THREADS_PER_CORE_MAX * lf__cpu_count()) return LF_E_INVALID_ARG;
    return lf__pool_create(n_threads ? n_threads : lf__cpu_count(), out);
}

lf_status lf_threadpool_wrap(const lf_threadpool_ops *ops, void *user, lf_threadpool **out) {
    if (!out) return LF_E_INVALID_ARG;
    *out = NULL;
    if (!ops || !ops->run || !ops->n_threads) return LF_E_INVALID_ARG;
    const int n = ops->n_threads(user);
    if (n < 1 || n > LF_THREADS_PER_CORE_MAX * lf__cpu_count()) return LF_E_INVALID_ARG;
    lf_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return LF_E_NOMEM;
    pool->n_threads = n;
    pool->ops = *ops;
    pool->ops_user = user;
    pool->wrapped = true;
    *out = pool;
    return LF_OK;
}

void lf_threadpool_destroy(lf_threadpool *pool) { lf__pool_destroy(pool); }

int lf_threadpool_size(const lf_threadpool *pool) { return pool ? pool->n_threads : 0; }

void lf__pool_run_work(lf_pool *pool, lf_pool_fn fn, void *ctx, uint64_t work) {
    /* below this, waking and waiting for the workers costs more than the
     * job; and on a machine shared with other processes a worker may not be
     * running at all, so every handoff of a tiny job can wait a time slice */
    if (work < LF_POOL_MIN_WORK) fn(ctx, 0, 1);
    else lf__pool_run(pool, fn, ctx);
}

void lf__split_range(uint64_t n, int ith, int nth, uint64_t grain, uint64_t *begin, uint64_t *end) {
    if (grain == 0) grain = 1;
    const uint64_t chunks = (n + grain - 1) / grain;
    const uint64_t per = chunks / (uint64_t)nth, extra = chunks % (uint64_t)nth;
    const uint64_t c0 = (uint64_t)ith * per + LF_MIN((uint64_t)ith, extra);
    const uint64_t c1 = c0 + per + ((uint64_t)ith < extra ? 1 : 0);
    *begin = LF_MIN(c0 * grain, n);
    *end = LF_MIN(c1 * grain, n);
}
