/* predictor_file.h - a flash model's calibrated predictors, stored beside it
 * as a GGUF file of their own ("MODEL.predictor" by default):
 *   general.architecture            "llmflash-predictor"
 *   llmflash.predictor.format_version 2
 *   llmflash.predictor.kind         "lowrank" (the gate's, thresholded logits), or
 *                                   "lowrank-gate-up" (SwiGLU: gate's and up's,
 *                                   thresholded |silu(zg)·zu|, see lf_layer_predictor)
 *   llmflash.predictor.model_checksum the flash file's header checksum: a
 *                                   predictor fitted to another file is refused
 *   llmflash.predictor.n_layer, .n_embd, .n_ff, .rank (the largest), .ranks (u32 per layer)
 *   llmflash.predictor.thresholds   f32 per layer
 *   llmflash.predictor.taus         f32 per layer (SwiGLU ground truth; 0 for ReLU)
 *   llmflash.predictor.lookahead_rank 0, or the rank of the lookahead predictors
 *   llmflash.predictor.lookahead_thresholds f32 per layer (layer 0's unused)
 *   blk.N.pred_a [n_embd, rank] and blk.N.pred_b [rank, n_ff], both F16 or both
 *   Q8_0 (blocks along ne0: n_embd and rank multiples of 32), blk.N.pred_bias
 *   [n_ff] F32; for "lowrank-gate-up" also blk.N.pred_up_{a,b,bias}; with a
 *   lookahead, blk.N.ahead_{a,b,bias} (and ahead_up_*) for N >= 1: layer N's
 *   units predicted from layer N-1's FFN input.
 * Weights are stored as they run (F16 or Q8_0, chosen per layer by
 * calibrate): it sets the thresholds on the stored form, so the recall it
 * reports is that of these weights. */
#ifndef LF_PREDICTOR_FILE_H
#define LF_PREDICTOR_FILE_H

#include "model.h"
#include "../../predictor/lowrank.h"

struct lf_predictor_set {
    uint32_t n_layer;
    bool pair;                   /* SwiGLU: gate and up predictors per layer */
    lf_layer_predictor *layers;  /* (n_layer) */
    lf_layer_predictor *ahead;   /* (n_layer) lookahead, entry 0 empty; NULL: none */
    float *taus;                 /* (n_layer) */
};
typedef struct lf_predictor_set lf_predictor_set;

lf_status lf__predictor_save(const lf_predictor_set *ps, const lf_model *m, const char *path, bool force, lf_err *err);
/* Loads and checks it against the model (shape and model checksum); its
 * lookahead predictors only when with_lookahead. */
lf_status lf__predictor_load(const char *path, const lf_model *m, bool with_lookahead, lf_predictor_set *ps, lf_err *err);
void lf__predictor_set_free(lf_predictor_set *ps);
uint64_t lf__predictor_set_bytes(const lf_predictor_set *ps);
/* Bytes the predictor at path will take once loaded, with the mask's
 * scratch (0 if it cannot be read: loading it then says why). Reads only
 * its header. */
uint64_t lf__predictor_file_bytes(const char *path, const lf_model *m, bool with_lookahead);
/* Floats of scratch the predictor mask holds for predictors of at most
 * `rank` (the rank projections, up's scores, and q8a blocks of x and h). */
uint64_t lf__predictor_mask_scratch(uint32_t n_in, uint32_t n_ff, uint32_t rank);
/* The predictor file to use: `given`, or when NULL the model's default
 * (model_path + ".predictor"). Malloc'ed; NULL when out of memory. */
char *lf__predictor_path(const char *model_path, const char *given);

#endif
