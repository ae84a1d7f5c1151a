/* router.h - a mixture of experts' router as the FFN engine's mask source.
 *
 * The router is exact: the units a batch needs are the experts its tokens
 * are routed to (moe.h), and each token's weight for each of them comes
 * with them (lf_mask_ops.route). With lookahead, layer l + 1's router is
 * applied to layer l's FFN input, so the experts it guesses are read while
 * layer l computes; the residual stream changes little from one layer to
 * the next, so the guess is mostly right, and the engine reads what it
 * missed once the layer's own input is known. */
#ifndef LF_ROUTER_H
#define LF_ROUTER_H

#include "model.h"
#include "mask_source.h"

/* The router of an open model whose FFNs are mixtures of experts, for
 * batches of up to max_batch tokens. Its products run on pool (borrowed,
 * idle while the engine chooses units; NULL: the calling thread). The
 * model must outlive it. LF_E_NOMEM. */
lf_status lf__mask_router_create(const lf_model *m, lf_pool *pool, uint32_t max_batch, bool lookahead, lf_mask *out,
                                 lf_err *err);
/* Bytes it holds for a batch size (for planning a budget). */
uint64_t lf__mask_router_bytes(const lf_model *m, uint32_t max_batch);

/* Routing statistics: how many tokens of a calibration text each layer
 * routed to each expert, a GGUF of llmflash.routing.* keys (lf_calibrate
 * writes it for a mixture of experts). The hot set is read from it.
 * counts: (n_layer, n_expert). */
/* Where they are: given, else model_path + ".routing" (malloc'd). */
char *lf__routing_path(const char *model_path, const char *given);
#define LF_KEY_ROUTING_COUNTS "llmflash.routing.counts"
#define LF_KEY_ROUTING_TOKENS "llmflash.routing.tokens"
lf_status lf__routing_stats_write(const char *path, const lf_model *m, const uint64_t *counts, uint64_t tokens,
                                  bool force, lf_err *err);
/* Reads the counts of the model's shape (malloc'd into *counts).
 * LF_E_IO when there is no file, LF_E_MODEL when it is not one for m. */
lf_status lf__routing_stats_load(const char *path, const lf_model *m, uint64_t **counts, lf_err *err);
/* Layer `layer`'s router logits for the n tokens x (n, n_embd) into logits
 * (n, n_expert), on pool (NULL: the calling thread); xq is scratch of
 * n * (n_embd / 32 + 1) blocks. */
void lf__router_logits(const lf_model *m, lf_pool *pool, uint32_t layer, const float *x, size_t n, float *logits,
                       lf_block_q8a *xq);

#endif
