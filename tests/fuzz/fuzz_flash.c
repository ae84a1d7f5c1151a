/* fuzz_flash.c - libFuzzer target: a flash file from fuzzed bytes, opened
 * and evaluated for two tokens through the streaming engine (or mmap mode).
 * The first byte picks the mode and whether checksums are checked: most
 * mutations of a checksummed file fail at its header, so half the inputs
 * skip the checks to reach the bundle index, the loader and the FFN. */
#include "llmflash.h"

#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int lf_fuzz_file(const uint8_t *data, size_t size, char *path, size_t cap);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t flags = data[0];
    char path[64], err[512] = "";
    const int fd = lf_fuzz_file(data + 1, size - 1, path, sizeof path);
    lf_model_params mp = lf_model_default_params();
    mp.n_threads = 1;
    mp.verify_checksums = (flags & 1) != 0;
    mp.mode = (flags & 2) ? LF_MODE_MMAP : (flags & 4) ? LF_MODE_NAIVE : LF_MODE_STREAM;
    mp.io_backend = LF_IO_BACKEND_PREAD;
    if (mp.mode != LF_MODE_MMAP && (flags & 8)) mp.dram_budget = 4u << 20;
    lf_model *m = NULL;
    lf_status st = lf_model_open(path, &mp, &m, err, sizeof err);
    if (st != LF_OK) {
        if (!err[0] && st != LF_E_NOMEM) abort();
        close(fd);
        return 0;
    }
    lf_model_info in;
    lf_model_get_info(m, &in);
    if ((uint64_t)in.n_embd * in.n_layer * (in.n_ff + in.n_embd) < (1u << 22)) {
        lf_session_params sp = lf_session_default_params();
        sp.n_ctx = 4;
        lf_session *s;
        if (lf_session_create(m, &sp, &s, err, sizeof err) == LF_OK) {
            const lf_token toks[2] = {lf_token_bos(m) >= 0 ? lf_token_bos(m) : 0, 0};
            st = lf_session_eval(s, toks, 2);
            if (st != LF_OK && !lf_session_errmsg(s)[0]) abort();
            lf_session_destroy(s);
        } else if (!err[0]) {
            abort();
        }
    }
    lf_model_close(m);
    close(fd);
    return 0;
}
