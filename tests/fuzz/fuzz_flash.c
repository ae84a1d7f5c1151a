/* fuzz_flash.c - libFuzzer target: a flash file from fuzzed bytes, opened
 * and evaluated for two tokens through the streaming engine (or mmap mode).
 * The first byte picks the mode, a budget, and whether checksums are
 * checked: most mutations of a checksummed file fail at its header, so half
 * the inputs skip the checks to reach the bundle index, the loader and the
 * FFN. */
#include "fuzz_support.h"

#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t flags = data[0];
    lf_model_params mp = lf_model_default_params();
    mp.n_threads = 1;
    mp.verify_checksums = (flags & 1) != 0;
    mp.mode = (flags & 2) ? LF_MODE_MMAP : (flags & 4) ? LF_MODE_NAIVE : LF_MODE_STREAM;
    mp.io_backend = LF_IO_BACKEND_PREAD;
    if (mp.mode != LF_MODE_MMAP && (flags & 8)) mp.dram_budget = 4u << 20;
    int fd;
    lf_model *m = lf_fuzz_open(data + 1, size - 1, &mp, &fd);
    if (!m) return 0;
    lf_fuzz_eval(m, 2);
    lf_model_close(m);
    close(fd);
    return 0;
}
