/* ffn_engine.h - the FFN of a flash file as an engine of its own: a model's
 * layers' feed-forward networks computed for batches of tokens, with units
 * read from flash through a windowed cache under a byte budget.
 *
 * It owns the neuron caches, the transient read buffers, the bundle kernel,
 * the mask source and the statistics; it borrows the model (layout, loader,
 * mapping) and a thread pool. A caller (the forward pass, or an engine with
 * attention of its own) gives it each layer's normalised FFN input and gets
 * the FFN's output back in a buffer of its own, which it adds to its
 * residual stream itself. Dependencies run one way: caller -> engine ->
 * bundle kernel, neuron cache, mask source, loader.
 *
 * Per layer and batch:
 *   1. drop units outside the window (stream mode);
 *   2. the mask source names the units the batch needs: hits are cached,
 *      misses are not;
 *   3. misses take cache slots, evicting least recently used units the
 *      batch does not need, and are read into those slots;
 *   4. misses that find no slot stream through two transient buffers, one
 *      computed while the other loads;
 *   5. hits are computed while the reads run; each unit, read once, is
 *      applied to every token of the batch.
 * Modes: stream (cache from the budget), naive (no cache, one buffer: read,
 * then compute), hybrid (the first half of each layer pinned, the rest
 * streamed), mmap (records read in place from the mapping, each group
 * checked the first time it is touched). */
#ifndef LF_FFN_ENGINE_H
#define LF_FFN_ENGINE_H

#include "model.h"
#include "mask_source.h"

typedef struct lf_ffn_engine lf_ffn_engine;

typedef struct lf_ffn_engine_params {
    uint32_t window;        /* stream mode: keep units used by the last `window` tokens (0: 5) */
    lf_mask_source mask;    /* all, oracle or predictor */
    const char *predictor_path; /* LF_MASK_PREDICTOR: the file (NULL: the model's default) */
    bool measure_recall;    /* also run the oracle and count the mask's false negatives */
    bool lookahead;         /* LF_MASK_PREDICTOR: use the file's lookahead predictors, if it has them */
    uint32_t hot_experts;   /* mixtures of experts: the busiest experts per layer pinned (lf_session_params) */
    /* Another mask source instead (a predictor, a router): used when set,
     * borrowed, and must outlive the engine. */
    const lf_mask_ops *mask_ops;
    void *mask_state;
    lf_cache_split split;
    uint32_t max_batch;     /* tokens per forward call, at most (0: 1) */
    uint64_t cache_bytes;   /* the neuron caches' share of the budget; 0 with no budget: every unit */
    lf_logger log;          /* its messages (fn NULL: the model's) */
} lf_ffn_engine_params;

/* Bytes an engine with these params needs besides its neuron caches: I/O
 * buffers (transient chunks, the loader's per-batch tables), the mask
 * source's state, and scratch (the kernel's accumulators, tables). */
void lf__ffn_plan_bytes(const lf_model *m, const lf_ffn_engine_params *p, int n_threads, uint64_t *io, uint64_t *mask,
                        uint64_t *scratch);

/* Records the engine's spans ("predictor", "io_submit", "io_wait",
 * "ffn_compute") on track_compute, its read batches on track_io, and the
 * counters bytes_in_flight and cache_bytes into trace (NULL: off). */
void lf__ffn_set_trace(lf_ffn_engine *f, lf_trace *trace, int track_compute, int track_io);

/* Creates the engine for an open flash model, computing on pool (borrowed,
 * must outlive the engine). Reads what the mode keeps resident (hybrid's
 * pinned half, the oracle's copy). Errors: LF_E_BUDGET, LF_E_NOMEM and the
 * read errors, with the detail in err. */
lf_status lf__ffn_create(lf_model *m, lf_pool *pool, const lf_ffn_engine_params *p, lf_ffn_engine **out, lf_err *err);
/* Waits for reads in flight into the engine's buffers and frees it. NULL is a no-op. */
void lf__ffn_destroy(lf_ffn_engine *f);

/* Starts a new batch of n tokens: the window and the measured split count
 * tokens. */
void lf__ffn_next_tokens(lf_ffn_engine *f, size_t n);
/* Plans layer `layer` for the current batch and starts its reads, without
 * blocking. x (n, n_embd) is the layer's FFN input; NULL when it is not known
 * yet, which is enough for a mask source that does not need it (and a no-op
 * for one that does). Idempotent per layer and batch. */
lf_status lf__ffn_prefetch(lf_ffn_engine *f, uint32_t layer, const float *x, size_t n);
/* Computes layer `layer`'s FFN for the n tokens x (n, n_embd) into y
 * (n, n_embd), prefetching first if needed. On failure, the first error's
 * detail is in lf__ffn_errmsg, every read in flight has been waited for, and
 * no unit whose read was not confirmed stays cached: the batch may be
 * retried. */
lf_status lf__ffn_forward(lf_ffn_engine *f, uint32_t layer, const float *x, size_t n, float *y);
/* After a failure outside forward (a prefetch): waits for reads in flight
 * and drops unconfirmed units. */
void lf__ffn_abort(lf_ffn_engine *f);
const char *lf__ffn_errmsg(const lf_ffn_engine *f);
/* Whether the mask is known before a layer's input (prefetch with x NULL works). */
bool lf__ffn_mask_is_early(const lf_ffn_engine *f);

/* Counters: adds the engine's to out (FFN bytes, neurons, evictions, window
 * union, I/O wait and span, the engine's reads). */
void lf__ffn_stats(const lf_ffn_engine *f, lf_session_stats *out);
void lf__ffn_layer_stats(const lf_ffn_engine *f, uint32_t layer, lf_layer_stats *out);
void lf__ffn_reset_stats(lf_ffn_engine *f);
/* Bytes the neuron caches hold. */
uint64_t lf__ffn_cache_bytes(const lf_ffn_engine *f);

#endif
