/* fuzz_support.h - helpers shared by the libFuzzer targets. */
#ifndef LF_FUZZ_SUPPORT_H
#define LF_FUZZ_SUPPORT_H

#include "llmflash.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes the bytes to an anonymous file and opens it as a model with mp.
 * NULL when the open fails (aborting if it failed without saying why);
 * otherwise *fd is the file, to close after the model. */
lf_model *lf_fuzz_open(const uint8_t *data, size_t size, const lf_model_params *mp, int *fd);
/* Evaluates n (at most 4) tokens in a fresh session, for models small
 * enough to keep the fuzzer fast: every failure must carry a message. */
void lf_fuzz_eval(lf_model *m, size_t n);

#endif
